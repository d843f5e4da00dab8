package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/audit"
)

// Headers a dead letter carries besides the original message's headers
// (traceparent included).
const (
	HeaderDLQGroup            = "Shopfloor-Dlq-Group"
	HeaderDLQErrorClass       = "Shopfloor-Dlq-Error-Class" // permanent or exhausted
	HeaderDLQError            = "Shopfloor-Dlq-Error"       // the handler's error, one line, at most 1000 bytes
	HeaderDLQAttempts         = "Shopfloor-Dlq-Attempts"
	HeaderDLQFirstFailure     = "Shopfloor-Dlq-First-Failure" // RFC 3339
	HeaderDLQOriginalSubject  = "Shopfloor-Dlq-Original-Subject"
	HeaderDLQOriginalSequence = "Shopfloor-Dlq-Original-Sequence"
)

// Error classes of a dead letter.
const (
	classPermanent = "permanent"
	classExhausted = "exhausted"
)

// deadLetter copies the message to the dead-letter stream and, once that is
// acknowledged, acknowledges the original so the partition moves on. If the
// copy fails, the original is retried later: nothing is lost.
func (g *Group) deadLetter(ctx context.Context, log *slog.Logger, msg jetstream.Msg, d Delivery, class string, cause error, firstFailure time.Time) {
	if _, err := g.storeDeadLetter(ctx, log, msg, d, class, cause, firstFailure); err != nil {
		delay := g.cfg.Backoff.Delay(d.NumDelivered)
		log.ErrorContext(ctx, "dead-letter publish failed; the message stays in its partition and is tried again",
			"class", class, "retry_in", delay, "error", err)
		g.nak(ctx, log, msg, delay)
	}
}

// storeDeadLetter publishes the dead letter and, once the dead-letter stream
// has stored it, acknowledges the original; acked says whether the broker
// confirmed that ack. It returns the publish error and leaves the original
// alone if the copy was not stored.
func (g *Group) storeDeadLetter(ctx context.Context, log *slog.Logger, msg jetstream.Msg, d Delivery, class string, cause error, firstFailure time.Time) (acked bool, err error) {
	// An operator settled this message's dead letter before (DLQ.Discard
	// or Redrive left a tombstone): a replay re-read it and it failed
	// again. The operator's decision stands: acknowledge it, do not
	// dead-letter it a second time.
	if t, found, err := discardedBefore(ctx, g.js, g.cfg.Stream, g.cfg.Name, d.Sequence); err != nil {
		return false, err
	} else if found {
		g.metrics.discardedAgain(g.cfg)
		log.WarnContext(ctx, "message failed again after an operator settled its dead letter; acknowledged without a new dead letter",
			"class", class, "key", d.Key, "error", cause, "settled_by", t.Action, "actor", t.Actor, "at", t.At, "reason", t.Reason)
		if err := msg.DoubleAck(ctx); err != nil {
			log.WarnContext(ctx, "ack of a discarded message not confirmed; it is judged again on redelivery", "error", err)
			return false, nil
		}
		return true, nil
	}
	nm := nats.NewMsg(dlqSubject(g.cfg.Stream, g.cfg.Name))
	nm.Data = d.Payload
	for k, vs := range msg.Headers() {
		// Nats-* headers are instructions to the broker (dedup, expected
		// sequence, TTL): they must not act on the copy.
		if strings.HasPrefix(k, "Nats-") {
			continue
		}
		for _, v := range vs {
			nm.Header.Add(k, v)
		}
	}
	if d.ID != "" {
		nm.Header.Set(HeaderEventID, d.ID)
	}
	nm.Header.Set(HeaderDLQGroup, g.cfg.Name)
	nm.Header.Set(HeaderDLQErrorClass, class)
	nm.Header.Set(HeaderDLQError, HeaderValue(cause.Error(), 1000))
	nm.Header.Set(HeaderDLQAttempts, strconv.Itoa(d.NumDelivered))
	nm.Header.Set(HeaderDLQFirstFailure, firstFailure.UTC().Format(time.RFC3339))
	nm.Header.Set(HeaderDLQOriginalSubject, d.Subject)
	nm.Header.Set(HeaderDLQOriginalSequence, strconv.FormatUint(d.Sequence, 10))
	// If the original's ack below is lost, the redelivered original is
	// dead-lettered again; this ID makes the broker drop that second copy.
	nm.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dlq-%s-%s-%d", g.cfg.Stream, g.cfg.Name, d.Sequence))

	if _, err := g.js.PublishMsg(ctx, nm, jetstream.WithExpectStream(DLQStream(g.cfg.Stream))); err != nil {
		return false, err
	}
	g.metrics.deadLetter(g.cfg, class)
	log.WarnContext(ctx, "message dead-lettered", "class", class, "key", d.Key, "error", cause)
	if err := msg.DoubleAck(ctx); err != nil {
		log.WarnContext(ctx, "ack after dead-lettering not confirmed; a redelivery is dropped as a duplicate", "error", err)
		return false, nil
	}
	return true, nil
}

