package stream

import (
	"context"
	"time"
)

// Spreading a batch group's partitions over its instances.
//
// The broker pins each partition consumer of a batch group to the instance
// whose pull it served first, and keeps the pin while that instance pulls
// (ADR 0017). Instances started one after the other would leave every
// partition with the first one and the others standing by. So an instance
// that holds more than its share of the group's partitions hands one over
// when another instance is waiting for it: its worker, holding nothing of
// the partition, unpins the consumer, and the broker pins the waiting pull
// request of the other instance. The share is ceil(partitions ÷
// instances), with the instances counted as this one plus the pull
// requests waiting on the partition (every live instance keeps one open on
// each partition it does not hold), so a dead instance's expired requests
// do not count. An instance hands over at most one partition per
// spreadEvery, and only partitions it holds nothing of; the gate keeps the
// order whoever holds a partition (an unpin at any moment costs time, never
// order), so a wrong count costs a move, never a message.

// spreadEvery is how often a worker looks, and how often an instance hands
// a partition over: at most one per this long.
func (g *Group) spreadEvery() time.Duration { return max(g.cfg.FetchWait, time.Second) }

// setPinned records whether this worker's instance holds the partition's
// pin, for the instance's count and the stream_partitions_pinned gauge.
func (w *batchWorker) setPinned(pinned bool) {
	if w.pinned == pinned {
		return
	}
	w.pinned = pinned
	delta := int64(-1)
	if pinned {
		delta = 1
	}
	w.g.metrics.pinned(w.g.cfg, w.g.pins.Add(delta))
}

// spread hands the partition over to a waiting instance when this instance
// holds more than its share (see above). It does nothing while the worker
// holds messages of the partition.
func (w *batchWorker) spread(ctx context.Context) {
	now := w.g.cfg.Now()
	if !w.pinned || w.count() > 0 || now.Sub(w.spreadAt) < w.g.spreadEvery() {
		return
	}
	w.spreadAt = now
	held := w.g.pins.Load()
	if held <= 1 {
		return
	}
	info, err := w.c.Info(ctx)
	if err != nil {
		return // the next look tries again
	}
	others := info.NumWaiting
	if w.open != nil {
		others-- // this worker's own request may be among them: count low, move less
	}
	if others < 1 {
		return
	}
	parts := w.g.partitions.Load()
	share := (parts + int64(others)) / int64(others+1) // ceil(parts / instances)
	if held <= share {
		return
	}
	last := w.g.spreadLast.Load()
	if now.UnixNano()-last < int64(w.g.spreadEvery()) || !w.g.spreadLast.CompareAndSwap(last, now.UnixNano()) {
		return // another partition of this instance moved just now
	}
	for _, pg := range info.PriorityGroups {
		if pg.Group != batchPriorityGroup || pg.PinnedClientID != w.pin {
			continue
		}
		if err := w.s.UnpinConsumer(ctx, info.Name, batchPriorityGroup); err != nil {
			w.log.WarnContext(ctx, "unpin to spread the partitions failed; keeping the partition", "error", err)
			return
		}
		w.pin, w.checked = "", false
		w.setPinned(false)
		w.log.InfoContext(ctx, "partition handed over to another instance (spreading the group's partitions)",
			"held", held, "share", share, "instances", others+1)
	}
}
