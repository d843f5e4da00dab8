package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/chaos/invariant"
	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// streamDrills are the drills of the streams: poison-message, replay, partition-handover.
func streamDrills() []Drill {
	return []Drill{partitionHandover(), poisonMessage(), replayDrill()}
}

// --- shared by the stream drills --------------------------------------------

// perRun keeps a drill's state for one Run: a Drill value may be run
// more than once (`chaos run replay replay`, the game day).
type perRun[T any] struct {
	mu sync.Mutex
	m  map[*Run]*T
}

func (p *perRun[T]) of(r *Run) *T {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[*Run]*T{}
	}
	if p.m[r] == nil {
		p.m[r] = new(T)
	}
	return p.m[r]
}

// connectNATS connects to the system's NATS directly (not through
// Toxiproxy), as an operator's tool does.
func connectNATS(ctx context.Context, sys *target.System, name string) (*nats.Conn, jetstream.JetStream, error) {
	if sys.NATS == "" {
		return nil, nil, errors.New("no NATS client URL configured")
	}
	opts := []nats.Option{nats.Timeout(5 * time.Second)}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < 5*time.Second {
		opts = append(opts, nats.Timeout(max(time.Until(d), 100*time.Millisecond)))
	}
	cfg := sys.NATSConfig()
	nc, err := cfg.Connect("chaos "+name, opts...)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("nats %s: %w", sys.NATS, err)
	}
	return nc, js, nil
}

// partitionState is one partition consumer of a group, from the broker.
type partitionState struct {
	Delivered, AckFloor   uint64 // stream sequences
	Pending, AckPending   uint64
	Redelivered           int
	LastActive            time.Time
	err                   error
	consumer, streamGroup string
}

// groupPartitions reads every partition consumer (<group>-p<n>) of group
// on streamName.
func groupPartitions(ctx context.Context, js jetstream.JetStream, streamName, group string) ([]partitionState, error) {
	n, err := stream.StreamPartitions(ctx, js, streamName)
	if err != nil {
		return nil, err
	}
	out := make([]partitionState, n)
	for p := range n {
		name := stream.ConsumerName(group, p)
		out[p].consumer, out[p].streamGroup = name, streamName+"/"+group
		c, err := js.Consumer(ctx, streamName, name)
		if err != nil {
			out[p].err = err
			continue
		}
		info, err := c.Info(ctx)
		if err != nil {
			out[p].err = err
			continue
		}
		out[p].Delivered, out[p].AckFloor = info.Delivered.Stream, info.AckFloor.Stream
		out[p].Pending, out[p].AckPending, out[p].Redelivered = info.NumPending, uint64(info.NumAckPending), info.NumRedelivered
		if info.Delivered.Last != nil {
			out[p].LastActive = *info.Delivered.Last
		}
	}
	return out, nil
}

// handled sums what process reports as finished by group on streamName:
// stream_handler_duration_seconds_count with outcome ack (and
// dead_letter: a message the group is done with). ok is false when the
// process does not answer.
func handled(ctx context.Context, sys *target.System, process, streamName, group string) (n float64, ok bool) {
	base, found := sys.Metrics[process]
	if !found {
		return 0, false
	}
	samples, err := target.Scrape(ctx, sys.Client(), base)
	if err != nil {
		return 0, false
	}
	for _, s := range samples {
		if s.Name == "stream_handler_duration_seconds_count" && s.Label("stream") == streamName && s.Label("group") == group {
			if o := s.Label("outcome"); o == "ack" || o == "dead_letter" {
				n += s.Value
			}
		}
	}
	return n, true
}

// commands returns the system's operator command runner (ctl.sh exec,
// docker compose exec).
func commands(r *Run) (target.Commands, error) {
	c, ok := r.Sys.Procs.(target.Commands)
	if !ok || c == nil {
		return nil, errors.New("the runner cannot run operator commands (ctl.sh exec, docker compose exec)")
	}
	return c, nil
}

// --- partition-handover -----------------------------------------------------

// handoverGroup is a consumer group, the instance the drill kills and the
// one that survives.
type handoverGroup struct {
	Stream, Group, Victim, Survivor string
}

// handoverGroups are the consumer groups of the topology with two
// instances each (run.sh's SHOPFLOOR_CONSUMER_INSTANCES=2, compose's *-2
// services). The victim is, per group, the instance that runs only
// consumer roles: orders-consumer (the first instance of "orders"), and
// the second instance of the others, whose first instances also run an
// API or an outbox relay (killing those would stop PAYMENTS or CATALOG
// from being published, and the survivor would have nothing to take
// over).
var handoverGroups = []handoverGroup{
	{"PAYMENTS", "orders", "orders-consumer", "orders-consumer-2"},
	{"ORDERS", "payments", "payments-consumer-2", "payments-relay"},
	{"ORDERS", "notifications", "notifications-consumer-2", "notifications"},
	{"ORDERS", "search", "search-consumer-2", "search"},
	{"CATALOG", "search", "search-consumer-2", "search"},
	{"CATALOG", "catalog-invalidation", "catalog-invalidation-2", "catalog-worker"},
}

// handoverVictims are the processes partition-handover kills, in order.
func handoverVictims() []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range handoverGroups {
		if !seen[g.Victim] {
			seen[g.Victim] = true
			out = append(out, g.Victim)
		}
	}
	return out
}

// handoverGroupState is what partition-handover saw of one group.
type handoverGroupState struct {
	survivorBefore, survivorAfter float64
	survivorUp                    bool // answered at the kill and at the heal
	atKill, atHeal                []partitionState
}

type handoverState struct {
	mu       sync.Mutex
	killed   map[string]bool // victims killed and not started again
	wasKill  map[string]bool // victims killed at the inject
	absent   map[string]bool // victims not running at the inject (one instance only)
	killedAt time.Time
	healedAt time.Time
	groups   map[string]*handoverGroupState // by STREAM/group
	writes   int
	ackWait  time.Duration
}

// handoverAckWait is pkg/stream's default AckWait, which the services do
// not change: a message the dead instance held is redelivered after it.
const handoverAckWait = 30 * time.Second

