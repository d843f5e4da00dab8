package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
)

// do stores a response for key through Do, the go-kit path.
func do(t *testing.T, b *bundle, key string) {
	t.Helper()
	_, _, err := b.store.Do(context.Background(), b.pool, idempotency.Request{Scope: "s", Key: key, Method: http.MethodPost, Path: "/x"},
		func(context.Context, pgx.Tx) (idempotency.Response, error) {
			return idempotency.Response{Status: http.StatusCreated, Body: []byte(key)}, nil
		})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPruneDeletesOnlyExpiredKeysInBatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		batch int
	}{
		{"batch smaller than the work", 2},
		{"batch equal to the work", 5},
		{"default batch", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, idempotency.Config{Retention: time.Hour})
			for i := range 5 {
				do(t, b, fmt.Sprintf("old-%d", i))
			}
			b.clock.Advance(30 * time.Minute)
			for i := range 3 {
				do(t, b, fmt.Sprintf("new-%d", i))
			}
			b.clock.Advance(30 * time.Minute) // the old keys expire now, the new in 30m

			n, err := b.store.Prune(context.Background(), b.pool, tt.batch)
			if err != nil || n != 5 {
				t.Fatalf("Prune = %d, %v; want 5 expired keys deleted", n, err)
			}
			var live []string
			rows, err := b.pool.Query(context.Background(), "SELECT key FROM idempotency_keys ORDER BY key")
			if err != nil {
				t.Fatal(err)
			}
			if live, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				t.Fatal(err)
			}
			if strings.Join(live, ",") != "new-0,new-1,new-2" {
				t.Fatalf("keys left %v, want the 3 live ones", live)
			}
			if n, err := b.store.Prune(context.Background(), b.pool, tt.batch); err != nil || n != 0 {
				t.Fatalf("second Prune = %d, %v; want nothing to do", n, err)
			}
		})
	}
}

func TestFailedFuncStoresNothingAndItsRetryIsStoredAndReplayed(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	validation := httpkit.NewProblem(http.StatusUnprocessableEntity, "invalid-field", "qty must be positive")
	tests := []struct {
		name    string
		fn      idempotency.Func // writes a widget through tx, then fails
		wantErr func(error) bool
		panics  bool
	}{
		{"validation problem", func(context.Context, pgx.Tx) (idempotency.Response, error) { return idempotency.Response{}, validation },
			func(err error) bool {
				var p *httpkit.Problem
				return errors.As(err, &p) && p.Class() == "invalid-field"
			}, false},
		{"error", func(context.Context, pgx.Tx) (idempotency.Response, error) {
			return idempotency.Response{}, fmt.Errorf("reserve stock: %w", errBoom)
		}, func(err error) bool { return errors.Is(err, errBoom) }, false},
		{"status that cannot be stored", func(context.Context, pgx.Tx) (idempotency.Response, error) {
			return idempotency.Response{Status: http.StatusContinue}, nil
		}, func(err error) bool { return err != nil }, false},
		{"panic", func(context.Context, pgx.Tx) (idempotency.Response, error) { panic("boom") }, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, idempotency.Config{})
			ctx := context.Background()
			req := idempotency.Request{Scope: "s", Key: "k", Method: http.MethodPost, Path: "/widgets", Body: []byte(`{}`)}
			func() {
				defer func() {
					if p := recover(); (p != nil) != tt.panics {
						t.Fatalf("recovered %v, want panic %v", p, tt.panics)
					}
				}()
				_, _, err := b.store.Do(ctx, b.pool, req, func(ctx context.Context, tx pgx.Tx) (idempotency.Response, error) {
					if _, err := tx.Exec(ctx, `INSERT INTO widgets VALUES (gen_random_uuid(), 's', 'w')`); err != nil {
						t.Fatal(err)
					}
					return tt.fn(ctx, tx)
				})
				if !tt.wantErr(err) {
					t.Fatalf("Do error %v", err)
				}
			}()
			if b.count(t, "widgets") != 0 || b.count(t, "idempotency_keys") != 0 {
				t.Fatal("a failed Func left rows behind")
			}

			// The retry succeeds; the go-kit encoder produces the response.
			resp, replayed, err := b.store.Do(ctx, b.pool, req, func(ctx context.Context, tx pgx.Tx) (idempotency.Response, error) {
				if _, err := tx.Exec(ctx, `INSERT INTO widgets VALUES (gen_random_uuid(), 's', 'w')`); err != nil {
					return idempotency.Response{}, err
				}
				return idempotency.Encode(ctx, httpkit.EncodeJSON, created{widgetOut{ID: "w1", Name: "w"}})
			})
			if err != nil || replayed || resp.Status != http.StatusCreated {
				t.Fatalf("retry = %d, %v, %v; want a new 201", resp.Status, replayed, err)
			}
			again, replayed, err := b.store.Do(ctx, b.pool, req, func(context.Context, pgx.Tx) (idempotency.Response, error) {
				t.Fatal("Func ran for a completed key")
				return idempotency.Response{}, nil
			})
			if err != nil || !replayed || again.Status != resp.Status || string(again.Body) != string(resp.Body) ||
				again.Header.Get("Content-Type") != "application/json; charset=utf-8" || again.Header.Get(idempotency.HeaderReplayed) != "true" {
				t.Fatalf("replay = %+v, %v, %v; want %+v", again, replayed, err, resp)
			}
		})
	}
}

