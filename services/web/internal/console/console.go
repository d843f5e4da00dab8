// Package console is the operator's plumbing console: what every process
// and link of the sandbox is doing, read from the processes' own admin
// listeners (/readyz, /metrics), Toxiproxy's API and the provider
// simulator, through chaos/target, the package the chaos drills use (no
// second copy of how the system is reached), and switches for the faults
// the drills inject.
//
// It drives a sandbox: it cuts links, stops processes and breaks the
// provider. The web service enables it only when configured with the
// sandbox's endpoints (WEB_CONSOLE_PORT_BASE, make run), and only
// operators reach it.
package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/chaos/target"
)

// ErrUnknown wraps the console's refusals of a name it does not know (a
// service, queue, stream, link, preset, mode, process or drill): the
// pages answer 404 for a read, 400 for a switch.
var ErrUnknown = errors.New("unknown")

// Links are the Toxiproxy proxies between the services and their
// dependencies (deploy/local/run.sh), in the order the page shows them.
// Each service has its own PostgreSQL link, so one can be cut at a time.
var Links = []LinkInfo{
	{"postgres-orders", "orders → PostgreSQL", "Cut it: checkout answers 503 with Retry-After, never 500; the relay and the consumer stop and resume where they were."},
	{"postgres-payments", "payments → PostgreSQL", "Cut it: orders are still accepted and wait as pending; charges start, once each, when it is back."},
	{"postgres-catalog", "catalog → PostgreSQL", "Cut it: cached products still answer (Redis, then the CDN); a miss answers 503; price changes wait."},
	{"postgres-notifications", "notifications → PostgreSQL", "Cut it: e-mails wait in the stream; each is sent once when it is back."},
	{"postgres-search", "search → PostgreSQL", "Cut it: search answers 503; its index catches up from the streams when it is back."},
	{"redis", "catalog → Redis (the cache)", "Cut it: catalog fails open to PostgreSQL (the breaker opens), the CDN keeps answering, nothing breaks."},
	{"nats", "every service → NATS JetStream", "Cut it: orders are still accepted; their events wait in the outboxes and flow when it is back, none lost."},
	{"catalog", "orders → catalog (prices)", "Cut it: checkout answers 503 fast (a breaker), the shop's pages still read the CDN."},
	{"psp", "payments → the payment provider", "Cut it: charges wait and retry with backoff; each order is charged once when it is back."},
	{"smtp", "notifications → SMTP", "Cut it: e-mails wait in their job queue; each is sent once when it is back."},
}

// LinkInfo names a link and says what cutting it teaches.
type LinkInfo struct{ Name, What, Teaches string }

// Console reads the system.
type Console struct {
	sys     *target.System
	procs   []string   // processes with an admin listener, sorted
	rates   rates      // the topology's throughputs
	drills  drills     // the drill runner
	streams streamDLQs // the streams' dead letters
}

// New returns a console over sys (its Endpoints.Metrics name the
// processes).
func New(sys *target.System) *Console {
	return &Console{sys: sys, procs: slices.Sorted(maps.Keys(sys.Metrics))}
}

// Snapshot is the system at one moment.
type Snapshot struct {
	At        time.Time
	Processes []Process
	Links     []Link
	Outboxes  []Outbox
	Lag       LagMap
	Queues    []Queue
	Caches    []Cache
	Provider  Provider
	Mail      Mail
	Topology  Topology
}

// Mail is the mail relay's mode (target.MailAccepting, MailDown,
// MailRejecting).
type Mail struct{ Mode, Err string }

// MailMode is a switch of the mail relay.
type MailMode struct{ Mode, Label, Teaches string }

// MailModes are the mail relay's switches, with what each teaches.
var MailModes = []MailMode{
	{target.MailAccepting, "Accept mail", "The relay takes every message."},
	{target.MailDown, "Down (421)", "Try again later: e-mails wait in their job queue and are retried with backoff; each is sent once when it is back."},
	{target.MailRejecting, "Reject (550)", "Refused for good: retrying cannot help, so the e-mail is dead-lettered at once with its reason. Switch back and redrive it below: it is sent once."},
}

// Process is one role process and whether its admin listener says it is
// ready.
type Process struct {
	Name  string
	State string // ready, not ready, down
}