// HeaderValue makes s a valid header value: no line breaks, at most n
// bytes, cut on a rune boundary. The Kafka engine (pkg/stream/kafka) writes
// its dead letters' error headers with it too.
func HeaderValue(s string, n int) string {
	s = strings.NewReplacer("\r\n", " | ", "\n", " | ", "\r", " ").Replace(s)
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// DeadLetter is one message in a dead-letter stream.
type DeadLetter struct {
	// Seq is the dead letter's sequence in the dead-letter stream: the
	// handle for Inspect, Redrive and Discard.
	Seq uint64
	// DeadAt is when the message was dead-lettered.
	DeadAt time.Time
	// Group that gave up on the message.
	Group string
	// EventID is the original message's ID.
	EventID string
	// Key of the original message, when published by pkg/stream.
	Key string
	// ErrorClass is "permanent" (the handler said so) or "exhausted" (the
	// retry budget ran out).
	ErrorClass string
	// Error is the handler's last error.
	Error string
	// Attempts is how many deliveries the group made.
	Attempts int
	// FirstFailure is when the first failed attempt was seen.
	FirstFailure time.Time
	// OriginalSubject and OriginalSeq locate the original message.
	OriginalSubject string
	OriginalSeq     uint64
	// Headers are all headers of the dead letter, the original ones
	// (traceparent included) and the Shopfloor-Dlq-* ones.
	Headers map[string]string
	// Payload is the original payload, unchanged.
	Payload []byte
}

func deadLetterFrom(m *jetstream.RawStreamMsg) DeadLetter {
	return DeadLetterFromHeaders(m.Sequence, m.Time, headerMap(m.Header), m.Data)
}

// DeadLetterFromHeaders reads a dead letter from its headers (the
// Shopfloor-Dlq-* ones and the original ones) and payload, as any engine
// stores them: seq is its handle in the dead-letter stream or topic, at
// when it was stored.
func DeadLetterFromHeaders(seq uint64, at time.Time, h map[string]string, payload []byte) DeadLetter {
	dl := DeadLetter{
		Seq:             seq,
		DeadAt:          at,
		Group:           h[HeaderDLQGroup],
		EventID:         h[HeaderEventID],
		Key:             h[HeaderKey],
		ErrorClass:      h[HeaderDLQErrorClass],
		Error:           h[HeaderDLQError],
		OriginalSubject: h[HeaderDLQOriginalSubject],
		Headers:         h,
		Payload:         payload,
	}
	dl.Attempts, _ = strconv.Atoi(h[HeaderDLQAttempts])
	dl.FirstFailure, _ = time.Parse(time.RFC3339, h[HeaderDLQFirstFailure])
	dl.OriginalSeq, _ = strconv.ParseUint(h[HeaderDLQOriginalSequence], 10, 64)
	return dl
}

// DeadLetters is what the dlq command (DLQCommand) works on: one
// stream's dead letters on an engine. *DLQ is JetStream's;
// kafkastream.DLQReader is Kafka's (list and inspect only, ADR 0046).
type DeadLetters interface {
	List(ctx context.Context, group string, limit int) ([]DeadLetter, error)
	Inspect(ctx context.Context, seq uint64) (DeadLetter, error)
	Redrive(ctx context.Context, opts RedriveOptions) (RedriveReport, error)
	Discard(ctx context.Context, seq uint64, actor, reason string) error
}

var _ DeadLetters = (*DLQ)(nil)

// DLQ is the operator's tool for one stream's dead-letter stream: list,
// inspect, redrive and discard. Its methods are safe for concurrent use, but
// two redrives of the same dead letters at once may publish a message twice
// (consumers drop the second by event ID).
type DLQ struct {
	js     jetstream.JetStream
	stream string
	log    *slog.Logger
	audit  func(ctx context.Context, e audit.Entry) error
}

// WithAudit returns q recording every discard with record (e.g. into the
// service's audit_log, pkg/audit) before the dead letter is deleted. A DLQ
// without it refuses to discard: a dead letter thrown away leaves no trace
// but the audit row.
func (q *DLQ) WithAudit(record func(ctx context.Context, e audit.Entry) error) *DLQ {
	c := *q
	c.audit = record
	return &c
}

// NewDLQ returns the tool for the dead letters of stream (the main stream's
// name, not "<stream>_DLQ"). A nil logger discards logs.
func NewDLQ(js jetstream.JetStream, stream string, logger *slog.Logger) (*DLQ, error) {
	if js == nil {
		return nil, invalidf("dlq: nil JetStream")
	}
	if err := validName("stream", stream); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &DLQ{js: js, stream: stream, log: logger.With("stream", stream, "dlq", DLQStream(stream))}, nil
}

func (q *DLQ) dlqStream(ctx context.Context) (jetstream.Stream, error) {
	s, err := q.js.Stream(ctx, DLQStream(q.stream))
	if err != nil {
		return nil, fmt.Errorf("dlq %s: %w", DLQStream(q.stream), err)
	}
	return s, nil
}

// List returns up to limit dead letters of group ("" for every group),
// oldest first. limit <= 0 or above 1000 means 100.
func (q *DLQ) List(ctx context.Context, group string, limit int) ([]DeadLetter, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	return q.scan(ctx, group, func(DeadLetter) bool { return true }, limit)
}

// scan walks the dead letters of group in order and returns those keep
// accepts, at most limit.
func (q *DLQ) scan(ctx context.Context, group string, keep func(DeadLetter) bool, limit int) ([]DeadLetter, error) {
	filter := DLQStream(q.stream) + ".*"
	if group != "" {
		if err := validName("group", group); err != nil {
			return nil, err
		}
		filter = dlqSubject(q.stream, group)
	}
	s, err := q.dlqStream(ctx)
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	for seq := uint64(1); len(out) < limit; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("dlq %s: read from %d: %w", DLQStream(q.stream), seq, err)
		}
		if dl := deadLetterFrom(m); keep(dl) {
			out = append(out, dl)
		}
		seq = m.Sequence + 1
	}
	return out, nil
}

