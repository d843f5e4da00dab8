package console

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/chaos/target"
)

// The topology diagram: every service and dependency as a node, every
// path a request or an event takes as an edge, with its throughput (the
// rate of a counter the processes already export, between two reads of
// the console) and its state (up, cut at Toxiproxy, or an end stopped).

// Node is a box of the diagram.
type Node struct {
	ID, Label string
	X, Y      int    // centre, in the diagram's coordinates (DiagramW × DiagramH)
	Kind      string // service, edge (web, CDN), store, external
	State     string // up, degraded (some processes down), stopped, cut, unknown
}

// Edge is a path between two nodes and what flows on it.
type Edge struct {
	From, To string
	What     string // what one unit is ("HTTP requests", "events handled" …)
	Link     string // the Toxiproxy link it crosses, if any
	State    string // up, cut, stopped
	Rate     float64
	Measured bool // false until two reads are far enough apart, or when nothing counts it
	counter  counter
	// The line, clipped to the boxes' borders and moved aside when the
	// edge has a reverse; the label's place.
	X1, Y1, X2, Y2, LX, LY int
}

// RateText is the edge's throughput for the diagram.
func (e Edge) RateText() string {
	switch {
	case len(e.counter.Metrics) == 0:
		return ""
	case !e.Measured:
		return "–"
	case e.Rate == 0:
		return "0/s"
	case e.Rate < 10:
		return strconv.FormatFloat(e.Rate, 'f', 1, 64) + "/s"
	}
	return strconv.FormatFloat(e.Rate, 'f', 0, 64) + "/s"
}

// Busy reports whether something flowed on the edge since the last read.
func (e Edge) Busy() bool { return e.Measured && e.Rate > 0 }

// BoxX and BoxY are the top-left corner of the node's BoxW × BoxH
// rectangle.
func (n Node) BoxX() int { return n.X - BoxW/2 }

// BoxY: see BoxX.
func (n Node) BoxY() int { return n.Y - BoxH/2 }

// Width and Height are BoxW and BoxH, for templates.
func (Node) Width() int { return BoxW }

// Height: see Width.
func (Node) Height() int { return BoxH }

// BoxW and BoxH are a node's size in the diagram.
const BoxW, BoxH = 160, 44

// place computes e's line between from and to: from border to border,
// 7 units aside when the reverse edge is drawn too (each direction its own
// line), with the label a third of the way from the source.
func (e *Edge) place(from, to Node, twoWay bool) {
	fx, fy, tx, ty := float64(from.X), float64(from.Y), float64(to.X), float64(to.Y)
	dx, dy := tx-fx, ty-fy
	l := math.Hypot(dx, dy)
	if l == 0 {
		return
	}
	if twoWay {
		ox, oy := -dy/l*7, dx/l*7
		fx, fy, tx, ty = fx+ox, fy+oy, tx+ox, ty+oy
	}
	// The fraction of the line inside a box around an end.
	hw, hh := float64(BoxW)/2, float64(BoxH)/2
	if twoWay {
		hw, hh = hw+7, hh+7 // the line moved aside may cross a corner
	}
	in := min(hw/math.Max(math.Abs(dx), 1e-9), hh/math.Max(math.Abs(dy), 1e-9)) + 4/l
	e.X1, e.Y1 = int(fx+dx*in), int(fy+dy*in)
	e.X2, e.Y2 = int(tx-dx*in), int(ty-dy*in)
	at := 0.5
	if twoWay {
		at = 0.3
	}
	e.LX, e.LY = int(float64(e.X1)+float64(e.X2-e.X1)*at), int(float64(e.Y1)+float64(e.Y2-e.Y1)*at)-4
}

// counter sums samples named one of Metrics, of processes named Proc or
// Proc-* ("" for any), whose labels match Labels (a value "!x|y": anything
// but x or y) and, when set, whose http_route starts with RoutePrefix but
// not with /v1/admin (the operators' API: the console's own reads).
type counter struct {
	Metrics     []string
	Proc        string
	Labels      map[string]string
	RoutePrefix string
}

// DiagramW and DiagramH are the diagram's coordinate space.
const DiagramW, DiagramH = 1000, 560

