// Package target is the running shopfloor system as a chaos drill sees
// it: the base URLs of its public APIs and of the admin listeners (ADR
// 0023: /v1/admin and /metrics of every role process, never published), the verbs that break it (kill and start a process, cut or
// slow a link in Toxiproxy, switch the payment provider's faults) and the
// places where effects can be counted from outside (the provider
// simulator's charges, the e-mail sink, NATS monitoring).
//
// Everything goes through the same interfaces an operator uses; nothing
// reads a service's tables. The public APIs want bearer tokens (ADR 0021,
// 0022): System.Token signs users in at the system's sandbox identity
// provider and caches their tokens (the operator for reads and admin
// writes, synthetic "load-" customers for checkouts). Two runners are supported: deploy/local
// (ctl.sh, every role a supervised process; LocalEndpoints mirrors
// deploy/local/ports.sh) and docker compose with deploy/compose/compose.chaos.yaml,
// which publishes the internal ports on the host with the same numbers as
// a local run at port base 8000.
package target

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Endpoints are the base URLs (scheme://host:port, no trailing slash) of
// the system under test.
type Endpoints struct {
	CDN           string // catalog through Varnish
	Catalog       string // catalog's api role, direct (the origin's public listener)
	CatalogAdmin  string // catalog's api role's admin listener (/v1/admin)
	Orders        string
	Payments      string
	Notifications string
	Search        string
	PSP           string // payment-provider simulator (/admin/faults, /admin/stats)
	Mail          string // SMTP sink (/api/messages) or Mailpit (/api/v1/...)
	Toxiproxy     string // Toxiproxy's HTTP API
	NATSMonitor   string // nats-server's monitoring port (/jsz)
	NATS          string // nats-server's client URL, directly (not through Toxiproxy)
	CDNMetrics    string // the CDN's exporter (/metrics: varnish_cache_hit_total …)
	// Redis is the topology's own Redis database, redis://host:port/db
	// (the catalog cache's; redis-flush empties it with FLUSHDB). Not
	// derived from the port base: LocalRedisURL, ReadRedisEnv,
	// ComposeRedisURL.
	Redis string
	// Metrics maps each role process (ctl.sh / compose service name) to
	// the base URL of its admin listener, which serves its /metrics. The
	// drills read consumer lags, outbox backlogs and job queue depths
	// there.
	Metrics map[string]string
}

// LocalEndpoints returns the endpoints of deploy/local/run.sh started with
// SHOPFLOOR_PORT_BASE=base on 127.0.0.1 (deploy/local/ports.sh). With base
// 8000 they are also those deploy/compose/compose.chaos.yaml publishes.
func LocalEndpoints(base int) Endpoints {
	u := func(off int) string { return "http://127.0.0.1:" + strconv.Itoa(base+off) }
	admin := func(off int) string { return u(off + AdminOffset) }
	e := Endpoints{
		CDN: u(80), Catalog: u(81), CatalogAdmin: admin(81), Orders: u(82), Payments: u(83), Notifications: u(84), Search: u(85),
		PSP: u(99), Mail: u(25), Toxiproxy: u(474), NATSMonitor: u(6223), CDNMetrics: u(131),
		NATS: "nats://127.0.0.1:" + strconv.Itoa(base+6222),
		Metrics: map[string]string{
			"catalog":              admin(81),
			"catalog-worker":       admin(181),
			"orders":               admin(82),
			"orders-relay":         admin(182),
			"orders-consumer":      admin(282),
			"payments":             admin(83),
			"payments-worker":      admin(183),
			"payments-relay":       admin(283),
			"notifications":        admin(84),
			"notifications-worker": admin(184),
			"search":               admin(85),
			// The second instances of the consumer groups
			// (SHOPFLOOR_CONSUMER_INSTANCES=2, run.sh's default).
			"catalog-invalidation-2":   admin(381),
			"orders-consumer-2":        admin(382),
			"payments-consumer-2":      admin(383),
			"notifications-consumer-2": admin(384),
			"search-consumer-2":        admin(385),
		},
	}
	e.addReplicas()
	return e
}

// AdminOffset is the distance from a service process's port to its admin
// listener's (ADMIN_OFFSET in deploy/local/ports.sh; the services' default
// ADMIN_ADDR too).
const AdminOffset = 1000

// System bundles what a drill needs: where the system is, how to stop and
// start its processes, how to sign in, and how to read its e-mail. Use it
// by pointer (it holds the token cache).
type System struct {
	Endpoints
	Procs Processes
	Mail  Mailbox
	// HTTP is the client for every call; Default: 10s timeout.
	HTTP *http.Client
	// Identity is where Token signs in. The operator's token
	// (Token(ctx, Operator)) reads every customer's data and authenticates
	// catalog's /v1/admin on CatalogAdmin.
	Identity Identity
	// NATSPassword is the operator's NATS password (NATSConfig): drills
	// read and redrive dead letters and read consumer state directly.
	// Empty: NATS without credentials.
	NATSPassword string
	// KafkaBrokers are the seed brokers when the system's streams run on
	// Kafka (STREAM_ENGINE=kafka, ADR 0046); empty on NATS.
	KafkaBrokers []string

	// identityErr, when set, is why Identity could not be read (Local's
	// identity.env); Token returns it.
	identityErr error
	tokensOnce  sync.Once
	tokens      *tokenCache
}

// Client returns s.HTTP or a client with a 10s timeout.
func (s *System) Client() *http.Client {
	if s.HTTP != nil {
		return s.HTTP
	}
	return defaultClient
}

var defaultClient = &http.Client{Timeout: 10 * time.Second}

// StatusError is a response with an unexpected status.
type StatusError struct {
	Method, URL string
	Status      int
	Body        string // the first 300 bytes
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, e.Body)
}

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == http.StatusNotFound
}

// GetJSON GETs url and decodes a 200 answer into v.
func GetJSON(ctx context.Context, c *http.Client, url string, v any) error {
	return DoJSON(ctx, c, http.MethodGet, url, nil, nil, v)
}

// DoJSON sends body (JSON-encoded unless nil) with the headers and
// decodes a 2xx answer into v (unless nil). Any other status is a
// *StatusError.
func DoJSON(ctx context.Context, c *http.Client, method, url string, header http.Header, body, v any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: encode body: %w", method, url, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if len(b) > 300 {
			b = b[:300]
		}
		return &StatusError{Method: method, URL: url, Status: resp.StatusCode, Body: string(bytes.TrimSpace(b))}
	}
	if v == nil || len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: decode: %w", method, url, err)
	}
	return nil
}

// Ready asks a role process's admin listener for /readyz: nil when it
// answers 200, else an error with the status and the failing checks it
// names.
func (s *System) Ready(ctx context.Context, process string) error {
	base, ok := s.Metrics[process]
	if !ok {
		return fmt.Errorf("no admin listener known for %q", process)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}
