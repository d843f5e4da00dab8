package indexsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/search/internal/indexpg"
	"github.com/shopfloor/shopfloor/services/search/internal/indexstream"
)

// Replay modes.
const (
	// ModeRebuild replays into new tables and swaps them in.
	ModeRebuild = "rebuild"
	// ModeCheck replays into new tables, compares and drops them.
	ModeCheck = "check"
)

// ErrReplayRunning is returned when another rebuild or check of the same
// projection holds the lock.
var ErrReplayRunning = errors.New("another rebuild or check of this projection is running")

// ErrMissing is returned by a rebuild that would drop documents the live
// projection has (the stream no longer holds their events, e.g. past its
// retention): nothing is swapped unless AllowMissing is set.
var ErrMissing = errors.New("the rebuilt projection lacks documents the live one has")

// ReplayConfig describes one rebuild or check. The zero value of every
// field but Source picks the default.
type ReplayConfig struct {
	// Source is the live projection and its stream. Required.
	Source Source
	// LiveGroup is the live consumer group (default indexstream.Group);
	// the replay's group is "<LiveGroup>-replay-<id>".
	LiveGroup string
	// Swap makes the replay a rebuild: the new tables replace the live
	// ones. Without it the replay is a check.
	Swap bool
	// AllowMissing lets a rebuild swap even when the rebuilt projection
	// lacks documents the live one has.
	AllowMissing bool
	// Timeout bounds the whole replay. Default 1h.
	Timeout time.Duration
	// Poll is how often progress is checked and a refused swap retried.
	// Default 250ms.
	Poll time.Duration
	// LockTimeout bounds one swap's wait for a lock. Default 2s.
	LockTimeout time.Duration
	// CatchUp bounds how long one swap pauses the live consumer while the
	// replay catches up with it (indexpg.SwapOptions). Default 10s.
	CatchUp time.Duration
	// Metrics counts the replay's events (nil: not counted).
	Metrics *indexstream.Metrics
}

// Report is what a replay did and found.
type Report struct {
	// Stream replayed.
	Stream string `json:"stream"`
	// Mode is ModeRebuild or ModeCheck.
	Mode string `json:"mode"`
	// ReplayGroup is the fresh consumer group that replayed the stream.
	ReplayGroup string `json:"replay_group"`
	// ReplayedThrough is, per partition, the last stream sequence that
	// existed when the replay started; the replay finished at least that.
	ReplayedThrough map[int]uint64 `json:"replayed_through"`
	// Events counts the deliveries the replay finished.
	Events int64 `json:"events"`
	// Diff compares the live projection with the rebuilt one when the
	// rebuilt one had caught up.
	Diff indexpg.Diff `json:"diff"`
	// Swapped: the rebuilt tables are live now.
	Swapped bool `json:"swapped"`
	// SwapAttempts counts swaps refused because the rebuilt projection
	// was behind the live one or the tables were busy.
	SwapAttempts int `json:"swap_attempts"`
	// ReplaySeconds is how long the replay took to catch up; TotalSeconds
	// includes the comparison and the swap.
	ReplaySeconds float64 `json:"replay_seconds"`
	TotalSeconds  float64 `json:"total_seconds"`
}

// Replayer rebuilds and checks projections by replaying their streams.
type Replayer struct {
	pool *pgxpool.Pool
	js   jetstream.JetStream
	log  *slog.Logger
	now  func() time.Time
}

// NewReplayer returns a replayer on pool and js.
func NewReplayer(pool *pgxpool.Pool, js jetstream.JetStream, log *slog.Logger, now func() time.Time) *Replayer {
	return &Replayer{pool: pool, js: js, log: log, now: now}
}