// nodes are laid out by hand: the shop on the left, the services in the
// middle, their stores and the outside world on the right.
var nodes = []Node{
	{ID: "web", Label: "shop (web)", X: 80, Y: 280, Kind: "edge"},
	{ID: "cdn", Label: "CDN (Varnish)", X: 250, Y: 70, Kind: "edge"},
	{ID: "catalog", Label: "catalog", X: 470, Y: 70, Kind: "service"},
	{ID: "orders", Label: "orders", X: 470, Y: 190, Kind: "service"},
	{ID: "payments", Label: "payments", X: 470, Y: 310, Kind: "service"},
	{ID: "notifications", Label: "notifications", X: 470, Y: 430, Kind: "service"},
	{ID: "search", Label: "search", X: 470, Y: 530, Kind: "service"},
	{ID: "redis", Label: "Redis", X: 720, Y: 40, Kind: "store"},
	{ID: "nats", Label: "NATS JetStream", X: 720, Y: 300, Kind: "store"},
	{ID: "postgres", Label: "PostgreSQL", X: 910, Y: 160, Kind: "store"},
	{ID: "psp", Label: "payment provider", X: 910, Y: 400, Kind: "external"},
	{ID: "smtp", Label: "SMTP relay", X: 910, Y: 510, Kind: "external"},
}

func httpIn(proc string) counter {
	return counter{Metrics: []string{"http_server_request_duration_seconds_count"}, Proc: proc, RoutePrefix: "/v1/"}
}

func published(stream string) counter {
	return counter{Metrics: []string{"outbox_published_total"}, Labels: map[string]string{"stream": stream}}
}

func handled(group string) counter {
	return counter{Metrics: []string{"stream_handler_duration_seconds_count"}, Labels: map[string]string{"group": group}}
}

// edges are the paths, each with the counter that measures it.
var edges = []Edge{
	{From: "web", To: "cdn", What: "catalog reads", counter: counter{Metrics: []string{"varnish_client_requests_total"}, Proc: cdnProc}},
	{From: "cdn", To: "catalog", What: "CDN misses fetched from catalog", counter: counter{Metrics: []string{"varnish_cache_miss_total", "varnish_cache_hitpass_total"}, Proc: cdnProc}},
	{From: "web", To: "orders", What: "API requests", counter: httpIn("orders")},
	{From: "web", To: "payments", What: "API requests", counter: httpIn("payments")},
	{From: "web", To: "notifications", What: "API requests", counter: httpIn("notifications")},
	{From: "web", To: "search", What: "API requests", counter: httpIn("search")},
	{From: "orders", To: "catalog", What: "price look-ups", Link: "catalog", counter: counter{Metrics: []string{"catalog_client_requests_total"}, Proc: "orders"}},
	{From: "catalog", To: "redis", What: "cache reads that asked Redis (near-cache hits stay in the process; failed-open reads went to PostgreSQL)", Link: "redis",
		counter: counter{Metrics: []string{"cache_requests_total"}, Proc: "catalog", Labels: map[string]string{"result": "!near|fail_open|bypass"}}},
	{From: "catalog", To: "nats", What: "CATALOG events published by the relay", Link: "nats", counter: published("CATALOG")},
	{From: "orders", To: "nats", What: "ORDERS events published by the relay", Link: "nats", counter: published("ORDERS")},
	{From: "payments", To: "nats", What: "PAYMENTS events published by the relay", Link: "nats", counter: published("PAYMENTS")},
	{From: "nats", To: "orders", What: "PAYMENTS events handled", Link: "nats", counter: handled("orders")},
	{From: "nats", To: "payments", What: "ORDERS events handled", Link: "nats", counter: handled("payments")},
	{From: "nats", To: "notifications", What: "ORDERS events handled", Link: "nats", counter: handled("notifications")},
	{From: "nats", To: "search", What: "ORDERS and CATALOG events handled", Link: "nats", counter: handled("search")},
	{From: "payments", To: "psp", What: "provider calls", Link: "psp",
		counter: counter{Metrics: []string{"http_client_request_duration_seconds_count"}, Proc: "payments-worker"}},
	{From: "notifications", To: "smtp", What: "e-mails sent or refused", Link: "smtp",
		counter: counter{Metrics: []string{"notifications_emails_sent_total", "notifications_emails_failed_total"}, Proc: "notifications-worker"}},
	{From: "catalog", To: "postgres", What: "every service keeps its truth here", Link: "postgres-catalog"},
	{From: "orders", To: "postgres", Link: "postgres-orders"},
	{From: "payments", To: "postgres", Link: "postgres-payments"},
	{From: "notifications", To: "postgres", Link: "postgres-notifications"},
	{From: "search", To: "postgres", Link: "postgres-search"},
}

// cdnProc is the CDN exporter's name among the scraped processes.
const cdnProc = "cdn"

// Topology is the diagram at one moment.
type Topology struct {
	Nodes []Node
	Edges []Edge
}

