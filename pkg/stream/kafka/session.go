package kafkastream

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/backoff"
)

// Partitions and rebalances.
//
// One poll loop fetches records of every partition assigned to this member
// and hands them to one worker per partition, which handles them one at a
// time in offset order and marks each record for commit after its handler
// returned nil or the record was dead-lettered (AutoCommitMarks: franz-go
// commits only marked offsets, every CommitInterval; a revoke and a stop
// commit the marks at once). A worker's queue holds at
// most maxQueued records; beyond that its partition's fetching is paused
// until the worker has drained the queue, so a slow partition never holds
// up the poll loop or the others.
//
// BlockRebalanceOnPoll keeps the rebalance callbacks out of the time
// between a poll and the hand-over of its records (AllowRebalance after
// each hand-over): a revoke never races with records in transit. The
// revoke (and lost) callback stops the workers of the partitions it names
// and waits for them before it returns: a worker finishes its current
// handler call (HandlerTimeout bounds it; the handler's ctx ends then),
// marks it if it succeeded, and drops the rest of its queue unmarked; then
// the callback commits the marks and returns.
// Only then does the coordinator give the partition to another member,
// which starts at the last committed offset: a record of a revoked
// partition is never handled after the revoke, and never by two members at
// once while both are alive. A member that dies without a revoke (crash,
// network partition) loses its partitions after SessionTimeout; records it
// handled but did not commit are handled again by the new owner
// (at-least-once).

// maxQueued bounds a partition worker's queue: at this length the poll
// loop pauses the partition's fetching.
const maxQueued = 500

// session is one Run of a group: its client and partition workers.
type session struct {
	g  *Group
	cl *kgo.Client

	mu      sync.Mutex
	workers map[int32]*worker
	closed  bool // Run is stopping: no new workers
}

func newSession(g *Group) *session {
	return &session{g: g, workers: map[int32]*worker{}}
}

// pollRetry spaces polls after an error (brokers unreachable).
var pollRetry = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// poll fetches records and hands them to the partition workers until ctx
// ends.
func (s *session) poll(ctx context.Context) {
	errs := 0
	for ctx.Err() == nil {
		fetches := s.cl.PollRecords(ctx, maxQueued)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			s.cl.AllowRebalance()
			return
		}
		failed := false
		fetches.EachError(func(topic string, p int32, err error) {
			failed = true
			s.g.log.WarnContext(ctx, "fetch failed; retrying", "partition", p, "error", err)
		})
		fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if len(ftp.Records) > 0 {
				s.handOver(ftp.Partition, ftp.Records)
			}
		})
		s.cl.AllowRebalance()
		if !failed {
			errs = 0
			continue
		}
		errs++
		if pollRetry.Sleep(ctx, errs) != nil {
			return
		}
	}
}

// handOver queues records for their partition's worker. Records of a partition without a worker
// cannot come (the poll blocks revokes); they are dropped uncommitted.
func (s *session) handOver(p int32, records []*kgo.Record) {
	s.mu.Lock()
	w := s.workers[p]
	s.mu.Unlock()
	if w == nil {
		s.g.log.Warn("records of a partition this member does not own; dropped uncommitted", "partition", p, "records", len(records))
		return
	}
	w.push(records)
}

// assigned starts a worker for each newly assigned partition.
func (s *session) assigned(_ context.Context, _ *kgo.Client, tps map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for _, p := range tps[s.g.cfg.Topic] {
		if s.workers[p] != nil {
			continue
		}
		w := newWorker(s, p)
		s.workers[p] = w
		go w.run()
	}
	s.g.log.Info("partitions assigned", "partitions", tps[s.g.cfg.Topic])
}

// revoked stops the workers of the revoked partitions and waits for them:
// each finishes (and commits) or abandons (without commit) its in-flight
// record before the partition can move to another member.
func (s *session) revoked(_ context.Context, _ *kgo.Client, tps map[string][]int32) {
	s.stop(tps[s.g.cfg.Topic], "partitions revoked")
	s.commitMarked()
}

// commitMarked commits the offsets of every record handled so far, and
// waits for the commit: the partitions' next owners start after them.
func (s *session) commitMarked() {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	if err := s.cl.CommitMarkedOffsets(ctx); err != nil {
		s.g.log.Warn("commit of handled records failed; they will be handled again", "error", err)
	}
}

// lost is revoked for partitions the member has already lost (its session
// expired): their commits will fail, their records are handled again by
// the new owner.
func (s *session) lost(_ context.Context, _ *kgo.Client, tps map[string][]int32) {
	s.stop(tps[s.g.cfg.Topic], "partitions lost")
}

// stop stops the workers of ps and waits for all of them.
func (s *session) stop(ps []int32, why string) {
	if len(ps) == 0 {
		return
	}
	s.mu.Lock()
	var stopping []*worker
	for _, p := range ps {
		if w := s.workers[p]; w != nil {
			delete(s.workers, p)
			stopping = append(stopping, w)
		}
	}
	s.mu.Unlock()
	start := time.Now()
	for _, w := range stopping {
		w.stop()
	}
	var resume []int32
	for _, w := range stopping {
		<-w.done
		if w.wasPaused() {
			resume = append(resume, w.p)
		}
	}
	if len(resume) > 0 {
		// A partition assigned here again must not stay paused.
		s.cl.ResumeFetchPartitions(map[string][]int32{s.g.cfg.Topic: resume})
	}
	s.g.log.Info(why, "partitions", ps, "waited", time.Since(start).Round(time.Millisecond))
}

// stopAll stops every worker; no new one starts afterwards.
func (s *session) stopAll(why string) {
	s.mu.Lock()
	s.closed = true
	ps := make([]int32, 0, len(s.workers))
	for p := range s.workers {
		ps = append(ps, p)
	}
	s.mu.Unlock()
	s.stop(ps, why)
}
