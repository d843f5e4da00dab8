package testinfra_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

var itemsMigrations = fstest.MapFS{
	"00001_items.sql": {Data: []byte(`-- +goose Up
CREATE TABLE items (id text PRIMARY KEY, owner text NOT NULL);
-- +goose Down
DROP TABLE items;
`)},
}

// The isolation tests hold several handles alive at the same time, as
// parallel tests do, and check that each sees only what it wrote. They do
// not rely on the scheduler running subtests at the same moment (-parallel
// defaults to GOMAXPROCS, which can be 2).

func TestPostgresGivesEachCallItsOwnDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbs := []*testinfra.Database{
		testinfra.Postgres(t, itemsMigrations),
		testinfra.Postgres(t, itemsMigrations),
		testinfra.Postgres(t, itemsMigrations),
	}
	seen := map[string]bool{}
	for i, db := range dbs {
		if seen[db.Name] {
			t.Fatalf("database %s handed out twice", db.Name)
		}
		seen[db.Name] = true
		if _, err := db.Pool.Exec(ctx, "INSERT INTO items (id, owner) VALUES ('same-id', $1)", fmt.Sprint(i)); err != nil {
			t.Fatalf("db %d insert: %v (a shared database would fail here on the primary key)", i, err)
		}
	}
	for i, db := range dbs {
		rows, err := db.Pool.Query(ctx, "SELECT owner FROM items")
		if err != nil {
			t.Fatal(err)
		}
		owners, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprint(i); len(owners) != 1 || owners[0] != want {
			t.Fatalf("db %d rows = %v, want only its own row %q", i, owners, want)
		}
	}
}

func TestPostgresDropsDatabaseAfterTest(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("inner", func(t *testing.T) {
		name = testinfra.Postgres(t, nil).Name
	})
	admin := testinfra.Postgres(t, nil)
	var exists bool
	if err := admin.Pool.QueryRow(context.Background(),
		"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}

func TestRedisGivesEachCallItsOwnPrefixAndCleansItUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var (
		keys []string
		url  string
	)
	ok := t.Run("handles", func(t *testing.T) {
		rs := []*testinfra.RedisPrefix{testinfra.Redis(t), testinfra.Redis(t), testinfra.Redis(t)}
		for i, r := range rs {
			if err := r.Client.Set(ctx, r.Key("cart"), i, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		for i, r := range rs {
			got, err := r.Client.Get(ctx, r.Key("cart")).Int()
			if err != nil || got != i {
				t.Fatalf("GET %s = %d, %v; want this handle's value %d", r.Key("cart"), got, err, i)
			}
			keys, url = append(keys, r.Key("cart")), r.URL
		}
		if keys[0] == keys[1] || keys[1] == keys[2] {
			t.Fatalf("prefixes not unique: %v", keys)
		}
	})
	if !ok {
		return
	}
	// The subtest's cleanups have run: its keys must be gone.
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	if left, err := c.Exists(ctx, keys...).Result(); err != nil || left != 0 {
		t.Fatalf("EXISTS %v = %d, %v; want 0 after cleanup", keys, left, err)
	}
}

func TestNATSGivesEachCallItsOwnStreamsAndDeletesThem(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		streams []string
		js      jetstream.JetStream
	)
	t.Run("handles", func(t *testing.T) {
		ns := []*testinfra.NATSPrefix{testinfra.NATS(t), testinfra.NATS(t)}
		for i, nt := range ns {
			stream := nt.Name("ORDERS")
			streams = append(streams, stream)
			if _, err := nt.JS.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{stream + ".>"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := nt.JS.Publish(ctx, stream+".events.0", []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		if streams[0] == streams[1] {
			t.Fatalf("stream names not unique: %v", streams)
		}
		for i, nt := range ns {
			cons, err := nt.JS.CreateConsumer(ctx, nt.Name("ORDERS"), jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy})
			if err != nil {
				t.Fatal(err)
			}
			batch, err := cons.FetchNoWait(10)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for msg := range batch.Messages() {
				got = append(got, string(msg.Data()))
			}
			if want := fmt.Sprint(i); len(got) != 1 || got[0] != want {
				t.Fatalf("handle %d messages = %q, want only its own %q", i, got, want)
			}
		}
	})
	// The subtest's cleanups have run: its streams must be gone.
	js = testinfra.NATS(t).JS
	for _, s := range streams {
		if _, err := js.Stream(ctx, s); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("stream %s after cleanup: err = %v, want ErrStreamNotFound", s, err)
		}
	}
}

func TestNATSServerRestartKeepsStreams(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testinfra.NewNATSServer(t, testinfra.NATSServerOptions{SyncAlways: true})
	nc, js := srv.Connect()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.1", []byte("before")); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	downCtx, downCancel := context.WithTimeout(ctx, 2*time.Second)
	defer downCancel()
	if _, err := js.Publish(downCtx, "s.1", []byte("while down"), jetstream.WithRetryAttempts(0)); err == nil {
		t.Fatal("publish succeeded while the server was stopped")
	}
	srv.Start()
	// Poll until the client has reconnected; no sleep.
	var info *jetstream.StreamInfo
	for {
		s, err := js.Stream(ctx, "S")
		if err == nil {
			info, err = s.Info(ctx)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("stream not back after restart: %v (connected=%v)", err, nc.IsConnected())
		}
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream has %d messages after restart, want 1", info.State.Msgs)
	}
}

func TestMissingServersFailWithInstructions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{"postgres unreachable", testinfra.StartPostgresForTest("postgres://postgres@127.0.0.1:1/postgres?sslmode=disable", false),
			[]string{"cannot reach PostgreSQL at postgres://postgres@127.0.0.1:1", testinfra.EnvPostgresURL, "pg_ctlcluster"}},
		{"postgres nothing configured", testinfra.StartPostgresForTest("", false),
			[]string{"no PostgreSQL for the tests", "export " + testinfra.EnvPostgresURL, "Docker"}},
		{"redis unreachable", testinfra.StartRedisForTest("redis://127.0.0.1:1/0", false),
			[]string{"cannot reach Redis at redis://127.0.0.1:1", "redis-server"}},
		{"redis nothing configured", testinfra.StartRedisForTest("", false),
			[]string{"no Redis for the tests", "export " + testinfra.EnvRedisURL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.err == nil {
				t.Fatal("no error for a missing server")
			}
			for _, w := range tt.want {
				if !strings.Contains(tt.err.Error(), w) {
					t.Errorf("error %q does not say %q", tt.err, w)
				}
			}
		})
	}
}

// TestUnavailableFailsUnlessShort proves that a missing server is a failure,
// not a skip, when the tests do not run with -short (CI never does).
func TestUnavailableFailsUnlessShort(t *testing.T) {
	t.Parallel()
	rec := &recorder{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); testinfra.UnavailableForTest(rec, "start PostgreSQL") }()
	<-done
	if testing.Short() {
		if !rec.skipped || rec.failed {
			t.Fatalf("under -short: skipped=%v failed=%v, want a skip", rec.skipped, rec.failed)
		}
		return
	}
	if !rec.failed || rec.skipped {
		t.Fatalf("skipped=%v failed=%v, want a failure", rec.skipped, rec.failed)
	}
}

type recorder struct {
	testing.TB
	failed, skipped bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatal(...any)          { r.failed = true; runtime.Goexit() }
func (r *recorder) Skip(...any)           { r.skipped = true; runtime.Goexit() }
func (r *recorder) Errorf(string, ...any) { r.failed = true }
