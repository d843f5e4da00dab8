package console

import (
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/chaos/target"
)

// TestTopologyRatesAndStates: each edge's throughput is the rate of its
// counter between two reads (none on the first read, none across a
// counter reset, the console's own admin reads and near-cache hits left
// out); a cut link cuts its edges and its node; a service with every
// process down is stopped, with some down degraded, and its edges
// stopped.
func TestTopologyRatesAndStates(t *testing.T) {
	t.Parallel()
	c := New(&target.System{})
	states := map[string]string{"orders": "ready", "orders-relay": "ready", "search": "down", "catalog": "ready", "catalog-worker": "not ready"}
	links := []Link{{LinkInfo: LinkInfo{Name: "redis"}, Enabled: false}, {LinkInfo: LinkInfo{Name: "nats"}, Enabled: true}}
	read := func(published, apiCalls, adminCalls, redisHits, nearHits float64) map[string][]target.Sample {
		return map[string][]target.Sample{
			"orders-relay": {sample("outbox_published_total", published, "stream", "ORDERS")},
			"orders": {
				sample("http_server_request_duration_seconds_count", apiCalls, "http_route", "/v1/orders"),
				sample("http_server_request_duration_seconds_count", 1000, "http_route", "/metrics"),
			},
			"payments": {sample("http_server_request_duration_seconds_count", adminCalls, "http_route", "/v1/admin/queues")},
			"catalog": {
				sample("cache_requests_total", redisHits, "class", "product", "result", "hit"),
				sample("cache_requests_total", nearHits, "class", "product", "result", "near"),
			},
		}
	}
	edge := func(tp Topology, from, to string) Edge {
		for _, e := range tp.Edges {
			if e.From == from && e.To == to {
				return e
			}
		}
		t.Fatalf("no edge %s → %s", from, to)
		return Edge{}
	}
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	first := c.topology(t0, read(10, 5, 7, 3, 100), states, links)
	if e := edge(first, "orders", "nats"); e.Measured || e.RateText() != "–" {
		t.Errorf("first read: %+v, want no rate yet", e)
	}
	// Half a second later: too soon, the rate is kept (none).
	if e := edge(c.topology(t0.Add(500*time.Millisecond), read(11, 5, 7, 3, 100), states, links), "orders", "nats"); e.Measured {
		t.Errorf("a read 0.5 s later measured %v", e.Rate)
	}
	second := c.topology(t0.Add(2*time.Second), read(20, 9, 70, 9, 500), states, links)
	for _, want := range []struct {
		from, to string
		rate     float64
	}{{"orders", "nats", 5}, {"web", "orders", 2}, {"catalog", "redis", 3}} {
		if e := edge(second, want.from, want.to); !e.Measured || e.Rate != want.rate {
			t.Errorf("%s → %s: rate %v (measured %v), want %v", want.from, want.to, e.Rate, e.Measured, want.rate)
		}
	}
	if e := edge(second, "web", "payments"); e.Measured {
		t.Errorf("web → payments counts the console's own admin reads: %v/s", e.Rate)
	}
	if e := edge(second, "orders", "nats"); e.RateText() != "5.0/s" || !e.Busy() {
		t.Errorf("orders → nats shows %q busy=%v", e.RateText(), e.Busy())
	}
	// A restarted process's counter starts again: no rate this once.
	if e := edge(c.topology(t0.Add(4*time.Second), read(2, 9, 70, 9, 500), states, links), "orders", "nats"); e.Measured {
		t.Errorf("after a counter reset: measured %v", e.Rate)
	}

	for id, want := range map[string]string{"orders": "up", "search": "stopped", "catalog": "degraded", "redis": "cut", "nats": "up", "payments": "unknown"} {
		if got := second.Node(id).State; got != want {
			t.Errorf("node %s: %s, want %s", id, got, want)
		}
	}
	for _, want := range []struct{ from, to, state string }{
		{"catalog", "redis", "cut"}, {"nats", "search", "stopped"}, {"web", "search", "stopped"}, {"orders", "nats", "up"},
	} {
		if e := edge(second, want.from, want.to); e.State != want.state {
			t.Errorf("%s → %s: %s, want %s", want.from, want.to, e.State, want.state)
		}
	}
	// Each line starts and ends outside its boxes.
	for _, e := range second.Edges {
		for _, n := range []Node{second.Node(e.From), second.Node(e.To)} {
			for _, p := range [][2]int{{e.X1, e.Y1}, {e.X2, e.Y2}} {
				if p[0] > n.X-BoxW/2 && p[0] < n.X+BoxW/2 && p[1] > n.Y-BoxH/2 && p[1] < n.Y+BoxH/2 {
					t.Errorf("%s → %s: an end (%d,%d) is inside %s's box", e.From, e.To, p[0], p[1], n.ID)
				}
			}
		}
	}
}
