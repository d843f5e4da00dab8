// Package audit records what operators did to data that no event, no
// outbox row and no dead letter keeps any more: a stream dead letter
// discarded, a job-queue dead-letter queue purged, a refund abandoned. One
// row per action in the acting service's own database (Schema), written in
// the same transaction as the action where the action is in that database,
// so an action without its record cannot commit. The row says who (the
// operator, from the token or the CLI's --by), when, why (a reason is
// required), what (the target) and the details a later reader needs (ids,
// counts, the dead-letter reason), never personal data.
//
// It answers "who threw this away, and why?" weeks later, when the
// dead-letter queues' own retention (30 days) has removed the evidence.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Schema creates the audit table. Put it in a goose migration of every
// service that records actions:
//
//	-- +goose Up
//	<audit.Schema>
//	-- +goose Down
//	DROP TABLE audit_log;
const Schema = `
CREATE TABLE audit_log (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Who: the operator's token subject, or the CLI's --by.
    actor   text NOT NULL CHECK (actor <> ''),
    -- What was done, e.g. stream_dlq.discard, jobqueue.purge, refund.abandon.
    action  text NOT NULL CHECK (action <> ''),
    -- What it was done to, e.g. ORDERS_DLQ/42, charges-dlq, refund <id>.
    target  text NOT NULL,
    -- Why, in the operator's words: required.
    reason  text NOT NULL CHECK (reason <> ''),
    -- Ids, counts and the dead-letter reason; never personal data.
    detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
`

// Limits of an entry's text fields, in characters.
const (
	MaxReason = 500
	maxField  = 200
)

// ErrInvalid: an entry without an actor, an action or a reason, or with a
// field over its limit. Nothing was recorded (and, in a transaction, the
// action must not go ahead).
var ErrInvalid = errors.New("audit: invalid entry")

// Entry is one recorded action.
type Entry struct {
	ID     int64          `json:"id"`
	At     time.Time      `json:"at"`
	Actor  string         `json:"actor"`
	Action string         `json:"action"`
	Target string         `json:"target"`
	Reason string         `json:"reason"`
	Detail map[string]any `json:"detail,omitempty"`
}

// Check reports why e cannot be recorded (ErrInvalid), or nil.
func (e Entry) Check() error {
	var bad []string
	for name, v := range map[string]string{"actor": e.Actor, "action": e.Action, "reason": e.Reason} {
		if strings.TrimSpace(v) == "" {
			bad = append(bad, name+" is required")
		}
	}
	for name, v := range map[string]string{"actor": e.Actor, "action": e.Action, "target": e.Target} {
		if utf8.RuneCountInString(v) > maxField {
			bad = append(bad, fmt.Sprintf("%s longer than %d characters", name, maxField))
		}
	}
	if utf8.RuneCountInString(e.Reason) > MaxReason {
		bad = append(bad, fmt.Sprintf("reason longer than %d characters", MaxReason))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(slices.Sorted(slices.Values(bad)), "; "))
	}
	return nil
}

// Execer is a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Record writes e (its ID and At are set by the database). Pass the
// action's own transaction, so both commit or neither does.
func Record(ctx context.Context, db Execer, e Entry) error {
	if err := e.Check(); err != nil {
		return err
	}
	detail, err := json.Marshal(e.Detail)
	if err != nil {
		return fmt.Errorf("audit: detail: %w", err)
	}
	if e.Detail == nil {
		detail = []byte("{}")
	}
	if _, err := db.Exec(ctx, `INSERT INTO audit_log (actor, action, target, reason, detail) VALUES ($1, $2, $3, $4, $5)`,
		strings.TrimSpace(e.Actor), e.Action, e.Target, strings.TrimSpace(e.Reason), detail); err != nil {
		return fmt.Errorf("audit: record %s: %w", e.Action, err)
	}
	return nil
}

// Querier reads rows.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// List returns the newest entries first, at most limit (1..1000), those
// with an action starting with actionPrefix when it is not empty.
func List(ctx context.Context, db Querier, actionPrefix string, limit int) ([]Entry, error) {
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("%w: limit %d outside 1..1000", ErrInvalid, limit)
	}
	rows, err := db.Query(ctx, `
		SELECT id, at, actor, action, target, reason, detail FROM audit_log
		WHERE $1 = '' OR starts_with(action, $1)
		ORDER BY id DESC LIMIT $2`, actionPrefix, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		var detail []byte
		err := r.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Target, &e.Reason, &detail)
		if err == nil && len(detail) > 0 {
			err = json.Unmarshal(detail, &e.Detail)
		}
		e.At = e.At.UTC()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: list: %w", err)
	}
	return entries, nil
}
