package jobqueue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// PauseState says whether a queue is paused, since when, by whom and why.
type PauseState struct {
	Paused   bool
	PausedAt time.Time
	PausedBy string
	Reason   string
}

// Limits of a pause's fields.
const (
	maxPauseReason = 500
	maxPausedBy    = 200
)

// Pause stops every receiver of queue, on every instance, from the next
// receive statement on: Receive returns no message (a long poll waits),
// nothing is delivered and nothing is dead-lettered, so receive counts do
// not grow. Sends go on being accepted and messages keep their retention;
// deliveries already in progress finish. The pause is a row in
// jobqueue_state (PauseSchema), so it outlives restarts until Resume.
// Pausing a paused queue keeps its first paused_at and takes the new
// reason. by and reason are required (who and why, logged and shown by
// Stats); ErrQueueNotFound for an unknown queue.
func (c *Client) Pause(ctx context.Context, queue, by, reason string) (PauseState, error) {
	switch {
	case reason == "" || len(reason) > maxPauseReason:
		return PauseState{}, fmt.Errorf("%w: a pause needs a reason of 1–%d bytes", ErrInvalid, maxPauseReason)
	case by == "" || len(by) > maxPausedBy:
		return PauseState{}, fmt.Errorf("%w: a pause needs who pauses, 1–%d bytes", ErrInvalid, maxPausedBy)
	}
	s := PauseState{Paused: true}
	err := c.pool.QueryRow(ctx, `
		INSERT INTO jobqueue_state (queue, paused_by, reason)
		SELECT name, $2, $3 FROM jobqueue_queues WHERE name = $1
		ON CONFLICT (queue) DO UPDATE SET paused_by = $2, reason = $3
		RETURNING paused_at, paused_by, reason`, queue, by, reason).Scan(&s.PausedAt, &s.PausedBy, &s.Reason)
	if errors.Is(err, pgx.ErrNoRows) {
		return PauseState{}, fmt.Errorf("%w: %s", ErrQueueNotFound, queue)
	}
	if err != nil {
		return PauseState{}, fmt.Errorf("jobqueue: pause %s: %w", queue, err)
	}
	c.log.WarnContext(ctx, "queue paused", "queue", queue, "by", by, "reason", reason)
	return s, nil
}

// Resume lets queue's receivers take messages again and wakes the ones
// long-polling it. Resuming a queue that is not paused is not an error;
// it returns whether the queue was paused. ErrQueueNotFound for an
// unknown queue.
func (c *Client) Resume(ctx context.Context, queue, by string) (bool, error) {
	var exists, was bool
	err := c.pool.QueryRow(ctx, `
		WITH d AS (DELETE FROM jobqueue_state WHERE queue = $1 RETURNING queue)
		SELECT EXISTS (SELECT 1 FROM jobqueue_queues WHERE name = $1), EXISTS (SELECT 1 FROM d)
		FROM (SELECT pg_notify($2, $1)) AS wake`,
		queue, NotifyChannel).Scan(&exists, &was)
	if err != nil {
		return false, fmt.Errorf("jobqueue: resume %s: %w", queue, err)
	}
	if !exists {
		return false, fmt.Errorf("%w: %s", ErrQueueNotFound, queue)
	}
	if was {
		c.log.WarnContext(ctx, "queue resumed", "queue", queue, "by", by)
	}
	return was, nil
}

// PauseStateOf returns queue's pause state (ErrQueueNotFound for an
// unknown queue).
func (c *Client) PauseStateOf(ctx context.Context, queue string) (PauseState, error) {
	var (
		s  PauseState
		at *time.Time
		by *string
		rs *string
	)
	err := c.pool.QueryRow(ctx, `
		SELECT s.paused_at, s.paused_by, s.reason FROM jobqueue_queues q LEFT JOIN jobqueue_state s ON s.queue = q.name
		WHERE q.name = $1`, queue).Scan(&at, &by, &rs)
	if errors.Is(err, pgx.ErrNoRows) {
		return PauseState{}, fmt.Errorf("%w: %s", ErrQueueNotFound, queue)
	}
	if err != nil {
		return PauseState{}, fmt.Errorf("jobqueue: pause state of %s: %w", queue, err)
	}
	if at != nil {
		s = PauseState{Paused: true, PausedAt: *at, PausedBy: *by, Reason: *rs}
	}
	return s, nil
}