func partitionHandover() Drill {
	states := &perRun[handoverState]{}
	return Drill{
		Name:      "partition-handover",
		Resource:  "consumers",
		GameDay:   true,
		Processes: handoverVictims(),
		Fault: "SIGKILL one of the two instances of every consumer group (" + strings.Join(handoverVictims(), ", ") +
			") and write a catalog price every 500ms so the CATALOG groups have work; start them again after the fault window",
		Proves: "the instances of a consumer group share its partitions without a coordinator: when one dies the survivor handles every partition " +
			"(a message the dead one held is redelivered after AckWait), per-key order holds (search ends at each order's final version, #4/#5) " +
			"and nothing takes effect twice (one charge, one e-mail per order and kind, #2/#3)",
		// pkg/stream pins each partition to the instance that pulls it; a
		// SIGKILLed instance cannot unpin, so its pins hold until the pin
		// TTL (max(AckWait, 2×FetchWait): 30s with the services'
		// defaults) runs out, and only then can the survivor take its
		// partitions. A shorter fault would heal before any handover,
		// and the survivor might have nothing to show (it held no
		// partition of a group at the kill).
		MinFaultFor: handoverAckWait + 15*time.Second,
		Inject:      func(ctx context.Context, r *Run) error { return handoverInject(ctx, r, states.of(r)) },
		Heal:        func(ctx context.Context, r *Run) error { return handoverHeal(ctx, r, states.of(r)) },
		Effect:      func(r *Run) invariant.Result { return handoverEffect(states.of(r)) },
	}
}

func handoverInject(ctx context.Context, r *Run, st *handoverState) error {
	st.mu.Lock()
	st.killed, st.wasKill, st.absent, st.groups = map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]*handoverGroupState{}
	st.ackWait = handoverAckWait
	st.mu.Unlock()
	if r.Sys.Procs == nil {
		return errors.New("no process control configured (--runner)")
	}
	var errs []error
	for _, v := range handoverVictims() {
		if _, ok := handled(ctx, r.Sys, v, "", ""); !ok {
			// The topology runs one instance of the group
			// (SHOPFLOOR_CONSUMER_INSTANCES=1): nothing to kill, and the
			// effect row says so.
			r.Logf("%s does not answer: its group has one instance; not killed", v)
			st.mu.Lock()
			st.absent[v] = true
			st.mu.Unlock()
			continue
		}
		if err := r.Sys.Procs.Kill(ctx, v); err != nil {
			errs = append(errs, err)
			continue
		}
		st.mu.Lock()
		st.killed[v], st.wasKill[v] = true, true
		st.mu.Unlock()
		r.Logf("SIGKILL %s", v)
	}
	st.mu.Lock()
	st.killedAt = time.Now()
	st.mu.Unlock()
	nc, js, err := connectNATS(ctx, r.Sys, "partition-handover")
	if err != nil {
		errs = append(errs, err)
	} else {
		defer nc.Close()
	}
	for _, g := range handoverGroups {
		gs := &handoverGroupState{}
		gs.survivorBefore, gs.survivorUp = handled(ctx, r.Sys, g.Survivor, g.Stream, g.Group)
		if js != nil {
			gs.atKill, _ = groupPartitions(ctx, js, g.Stream, g.Group)
		}
		st.mu.Lock()
		st.groups[g.Stream+"/"+g.Group] = gs
		st.mu.Unlock()
	}
	go handoverPriceWriter(context.WithoutCancel(ctx), r, st)
	return errors.Join(errs...)
}

// handoverPriceWriter writes a new EUR price to one of the load's last 8
// products every 500ms until the heal: CATALOG events for the CATALOG
// groups to hand over.
func handoverPriceWriter(ctx context.Context, r *Run, st *handoverState) {
	if len(r.Products) < 8 {
		return
	}
	products := r.Products[len(r.Products)-8:]
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-r.Healed():
			return
		case <-t.C:
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := writePrice(wctx, r.Sys, products[i%len(products)].ID, int64(2000+i))
		cancel()
		if err == nil {
			st.mu.Lock()
			st.writes++
			st.mu.Unlock()
		}
	}
}

func handoverHeal(ctx context.Context, r *Run, st *handoverState) error {
	st.mu.Lock()
	injected := st.groups != nil
	st.mu.Unlock()
	if injected {
		nc, js, err := connectNATS(ctx, r.Sys, "partition-handover")
		if err == nil {
			defer nc.Close()
		}
		for _, g := range handoverGroups {
			st.mu.Lock()
			gs := st.groups[g.Stream+"/"+g.Group]
			st.mu.Unlock()
			if gs == nil {
				continue
			}
			after, up := handled(ctx, r.Sys, g.Survivor, g.Stream, g.Group)
			var parts []partitionState
			if js != nil {
				parts, _ = groupPartitions(ctx, js, g.Stream, g.Group)
			}
			st.mu.Lock()
			gs.survivorAfter, gs.survivorUp, gs.atHeal = after, gs.survivorUp && up, parts
			st.mu.Unlock()
		}
		st.mu.Lock()
		st.healedAt = time.Now()
		st.mu.Unlock()
		r.Logf("while one instance was down: %s", handoverSummary(st))
	}
	if r.Sys.Procs == nil {
		return errors.New("no process control configured (--runner)")
	}
	var errs []error
	for _, v := range handoverVictims() {
		st.mu.Lock()
		killed := st.killed[v]
		st.mu.Unlock()
		if !killed {
			continue
		}
		if err := r.Sys.Procs.Start(ctx, v); err != nil {
			errs = append(errs, err)
			continue
		}
		st.mu.Lock()
		delete(st.killed, v)
		st.mu.Unlock()
		r.Logf("started %s", v)
	}
	return errors.Join(errs...)
}

// handoverVerdict is the evaluation of one group: ok, and the evidence.
type handoverVerdict struct {
	ok       bool
	evidence string
}

// evalHandoverGroup judges one group from what the drill saw: the victim
// was killed, the survivor answered and handled events while the victim
// was down, and every partition moved on: its ack floor advanced, or it
// had nothing to do, or its only unacknowledged message was delivered to
// the dead instance and the heal came before AckWait ran out (the broker
// redelivers it to the survivor then).
func evalHandoverGroup(g handoverGroup, gs *handoverGroupState, killed, absent bool, down, ackWait time.Duration) handoverVerdict {
	name := g.Stream + "/" + g.Group
	switch {
	case absent:
		return handoverVerdict{false, fmt.Sprintf("%s: %s was not running (one instance): no fault", name, g.Victim)}
	case !killed:
		return handoverVerdict{false, fmt.Sprintf("%s: %s was not killed", name, g.Victim)}
	case gs == nil || !gs.survivorUp:
		return handoverVerdict{false, fmt.Sprintf("%s: no survivor answered (%s down): nobody took the partitions over", name, g.Survivor)}
	}
	n := gs.survivorAfter - gs.survivorBefore
	var progressed, idle, held, stuck int
	for p := range gs.atHeal {
		h := gs.atHeal[p]
		switch {
		case h.err != nil:
			stuck++
		case p < len(gs.atKill) && h.AckFloor > gs.atKill[p].AckFloor:
			progressed++
		case h.Pending == 0 && h.AckPending == 0:
			idle++
		case h.AckPending > 0 && down < ackWait:
			held++
		default:
			stuck++
		}
	}
	ev := fmt.Sprintf("%s: %s handled %g while %s was down; partitions: %d moved on, %d idle", name, g.Survivor, n, g.Victim, progressed, idle)
	if held > 0 {
		ev += fmt.Sprintf(", %d held by the dead instance (redelivered after AckWait %s; the fault lasted %s)", held, ackWait, down.Round(time.Second))
	}
	if stuck > 0 {
		ev += fmt.Sprintf(", %d did not move", stuck)
	}
	return handoverVerdict{n > 0 && stuck == 0 && len(gs.atHeal) > 0, ev}
}