// Inspect returns the dead letter at seq, or ErrNotFound.
func (q *DLQ) Inspect(ctx context.Context, seq uint64) (DeadLetter, error) {
	s, err := q.dlqStream(ctx)
	if err != nil {
		return DeadLetter{}, err
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, fmt.Errorf("%w: no dead letter %d in %s", ErrNotFound, seq, DLQStream(q.stream))
	}
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dlq %s: inspect %d: %w", DLQStream(q.stream), seq, err)
	}
	return deadLetterFrom(m), nil
}

// RedriveOptions selects what Redrive publishes again.
type RedriveOptions struct {
	// Group whose dead letters to redrive. Required: redrive one
	// consumer's failures at a time, after fixing that consumer.
	Group string
	// Seqs of the dead letters to redrive; empty: all of the group's.
	Seqs []uint64
	// DryRun reports what would be redriven and changes nothing.
	DryRun bool
	// RatePerSecond bounds how many messages are published per second
	// (0: no bound), so that a redrive does not flood the consumers.
	RatePerSecond int
}

// RedriveReport counts what a redrive did.
type RedriveReport struct {
	// Matched dead letters (for a dry run: what would be redriven).
	Matched int
	// Redriven were published to their original subject and deleted from
	// the dead-letter stream.
	Redriven int
	// Seqs of the dead letters matched, in order.
	Seqs []uint64
}