// Node returns the node with id.
func (t Topology) Node(id string) Node {
	for _, n := range t.Nodes {
		if n.ID == id {
			return n
		}
	}
	return Node{}
}

// rates turns counter totals into per-second rates between reads. One
// is shared by every operator's page: a read less than a second after the
// previous one keeps the previous rate.
type rates struct {
	mu   sync.Mutex
	last map[int]rateState
}

type rateState struct {
	at          time.Time
	total, rate float64
	ok          bool
}

func (r *rates) observe(i int, at time.Time, total float64) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[int]rateState{}
	}
	prev, seen := r.last[i]
	if seen && at.Sub(prev.at) < time.Second {
		return prev.rate, prev.ok
	}
	next := prev
	next.at, next.total = at, total
	if seen {
		// A counter that went down belongs to a restarted process: no
		// rate this once.
		next.rate, next.ok = max(0, (total-prev.total)/at.Sub(prev.at).Seconds()), total >= prev.total
	}
	r.last[i] = next
	return next.rate, next.ok
}

// topology builds the diagram from the processes' samples and states and
// the links.
func (c *Console) topology(at time.Time, samples map[string][]target.Sample, states map[string]string, links []Link) Topology {
	cut := map[string]bool{} // every link known, true when cut
	for _, l := range links {
		cut[l.Name] = !l.Enabled && l.Err == ""
	}
	t := Topology{Nodes: make([]Node, len(nodes)), Edges: make([]Edge, len(edges))}
	for i, n := range nodes {
		n.State = nodeState(n, states, samples, cut)
		t.Nodes[i] = n
	}
	for i, e := range edges {
		switch {
		case e.Link != "" && cut[e.Link]:
			e.State = "cut"
		case t.Node(e.From).State == "stopped" || t.Node(e.To).State == "stopped":
			e.State = "stopped"
		default:
			e.State = "up"
		}
		twoWay := slices.ContainsFunc(edges, func(r Edge) bool { return r.From == e.To && r.To == e.From })
		e.place(t.Node(e.From), t.Node(e.To), twoWay)
		if len(e.counter.Metrics) > 0 {
			if total, found := e.counter.sum(samples); found {
				e.Rate, e.Measured = c.rates.observe(i, at, total)
			}
		}
		t.Edges[i] = e
	}
	return t
}

// nodeState is a service's from its processes' readiness (stopped: none
// answers; degraded: some do not, or are not ready), the CDN's from its
// exporter, a dependency's from its link.
func nodeState(n Node, states map[string]string, samples map[string][]target.Sample, cut map[string]bool) string {
	switch n.Kind {
	case "service":
		var up, all int
		for proc, st := range states {
			if proc == n.ID || strings.HasPrefix(proc, n.ID+"-") {
				all++
				if st == "ready" {
					up++
				}
			}
		}
		switch {
		case all == 0:
			return "unknown"
		case up == 0:
			return "stopped"
		case up < all:
			return "degraded"
		}
		return "up"
	case "store", "external":
		// Its links: the one named after it, or one per service
		// (postgres-orders, …): all cut is cut, some is degraded.
		var links, down int
		for name, c := range cut {
			if name == n.ID || strings.HasPrefix(name, n.ID+"-") {
				links++
				if c {
					down++
				}
			}
		}
		switch {
		case down > 0 && down == links:
			return "cut"
		case down > 0:
			return "degraded"
		}
		return "up"
	}
	if n.ID == "cdn" {
		if _, ok := samples[cdnProc]; !ok {
			return "unknown"
		}
	}
	return "up"
}

// sum adds the matching samples; found is false when none matched.
func (c counter) sum(samples map[string][]target.Sample) (total float64, found bool) {
	for proc, ss := range samples {
		if c.Proc != "" && proc != c.Proc && !strings.HasPrefix(proc, c.Proc+"-") {
			continue
		}
		for _, s := range ss {
			if c.matches(s) {
				total += s.Value
				found = true
			}
		}
	}
	return total, found
}

func (c counter) matches(s target.Sample) bool {
	hit := false
	for _, m := range c.Metrics {
		hit = hit || s.Name == m
	}
	if !hit {
		return false
	}
	for k, v := range c.Labels {
		if not, ok := strings.CutPrefix(v, "!"); ok {
			if slices.Contains(strings.Split(not, "|"), s.Label(k)) {
				return false
			}
		} else if s.Label(k) != v {
			return false
		}
	}
	route := s.Label("http_route")
	return c.RoutePrefix == "" || strings.HasPrefix(route, c.RoutePrefix) && !strings.HasPrefix(route, "/v1/admin")
}