// Link is a Toxiproxy proxy: enabled, or cut.
type Link struct {
	LinkInfo
	Enabled bool
	Err     string
}

// Outbox is a stream's outbox as its relay leader samples it.
type Outbox struct {
	Stream    string
	Backlog   float64
	OldestAge float64
}

// LagMap is every consumer group's lag per partition of its stream.
type LagMap struct {
	Partitions []string
	Rows       []LagRow
}

// LagRow is one stream's consumer group.
type LagRow struct {
	Stream, Group string
	Lag           []float64 // by Partitions; -1: not reported
	Total         float64
}

// Queue is a job queue's depths.
type Queue struct {
	Name                            string
	Visible, InFlight, Delayed, DLQ float64
	OldestAge                       float64
}

// Cache is one cache class of catalog (near, Redis) and the CDN.
type Cache struct {
	Name        string
	Hits, Total float64
	// Loads are reads from the source (PostgreSQL for catalog's caches,
	// catalog for the CDN).
	Loads float64
	// Near are the hits the in-process near cache served without asking
	// Redis (part of Hits).
	Near        float64
	RedisErrors float64
	BreakerOpen bool
	// Bypassed: the emergency switch sends every read to the source.
	Bypassed bool
	// CDN is the CDN's row (no Redis, no breaker).
	CDN bool
}

// HitRatio is Hits/Total, 0 when nothing was read.
func (c Cache) HitRatio() float64 {
	if c.Total == 0 {
		return 0
	}
	return c.Hits / c.Total
}

// Provider is the payment-provider simulator's faults and counts.
type Provider struct {
	Faults                      string
	Charges, Succeeded, Refunds int
	Err                         string
}

// Read takes a snapshot: every source is asked at once, each with its
// own timeout; a source that does not answer shows as such.
func (c *Console) Read(ctx context.Context) Snapshot {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	snap := Snapshot{At: time.Now().UTC()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	samples := map[string][]target.Sample{}
	states := map[string]string{}
	for _, name := range c.procs {
		wg.Go(func() {
			base := c.sys.Metrics[name]
			state := "down"
			resp, err := c.get(ctx, base+"/readyz")
			if err == nil {
				_ = resp.Body.Close()
				state = map[bool]string{true: "ready", false: "not ready"}[resp.StatusCode == http.StatusOK]
			}
			var s []target.Sample
			if err == nil {
				s, _ = target.Scrape(ctx, c.sys.Client(), base)
			}
			mu.Lock()
			defer mu.Unlock()
			states[name], samples[name] = state, s
		})
	}
	if c.sys.CDNMetrics != "" {
		wg.Go(func() {
			s, err := target.Scrape(ctx, c.sys.Client(), c.sys.CDNMetrics)
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			samples[cdnProc] = s
		})
	}
	wg.Go(func() {
		links := c.links(ctx)
		mu.Lock()
		defer mu.Unlock()
		snap.Links = links
	})
	wg.Go(func() {
		m := Mail{}
		mode, err := c.sys.MailMode(ctx)
		if err != nil {
			m.Err = "the mail relay cannot be switched: " + err.Error()
		}
		m.Mode = mode
		mu.Lock()
		defer mu.Unlock()
		snap.Mail = m
	})
	wg.Go(func() {
		p := c.provider(ctx)
		mu.Lock()
		defer mu.Unlock()
		snap.Provider = p
	})
	wg.Wait()
	for _, name := range c.procs {
		snap.Processes = append(snap.Processes, Process{Name: name, State: states[name]})
	}
	snap.Outboxes, snap.Lag, snap.Queues, snap.Caches = outboxes(samples), lagMap(samples), queues(samples), caches(samples)
	snap.Topology = c.topology(snap.At, samples, states, snap.Links)
	return snap
}

func (c *Console) get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return c.sys.Client().Do(req)
}

func (c *Console) links(ctx context.Context) []Link {
	tp := c.sys.ToxiproxyClient()
	out := make([]Link, len(Links))
	var wg sync.WaitGroup
	for i, l := range Links {
		wg.Go(func() {
			p, err := tp.Get(ctx, l.Name)
			out[i] = Link{LinkInfo: l, Enabled: err == nil && p.Enabled}
			if err != nil {
				out[i].Err = "Toxiproxy does not answer"
			}
		})
	}
	wg.Wait()
	return out
}