func handoverSummary(st *handoverState) string {
	var parts []string
	for _, v := range evalAllHandover(st) {
		parts = append(parts, v.evidence)
	}
	return strings.Join(parts, "; ")
}

func evalAllHandover(st *handoverState) []handoverVerdict {
	st.mu.Lock()
	defer st.mu.Unlock()
	down := st.healedAt.Sub(st.killedAt)
	var out []handoverVerdict
	for _, g := range handoverGroups {
		killed := st.wasKill[g.Victim]
		out = append(out, evalHandoverGroup(g, st.groups[g.Stream+"/"+g.Group], killed, st.absent[g.Victim], down, st.ackWait))
	}
	return out
}

func handoverEffect(st *handoverState) invariant.Result {
	res := invariant.Result{Invariant: effectName, Held: true}
	var parts []string
	for _, v := range evalAllHandover(st) {
		res.Held = res.Held && v.ok
		parts = append(parts, v.evidence)
	}
	st.mu.Lock()
	writes := st.writes
	st.mu.Unlock()
	if len(parts) == 0 {
		res.Held = false
	}
	res.Evidence = strings.Join(parts, "; ") + fmt.Sprintf(" (%d catalog price writes during the fault)", writes)
	return res
}

// --- poison-message ---------------------------------------------------------

// ordersGroups are the consumer groups of ORDERS, the process whose
// binary and configuration run each group's operator commands, and the
// command that opens its dead-letter tool.
var ordersGroups = []struct {
	Group, Process string
	CLI            []string
}{
	{"payments", "payments-relay", []string{"dlq"}},
	{"notifications", "notifications", []string{"dlq"}},
	{"search", "search", []string{"dlq", "--stream", "ORDERS"}},
}

// poisonRedriveGroup is the group whose dead letter of the malformed
// event the operator redrives.
const poisonRedriveGroup = "search"

// letterSeen is one poison dead letter found in ORDERS_DLQ.
type letterSeen struct {
	Seq      uint64
	DeadAt   time.Time
	Class    string
	Attempts int
}

type poisonState struct {
	mu          sync.Mutex
	key         string
	partition   int
	partitions  int
	publishedAt time.Time
	firstDLQSeq uint64
	redrivenAt  time.Time
	poisonSeq   uint64            // the later of the two poison messages' ORDERS sequences
	passed      map[string]uint64 // by group: the ack floor of the poison's partition at the heal
	othersTotal int               // orders of the other partitions in the same window
	othersFinal int
	malformedID string // Shopfloor-Event-Id of the message that is not JSON
	invalidID   string // event id of the order.placed nobody can read
	baseDLQ     map[string]uint64
	// first dead letters, by group and poison ("malformed", "invalid")
	first map[string]map[string]letterSeen
	// behind the poison in its partition: orders accepted after it
	behindTotal, behindFinal int
	behindPending            []string
	// the operator's procedure
	steps       []string
	stepErrs    []string
	redriven    int
	again       map[string]letterSeen // the malformed event dead-lettered again after the redrive, by group
	dlqAfter    map[string]uint64
	auditWant   map[string]int // by process: discards recorded
	auditGot    map[string]int
	auditErr    []string
	operatorRan bool
}

// poisonBudget is how long a group may take to dead-letter an event its
// handler rejects: the retry budget of the services' groups
// (service.ConsumerRetries: 10 deliveries, the backoff ceilings between
// them add up to about 81s). A permanent error skips it: it is
// dead-lettered at its first delivery.
func poisonBudget() time.Duration {
	var d time.Duration
	for n := 1; n < service.ConsumerRetries.MaxDeliver; n++ {
		d += service.ConsumerRetries.Backoff.Ceiling(n)
	}
	return d
}

func poisonMessage() Drill {
	states := &perRun[poisonState]{}
	return Drill{
		Name:     "poison-message",
		Resource: "streams",
		// The heal is the operator's procedure: it needs the broker and
		// the ORDERS consumers up to see the redriven event dead-lettered
		// again, so it does not compose with their faults.
		GameDay: false,
		Fault: "publish on ORDERS, with a NATS client, one message that is not JSON and one order.placed of an unknown schema (version 2) for an order that " +
			"does not exist, keyed into the partition of a load order; after the fault window the operator discards the invalid event with the services' CLI " +
			"(dlq discard --reason --by), redrives the malformed one (dlq redrive), sees it dead-lettered again and discards it",
		Proves: "a poison message costs one dead letter per group, never a blocked partition (#7): each ORDERS group dead-letters both within the retry budget " +
			"(permanent: at the first delivery), the load's orders behind them in their partition keep flowing, and the operator's CLI redrive and discard work " +
			"(dead-letter depths back to the baseline, every discard in the service's audit log)",
		Inject: func(ctx context.Context, r *Run) error { return poisonInject(ctx, r, states.of(r)) },
		Heal:   func(ctx context.Context, r *Run) error { return poisonHeal(ctx, r, states.of(r)) },
		Effect: func(r *Run) invariant.Result { return poisonEffect(states.of(r)) },
		Probe: func(_ context.Context, r *Run) func(context.Context) []invariant.Result {
			return func(context.Context) []invariant.Result { return poisonRows(states.of(r)) }
		},
	}
}

// poisonKey returns a new order id that stream.Partition maps to
// partition p of n: the poison then waits in the same partition as the
// load's orders there.
func poisonKey(p, n int) string {
	for {
		k := uuid.Must(uuid.NewV7()).String()
		if stream.Partition(k, n) == p {
			return k
		}
	}
}