// TestKeyCommitsWithTheBusinessWrite shows the claim and the business rows
// are one transaction: inside it both are visible, outside neither is until
// the commit.
func TestKeyCommitsWithTheBusinessWrite(t *testing.T) {
	t.Parallel()
	b := setup(t, idempotency.Config{})
	ctx := context.Background()
	req := idempotency.Request{Scope: "s", Key: "k", Method: http.MethodPost, Path: "/widgets"}
	_, _, err := b.store.Do(ctx, b.pool, req, func(ctx context.Context, tx pgx.Tx) (idempotency.Response, error) {
		if _, err := tx.Exec(ctx, `INSERT INTO widgets VALUES (gen_random_uuid(), 's', 'w')`); err != nil {
			return idempotency.Response{}, err
		}
		var inside, outside int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM idempotency_keys WHERE scope = 's' AND key = 'k'`).Scan(&inside); err != nil {
			return idempotency.Response{}, err
		}
		if err := b.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM idempotency_keys) + (SELECT count(*) FROM widgets)`).Scan(&outside); err != nil {
			return idempotency.Response{}, err
		}
		if inside != 1 || outside != 0 {
			t.Errorf("during the request: key visible inside %d, rows visible outside %d; want 1 and 0", inside, outside)
		}
		return idempotency.Response{Status: http.StatusCreated}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if b.count(t, "widgets") != 1 || b.count(t, "idempotency_keys") != 1 {
		t.Fatal("the commit did not write both the key and the widget")
	}
}

func TestDoRejectsRequestsItCannotScope(t *testing.T) {
	t.Parallel()
	b := setup(t, idempotency.Config{})
	tests := []struct {
		name string
		req  idempotency.Request
		is   error
	}{
		{"empty scope", idempotency.Request{Key: "k", Method: http.MethodPost, Path: "/"}, nil},
		{"empty key", idempotency.Request{Scope: "s", Method: http.MethodPost, Path: "/"}, idempotency.ErrKeyMissing},
		{"long key", idempotency.Request{Scope: "s", Key: strings.Repeat("k", 256), Method: http.MethodPost, Path: "/"}, idempotency.ErrKeyInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := b.store.Do(context.Background(), b.pool, tt.req, func(context.Context, pgx.Tx) (idempotency.Response, error) {
				t.Error("Func ran")
				return idempotency.Response{}, nil
			})
			if err == nil || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("Do error %v, want %v", err, tt.is)
			}
		})
	}
}

func TestInFlightKeyIsAnswered409AtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, idempotency.Config{})
	ctx := context.Background()
	req := idempotency.Request{Scope: "s", Key: "k", Method: http.MethodPost, Path: "/widgets"}
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, _, err := b.store.Do(ctx, b.pool, req, func(context.Context, pgx.Tx) (idempotency.Response, error) {
			close(entered)
			<-release
			return idempotency.Response{Status: http.StatusCreated, Body: []byte("done")}, nil
		})
		done <- err
	}()
	<-entered
	// Same request, and a different one: both are in-flight conflicts
	// (the fingerprint of an uncommitted request is not known yet).
	for _, body := range []string{"", "other"} {
		r := req
		r.Body = []byte(body)
		_, _, err := b.store.Do(ctx, b.pool, r, func(context.Context, pgx.Tx) (idempotency.Response, error) {
			t.Error("Func ran for a key in flight")
			return idempotency.Response{}, nil
		})
		var pp httpkit.ProblemProvider
		if !errors.Is(err, idempotency.ErrKeyInUse) || !errors.As(err, &pp) ||
			pp.Problem().Status != http.StatusConflict || pp.Problem().RetryAfter != time.Second {
			t.Fatalf("Do while in flight = %v; want ErrKeyInUse as a 409 problem with Retry-After 1s", err)
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	resp, replayed, err := b.store.Do(ctx, b.pool, req, nil)
	if err != nil || !replayed || string(resp.Body) != "done" {
		t.Fatalf("after completion = %q, %v, %v; want the replay", resp.Body, replayed, err)
	}
}