func (c *Console) provider(ctx context.Context) Provider {
	f, err := c.sys.PSPFaults(ctx)
	if err != nil {
		return Provider{Err: "the provider simulator does not answer"}
	}
	st, err := c.sys.PSPStats(ctx)
	if err != nil {
		return Provider{Err: "the provider simulator does not answer"}
	}
	return Provider{Faults: target.DescribeFaults(f), Charges: st.ChargesCreated, Succeeded: st.ChargesSucceeded, Refunds: st.RefundsCreated}
}

// each calls fn for every sample named name of every process.
func each(samples map[string][]target.Sample, name string, fn func(proc string, s target.Sample)) {
	for _, proc := range slices.Sorted(maps.Keys(samples)) {
		for _, s := range samples[proc] {
			if s.Name == name {
				fn(proc, s)
			}
		}
	}
}

func outboxes(samples map[string][]target.Sample) []Outbox {
	by := map[string]*Outbox{}
	get := func(stream string) *Outbox {
		if by[stream] == nil {
			by[stream] = &Outbox{Stream: stream}
		}
		return by[stream]
	}
	// Every relay process reports; only the leader samples: the largest
	// value is the leader's.
	each(samples, "outbox_backlog_rows", func(_ string, s target.Sample) {
		o := get(s.Label("stream"))
		o.Backlog = max(o.Backlog, s.Value)
	})
	each(samples, "outbox_oldest_unpublished_age_seconds", func(_ string, s target.Sample) {
		o := get(s.Label("stream"))
		o.OldestAge = max(o.OldestAge, s.Value)
	})
	out := make([]Outbox, 0, len(by))
	for _, k := range slices.Sorted(maps.Keys(by)) {
		out = append(out, *by[k])
	}
	return out
}

func lagMap(samples map[string][]target.Sample) LagMap {
	type key struct{ stream, group string }
	lags := map[key]map[string]float64{}
	parts := map[string]bool{}
	each(samples, "stream_consumer_lag_messages", func(_ string, s target.Sample) {
		k := key{s.Label("stream"), s.Label("group")}
		if lags[k] == nil {
			lags[k] = map[string]float64{}
		}
		p := s.Label("partition")
		lags[k][p] = max(lags[k][p], s.Value)
		parts[p] = true
	})
	var m LagMap
	m.Partitions = slices.SortedFunc(maps.Keys(parts), func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return cmp.Compare(x, y)
	})
	keys := slices.Collect(maps.Keys(lags))
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].stream+"/"+keys[i].group < keys[j].stream+"/"+keys[j].group
	})
	for _, k := range keys {
		row := LagRow{Stream: k.stream, Group: k.group}
		for _, p := range m.Partitions {
			v, ok := lags[k][p]
			if !ok {
				v = -1
			} else {
				row.Total += v
			}
			row.Lag = append(row.Lag, v)
		}
		m.Rows = append(m.Rows, row)
	}
	return m
}

func queues(samples map[string][]target.Sample) []Queue {
	by := map[string]*Queue{}
	set := func(metric string, field func(*Queue) *float64) {
		each(samples, metric, func(_ string, s target.Sample) {
			name := s.Label("queue")
			if by[name] == nil {
				by[name] = &Queue{Name: name}
			}
			f := field(by[name])
			*f = max(*f, s.Value)
		})
	}
	set("jobqueue_visible_messages", func(q *Queue) *float64 { return &q.Visible })
	set("jobqueue_in_flight_messages", func(q *Queue) *float64 { return &q.InFlight })
	set("jobqueue_delayed_messages", func(q *Queue) *float64 { return &q.Delayed })
	set("jobqueue_dead_letter_depth", func(q *Queue) *float64 { return &q.DLQ })
	set("jobqueue_oldest_message_age_seconds", func(q *Queue) *float64 { return &q.OldestAge })
	out := make([]Queue, 0, len(by))
	for _, k := range slices.Sorted(maps.Keys(by)) {
		out = append(out, *by[k])
	}
	return out
}

