package searchtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/httpkit/openapitest"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/search/internal/indexhttp"
	"github.com/shopfloor/shopfloor/services/search/internal/indexpg"
	"github.com/shopfloor/shopfloor/services/search/internal/indexstream"
	"github.com/shopfloor/shopfloor/services/search/internal/indexsvc"
	"github.com/shopfloor/shopfloor/services/search/migrations"
	"github.com/shopfloor/shopfloor/services/search/searchapi"
)

// Search is search running in process for a test, the way the serve
// command wires it: its own database, CATALOG and ORDERS streams under the
// test's NATS prefix, the live consumer groups, the lag sampler and the
// HTTP API. Nothing is faked.
type Search struct {
	DB *testinfra.Database
	// Pool is the service's pool on DB, sized like the service's default
	// (DATABASE_MAX_CONNS 8).
	Pool *pgxpool.Pool
	NATS *testinfra.NATSPrefix
	// Products and Orders are the live projections and their streams.
	Products, Orders indexsvc.Source
	// URL is the API's base URL.
	URL      string
	Registry *prometheus.Registry
	Metrics  *indexstream.Metrics
	Lags     *indexsvc.LagSampler
	Log      *slog.Logger
	// Issuer mints the tokens the API accepts (audience "search"); Get
	// sends an operator's.
	Issuer   *authtest.Issuer
	operator string

	mu        sync.Mutex
	published map[string]map[int]uint64 // stream → partition → last sequence
	pubs      map[string]*stream.Publisher
}

// Options configures StartWith.
type Options struct {
	// Partitions of both streams. Default 1.
	Partitions int
	// NoConsumers leaves the live consumer groups out: the streams fill,
	// the live projections stay empty (for benchmarks of a rebuild alone).
	NoConsumers bool
}

// Start runs search until the test ends; partitions is the partition
// count of both streams.
func Start(tb testing.TB, partitions int) *Search {
	tb.Helper()
	return StartWith(tb, Options{Partitions: partitions})
}