// Run replays cfg.Source's stream from its first retained event into new
// tables (<table>_r<id>) with a fresh consumer group (DeliverAll), while
// the live consumer keeps serving, and waits until the replay has
// finished every event that existed when it started. Then it compares
// the rebuilt projection with the live one (indexpg.Compare).
//
// A check stops there. A rebuild then swaps the rebuilt tables in
// (indexpg.Swap): the swap pauses the live consumer (readers go on), lets
// the replay catch up with it in every partition (at most CatchUp, else
// it resumes the live consumer and retries after Poll), then renames. After
// the swap the live consumer writes to the new tables (same names) and
// finds the events the replay finished ahead of it stale.
//
// One replay per projection runs at a time (a PostgreSQL advisory lock);
// tables and consumers left by a replay that died are removed first. The
// replay's tables and consumer group are removed when it ends, also on
// error.
//
// The phases, in order: lock; resetProjection (clean up, create the
// replay's tables); snapshot (the last sequence of every partition);
// replayFromSequence (start the replay group); waitCaughtUp; verify
// (compare); and, for a rebuild, swap.
func (r *Replayer) Run(ctx context.Context, cfg ReplayConfig) (Report, error) {
	cfg = cfg.withDefaults()
	rp := r.newReplay(cfg)
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	unlock, err := r.lock(ctx, rp.live)
	if err != nil {
		return rp.rep, err
	}
	defer unlock()
	if err := rp.resetProjection(ctx); err != nil {
		return rp.rep, err
	}
	defer rp.dropTablesUnlessSwapped(ctx)
	if err := rp.snapshot(ctx); err != nil {
		return rp.rep, err
	}
	if err := rp.replayFromSequence(ctx); err != nil {
		return rp.rep, err
	}
	defer rp.removeGroup(ctx)
	if err := rp.waitCaughtUp(ctx); err != nil {
		return rp.rep, err
	}
	if err := rp.verify(ctx); err != nil {
		return rp.rep, err
	}
	if !cfg.Swap {
		rp.rep.TotalSeconds = r.now().Sub(rp.start).Seconds()
		return rp.rep, nil
	}
	if err := rp.swap(ctx); err != nil {
		return rp.rep, err
	}
	return rp.rep, nil
}

// replay is one run of Replayer.Run: what its phases share.
type replay struct {
	r       *Replayer
	cfg     ReplayConfig
	src     Source
	live    indexpg.Projection
	rep     Report
	start   time.Time
	id      string // the replay's suffix: tables <table>_r<id>, group <LiveGroup>-replay-<id>
	prefix  string // of every replay group's name
	rebuilt indexpg.Projection
	s       jetstream.Stream
	events  atomic.Int64
	swapped bool
	// ran is closed when the replay group's Run returned; stopGroup stops
	// it and returns its error.
	ran       chan struct{}
	stopGroup func() error
}

func (r *Replayer) newReplay(cfg ReplayConfig) *replay {
	start := r.now()
	rp := &replay{r: r, cfg: cfg, src: cfg.Source, live: cfg.Source.Projection, start: start,
		rep: Report{Stream: cfg.Source.Stream, Mode: ModeCheck}}
	if cfg.Swap {
		rp.rep.Mode = ModeRebuild
	}
	rp.id = strconv.FormatInt(start.UnixMilli(), 36)
	rp.prefix = cfg.LiveGroup + "-replay-"
	rp.rebuilt = rp.live.WithSuffix("r" + rp.id)
	return rp
}

// resetProjection removes what a replay that died left (cleanUp) and
// creates the replay's empty tables.
func (rp *replay) resetProjection(ctx context.Context) error {
	s, err := rp.r.js.Stream(ctx, rp.src.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", rp.src.Stream, err)
	}
	rp.s = s
	if err := rp.r.cleanUp(ctx, s, rp.live, rp.prefix); err != nil {
		return err
	}
	rp.rep.ReplayGroup = rp.prefix + rp.id
	return indexpg.CreateTables(ctx, rp.r.pool, rp.live, rp.rebuilt)
}

// dropTablesUnlessSwapped drops the replay's tables, unless they are live
// now.
func (rp *replay) dropTablesUnlessSwapped(ctx context.Context) {
	if !rp.swapped {
		rp.r.warn(ctx, indexpg.DropTables(context.WithoutCancel(ctx), rp.r.pool, rp.rebuilt), "drop the replay's tables")
	}
}

// snapshot records, per partition, the last sequence the stream holds:
// where the replay must get to.
func (rp *replay) snapshot(ctx context.Context) error {
	var err error
	rp.rep.ReplayedThrough, err = lastSequences(ctx, rp.s, rp.src)
	return err
}

// replayFromSequence starts the replay group: a fresh consumer group that
// delivers the stream from its first retained event (DeliverAll) to a
// Projector writing the replay's tables.
func (rp *replay) replayFromSequence(ctx context.Context) error {
	r, src := rp.r, rp.src
	proj := &indexstream.Projector{Pool: r.pool, Projection: rp.rebuilt, Stream: src.Stream, Metrics: rp.cfg.Metrics, Log: r.log}
	// A short FetchWait: the group is stopped right after the swap, and
	// Run returns at most FetchWait after that.
	g, err := stream.NewGroup(r.js, stream.GroupConfig{Stream: src.Stream, Name: rp.rep.ReplayGroup, Partitions: src.Partitions, Deliver: stream.DeliverAll,
		FetchWait: 200 * time.Millisecond},
		func(ctx context.Context, d stream.Delivery) error {
			err := proj.Handle(ctx, d)
			if err == nil {
				rp.events.Add(1)
			}
			return err
		}, r.log)
	if err != nil {
		return err
	}
	gctx, stopGroup := context.WithCancel(ctx)
	rp.ran = make(chan struct{})
	var runErr error
	go func() {
		defer close(rp.ran)
		runErr = g.Run(gctx)
	}()
	rp.stopGroup = func() error {
		stopGroup()
		<-rp.ran
		return runErr
	}
	r.log.InfoContext(ctx, "replay started", "stream", src.Stream, "group", rp.rep.ReplayGroup, "tables", rp.rebuilt.Tables(), "through", rp.rep.ReplayedThrough)
	return nil
}