func caches(samples map[string][]target.Sample) []Cache {
	by := map[string]*Cache{}
	get := func(proc, class string) *Cache {
		k := proc + " " + class
		if by[k] == nil {
			by[k] = &Cache{Name: class + " (" + proc + ")"}
		}
		return by[k]
	}
	each(samples, "cache_requests_total", func(proc string, s target.Sample) {
		c := get(proc, s.Label("class"))
		c.Total += s.Value
		if r := s.Label("result"); r == "hit" || r == "near" || r == "stale" {
			c.Hits += s.Value
		}
		if s.Label("result") == "near" {
			c.Near += s.Value
		}
	})
	each(samples, "cache_bypass", func(proc string, s target.Sample) {
		if s.Value > 0 {
			get(proc, s.Label("class")).Bypassed = true
		}
	})
	each(samples, "cache_loads_total", func(proc string, s target.Sample) { get(proc, s.Label("class")).Loads += s.Value })
	each(samples, "cache_redis_errors_total", func(proc string, s target.Sample) { get(proc, s.Label("class")).RedisErrors += s.Value })
	each(samples, "cache_breaker_open", func(proc string, s target.Sample) {
		if s.Value > 0 {
			get(proc, s.Label("class")).BreakerOpen = true
		}
	})
	out := make([]Cache, 0, len(by)+1)
	if cdn, ok := samples[cdnProc]; ok {
		c := Cache{Name: "CDN (Varnish)", CDN: true}
		for _, s := range cdn {
			switch s.Name {
			case "varnish_cache_hit_total":
				c.Hits += s.Value
				c.Total += s.Value
			case "varnish_cache_miss_total", "varnish_cache_hitpass_total":
				c.Total += s.Value
				c.Loads += s.Value
			}
		}
		out = append(out, c)
	}
	for _, k := range slices.Sorted(maps.Keys(by)) {
		out = append(out, *by[k])
	}
	return out
}

// SetLink cuts (enabled false) or restores a link.
func (c *Console) SetLink(ctx context.Context, name string, enabled bool) error {
	if !slices.ContainsFunc(Links, func(l LinkInfo) bool { return l.Name == name }) {
		return fmt.Errorf("%w: no link %q", ErrUnknown, name)
	}
	return c.sys.ToxiproxyClient().SetEnabled(ctx, name, enabled)
}

// SetProvider applies the preset named name.
func (c *Console) SetProvider(ctx context.Context, name string) error {
	i := slices.IndexFunc(target.FaultPresets, func(p target.FaultPreset) bool { return p.Name == name })
	if i < 0 {
		return fmt.Errorf("%w: no provider preset %q", ErrUnknown, name)
	}
	return c.sys.SetPSPFaults(ctx, target.FaultPresets[i].Faults)
}

// SetCacheBypass switches catalog's cache bypass (the emergency switch:
// every read goes to PostgreSQL) through catalog's admin API, with the
// operator's token.
func (c *Console) SetCacheBypass(ctx context.Context, token string, on bool) error {
	if c.sys.CatalogAdmin == "" {
		return fmt.Errorf("this console does not know catalog's admin listener")
	}
	return c.admin(ctx, token, http.MethodPut, c.sys.CatalogAdmin+"/v1/admin/cache/bypass", map[string]bool{"enabled": on}, nil)
}

// SetMail switches the mail relay to mode.
func (c *Console) SetMail(ctx context.Context, mode string) error {
	if !slices.ContainsFunc(MailModes, func(m MailMode) bool { return m.Mode == mode }) {
		return fmt.Errorf("%w: no mail mode %q", ErrUnknown, mode)
	}
	return c.sys.SetMailMode(ctx, mode)
}

// Stoppable are the processes the console may stop and start (role
// processes; the dependencies are cut through their links instead).
func (c *Console) Stoppable(name string) bool { return slices.Contains(c.procs, name) }

// CanControlProcesses reports whether the console can stop and start the
// role processes (a local run's ctl.sh; not in compose).
func (c *Console) CanControlProcesses() bool { return c.sys.Procs != nil }

// SetProcess stops (running false) or starts a role process.
func (c *Console) SetProcess(ctx context.Context, name string, running bool) error {
	if !c.Stoppable(name) {
		return fmt.Errorf("%w: no process %q", ErrUnknown, name)
	}
	if c.sys.Procs == nil {
		return fmt.Errorf("this console cannot stop or start processes")
	}
	if running {
		return c.sys.Procs.Start(ctx, name)
	}
	return c.sys.Procs.Kill(ctx, name)
}