// dlqDepths returns the dead letters per subject of ORDERS_DLQ
// (ORDERS_DLQ.<group>) and the stream's last sequence.
func dlqDepths(ctx context.Context, js jetstream.JetStream) (map[string]uint64, uint64, error) {
	s, err := js.Stream(ctx, stream.DLQStream(ordersapi.Stream))
	if err != nil {
		return nil, 0, fmt.Errorf("dead-letter stream: %w", err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(stream.DLQStream(ordersapi.Stream)+".>"))
	if err != nil {
		return nil, 0, fmt.Errorf("dead-letter stream: %w", err)
	}
	out := map[string]uint64{}
	for subj, n := range info.State.Subjects {
		out[strings.TrimPrefix(subj, stream.DLQStream(ordersapi.Stream)+".")] = n
	}
	return out, info.State.LastSeq, nil
}

// poisonLetter is a dead letter of ORDERS_DLQ as the drill reads it.
type poisonLetter struct {
	letterSeen
	Group, EventID, Key string
}

// poisonLetters reads ORDERS_DLQ from sequence from on and returns the
// dead letters of key.
func poisonLetters(ctx context.Context, js jetstream.JetStream, from uint64, key string) ([]poisonLetter, error) {
	s, err := js.Stream(ctx, stream.DLQStream(ordersapi.Stream))
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream: %w", err)
	}
	var out []poisonLetter
	for seq := max(from, 1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(stream.DLQStream(ordersapi.Stream)+".>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("dead-letter stream at %d: %w", seq, err)
		}
		seq = m.Sequence + 1
		if m.Header.Get(stream.HeaderKey) != key {
			continue
		}
		l := poisonLetter{Group: m.Header.Get(stream.HeaderDLQGroup), EventID: m.Header.Get(stream.HeaderEventID), Key: key}
		l.Seq, l.DeadAt, l.Class = m.Sequence, m.Time, m.Header.Get(stream.HeaderDLQErrorClass)
		l.Attempts, _ = strconv.Atoi(m.Header.Get(stream.HeaderDLQAttempts))
		out = append(out, l)
	}
}

func poisonInject(ctx context.Context, r *Run, st *poisonState) error {
	nc, js, err := connectNATS(ctx, r.Sys, "poison-message")
	if err != nil {
		return err
	}
	defer nc.Close()
	n, err := stream.StreamPartitions(ctx, js, ordersapi.Stream)
	if err != nil {
		return err
	}
	base, last, err := dlqDepths(ctx, js)
	if err != nil {
		return err
	}
	// The partition of the latest load order: the load's orders that
	// follow in that partition queue behind the poison.
	p := 0
	r.mu.Lock()
	if len(r.accepted) > 0 {
		p = stream.Partition(r.accepted[len(r.accepted)-1].ID, n)
	}
	r.mu.Unlock()
	key := poisonKey(p, n)
	malformed := uuid.Must(uuid.NewV7()).String()
	// An order.placed of schema version 2, whose payload v1 consumers
	// cannot read (no order_id, amount, address where they look), for an
	// order that does not exist.
	ev, err := events.New("orders", ordersapi.EventOrderPlaced, key, 2, 1, map[string]any{
		"order": map[string]any{"id": key, "customer": map[string]any{"id": "load-chaos-" + r.ID + "-poison"},
			"lines": []any{map[string]any{"sku": "POISON", "qty": 1}}, "total": map[string]any{"currency": "EUR", "minor": 1000}},
	}, time.Now())
	if err != nil {
		return fmt.Errorf("poison event: %w", err)
	}
	invalid, err := events.Marshal(ev)
	if err != nil {
		return fmt.Errorf("poison event: %w", err)
	}
	pub, err := stream.NewPublisher(js, ordersapi.Stream, n)
	if err != nil {
		return err
	}
	st.mu.Lock()
	st.key, st.partition, st.partitions, st.malformedID, st.invalidID = key, p, n, malformed, ev.ID
	st.baseDLQ, st.first, st.again = base, map[string]map[string]letterSeen{}, map[string]letterSeen{}
	st.publishedAt = time.Now()
	st.mu.Unlock()
	hdr := map[string]string{"Shopfloor-Chaos-Run": r.ID}
	a1, err := pub.Publish(ctx, stream.Message{ID: malformed, Key: key, Payload: []byte(`{"specversion":"1.0","type":"order.placed","data":{"order_id":"` + key), Headers: hdr})
	if err != nil {
		return err
	}
	a2, err := pub.Publish(ctx, stream.Message{ID: ev.ID, Key: key, Payload: invalid, Headers: hdr})
	if err != nil {
		return err
	}
	st.mu.Lock()
	st.firstDLQSeq, st.poisonSeq = last+1, max(a1.Sequence, a2.Sequence)
	st.mu.Unlock()
	r.Logf("published on ORDERS partition %d (key %s, the partition of load order %s): seq %d not JSON (event %s), seq %d order.placed schema 2 (event %s)",
		p, key, lastAccepted(r), a1.Sequence, malformed, a2.Sequence, ev.ID)
	return nil
}

func lastAccepted(r *Run) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.accepted) == 0 {
		return "(none yet)"
	}
	return r.accepted[len(r.accepted)-1].ID
}

// poisonBehind counts the load's orders accepted on the poison's
// partition after it (and at least 5s before now) and how many of them
// are final now.
func poisonBehind(ctx context.Context, r *Run, st *poisonState) {
	st.mu.Lock()
	p, n, since := st.partition, st.partitions, st.publishedAt
	st.mu.Unlock()
	cut := time.Now().Add(-5 * time.Second)
	var ids []string
	r.mu.Lock()
	for _, o := range r.accepted {
		if o.AcceptedAt.After(since) && o.AcceptedAt.Before(cut) && stream.Partition(o.ID, n) == p {
			ids = append(ids, o.ID)
		}
	}
	r.mu.Unlock()
	var others []string
	r.mu.Lock()
	for _, o := range r.accepted {
		if o.AcceptedAt.After(since) && o.AcceptedAt.Before(cut) && stream.Partition(o.ID, n) != p && len(others) < 100 {
			others = append(others, o.ID)
		}
	}
	r.mu.Unlock()
	othersFinal := 0
	for _, id := range others {
		var o ordersapi.Order
		if err := r.Sys.GetAs(ctx, target.Operator, r.Sys.Orders+"/v1/orders/"+url.PathEscape(id), &o); err == nil {
			switch o.Status {
			case ordersapi.StatusPaid, ordersapi.StatusPaymentFailed, ordersapi.StatusCancelled:
				othersFinal++
			}
		}
	}
	passed := map[string]uint64{}
	if nc, js, err := connectNATS(ctx, r.Sys, "poison-message"); err == nil {
		for _, g := range ordersGroups {
			if parts, err := groupPartitions(ctx, js, ordersapi.Stream, g.Group); err == nil && p < len(parts) {
				passed[g.Group] = parts[p].AckFloor
			}
		}
		nc.Close()
	}
	st.mu.Lock()
	st.othersTotal, st.othersFinal, st.passed = len(others), othersFinal, passed
	st.mu.Unlock()
	final := 0
	var pending []string
	for _, id := range ids {
		var o ordersapi.Order
		if err := r.Sys.GetAs(ctx, target.Operator, r.Sys.Orders+"/v1/orders/"+url.PathEscape(id), &o); err == nil {
			switch o.Status {
			case ordersapi.StatusPaid, ordersapi.StatusPaymentFailed, ordersapi.StatusCancelled:
				final++
				continue
			}
			pending = append(pending, id+" "+o.Status)
			continue
		}
		pending = append(pending, id+" unread")
	}
	st.mu.Lock()
	st.behindTotal, st.behindFinal, st.behindPending = len(ids), final, pending
	st.mu.Unlock()
}