// Redrive publishes the selected dead letters again to their original
// subject (their partition), with their original payload and headers minus
// the Shopfloor-Dlq-* ones, then deletes each from the dead-letter stream
// once the publish is acknowledged. The event ID (Shopfloor-Event-Id) is
// kept; Nats-Msg-Id becomes "<event id>-redrive-<dlq seq>", so the broker's
// duplicate window does not drop the message and a repeated redrive of the
// same dead letter is dropped.
//
// Every group of the stream sees the message again, and after the newer
// events of its key: consumers must drop it by event ID (pkg/inbox) or by
// version. Redrive stops at the first error and reports what it did.
func (q *DLQ) Redrive(ctx context.Context, opts RedriveOptions) (RedriveReport, error) {
	var rep RedriveReport
	if opts.Group == "" {
		return rep, invalidf("redrive: a group is required")
	}
	if opts.RatePerSecond < 0 {
		return rep, invalidf("redrive: negative rate")
	}
	want := func(DeadLetter) bool { return true }
	if len(opts.Seqs) > 0 {
		want = func(dl DeadLetter) bool { return slices.Contains(opts.Seqs, dl.Seq) }
	}
	matched, err := q.scan(ctx, opts.Group, want, int(^uint(0)>>1))
	if err != nil {
		return rep, err
	}
	rep.Matched = len(matched)
	for _, dl := range matched {
		rep.Seqs = append(rep.Seqs, dl.Seq)
	}
	if opts.DryRun || len(matched) == 0 {
		q.log.InfoContext(ctx, "redrive", "group", opts.Group, "matched", rep.Matched, "dry_run", opts.DryRun)
		return rep, nil
	}
	s, err := q.dlqStream(ctx)
	if err != nil {
		return rep, err
	}
	var tick *time.Ticker
	if opts.RatePerSecond > 0 {
		tick = time.NewTicker(time.Second / time.Duration(opts.RatePerSecond))
		defer tick.Stop()
	}
	for i, dl := range matched {
		if tick != nil && i > 0 {
			select {
			case <-ctx.Done():
				return rep, ctx.Err()
			case <-tick.C:
			}
		}
		if err := q.redriveOne(ctx, s, dl); err != nil {
			return rep, err
		}
		rep.Redriven++
	}
	q.log.InfoContext(ctx, "redrive done", "group", opts.Group, "matched", rep.Matched, "redriven", rep.Redriven)
	return rep, nil
}

func (q *DLQ) redriveOne(ctx context.Context, s jetstream.Stream, dl DeadLetter) error {
	if !strings.HasPrefix(dl.OriginalSubject, q.stream+".events.") {
		return fmt.Errorf("dlq %s: dead letter %d has no original subject of stream %s (%q): inspect and discard it",
			DLQStream(q.stream), dl.Seq, q.stream, dl.OriginalSubject)
	}
	nm := nats.NewMsg(dl.OriginalSubject)
	nm.Data = dl.Payload
	for k, v := range dl.Headers {
		if strings.HasPrefix(k, "Shopfloor-Dlq-") || strings.HasPrefix(k, "Nats-") {
			continue
		}
		nm.Header.Set(k, v)
	}
	id := dl.EventID
	if id == "" {
		id = "dlq-" + DLQStream(q.stream)
	}
	nm.Header.Set(jetstream.MsgIDHeader, id+"-redrive-"+strconv.FormatUint(dl.Seq, 10))
	if _, err := q.js.PublishMsg(ctx, nm, jetstream.WithExpectStream(q.stream)); err != nil {
		return fmt.Errorf("dlq %s: redrive %d to %s: %w", DLQStream(q.stream), dl.Seq, dl.OriginalSubject, err)
	}
	// The copy just published carries the message from now on: a replay
	// that re-reads the original and fails on it again does not bring the
	// dead letter back.
	if dl.Group != "" && dl.OriginalSeq > 0 {
		if err := q.tombstone(ctx, dl, "redrive", "", "redriven"); err != nil {
			return fmt.Errorf("dlq %s: redrive %d: published, not deleted: %w", DLQStream(q.stream), dl.Seq, err)
		}
	}
	if err := s.DeleteMsg(ctx, dl.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("dlq %s: delete %d after redrive (it is published; a second redrive of it is dropped as a duplicate inside the window): %w",
			DLQStream(q.stream), dl.Seq, err)
	}
	q.log.InfoContext(ctx, "dead letter redriven", "seq", dl.Seq, "event_id", dl.EventID, "subject", dl.OriginalSubject)
	return nil
}

