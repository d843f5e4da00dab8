package cache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shopfloor/shopfloor/pkg/backoff"
)

// NearConfig sizes the optional in-process layer in front of Redis (the
// "near cache"). See the package doc, "Near cache".
type NearConfig struct {
	// Entities is how many entities (all their variants) the layer holds;
	// 0 turns it off. Beyond it an arbitrary entity is evicted.
	Entities int
	// TTL bounds how long an entry is served without asking Redis, and so
	// the staleness when an invalidation is lost. Default 1s.
	TTL time.Duration
}

// near is the in-process layer. It serves only while the invalidation
// subscription is up (synced); every (re)subscription and every loss of
// it clears it and moves the epoch, so a value read from Redis before
// that point is not kept.
type near[V any] struct {
	cfg NearConfig

	synced atomic.Bool
	epoch  atomic.Uint64

	mu    sync.RWMutex
	items map[string]*nearItem[V]
}

// nearItem is one entity: floor is the highest version this instance
// knows of (from invalidations and from values it stored); variants older
// than floor are never served.
type nearItem[V any] struct {
	floor    int64
	variants map[string]nearEntry[V]
}

type nearEntry[V any] struct {
	v       V
	version int64
	until   time.Time
}

func newNear[V any](cfg NearConfig) *near[V] {
	if cfg.TTL <= 0 {
		cfg.TTL = time.Second
	}
	return &near[V]{cfg: cfg, items: map[string]*nearItem[V]{}}
}

func (n *near[V]) enabled() bool { return n != nil && n.cfg.Entities > 0 }

// get returns a servable entry of id/variant.
func (n *near[V]) get(id, variant string) (V, int64, bool) {
	var zero V
	if !n.synced.Load() {
		return zero, 0, false
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	it := n.items[id]
	if it == nil {
		return zero, 0, false
	}
	e, ok := it.variants[variant]
	if !ok || e.version < it.floor || !time.Now().Before(e.until) {
		return zero, 0, false
	}
	return e.v, e.version, true
}

// put keeps v (version ver, fresh in Redis until freshUntil) if the layer
// has not been cleared since epoch was read and no newer version of id is
// known.
func (n *near[V]) put(epoch uint64, id, variant string, v V, ver int64, freshUntil time.Time) {
	if !n.synced.Load() {
		return
	}
	until := time.Now().Add(n.cfg.TTL)
	if freshUntil.Before(until) {
		until = freshUntil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.epoch.Load() != epoch {
		return
	}
	it := n.item(id)
	if ver < it.floor {
		return
	}
	if e, ok := it.variants[variant]; ok && e.version > ver {
		return
	}
	if ver > it.floor {
		it.floor = ver
		n.dropBelow(it)
	}
	it.variants[variant] = nearEntry[V]{v: v, version: ver, until: until}
}

// invalidate records that id is at version ver: older variants go, and a
// slower reader cannot put them back.
func (n *near[V]) invalidate(id string, ver int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	it := n.item(id)
	if ver > it.floor {
		it.floor = ver
		n.dropBelow(it)
	}
}

// item returns id's item, creating it (and evicting another when full).
// Callers hold mu.
func (n *near[V]) item(id string) *nearItem[V] {
	if it := n.items[id]; it != nil {
		return it
	}
	if len(n.items) >= n.cfg.Entities {
		for k := range n.items { // map order: an arbitrary victim
			delete(n.items, k)
			break
		}
	}
	it := &nearItem[V]{variants: map[string]nearEntry[V]{}}
	n.items[id] = it
	return it
}

func (n *near[V]) dropBelow(it *nearItem[V]) {
	for k, e := range it.variants {
		if e.version < it.floor {
			delete(it.variants, k)
		}
	}
}

// reset clears the layer and moves the epoch; synced says whether it may
// serve from now on.
func (n *near[V]) reset(synced bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.synced.Store(synced)
	n.epoch.Add(1)
	clear(n.items)
}

func (n *near[V]) len() int {
	if n == nil {
		return 0
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.items)
}

// invalidationChannel is where Invalidate publishes "<id> <version>".
func (c *Cache[V]) invalidationChannel() string { return c.prefix + "invalidations" }

// maxSilence bounds how long a quiet subscription goes unchecked.
const maxSilence = 3 * time.Second

// Run keeps the cache in step with Redis and the other instances until ctx
// ends (it then returns nil):
//
//   - every 200ms it re-sends invalidations that failed while Redis was
//     unreachable (see Invalidate), so that other instances stop reading
//     the old versions as soon as Redis is back, even when this instance
//     serves no reads;
//   - with a near layer, it subscribes to every instance's invalidations
//     (Redis pub/sub), serves near entries only while the subscription is
//     confirmed and healthy (a quiet link is PINGed; no answer within
//     min(TTL, 3s) counts as lost), and clears the layer whenever the
//     subscription is lost or restored. Without Run the near layer never
//     serves.
func (c *Cache[V]) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		t := time.NewTicker(pendingFlushEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.flushPending(ctx)
			}
		}
	})
	if !c.near.enabled() {
		<-ctx.Done()
		return nil
	}
	policy := backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	for attempt := 1; ; attempt++ {
		confirmed, err := c.subscribe(ctx)
		c.near.reset(false)
		c.m.nearSynced.Set(0)
		if ctx.Err() != nil {
			return nil
		}
		c.log.WarnContext(ctx, "near cache: invalidation subscription lost; serving from Redis until it is back",
			"class", c.cfg.Class, "err", err)
		if confirmed {
			attempt = 1 // it had been up: reconnect promptly
		}
		if policy.Sleep(ctx, attempt) != nil {
			return nil
		}
	}
}