// removeGroup stops the replay group and deletes its consumers.
func (rp *replay) removeGroup(ctx context.Context) {
	rp.r.warn(ctx, rp.stopGroup(), "stop the replay group")
	rp.r.warn(ctx, deleteConsumers(context.WithoutCancel(ctx), rp.s, rp.rep.ReplayGroup, rp.src.Partitions), "delete the replay group")
}

// waitCaughtUp waits until the replay group has finished every event the
// snapshot counted.
func (rp *replay) waitCaughtUp(ctx context.Context) error {
	err := rp.r.waitCaughtUp(ctx, rp.s, rp.rep.ReplayGroup, rp.rep.ReplayedThrough, rp.cfg.Poll, rp.ran, &rp.events)
	if errors.Is(err, errGroupEnded) {
		err = fmt.Errorf("replay group %s: %w", rp.rep.ReplayGroup, errors.Join(err, rp.stopGroup()))
	}
	return err
}

// verify compares the rebuilt projection with the live one
// (indexpg.Compare) into the report.
func (rp *replay) verify(ctx context.Context) error {
	r := rp.r
	rp.rep.ReplaySeconds = r.now().Sub(rp.start).Seconds()
	var err error
	if rp.rep.Diff, err = indexpg.Compare(ctx, r.pool, rp.live, rp.rebuilt); err != nil {
		return err
	}
	rp.rep.Events = rp.events.Load()
	r.log.InfoContext(ctx, "replay caught up", "stream", rp.src.Stream, "events", rp.rep.Events, "seconds", rp.rep.ReplaySeconds,
		"differences", rp.rep.Diff.Differences(), "in_flight", rp.rep.Diff.InFlight)
	return nil
}

// swap refuses a rebuild that would drop documents (unless AllowMissing),
// swaps the rebuilt tables in, retrying while indexpg.Swap refuses, then
// stops the replay group and drops the replaced tables.
func (rp *replay) swap(ctx context.Context) error {
	r, src, cfg := rp.r, rp.src, rp.cfg
	if rp.rep.Diff.Missing > 0 && !cfg.AllowMissing {
		rp.rep.TotalSeconds = r.now().Sub(rp.start).Seconds()
		return fmt.Errorf("%w: %d documents (e.g. %s); the stream may no longer retain their events; swap anyway with --allow-missing",
			ErrMissing, rp.rep.Diff.Missing, firstMissing(rp.rep.Diff))
	}
	for {
		err := indexpg.Swap(ctx, r.pool, rp.live, rp.rebuilt, "o"+rp.id, indexpg.SwapOptions{LockTimeout: cfg.LockTimeout, CatchUp: cfg.CatchUp})
		if err == nil {
			break
		}
		if !errors.Is(err, indexpg.ErrBehind) && !errors.Is(err, indexpg.ErrBusy) {
			return err
		}
		rp.rep.SwapAttempts++
		r.log.InfoContext(ctx, "swap postponed", "stream", src.Stream, "reason", err.Error())
		select {
		case <-ctx.Done():
			return fmt.Errorf("swap %s: %w (last refusal: %w)", src.Stream, ctx.Err(), err)
		case <-time.After(cfg.Poll):
		}
	}
	rp.swapped, rp.rep.Swapped = true, true
	rp.rep.Events = rp.events.Load()
	// The replay group would now write to tables that no longer exist
	// under its names: stop it before dropping the old tables.
	r.warn(ctx, rp.stopGroup(), "stop the replay group")
	r.warn(ctx, indexpg.DropTables(ctx, r.pool, rp.live.WithSuffix("o"+rp.id)), "drop the replaced tables")
	rp.rep.TotalSeconds = r.now().Sub(rp.start).Seconds()
	r.log.InfoContext(ctx, "rebuild swapped in", "stream", src.Stream, "events", rp.rep.Events, "seconds", rp.rep.TotalSeconds)
	return nil
}

