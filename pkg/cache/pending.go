package cache

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxPending bounds the invalidations an instance remembers while Redis
// cannot take them. Beyond it they are dropped (logged): entries of those
// entities may then be served until their soft TTL.
const maxPending = 100_000

// pendingFlushEvery is how often Run re-sends remembered invalidations.
const pendingFlushEvery = 200 * time.Millisecond

// pending holds invalidations that failed because Redis was unreachable:
// entity → the version its pointer must move to. Until they are re-sent,
// Redis may point at an older version of those entities, so this instance
// does not read them from Redis (it fails open to the source), and it
// re-sends them before its next Redis read and every pendingFlushEvery
// while Run runs, so other instances stop reading the old version as soon
// as Redis is back.
type pending struct {
	mu       sync.Mutex
	versions map[string]int64
	n        atomic.Int64
	flushing atomic.Bool
	dropped  atomic.Bool
}

func (p *pending) add(id string, version int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.versions == nil {
		p.versions = map[string]int64{}
	}
	if cur, ok := p.versions[id]; ok {
		p.versions[id] = max(cur, version)
		return true
	}
	if len(p.versions) >= maxPending {
		return false
	}
	p.versions[id] = version
	p.n.Store(int64(len(p.versions)))
	return true
}

// done forgets id if its pending version is at most version.
func (p *pending) done(id string, version int64) {
	if p.n.Load() == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, ok := p.versions[id]; ok && cur <= version {
		delete(p.versions, id)
		p.n.Store(int64(len(p.versions)))
	}
}

func (p *pending) has(id string) bool {
	if p.n.Load() == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.versions[id]
	return ok
}

func (p *pending) snapshot(limit int) map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, min(limit, len(p.versions)))
	for id, v := range p.versions {
		if len(out) == limit {
			break
		}
		out[id] = v
	}
	return out
}

// flushPending re-sends remembered invalidations, a pipeline of up to 1 000
// at a time, through the breaker. It reports whether none is left; a flush
// already running elsewhere counts as not done.
func (c *Cache[V]) flushPending(ctx context.Context) bool {
	if c.pending.n.Load() == 0 {
		return true
	}
	if !c.pending.flushing.CompareAndSwap(false, true) {
		return false
	}
	defer c.pending.flushing.Store(false)
	for c.pending.n.Load() > 0 {
		batch := c.pending.snapshot(1000)
		_, ok := c.redisDo(ctx, func(ctx context.Context) (any, error) {
			_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for id, v := range batch {
					bumpScript.Run(ctx, p, []string{c.ptrKey(id), c.negKey(id)}, v,
						c.invalidationChannel(), id+" "+strconv.FormatInt(v, 10))
				}
				return nil
			})
			return nil, err
		})
		if !ok {
			return false
		}
		for id, v := range batch {
			c.pending.done(id, v)
		}
		c.m.pendingResent.Add(float64(len(batch)))
		c.log.InfoContext(ctx, "re-sent invalidations that failed while Redis was unreachable",
			"class", c.cfg.Class, "count", len(batch))
	}
	return true
}