// subscribe runs one subscription until it fails or ctx ends, and reports
// whether it had been confirmed.
func (c *Cache[V]) subscribe(ctx context.Context) (confirmed bool, err error) {
	ps := c.rdb.Subscribe(ctx, c.invalidationChannel())
	defer ps.Close()
	// Closing the subscription is what interrupts a blocked read.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	deadAfter := min(c.near.cfg.TTL, maxSilence)
	heard := time.Now()
	for {
		msg, err := ps.ReceiveTimeout(ctx, deadAfter/3)
		if err != nil {
			var ne net.Error
			if ctx.Err() != nil || !errors.As(err, &ne) || !ne.Timeout() {
				return confirmed, err
			}
			// Quiet channel: ask for a sign of life. A hung link shows as
			// PINGs unanswered for deadAfter; stop serving then, before
			// entries could be staler than the near TTL.
			if time.Since(heard) > deadAfter {
				return confirmed, fmt.Errorf("no answer to PING for %s", deadAfter)
			}
			if err := ps.Ping(ctx); err != nil {
				return confirmed, err
			}
			continue
		}
		heard = time.Now()
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				// Anything published before this point may have been
				// missed: start empty.
				c.near.reset(true)
				c.m.nearSynced.Set(1)
				confirmed = true
			}
		case *redis.Message:
			id, ver, ok := parseInvalidation(m.Payload)
			if !ok {
				c.log.WarnContext(ctx, "near cache: malformed invalidation", "class", c.cfg.Class, "payload", m.Payload)
				continue
			}
			c.near.invalidate(id, ver)
			c.m.nearInvalidations.Inc()
		case *redis.Pong:
		}
	}
}

func parseInvalidation(payload string) (string, int64, bool) {
	id, v, ok := strings.Cut(payload, " ")
	if !ok || id == "" {
		return "", 0, false
	}
	ver, err := strconv.ParseInt(v, 10, 64)
	return id, ver, err == nil
}

// NearSynced reports whether the near layer serves: it is configured, Run
// is running and its invalidation subscription is up.
func (c *Cache[V]) NearSynced() bool { return c.near != nil && c.near.synced.Load() }