// StartWith runs search with opts until the test ends.
func StartWith(tb testing.TB, opts Options) *Search {
	tb.Helper()
	partitions := max(opts.Partitions, 1)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Search{
		DB: testinfra.Postgres(tb, migrations.FS), NATS: testinfra.NATS(tb), Registry: prometheus.NewRegistry(),
		Log: slog.New(slog.DiscardHandler), published: map[string]map[int]uint64{}, pubs: map[string]*stream.Publisher{},
	}
	s.Products = indexsvc.Source{Stream: s.NATS.Name("CATALOG"), Partitions: partitions, Projection: indexpg.LiveProducts}
	s.Orders = indexsvc.Source{Stream: s.NATS.Name("ORDERS"), Partitions: partitions, Projection: indexpg.LiveOrders}
	var err error
	if s.Pool, err = pgdb.Open(ctx, pgdb.Config{URL: s.DB.URL, MaxConns: 8}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Pool.Close)
	if s.Metrics, err = indexstream.NewMetrics(s.Registry); err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, src := range []indexsvc.Source{s.Products, s.Orders} {
		if err := stream.EnsureStream(ctx, s.NATS.JS, stream.StreamConfig{Name: src.Stream, Partitions: partitions, Storage: jetstream.MemoryStorage}); err != nil {
			tb.Fatal(err)
		}
		if s.pubs[src.Stream], err = stream.NewPublisher(s.NATS.JS, src.Stream, partitions); err != nil {
			tb.Fatal(err)
		}
		if opts.NoConsumers {
			continue
		}
		p := &indexstream.Projector{Pool: s.Pool, Projection: src.Projection, Stream: src.Stream, Metrics: s.Metrics, Log: s.Log}
		g, err := stream.NewGroup(s.NATS.JS, stream.GroupConfig{Stream: src.Stream, Name: indexstream.Group, Partitions: partitions,
			FetchWait: 200 * time.Millisecond, Registerer: s.Registry, LagInterval: 100 * time.Millisecond}, p.Handle, s.Log)
		if err != nil {
			tb.Fatal(err)
		}
		wg.Go(func() {
			if err := g.Run(ctx); err != nil {
				tb.Errorf("searchtest: group on %s: %v", src.Stream, err)
			}
		})
	}
	if s.Lags, err = indexsvc.NewLagSampler(indexsvc.JetStreamLag(s.NATS.JS), s.Pool, indexstream.Group, []indexsvc.Source{s.Products, s.Orders},
		indexsvc.LagConfig{Interval: 100 * time.Millisecond, Registerer: s.Registry}, s.Log); err != nil {
		tb.Fatal(err)
	}
	wg.Go(func() { _ = s.Lags.Run(ctx) })
	s.Issuer = authtest.NewIssuer(tb)
	authz, err := auth.NewVerifier(s.Issuer.Config("search"), "search", auth.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	s.operator = "Bearer " + s.Issuer.Operator(tb, "search")
	mux := httpkit.NewMux(httpkit.NewHealth(), nil)
	indexhttp.Routes(mux, indexsvc.NewSearcher(s.Pool, s.Products, s.Orders, s.Lags), indexhttp.Config{Authz: authz, Log: s.Log})
	// Every request and answer is held to the API's contract.
	srv := httptest.NewServer(openapitest.Load(tb, searchapi.OpenAPI()).Handler(tb,
		httpkit.Chain(mux, httpkit.LimitBody(httpkit.DefaultMaxBodyBytes))))
	s.URL = srv.URL
	tb.Cleanup(func() {
		srv.Close()
		cancel()
		wg.Wait()
	})
	return s
}

// Publish publishes log to the stream and remembers how far each
// partition got, for WaitCaughtUp.
func (s *Search) Publish(tb testing.TB, streamName string, log []Event) {
	tb.Helper()
	pub := s.pubs[streamName]
	if pub == nil {
		tb.Fatalf("searchtest: no stream %s", streamName)
	}
	const batch = 500
	for start := 0; start < len(log); start += batch {
		end := min(start+batch, len(log))
		msgs := make([]stream.Message, 0, end-start)
		for _, ev := range log[start:end] {
			msgs = append(msgs, stream.Message{ID: ev.ID, Key: ev.Key, Payload: ev.Payload})
		}
		for i, r := range pub.PublishAsync(context.Background(), msgs) {
			if r.Err != nil {
				tb.Fatalf("searchtest: publish event %d: %v", start+i, r.Err)
			}
			s.mu.Lock()
			if s.published[streamName] == nil {
				s.published[streamName] = map[int]uint64{}
			}
			s.published[streamName][r.Ack.Partition] = max(s.published[streamName][r.Ack.Partition], r.Ack.Sequence)
			s.mu.Unlock()
		}
	}
}

// WaitCaughtUp waits until src's live projection has finished everything
// published to its stream so far.
func (s *Search) WaitCaughtUp(tb testing.TB, src indexsvc.Source) {
	tb.Helper()
	s.mu.Lock()
	want := maps.Clone(s.published[src.Stream])
	s.mu.Unlock()
	testinfra.Eventually(tb, 60*time.Second, func() error {
		got, err := indexpg.Positions(context.Background(), s.DB.Pool, src.Projection)
		if err != nil {
			return err
		}
		for p, seq := range want {
			if got[p] < seq {
				return fmt.Errorf("%s partition %d at %d of %d", src.Stream, p, got[p], seq)
			}
		}
		return nil
	})
}

// Answer is an HTTP answer.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// Get sends GET base+path as an operator and reads the answer.
func (s *Search) Get(tb testing.TB, path string) Answer {
	tb.Helper()
	return GetAs(tb, s.URL+path, s.operator)
}

// GetAs sends GET base+path with the Authorization value authz ("" for
// none) and reads the answer.
func (s *Search) GetAs(tb testing.TB, path, authz string) Answer {
	tb.Helper()
	return GetAs(tb, s.URL+path, authz)
}

// Get sends GET url without credentials and reads the answer.
func Get(tb testing.TB, url string) Answer {
	tb.Helper()
	return GetAs(tb, url, "")
}

// GetAs sends GET url with the Authorization value authz ("" for none)
// and reads the answer.
func GetAs(tb testing.TB, url, authz string) Answer {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Decode decodes a 200 answer's JSON body into a T.
func Decode[T any](tb testing.TB, a Answer) T {
	tb.Helper()
	var v T
	if a.Status != http.StatusOK {
		tb.Fatalf("status %d: %s", a.Status, a.Body)
	}
	if err := json.Unmarshal(a.Body, &v); err != nil {
		tb.Fatalf("decode %s: %v", a.Body, err)
	}
	return v
}
