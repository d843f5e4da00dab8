package idempotency_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestLinkCutMidRequestIs503 cuts the PostgreSQL link of a request that
// is in the middle of its transaction, and of one whose pool still holds
// a connection the cut killed: both answer 503 with Retry-After (a
// dependency failure, DESIGN invariant 10), never 500, nothing is stored,
// and the same key succeeds once the link is back.
func TestLinkCutMidRequestIs503(t *testing.T) {
	t.Parallel()
	db := testinfra.Postgres(t, migrations)
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testinfra.NewProxy(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	host, port, _ := net.SplitHostPort(proxy.Addr())
	p, _ := strconv.Atoi(port)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, uint16(p)
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store, err := idempotency.New(idempotency.Config{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	// sleepNext makes the next request signal entered and then run a long
	// query in its transaction, during which the test cuts the link.
	var sleepNext atomic.Bool
	entered := make(chan struct{})
	handler := store.Handler(pool, func(*http.Request) string { return "s" }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, _ := idempotency.TxFromContext(r.Context())
		if _, err := tx.Exec(r.Context(), `INSERT INTO widgets (id, scope, name) VALUES (gen_random_uuid(), 's', 'w')`); err != nil {
			httpkit.ErrorEncoder(nil)(r.Context(), err, w)
			return
		}
		if sleepNext.CompareAndSwap(true, false) {
			entered <- struct{}{}
			if _, err := tx.Exec(r.Context(), `SELECT pg_sleep(5)`); err != nil {
				httpkit.ErrorEncoder(nil)(r.Context(), err, w)
				return
			}
		}
		w.WriteHeader(http.StatusCreated)
	}))
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	post := func(key string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/widgets", http.NoBody)
		req.Header.Set(idempotency.HeaderKey, key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	// Warm the pool, so that a connection the cut kills is reused below.
	if st, _ := post("warm"); st != http.StatusCreated {
		t.Fatalf("warm-up = %d", st)
	}
	sleepNext.Store(true)
	done := make(chan [2]string, 1)
	go func() {
		st, ra := post("k1")
		done <- [2]string{strconv.Itoa(st), ra}
	}()
	<-entered // k1 holds its transaction open
	proxy.Down()
	got := <-done
	if got[0] != "503" || got[1] == "" {
		t.Fatalf("link cut mid-query: status %s Retry-After %q, want 503 with Retry-After", got[0], got[1])
	}
	// The pool's other connection died too: the next request meets it.
	if st, ra := post("k2"); st != http.StatusServiceUnavailable || ra == "" {
		t.Fatalf("link down: status %d Retry-After %q, want 503", st, ra)
	}
	proxy.Up()
	testinfra.Eventually(t, 30*time.Second, func() error { return pool.Ping(context.Background()) })
	// The cut transaction's server process runs on until its pg_sleep ends
	// and it finds its client gone; until then k1 is still in flight, which
	// the store answers 409 (a client retries it). Then the retry of k1
	// must succeed: nothing was stored.
	testinfra.Eventually(t, 30*time.Second, func() error {
		switch st, _ := post("k1"); st {
		case http.StatusCreated:
			return nil
		case http.StatusConflict:
			return errors.New("k1 still in flight (409)")
		default:
			t.Fatalf("retry of k1 after the link is back = %d, want 201 (nothing was stored) or 409 while the cut transaction ends", st)
			return nil
		}
	})
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM widgets`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d widgets (%v), want 2: warm-up and the retried k1", n, err)
	}
}
