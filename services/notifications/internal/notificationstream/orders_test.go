package notificationstream_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/notifications/internal/email"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationstream"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationsvc"
	"github.com/shopfloor/shopfloor/services/notifications/migrations"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
	"github.com/shopfloor/shopfloor/services/notifications/smtpsink"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

type bundle struct {
	db   *testinfra.Database
	sink *smtpsink.Sink
	jobs *jobqueue.Client
	svc  *notificationsvc.Service
	log  *slog.Logger
}

// setup: notifications' database, the service, a real SMTP sink and the
// e-mail worker running until the test ends.
func setup(t *testing.T) *bundle {
	t.Helper()
	db := testinfra.Postgres(t, migrations.FS)
	sink, err := smtpsink.New(smtpsink.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	_, p, _ := net.SplitHostPort(sink.Addr())
	port, _ := strconv.Atoi(p)
	sender, err := email.NewSender(email.Config{Host: "127.0.0.1", Port: port, TLS: email.TLSNone, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	composer, err := email.NewComposer("shop@example.com")
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := jobqueue.New(db.Pool, jobqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jobs.Close)
	log := slog.New(slog.DiscardHandler)
	svc, err := notificationsvc.New(db.Pool, jobs, composer, sender, notificationsvc.Config{}, log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.CreateQueues(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := jobs.NewWorker(jobqueue.WorkerConfig{Queue: notificationsvc.EmailQueue, Concurrency: 4, VisibilityTimeout: 5 * time.Second,
		Backoff: backoff.Policy{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2}}, svc.HandleEmail)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Run(ctx); err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &bundle{db: db, sink: sink, jobs: jobs, svc: svc, log: log}
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

func envelope(t *testing.T, typ, orderID string, version int64, data any) events.Envelope {
	t.Helper()
	ev, err := events.New(ordersapi.Source, typ, orderID, 1, version, data, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func payload(t *testing.T, ev events.Envelope) []byte {
	t.Helper()
	b, err := events.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runGroup runs a consumer group until stop is called; stop waits for it.
func runGroup(t *testing.T, js stream.GroupConfig, b *bundle, ns *testinfra.NATSPrefix, h stream.Handler) (*stream.Group, func()) {
	t.Helper()
	js.Backoff = backoff.Policy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 2}
	js.FetchWait = 200 * time.Millisecond
	g, err := stream.NewGroup(ns.JS, js, h, b.log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("group %s: %v", js.Name, err)
			}
		})
	}
	t.Cleanup(stop)
	return g, stop
}

func caughtUp(ctx context.Context, g *stream.Group) error {
	lags, err := g.Lag(ctx)
	if err != nil {
		return err
	}
	for _, l := range lags {
		if l.Messages > 0 {
			return fmt.Errorf("partition %d: %d messages behind", l.Partition, l.Messages)
		}
	}
	return nil
}

// TestEveryKindOnceThroughTheStream publishes the ORDERS events of two
// orders (every kind of e-mail among them), each twice, plus events that
// are not notifications' business and poison. The consumer dies after
// applying one event and before acknowledging it; another instance of the
// group takes over. Then a rebuild (a new group from the start of the
// stream) reads everything again. Exactly one e-mail per (order, kind)
// reaches the sink, with the right recipient and content.
func TestEveryKindOnceThroughTheStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	ns := testinfra.NATS(t)
	orders := ns.Name("ORDERS")
	const partitions = 3
	if err := stream.EnsureStream(ctx, ns.JS, stream.StreamConfig{Name: orders, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	pub, err := stream.NewPublisher(ns.JS, orders, partitions)
	if err != nil {
		t.Fatal(err)
	}
	a, c := newID(), newID()
	evs := []events.Envelope{
		envelope(t, ordersapi.EventOrderPlaced, a, 1, ordersapi.OrderPlaced{OrderID: a, CustomerID: "cust-a", CustomerEmail: "ada@example.com", Currency: "EUR", TotalMinor: 4200, Version: 1,
			Items: []ordersapi.Line{{SKU: "MUG-1", Name: "Mug", Quantity: 2, UnitPriceMinor: 2100}}}),
		envelope(t, ordersapi.EventOrderPaid, a, 2, ordersapi.OrderStatusChanged{OrderID: a, CustomerID: "cust-a", CustomerEmail: "ada@example.com", Status: ordersapi.StatusPaid, Version: 2, Currency: "EUR", TotalMinor: 4200}),
		envelope(t, ordersapi.EventOrderRefundRequired, a, 3, ordersapi.RefundRequired{OrderID: a, PaymentID: newID(), AmountMinor: 4200, Currency: "EUR"}),
		envelope(t, ordersapi.EventOrderCancelled, a, 4, ordersapi.OrderStatusChanged{OrderID: a, CustomerID: "cust-a", CustomerEmail: "ada@example.com", Status: ordersapi.StatusCancelled, Version: 4, Currency: "EUR", TotalMinor: 4200, Reason: "customer"}),
		envelope(t, ordersapi.EventOrderPlaced, c, 1, ordersapi.OrderPlaced{OrderID: c, CustomerEmail: "cy@example.com", Currency: "USD", TotalMinor: 999, Version: 1}),
		envelope(t, ordersapi.EventOrderPaymentFailed, c, 2, ordersapi.OrderStatusChanged{OrderID: c, CustomerEmail: "cy@example.com", Status: ordersapi.StatusPaymentFailed, Version: 2, Currency: "USD", TotalMinor: 999, Reason: "card_declined"}),
		envelope(t, ordersapi.EventOrderCancelled, c, 3, ordersapi.OrderStatusChanged{OrderID: c, Status: ordersapi.StatusCancelled, Version: 3, Currency: "USD", TotalMinor: 999}), // no address: poison
	}
	crashOn := evs[1].ID // order.paid of a
	for _, ev := range evs {
		// Twice: the second copy has another broker message id, as a
		// re-publish after the broker's dedup window would.
		for i, id := range []string{ev.ID, ev.ID + "-again"} {
			if _, err := pub.Publish(ctx, stream.Message{ID: id, Key: ev.Subject, Payload: payload(t, ev)}); err != nil {
				t.Fatalf("publish %s copy %d: %v", ev.Type, i, err)
			}
		}
	}
	if _, err := pub.Publish(ctx, stream.Message{ID: newID(), Key: a, Payload: []byte("not an event")}); err != nil {
		t.Fatal(err)
	}

	h := &notificationstream.Orders{Pool: b.db.Pool, Applier: b.svc, Log: b.log}
	// The first instance applies order.paid, then dies before the ack.
	var crashed atomic.Bool
	crash := make(chan struct{})
	_, stop1 := runGroup(t, stream.GroupConfig{Stream: orders, Name: notificationstream.Group, Partitions: partitions}, b, ns,
		func(ctx context.Context, d stream.Delivery) error {
			if err := h.Handle(ctx, d); err != nil {
				return err
			}
			if ev, err := events.Unmarshal(d.Payload); err == nil && ev.ID == crashOn && crashed.CompareAndSwap(false, true) {
				close(crash)
				return errors.New("consumer died after its commit, before the ack")
			}
			return nil
		})
	<-crash
	stop1()
	// Another instance of the group takes over and finishes; it gets the
	// applied-but-unacknowledged event again.
	var redelivered atomic.Bool
	g2, stop2 := runGroup(t, stream.GroupConfig{Stream: orders, Name: notificationstream.Group, Partitions: partitions}, b, ns,
		func(ctx context.Context, d stream.Delivery) error {
			if ev, err := events.Unmarshal(d.Payload); err == nil && ev.ID == crashOn && d.ID == crashOn && d.NumDelivered > 1 {
				redelivered.Store(true)
			}
			return h.Handle(ctx, d)
		})
	testinfra.Eventually(t, 30*time.Second, func() error { return caughtUp(ctx, g2) })
	stop2()

	wantSent := map[string]map[string]string{ // order → kind → recipient
		a: {notificationsapi.KindOrderReceived: "ada@example.com", notificationsapi.KindReceipt: "ada@example.com", notificationsapi.KindCancelled: "ada@example.com"},
		c: {notificationsapi.KindOrderReceived: "cy@example.com", notificationsapi.KindPaymentFailed: "cy@example.com"},
	}
	check := func(phase string) {
		t.Helper()
		testinfra.Eventually(t, 30*time.Second, func() error {
			if st := b.sink.Stats(); st.Messages != 5 {
				return fmt.Errorf("%s: sink has %d messages, want 5", phase, st.Messages)
			}
			return nil
		})
		st := b.sink.Stats()
		if st.DistinctMessageIDs != 5 || len(st.Duplicates) != 0 {
			t.Fatalf("%s: sink %+v", phase, st)
		}
		for orderID, kinds := range wantSent {
			list, err := b.svc.ListByOrder(ctx, orderID, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != len(kinds) {
				t.Fatalf("%s: order %s has %d notifications, want %d", phase, orderID, len(list), len(kinds))
			}
			for _, n := range list {
				var got []smtpsink.Message
				testinfra.Eventually(t, 30*time.Second, func() error {
					got = nil
					for _, m := range b.sink.Messages(kinds[n.Kind]) {
						if m.MessageID == n.MessageID() {
							got = append(got, m)
						}
					}
					if len(got) != 1 {
						return fmt.Errorf("%s: %d e-mails for %s of %s", phase, len(got), n.Kind, orderID)
					}
					return nil
				})
				amount := map[string]string{a: "42.00 EUR", c: "9.99 USD"}[orderID]
				m := got[0]
				// a's events carry its customer, c's none (visible to operators only).
				customer := map[string]string{a: "cust-a"}[orderID]
				if n.CustomerID != customer || n.Recipient != kinds[n.Kind] || m.To[0] != kinds[n.Kind] || !strings.Contains(m.Subject, orderID) ||
					!strings.Contains(m.Text, orderID) || !strings.Contains(m.Text, amount) || !strings.Contains(m.HTML, amount) {
					t.Errorf("%s: %s of %s: %+v; e-mail %q\n%s", phase, n.Kind, orderID, n, m.Subject, m.Text)
				}
			}
		}
	}
	check("after duplicates and a crash")
	if !crashed.Load() || !redelivered.Load() {
		t.Fatalf("crash simulated: %v; event redelivered after it: %v", crashed.Load(), redelivered.Load())
	}

	// Poison went to the dead-letter stream; nothing blocked.
	dlq, err := stream.NewDLQ(ns.JS, orders, b.log)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := dlq.List(ctx, notificationstream.Group, 10)
	if err != nil {
		t.Fatal(err)
	}
	classes := map[string]int{}
	for _, d := range dead {
		classes[d.ErrorClass]++
	}
	if len(dead) != 3 || classes["permanent"] != 3 { // the event without address (twice) and the unreadable one
		t.Fatalf("dead letters: %+v", dead)
	}

	// A rebuild: a new group reads the whole stream again.
	const rebuild = "notifications-rebuild"
	h2 := &notificationstream.Orders{Pool: b.db.Pool, Applier: b.svc, Group: rebuild, Log: b.log}
	g3, stop3 := runGroup(t, stream.GroupConfig{Stream: orders, Name: rebuild, Partitions: partitions}, b, ns, h2.Handle)
	testinfra.Eventually(t, 30*time.Second, func() error { return caughtUp(ctx, g3) })
	stop3()
	var claimed, queued int
	if err := b.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM inbox WHERE group_name = $1),
		(SELECT count(*) FROM jobqueue_messages WHERE queue = 'emails')`, rebuild).Scan(&claimed, &queued); err != nil {
		t.Fatal(err)
	}
	if claimed != 5 || queued != 0 {
		t.Fatalf("rebuild claimed %d events (want 5) and left %d e-mail jobs (want 0)", claimed, queued)
	}
	check("after a rebuild")
}

// TestPoisonAndOtherEvents: what cannot become an e-mail is poison
// (stream.Permanent) and writes nothing; event types that send nothing are
// acknowledged untouched.
func TestPoisonAndOtherEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	h := &notificationstream.Orders{Pool: b.db.Pool, Applier: b.svc, Log: b.log}
	o := newID()
	deliver := func(ev events.Envelope) stream.Delivery {
		return stream.Delivery{ID: ev.ID, Key: o, Payload: payload(t, ev), NumDelivered: 1}
	}
	for name, d := range map[string]stream.Delivery{
		"unreadable":    {ID: "x", Key: o, Payload: []byte("{nope")},
		"missing email": deliver(envelope(t, ordersapi.EventOrderPlaced, o, 1, ordersapi.OrderPlaced{OrderID: o, Currency: "EUR", TotalMinor: 100})),
		"bad email":     deliver(envelope(t, ordersapi.EventOrderPaid, o, 2, ordersapi.OrderStatusChanged{OrderID: o, CustomerEmail: "ada at example", Currency: "EUR"})),
		"bad order id":  deliver(envelope(t, ordersapi.EventOrderCancelled, o, 2, ordersapi.OrderStatusChanged{OrderID: "42", CustomerEmail: "ada@example.com", Currency: "EUR"})),
		"wrong type":    deliver(envelope(t, ordersapi.EventOrderPaymentFailed, o, 2, map[string]any{"order_id": o, "customer_email": "ada@example.com", "total_minor": "12"})),
		// A valid v1 payload as schemaversion 2, which this build does not
		// know: refused, not read as v1 (events.Readable).
		"schema v2": deliver(func() events.Envelope {
			ev := envelope(t, ordersapi.EventOrderPaid, o, 2, ordersapi.OrderStatusChanged{OrderID: o, CustomerEmail: "ada@example.com",
				Status: ordersapi.StatusPaid, Currency: "EUR", TotalMinor: 100})
			ev.SchemaVersion = 2
			return ev
		}()),
	} {
		if err := h.Handle(ctx, d); !stream.IsPermanent(err) {
			t.Errorf("%s: err = %v, want permanent", name, err)
		}
	}
	for name, ev := range map[string]events.Envelope{
		"refund required": envelope(t, ordersapi.EventOrderRefundRequired, o, 3, ordersapi.RefundRequired{OrderID: o}),
		"a newer type":    envelope(t, "order.shipped", o, 4, map[string]string{"order_id": o}),
	} {
		if err := h.Handle(ctx, deliver(ev)); err != nil {
			t.Errorf("%s: %v, want acknowledged", name, err)
		}
	}
	var rows int
	if err := b.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM inbox) + (SELECT count(*) FROM notifications) + (SELECT count(*) FROM jobqueue_messages)`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%d rows written (%v)", rows, err)
	}
}

// TestBatchesCommitOnceAndSendEachEmailOnce runs the handler as the
// service does, in a batch group (HandleBatch): 30 orders placed and paid
// wait in two partitions, one of them with a poison event in the middle
// and every event of three orders published twice. Each e-mail goes out
// once, the poison alone is dead-lettered, and the batches commit many
// events per transaction (the inbox claims of a batch share one
// transaction id).
func TestBatchesCommitOnceAndSendEachEmailOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	ns := testinfra.NATS(t)
	orders := ns.Name("ORDERS")
	const partitions, n = 2, 30
	if err := stream.EnsureStream(ctx, ns.JS, stream.StreamConfig{Name: orders, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	pub, err := stream.NewPublisher(ns.JS, orders, partitions)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(id, key string, body []byte) {
		t.Helper()
		if _, err := pub.Publish(ctx, stream.Message{ID: id, Key: key, Payload: body}); err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
	}
	for i := range n {
		o := newID()
		email := fmt.Sprintf("c%d@example.com", i)
		evs := []events.Envelope{
			envelope(t, ordersapi.EventOrderPlaced, o, 1, ordersapi.OrderPlaced{OrderID: o, CustomerEmail: email, Currency: "EUR", TotalMinor: 100, Version: 1}),
			envelope(t, ordersapi.EventOrderPaid, o, 2, ordersapi.OrderStatusChanged{OrderID: o, CustomerEmail: email, Status: ordersapi.StatusPaid, Version: 2, Currency: "EUR", TotalMinor: 100}),
		}
		for _, ev := range evs {
			publish(ev.ID, o, payload(t, ev))
			if i%10 == 3 { // a re-publish after the dedup window: another broker id
				publish(ev.ID+"-again", o, payload(t, ev))
			}
		}
		if i == n/2 {
			publish(newID(), o, []byte("not an event"))
		}
	}

	h := &notificationstream.Orders{Pool: b.db.Pool, Applier: b.svc, Log: b.log}
	var calls, most atomic.Int64
	g, err := stream.NewBatchGroup(ns.JS, stream.GroupConfig{Stream: orders, Name: notificationstream.Group, Partitions: partitions,
		MaxBatch: 16, FetchWait: 200 * time.Millisecond, Backoff: backoff.Policy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}},
		func(ctx context.Context, ds []stream.Delivery) error {
			calls.Add(1)
			if k := int64(len(ds)); k > most.Load() {
				most.Store(k)
			}
			return h.HandleBatch(ctx, ds)
		}, b.log)
	if err != nil {
		t.Fatal(err)
	}
	gctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx) }()
	testinfra.Eventually(t, 60*time.Second, func() error { return caughtUp(ctx, g) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("group: %v", err)
	}

	testinfra.Eventually(t, 60*time.Second, func() error {
		if st := b.sink.Stats(); st.Messages != 2*n {
			return fmt.Errorf("sink has %d messages, want %d", st.Messages, 2*n)
		}
		return nil
	})
	if st := b.sink.Stats(); st.DistinctMessageIDs != 2*n || len(st.Duplicates) != 0 {
		t.Fatalf("sink %+v", st)
	}
	dlq, err := stream.NewDLQ(ns.JS, orders, b.log)
	if err != nil {
		t.Fatal(err)
	}
	if dead, err := dlq.List(ctx, notificationstream.Group, 10); err != nil || len(dead) != 1 || dead[0].ErrorClass != "permanent" {
		t.Fatalf("dead letters: %+v, %v; want the one unreadable event", dead, err)
	}
	var claims, txs int
	if err := b.db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT xmin::text) FROM inbox WHERE group_name = $1`,
		notificationstream.Group).Scan(&claims, &txs); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d claims in %d transactions; %d handler calls, the largest of %d events", claims, txs, calls.Load(), most.Load())
	if claims != 2*n {
		t.Errorf("inbox holds %d claims, want %d", claims, 2*n)
	}
	// One transaction per claim without batching (60). With batches of
	// up to 16 it is a handful, plus the poison's batch handed again one
	// message at a time (up to 16 singles); a starved CPU makes the pulls,
	// and so the batches, smaller (19 seen under a full CI run's load).
	if txs > claims/2 {
		t.Errorf("%d claims took %d transactions: the batches did not commit together", claims, txs)
	}
}