// Discard deletes the dead letter at seq for good, as actor decided for
// reason (both required). The decision is recorded first (WithAudit: who,
// when, why, and the dead letter's group, event id, key, error class and
// attempts, never its payload), then the message is deleted: a failed
// delete leaves a record of an attempt, never a deletion without one.
func (q *DLQ) Discard(ctx context.Context, seq uint64, actor, reason string) error {
	if strings.TrimSpace(reason) == "" {
		return invalidf("discard %d: a reason is required", seq)
	}
	if strings.TrimSpace(actor) == "" {
		return invalidf("discard %d: who discards is required (the audit log's actor)", seq)
	}
	if q.audit == nil {
		return invalidf("discard %d: no audit log configured (DLQ.WithAudit)", seq)
	}
	dl, err := q.Inspect(ctx, seq)
	if err != nil {
		return err
	}
	if err := q.audit(ctx, audit.Entry{Actor: actor, Action: "stream_dlq.discard", Target: fmt.Sprintf("%s/%d", DLQStream(q.stream), seq),
		Reason: reason, Detail: map[string]any{"group": dl.Group, "event_id": dl.EventID, "key": dl.Key,
			"error_class": dl.ErrorClass, "attempts": dl.Attempts, "original_seq": dl.OriginalSeq}}); err != nil {
		if errors.Is(err, audit.ErrInvalid) {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return fmt.Errorf("dlq %s: discard %d: not recorded, nothing deleted: %w", DLQStream(q.stream), seq, err)
	}
	if dl.Group != "" && dl.OriginalSeq > 0 {
		if err := q.tombstone(ctx, dl, "discard", actor, reason); err != nil {
			return fmt.Errorf("dlq %s: discard %d: recorded, not deleted: %w", DLQStream(q.stream), seq, err)
		}
	}
	s, err := q.dlqStream(ctx)
	if err != nil {
		return err
	}
	if err := s.DeleteMsg(ctx, seq); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("%w: no dead letter %d in %s", ErrNotFound, seq, DLQStream(q.stream))
		}
		return fmt.Errorf("dlq %s: discard %d: %w", DLQStream(q.stream), seq, err)
	}
	q.log.WarnContext(ctx, "dead letter discarded", "seq", seq, "group", dl.Group, "event_id", dl.EventID,
		"error_class", dl.ErrorClass, "actor", actor, "reason", reason)
	return nil
}

// --- tombstones of discarded dead letters ---------------------------------------

// DiscardedBucket is the JetStream key-value bucket where Discard and
// Redrive leave a tombstone for each dead letter an operator settled,
// keyed "<group>.<original sequence>". A group that dead-letters a message
// checks it first: a replay (a consumer reset to an earlier sequence)
// re-reads messages whose dead letters an operator already judged (thrown
// away, or published again as a new message), and the operator's decision
// stands instead of the dead letter coming back. The
// bucket keeps tombstones as long as the stream keeps messages (its
// MaxAge; 0 keeps them for good).
func DiscardedBucket(stream string) string { return DLQStream(stream) + "_DISCARDED" }

// tombstone is what Discard and Redrive leave behind.
type tombstone struct {
	Action  string    `json:"action"` // discard or redrive
	Actor   string    `json:"actor"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
	EventID string    `json:"event_id,omitempty"`
	DLQSeq  uint64    `json:"dlq_seq"`
}

func tombstoneKey(group string, seq uint64) string { return group + "." + strconv.FormatUint(seq, 10) }

func (q *DLQ) tombstone(ctx context.Context, dl DeadLetter, action, actor, reason string) error {
	// As long-lived and as replicated as the stream.
	var maxAge time.Duration
	replicas := 1
	if s, err := q.js.Stream(ctx, q.stream); err == nil {
		maxAge, replicas = s.CachedInfo().Config.MaxAge, max(1, s.CachedInfo().Config.Replicas)
	}
	kv, err := q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: DiscardedBucket(q.stream),
		Description: "tombstones of discarded dead letters of " + q.stream + " (pkg/stream DLQ.Discard)", History: 1, TTL: maxAge, Replicas: replicas})
	if err != nil {
		return fmt.Errorf("tombstone bucket: %w", err)
	}
	b, err := json.Marshal(tombstone{Action: action, Actor: actor, Reason: reason, At: time.Now().UTC(), EventID: dl.EventID, DLQSeq: dl.Seq})
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, tombstoneKey(dl.Group, dl.OriginalSeq), b); err != nil {
		return fmt.Errorf("tombstone: %w", err)
	}
	return nil
}

// discardedBefore looks up the tombstone of group's message seq of stream.
// No bucket means nothing was ever discarded.
func discardedBefore(ctx context.Context, js jetstream.JetStream, stream, group string, seq uint64) (tombstone, bool, error) {
	kv, err := js.KeyValue(ctx, DiscardedBucket(stream))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return tombstone{}, false, nil
	}
	if err != nil {
		return tombstone{}, false, fmt.Errorf("tombstone bucket: %w", err)
	}
	e, err := kv.Get(ctx, tombstoneKey(group, seq))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return tombstone{}, false, nil
	}
	if err != nil {
		return tombstone{}, false, fmt.Errorf("tombstone: %w", err)
	}
	var t tombstone
	_ = json.Unmarshal(e.Value(), &t) // a tombstone that cannot be read is still a tombstone
	return t, true, nil
}