// waitPoison polls ORDERS_DLQ until done accepts the poison's letters or
// within passes; it returns the last letters read.
func waitPoison(ctx context.Context, js jetstream.JetStream, from uint64, key string, within time.Duration, done func([]poisonLetter) bool) ([]poisonLetter, error) {
	deadline := time.Now().Add(within)
	for {
		ls, err := poisonLetters(ctx, js, from, key)
		if err == nil && done(ls) {
			return ls, nil
		}
		if time.Now().After(deadline) || !sleep(ctx, 500*time.Millisecond) {
			return ls, err
		}
	}
}

func (st *poisonState) kindOf(l poisonLetter) string {
	switch l.EventID {
	case st.malformedID:
		return "malformed"
	case st.invalidID:
		return "invalid"
	}
	return ""
}

func (st *poisonState) step(format string, args ...any) {
	st.mu.Lock()
	st.steps = append(st.steps, fmt.Sprintf(format, args...))
	st.mu.Unlock()
}

func (st *poisonState) fail(format string, args ...any) {
	st.mu.Lock()
	st.stepErrs = append(st.stepErrs, fmt.Sprintf(format, args...))
	st.mu.Unlock()
}

// poisonHeal is the operator's procedure, with the services' own CLI:
// discard the event no consumer can read (in every group, with a reason
// and who decided), redrive the malformed one in one group (it is
// published again to its partition, every group sees it and dead-letters
// it again: nothing can read it), then discard every dead letter of it;
// then check the depths and the audit logs.
func poisonHeal(ctx context.Context, r *Run, st *poisonState) error {
	st.mu.Lock()
	key, from := st.key, st.firstDLQSeq
	st.mu.Unlock()
	if key == "" || from == 0 {
		return nil // nothing was published
	}
	poisonBehind(ctx, r, st)
	nc, js, err := connectNATS(ctx, r.Sys, "poison-message")
	if err != nil {
		return err
	}
	defer nc.Close()
	st.mu.Lock()
	st.operatorRan = true
	st.mu.Unlock()
	all := func(ls []poisonLetter) bool {
		got := map[string]bool{}
		for _, l := range ls {
			got[l.Group+"/"+st.kindOf(l)] = true
		}
		for _, g := range ordersGroups {
			if !got[g.Group+"/malformed"] || !got[g.Group+"/invalid"] {
				return false
			}
		}
		return true
	}
	ls, err := waitPoison(ctx, js, from, key, 20*time.Second, all)
	if err != nil {
		st.fail("reading ORDERS_DLQ: %v", err)
	}
	st.mu.Lock()
	maxSeq := from
	for _, l := range ls {
		if st.first[l.Group] == nil {
			st.first[l.Group] = map[string]letterSeen{}
		}
		if k := st.kindOf(l); k != "" {
			st.first[l.Group][k] = l.letterSeen
		}
		maxSeq = max(maxSeq, l.Seq+1)
	}
	st.mu.Unlock()
	cmds, err := commands(r)
	if err != nil {
		st.fail("%v", err)
		return nil
	}
	actor := "chaos-" + r.ID
	want := map[string]int{}
	discard := func(g string, process string, cli []string, seq uint64, reason string) {
		args := append(append([]string(nil), cli...), "discard", strconv.FormatUint(seq, 10), "--reason", reason, "--by", actor)
		out, err := cmds.Exec(ctx, process, args...)
		if err != nil || !strings.Contains(out, "discarded") {
			st.fail("%s: discard %d: %v", g, seq, err)
			return
		}
		want[process]++
		st.step("%s discard %d", g, seq)
	}
	// 1. The order.placed nobody can read: discarded in every group.
	for _, g := range ordersGroups {
		st.mu.Lock()
		l, ok := st.first[g.Group]["invalid"]
		st.mu.Unlock()
		if ok {
			discard(g.Group, g.Process, g.CLI, l.Seq, "order.placed schema 2 for an order that does not exist: no consumer of this version reads it (chaos poison-message)")
		}
	}
	// 2. The malformed one: redriven in one group, dead-lettered again
	// by every group (a redrive reaches every group of the stream).
	var redrive struct {
		g   int
		seq uint64
	}
	for i, g := range ordersGroups {
		if g.Group == poisonRedriveGroup {
			st.mu.Lock()
			l, ok := st.first[g.Group]["malformed"]
			st.mu.Unlock()
			if ok {
				redrive.g, redrive.seq = i, l.Seq
			}
		}
	}
	st.mu.Lock()
	st.redrivenAt = time.Now()
	st.mu.Unlock()
	if redrive.seq != 0 {
		g := ordersGroups[redrive.g]
		out, err := cmds.Exec(ctx, g.Process, append(append([]string(nil), g.CLI...), "redrive", "--group", g.Group, "--seq", strconv.FormatUint(redrive.seq, 10))...)
		if err != nil || !strings.Contains(out, "1 matched, 1 redriven") {
			st.fail("%s: redrive %d: %v %s", g.Group, redrive.seq, err, lastLine(out))
		} else {
			st.mu.Lock()
			st.redriven = 1
			st.mu.Unlock()
			st.step("%s redrive %d", g.Group, redrive.seq)
		}
	}
	again := func(ls []poisonLetter) bool {
		n := 0
		for _, l := range ls {
			if st.kindOf(l) == "malformed" {
				n++
			}
		}
		return n >= len(ordersGroups)
	}
	if redrive.seq != 0 {
		ls, err := waitPoison(ctx, js, maxSeq, key, 20*time.Second, again)
		if err != nil {
			st.fail("reading ORDERS_DLQ: %v", err)
		}
		st.mu.Lock()
		for _, l := range ls {
			if st.kindOf(l) == "malformed" {
				st.again[l.Group] = l.letterSeen
			}
		}
		st.mu.Unlock()
	}
	// 3. Every dead letter of the malformed event: discarded.
	for _, g := range ordersGroups {
		st.mu.Lock()
		var seqs []uint64
		if l, ok := st.first[g.Group]["malformed"]; ok && (g.Group != poisonRedriveGroup || st.redriven != 1) {
			seqs = append(seqs, l.Seq)
		}
		if l, ok := st.again[g.Group]; ok {
			seqs = append(seqs, l.Seq)
		}
		st.mu.Unlock()
		for _, seq := range seqs {
			discard(g.Group, g.Process, g.CLI, seq, "not JSON: no consumer can read it; redriven once, dead-lettered again (chaos poison-message)")
		}
	}
	// 4. The outcome: depths back to the baseline, the audit logs.
	after, _, err := dlqDepths(ctx, js)
	if err != nil {
		st.fail("%v", err)
	}
	got := map[string]int{}
	var auditErrs []string
	for _, g := range ordersGroups {
		out, err := cmds.Exec(ctx, g.Process, "audit", "--action", "stream_dlq.discard", "--json", "--limit", "1000")
		if err != nil {
			auditErrs = append(auditErrs, fmt.Sprintf("%s: %v", g.Process, err))
			continue
		}
		got[g.Process] = countAudit(out, actor)
	}
	st.mu.Lock()
	st.dlqAfter, st.auditWant, st.auditGot, st.auditErr = after, want, got, auditErrs
	st.mu.Unlock()
	r.Logf("operator: %s", strings.Join(st.steps, ", "))
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// countAudit counts the audit entries (audit --json: one object per
// line; other lines are the command's logs) that actor recorded.
func countAudit(out, actor string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		var e struct {
			Actor  string `json:"actor"`
			Action string `json:"action"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Actor == actor && strings.HasPrefix(e.Action, "stream_dlq.discard") {
			n++
		}
	}
	return n
}

func poisonEffect(st *poisonState) invariant.Result {
	st.mu.Lock()
	defer st.mu.Unlock()
	res := invariant.Result{Invariant: effectName}
	if st.key == "" {
		res.Evidence = "nothing was published"
		return res
	}
	var parts []string
	found := 0
	for _, g := range ordersGroups {
		for _, k := range []string{"malformed", "invalid"} {
			l, ok := st.first[g.Group][k]
			if !ok {
				parts = append(parts, fmt.Sprintf("%s %s: not dead-lettered", g.Group, k))
				continue
			}
			found++
			parts = append(parts, fmt.Sprintf("%s %s: %s, %d attempt(s)", g.Group, k, l.Class, l.Attempts))
		}
	}
	res.Held = found == 2*len(ordersGroups)
	res.Evidence = fmt.Sprintf("ORDERS_DLQ holds %d of %d poison dead letters (2 events × %d groups): %s", found, 2*len(ordersGroups), len(ordersGroups), strings.Join(parts, "; "))
	return res
}

func poisonRows(st *poisonState) []invariant.Result {
	st.mu.Lock()
	defer st.mu.Unlock()
	bound := poisonBudget()
	within := invariant.Result{Invariant: "#7 each poison event is dead-lettered within its bound"}
	var worst time.Duration
	var late []string
	n := 0
	for _, g := range ordersGroups {
		for _, k := range []string{"malformed", "invalid"} {
			l, ok := st.first[g.Group][k]
			if !ok {
				late = append(late, g.Group+" "+k+" never")
				continue
			}
			n++
			d := l.DeadAt.Sub(st.publishedAt)
			worst = max(worst, d)
			if d > bound {
				late = append(late, fmt.Sprintf("%s %s after %s", g.Group, k, d.Round(100*time.Millisecond)))
			}
		}
	}
	var againWorst time.Duration
	for _, l := range st.again {
		againWorst = max(againWorst, l.DeadAt.Sub(st.redrivenAt))
	}
	within.Evidence = fmt.Sprintf("%d dead letters, the slowest %s after the publish; after the redrive every group dead-lettered the malformed event again within %s; "+
		"bound %s (service.ConsumerRetries: %d deliveries; a permanent error is dead-lettered at its first)",
		n, worst.Round(100*time.Millisecond), againWorst.Round(100*time.Millisecond), bound, service.ConsumerRetries.MaxDeliver)
	if len(late) > 0 {
		within.Evidence += "; late: " + strings.Join(late, ", ")
	}
	within.Held = n == 2*len(ordersGroups) && len(late) == 0

	flow := invariant.Result{Invariant: "#7 healthy events behind the poison keep flowing"}
	var past []string
	allPast := true
	for _, g := range ordersGroups {
		f := st.passed[g.Group]
		past = append(past, fmt.Sprintf("%s at seq %d", g.Group, f))
		allPast = allPast && f > st.poisonSeq
	}
	flow.Evidence = fmt.Sprintf("partition %d of %d (the poison's key chosen by stream.Partition to share it with the load): at the heal every group's ack floor there had to be past the poison (seq %d): %s; "+
		"%d of %d orders accepted there after the poison (up to 5s before the heal) were final at the heal, %d of %d of the other partitions",
		st.partition, st.partitions, st.poisonSeq, strings.Join(past, ", "), st.behindFinal, st.behindTotal, st.othersFinal, st.othersTotal)
	if len(st.behindPending) > 0 {
		flow.Evidence += "; not final: " + examplesOf(st.behindPending)
	}
	// The poison's partition must do as well as the others (the load's
	// own lag leaves some orders pending everywhere on a busy machine).
	ratio := func(final, total int) float64 {
		if total == 0 {
			return 1
		}
		return float64(final) / float64(total)
	}
	flow.Held = st.behindTotal > 0 && allPast && ratio(st.behindFinal, st.behindTotal) >= ratio(st.othersFinal, st.othersTotal)-0.1

	op := invariant.Result{Invariant: "operator redrive and discard with the services' CLI"}
	var bad []string
	bad = append(bad, st.stepErrs...)
	if !st.operatorRan {
		bad = append(bad, "the procedure did not run")
	}
	if st.redriven != 1 {
		bad = append(bad, "the malformed event was not redriven")
	}
	if len(st.again) != len(ordersGroups) {
		bad = append(bad, fmt.Sprintf("dead-lettered again by %d of %d groups after the redrive", len(st.again), len(ordersGroups)))
	}
	var depth []string
	for _, g := range ordersGroups {
		b, a := st.baseDLQ[g.Group], st.dlqAfter[g.Group]
		depth = append(depth, fmt.Sprintf("%s %d→%d", g.Group, b, a))
		if a != b {
			bad = append(bad, fmt.Sprintf("ORDERS_DLQ.%s holds %d, %d before", g.Group, a, b))
		}
	}
	var audit []string
	for _, g := range ordersGroups {
		audit = append(audit, fmt.Sprintf("%s %d/%d", g.Process, st.auditGot[g.Process], st.auditWant[g.Process]))
		if st.auditGot[g.Process] < st.auditWant[g.Process] || st.auditWant[g.Process] == 0 {
			bad = append(bad, fmt.Sprintf("%s: %d discards in its audit log, %d made", g.Process, st.auditGot[g.Process], st.auditWant[g.Process]))
		}
	}
	bad = append(bad, st.auditErr...)
	op.Evidence = fmt.Sprintf("%d commands (%s); dead letters per group (baseline→after): %s; audit_log discards by this run (found/made): %s",
		len(st.steps), strings.Join(st.steps, ", "), strings.Join(depth, ", "), strings.Join(audit, ", "))
	if len(bad) > 0 {
		op.Evidence += "; FAILED: " + strings.Join(bad, "; ")
	}
	op.Held = len(bad) == 0
	return []invariant.Result{within, flow, op}
}

func examplesOf(s []string) string {
	if len(s) > 3 {
		return strings.Join(s[:3], ", ") + " …"
	}
	return strings.Join(s, ", ")
}

// --- replay -----------------------------------------------------------------

// replayTargets are the groups the replay drill resets to the start of
// their streams, and the processes that run them.
var replayTargets = []struct {
	Stream, Group string
	Processes     []string
}{
	{"ORDERS", "search", []string{"search", "search-consumer-2"}},
	{"CATALOG", "search", []string{"search", "search-consumer-2"}},
	{"ORDERS", "notifications", []string{"notifications", "notifications-consumer-2"}},
}

type replayGroupState struct {
	handledBefore   float64
	messagesBefore  uint64
	deliveredBefore uint64 // the highest delivered sequence over the partitions
	reset           int    // partition consumers reset
	resetErrs       []string
}

type replayState struct {
	mu     sync.Mutex
	groups map[string]*replayGroupState // by STREAM/group
	// e-mails per order before the reset, for orders of earlier runs
	mailBefore map[string]int
	mailErr    error
	injected   bool
}

// handledBy sums handled over the processes that answer.
func handledBy(ctx context.Context, sys *target.System, processes []string, streamName, group string) float64 {
	var n float64
	for _, p := range processes {
		if v, ok := handled(ctx, sys, p, streamName, group); ok {
			n += v
		}
	}
	return n
}

// mailPerOrder counts the e-mails in the mailbox per order id (from the
// subject line).
func mailPerOrder(ctx context.Context, sys *target.System) (map[string]int, error) {
	if sys.Mail == nil {
		return nil, errors.New("no mailbox configured")
	}
	ms, err := sys.Mail.Messages(ctx, "")
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, m := range ms {
		if _, id, ok := invariant.KindOf(m.Subject); ok {
			out[id]++
		}
	}
	return out, nil
}

func replayDrill() Drill {
	states := &perRun[replayState]{}
	return Drill{
		Name:     "replay",
		Resource: "streams",
		GameDay:  true,
		Fault: "reset the consumer groups search (ORDERS, CATALOG) and notifications (ORDERS) to the start of their streams while they run " +
			"(JetStream's consumer reset of every partition consumer <group>-p<n> to sequence 1): they re-read every retained event under load",
		Proves: "consumers are replay-safe: a full replay sends no e-mail twice (#3: the inbox claim and one notification per order and kind), " +
			"and the projections equal a rebuild (#5: search's order index equals orders for every order, its product index equals `search check --stream CATALOG`'s rebuild)",
		Inject: func(ctx context.Context, r *Run) error { return replayInject(ctx, r, states.of(r)) },
		Heal: func(context.Context, *Run) error {
			return nil // nothing to undo: the groups re-read by themselves
		},
		Effect: func(r *Run) invariant.Result { return replayEffect(r, states.of(r)) },
		Probe: func(_ context.Context, r *Run) func(context.Context) []invariant.Result {
			return func(ctx context.Context) []invariant.Result { return replayRows(ctx, r, states.of(r)) }
		},
	}
}

func replayInject(ctx context.Context, r *Run, st *replayState) error {
	nc, js, err := connectNATS(ctx, r.Sys, "replay")
	if err != nil {
		return err
	}
	defer nc.Close()
	mail, merr := mailPerOrder(ctx, r.Sys)
	st.mu.Lock()
	st.groups, st.mailBefore, st.mailErr, st.injected = map[string]*replayGroupState{}, mail, merr, true
	st.mu.Unlock()
	var (
		errs   []error
		reRead uint64 // the most messages one group re-reads
	)
	for _, t := range replayTargets {
		gs := &replayGroupState{handledBefore: handledBy(ctx, r.Sys, t.Processes, t.Stream, t.Group)}
		if s, err := js.Stream(ctx, t.Stream); err == nil {
			if info, err := s.Info(ctx); err == nil {
				gs.messagesBefore = info.State.Msgs
			}
		}
		parts, err := groupPartitions(ctx, js, t.Stream, t.Group)
		if err != nil {
			errs = append(errs, err)
		}
		for _, p := range parts {
			gs.deliveredBefore = max(gs.deliveredBefore, p.Delivered)
			if p.err != nil {
				gs.resetErrs = append(gs.resetErrs, fmt.Sprintf("%s: %v", p.consumer, p.err))
				continue
			}
			if _, err := js.ResetConsumerToSequence(ctx, t.Stream, p.consumer, 1); err != nil {
				gs.resetErrs = append(gs.resetErrs, fmt.Sprintf("%s: %v", p.consumer, err))
				errs = append(errs, fmt.Errorf("reset %s/%s: %w", t.Stream, p.consumer, err))
				continue
			}
			gs.reset++
		}
		st.mu.Lock()
		st.groups[t.Stream+"/"+t.Group] = gs
		st.mu.Unlock()
		r.Logf("reset %s/%s: %d partition consumers back to the start (%d messages in the stream, delivered up to seq %d)",
			t.Stream, t.Group, gs.reset, gs.messagesBefore, gs.deliveredBefore)
		if gs.reset > 0 && gs.messagesBefore > reRead {
			reRead = gs.messagesBefore
		}
	}
	if d := replayDeadline(reRead); d > 0 {
		r.ExtendDeadline(d, fmt.Sprintf("replay re-reads up to %d retained events per group at ≥ %d/s", reRead, replayReadRate))
	}
	return errors.Join(errs...)
}

// replayReadRate is the slowest rate at which a reset group re-reads
// its stream that the deadline allows for. Measured on the 2-core CI
// machine: game-day seed 2 (live load, a Redis outage, latency, SMTP
// down) converged 236 s after its load with 82,672 events re-read
// (~350/s); 200/s leaves a margin.
const replayReadRate = 200

// replayDeadline is how much longer the run may take to converge after
// a replay of reRead events: the time to re-read them at replayReadRate.
// A replay costs work proportional to the stream's retained history, not
// to the run, so a fixed converge deadline fails on a long-lived system.
func replayDeadline(reRead uint64) time.Duration {
	return time.Duration(reRead) * time.Second / replayReadRate
}

func replayEffect(r *Run, st *replayState) invariant.Result {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := invariant.Result{Invariant: effectName, Held: true}
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.injected {
		return invariant.Result{Invariant: effectName, Evidence: "no reset was made"}
	}
	var js jetstream.JetStream
	if nc, j, err := connectNATS(ctx, r.Sys, "replay"); err == nil {
		defer nc.Close()
		js = j
	}
	var parts []string
	for _, t := range replayTargets {
		gs := st.groups[t.Stream+"/"+t.Group]
		if gs == nil {
			res.Held = false
			parts = append(parts, t.Stream+"/"+t.Group+": not reset")
			continue
		}
		var grew uint64
		if js != nil {
			if s, err := js.Stream(ctx, t.Stream); err == nil {
				if info, err := s.Info(ctx); err == nil && info.State.Msgs > gs.messagesBefore {
					grew = info.State.Msgs - gs.messagesBefore
				}
			}
		}
		handledNow := handledBy(ctx, r.Sys, t.Processes, t.Stream, t.Group)
		reread := handledNow - gs.handledBefore - float64(grew)
		ok := gs.reset > 0 && len(gs.resetErrs) == 0 && reread > 0
		res.Held = res.Held && ok
		ev := fmt.Sprintf("%s/%s: %d partitions reset from delivered seq %d to the start; handled %g since, of which %g re-read (the stream grew by %d)",
			t.Stream, t.Group, gs.reset, gs.deliveredBefore, handledNow-gs.handledBefore, reread, grew)
		if len(gs.resetErrs) > 0 {
			ev += "; reset failed: " + examplesOf(gs.resetErrs)
		}
		parts = append(parts, ev)
	}
	res.Evidence = strings.Join(parts, "; ")
	return res
}

// checkReport is what `search check` prints (indexsvc.Report's fields
// the drill reads).
type checkReport struct {
	Stream string `json:"stream"`
	Events int64  `json:"events"`
	Diff   struct {
		LiveDocuments    int64 `json:"live_documents"`
		RebuiltDocuments int64 `json:"rebuilt_documents"`
		Mismatched       int   `json:"mismatched"`
		Missing          int   `json:"missing"`
		Extra            int   `json:"extra"`
		InFlight         int   `json:"in_flight"`
	} `json:"diff"`
}

// parseCheck finds search check's report (an indented JSON document)
// among the command's log lines.
func parseCheck(out string) (checkReport, error) {
	var rep checkReport
	i := strings.Index(out, "{\n")
	if i < 0 {
		return rep, errors.New("no report in the output")
	}
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&rep); err != nil {
		return rep, fmt.Errorf("report: %w", err)
	}
	return rep, nil
}

// resentMail compares the e-mails per order before the reset with now,
// for the orders not of this run (ours): more lists those that got
// another. A count that fell is the sink's eviction (it keeps the newest
// 10,000 messages, smtpsink.Config.MaxMessages), not the replay.
func resentMail(before, now map[string]int, ours map[string]bool) (orders, mails, evicted int, more []string) {
	for id, n := range before {
		if ours[id] {
			continue
		}
		orders++
		mails += n
		switch {
		case now[id] > n:
			more = append(more, fmt.Sprintf("%s %d→%d", id, n, now[id]))
		case now[id] < n:
			evicted++
		}
	}
	sort.Strings(more)
	return orders, mails, evicted, more
}

func replayRows(ctx context.Context, r *Run, st *replayState) []invariant.Result {
	mail := invariant.Result{Invariant: "#3 the replay sent no e-mail for an earlier order"}
	ours := map[string]bool{}
	r.mu.Lock()
	for _, o := range r.accepted {
		ours[o.ID] = true
	}
	r.mu.Unlock()
	st.mu.Lock()
	before, berr := st.mailBefore, st.mailErr
	st.mu.Unlock()
	now, err := mailPerOrder(ctx, r.Sys)
	switch {
	case berr != nil || err != nil:
		mail.Evidence = fmt.Sprintf("mailbox: %v", errors.Join(berr, err))
	default:
		orders, mails, evicted, more := resentMail(before, now, ours)
		mail.Evidence = fmt.Sprintf("%d e-mails for %d orders of earlier runs before the reset, %d of those orders got another since "+
			"(%d orders' e-mails left the sink's window of the newest 10,000 meanwhile)", mails, orders, len(more), evicted)
		if len(more) > 0 {
			mail.Evidence += ": " + examplesOf(more)
		}
		mail.Held = len(more) == 0
	}

	rebuild := invariant.Result{Invariant: "#5 search's product index equals a rebuild from CATALOG"}
	cmds, err := commands(r)
	if err != nil {
		rebuild.Evidence = err.Error()
		return []invariant.Result{mail, rebuild}
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	out, xerr := cmds.Exec(cctx, "search", "check", "--stream", "CATALOG", "--timeout", "2m")
	rep, perr := parseCheck(out)
	switch {
	case perr != nil:
		rebuild.Evidence = fmt.Sprintf("search check --stream CATALOG: %v", errors.Join(xerr, perr))
	default:
		d := rep.Diff
		rebuild.Evidence = fmt.Sprintf("search check --stream CATALOG replayed %d events: %d live documents, %d rebuilt, %d mismatched, %d missing, %d extra (%d in flight)",
			rep.Events, d.LiveDocuments, d.RebuiltDocuments, d.Mismatched, d.Missing, d.Extra, d.InFlight)
		rebuild.Held = xerr == nil && d.Mismatched+d.Missing+d.Extra == 0 && d.LiveDocuments > 0
		if xerr != nil {
			rebuild.Evidence += fmt.Sprintf("; the command failed: %v", xerr)
		}
	}
	return []invariant.Result{mail, rebuild}
}
