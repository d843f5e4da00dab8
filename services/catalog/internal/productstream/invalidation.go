// Package productstream holds catalog's consumer of its own CATALOG stream:
// cache invalidation, warming and CDN purges, once per product event.
package productstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/pkg/cache"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
)

// Group is the consumer group name of the consumer role (cache invalidation).
const Group = "catalog-invalidation"

// Cache is what the invalidator needs of the product cache.
type Cache interface {
	Invalidate(ctx context.Context, id string, version int64) error
}

// Warmer loads the new version into the cache (productsvc.Service.Warm).
type Warmer func(ctx context.Context, id string) error

// Invalidator handles product events. Every step is idempotent: the cache
// pointer only moves forward, a purge of a purged key is a no-op, warming
// reloads the current row. Replaying the stream changes nothing.
type Invalidator struct {
	Cache  Cache
	Warm   Warmer
	Purger *Purger
	Log    *slog.Logger
}

// productSchemas are the CATALOG schemas this build reads
// (events.Readable: an unknown schemaversion is poison).
var productSchemas = catalogapi.Schemas()

// Handle is the stream handler.
func (i *Invalidator) Handle(ctx context.Context, d stream.Delivery) error {
	ev, err := events.Unmarshal(d.Payload)
	if err != nil {
		return stream.Permanent(fmt.Errorf("unreadable event: %w", err))
	}
	if err := events.Readable(ev, productSchemas); err != nil {
		return stream.Permanent(err)
	}
	switch ev.Type {
	case catalogapi.EventProductCreated, catalogapi.EventProductUpdated, catalogapi.EventProductArchived:
	default:
		return nil // not ours to act on
	}
	var pc catalogapi.ProductChanged
	if err := ev.DecodeData(&pc); err != nil || pc.ID == "" || pc.Version < 1 {
		return stream.Permanent(fmt.Errorf("%s %s: bad payload: %w", ev.Type, ev.ID, errors.Join(err, errors.New("id and version are required"))))
	}
	if err := i.Cache.Invalidate(ctx, pc.ID, pc.Version); err != nil {
		err = fmt.Errorf("invalidate %s v%d: %w", pc.ID, pc.Version, err)
		if errors.Is(err, cache.ErrUnavailable) {
			// Redis is down: wait for it, do not dead-letter the event
			// (the game day dead-lettered one while Redis was slow and
			// flushed under a NATS cut).
			return stream.Infrastructure(err)
		}
		return err // retried
	}
	if pc.Status == "active" && i.Warm != nil {
		if err := i.Warm(ctx, pc.ID); err != nil {
			i.Log.WarnContext(ctx, "warm failed; the first reader will load it", "product", pc.ID, "err", err)
		}
	}
	if i.Purger != nil {
		if err := i.Purger.Purge(ctx, "product:"+pc.ID, "category:"+pc.Category); err != nil {
			return fmt.Errorf("purge %s: %w", pc.ID, err) // retried
		}
	}
	return nil
}

// Purger purges CDN caches by surrogate key (Varnish xkey: PURGE with an
// xkey-purge header) on every configured CDN node.
type Purger struct {
	URLs []string
	// Secret goes in every PURGE's SecretHeader: the CDN refuses purges
	// without it (deploy/compose/varnish/default.vcl; ADR 0037). Required
	// by the CDN, not by Purge: empty sends no header, and the CDN's 403
	// is then a configuration error like any refusal.
	Secret string
	Client *http.Client
}

// SecretHeader carries Purger.Secret.
const SecretHeader = "X-Purge-Secret"

// Purge drops every cached response tagged with one of keys. A node that
// answers 5xx or 429 is an infrastructure error (stream.Infrastructure): the
// consumer waits for it instead of dead-lettering the invalidation.
func (p *Purger) Purge(ctx context.Context, keys ...string) error {
	client := p.Client
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	var errs []error
	for _, u := range p.URLs {
		req, err := http.NewRequestWithContext(ctx, "PURGE", u, nil)
		if err != nil {
			return fmt.Errorf("purge request for %s: %w", u, err)
		}
		req.Header.Set("xkey-purge", strings.Join(keys, " "))
		if p.Secret != "" {
			req.Header.Set(SecretHeader, p.Secret)
		}
		res, err := client.Do(req)
		if err != nil {
			errs = append(errs, fmt.Errorf("purge %s: %w", u, err))
			continue
		}
		_ = res.Body.Close()
		switch {
		case res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests:
			// The CDN node is down or overloaded: like a refused
			// connection, an outage the partition waits out without
			// spending the event's dead-letter budget (ADR 0025).
			errs = append(errs, stream.Infrastructure(fmt.Errorf("purge %s: status %d", u, res.StatusCode)))
		case res.StatusCode != http.StatusOK:
			// Refused (a 403 from a VCL that does not allow this
			// purger, a 405 without xkey): configuration, retried
			// within the budget, then dead-lettered for a person.
			errs = append(errs, fmt.Errorf("purge %s: status %d", u, res.StatusCode))
		}
	}
	return errors.Join(errs...)
}