func (c ReplayConfig) withDefaults() ReplayConfig {
	if c.LiveGroup == "" {
		c.LiveGroup = indexstream.Group
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Hour
	}
	if c.Poll <= 0 {
		c.Poll = 250 * time.Millisecond
	}
	if c.LockTimeout <= 0 {
		c.LockTimeout = 2 * time.Second
	}
	if c.CatchUp <= 0 {
		c.CatchUp = 10 * time.Second
	}
	return c
}

func firstMissing(d indexpg.Diff) string {
	for _, s := range d.Samples {
		if s.Class == indexpg.DiffMissing {
			return s.ID
		}
	}
	return "?"
}

func (r *Replayer) warn(ctx context.Context, err error, what string) {
	if err != nil {
		r.log.WarnContext(ctx, what, "err", err)
	}
}

// lock takes the projection's replay lock on a dedicated connection and
// returns its release.
func (r *Replayer) lock(ctx context.Context, live indexpg.Projection) (func(), error) {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("replay lock: %w", err)
	}
	key := "search.replay." + live.Docs
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, key).Scan(&got); err != nil {
		conn.Release()
		return nil, fmt.Errorf("replay lock: %w", err)
	}
	if !got {
		conn.Release()
		return nil, fmt.Errorf("%w (%s)", ErrReplayRunning, live.Docs)
	}
	return func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, key); err != nil {
			// The session ends with the connection, and the lock with it.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
		conn.Release()
	}, nil
}

// cleanUp removes what a replay that died left: its tables and its
// consumer groups (names starting with prefix).
func (r *Replayer) cleanUp(ctx context.Context, s jetstream.Stream, live indexpg.Projection, prefix string) error {
	left, err := indexpg.Leftovers(ctx, r.pool, live)
	if err != nil {
		return err
	}
	for _, t := range left {
		r.log.InfoContext(ctx, "dropping a table a dead replay left", "table", t)
		if err := indexpg.DropTable(ctx, r.pool, t); err != nil {
			return err
		}
	}
	names := s.ConsumerNames(ctx)
	var doomed []string
	for name := range names.Name() {
		if strings.HasPrefix(name, prefix) {
			doomed = append(doomed, name)
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list consumers of %s: %w", s.CachedInfo().Config.Name, err)
	}
	for _, name := range doomed {
		r.log.InfoContext(ctx, "deleting a consumer a dead replay left", "consumer", name)
		if err := s.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("delete consumer %s: %w", name, err)
		}
	}
	return nil
}

func deleteConsumers(ctx context.Context, s jetstream.Stream, group string, partitions int) error {
	var errs []error
	for p := range partitions {
		if err := s.DeleteConsumer(ctx, stream.ConsumerName(group, p)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// lastSequences returns the sequence of the last message of every
// partition (0 for an empty one): where a replay started now must get to.
func lastSequences(ctx context.Context, s jetstream.Stream, src Source) (map[int]uint64, error) {
	out := make(map[int]uint64, src.Partitions)
	for p := range src.Partitions {
		m, err := s.GetLastMsgForSubject(ctx, stream.Subject(src.Stream, p))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			out[p] = 0
		case err != nil:
			return nil, fmt.Errorf("last message of %s partition %d: %w", src.Stream, p, err)
		default:
			out[p] = m.Sequence
		}
	}
	return out, nil
}

// errGroupEnded: the replay group's Run returned before it caught up.
var errGroupEnded = errors.New("the group ended before catching up")

// waitCaughtUp polls the replay group's consumers until each has
// acknowledged its partition through target (the group acknowledges in
// order, one message at a time, so its ack floor is its position).
func (r *Replayer) waitCaughtUp(ctx context.Context, s jetstream.Stream, group string, target map[int]uint64, poll time.Duration, ran <-chan struct{}, events *atomic.Int64) error {
	lastLog := r.now()
	for {
		behind := 0
		for p, want := range target {
			if want == 0 {
				continue
			}
			c, err := s.Consumer(ctx, stream.ConsumerName(group, p))
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				behind++ // not created yet
				continue
			}
			if err != nil {
				return fmt.Errorf("replay group %s partition %d: %w", group, p, err)
			}
			info, err := c.Info(ctx)
			if err != nil {
				return fmt.Errorf("replay group %s partition %d: %w", group, p, err)
			}
			if info.AckFloor.Stream < want {
				behind++
			}
		}
		if behind == 0 {
			return nil
		}
		if now := r.now(); now.Sub(lastLog) >= 5*time.Second {
			r.log.InfoContext(ctx, "replaying", "group", group, "events", events.Load(), "partitions_behind", behind)
			lastLog = now
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replay group %s: %d partitions not caught up: %w", group, behind, ctx.Err())
		case <-ran:
			return errGroupEnded
		case <-time.After(poll):
		}
	}
}
