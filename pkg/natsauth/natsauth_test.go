package natsauth_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/natsauth"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

var update = flag.Bool("update", false, "rewrite deploy/compose/nats/auth.conf from natsauth.Shopfloor")

// authConf is the file compose mounts and make run copies.
const authConf = "../../deploy/compose/nats/auth.conf"

func TestComposeAuthorizationIsTheMatrix(t *testing.T) {
	t.Parallel()
	want := natsauth.Shopfloor.Conf()
	if *update {
		if err := os.WriteFile(authConf, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(authConf)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s differs from natsauth.Shopfloor.Conf(); run: go test ./pkg/natsauth -run %s -update", authConf, t.Name())
	}
}

func TestShopfloorMatrixIsValid(t *testing.T) {
	t.Parallel()
	if err := natsauth.Shopfloor.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	t.Parallel()
	m := natsauth.Matrix{
		Streams: []natsauth.Stream{{Name: "A", Partitions: 2}, {Name: "B", Partitions: 0}},
		Users: []natsauth.User{
			{Name: "x", Owns: []string{"A"}, Consumes: []natsauth.Group{{Stream: "A", Name: "g"}}},
			{Name: "y", Owns: []string{"A", "C"}, Consumes: []natsauth.Group{{Stream: "A", Name: "g"}}},
			{Name: "Bad"},
		},
	}
	err := m.Validate()
	for _, want := range []string{"stream B: partitions 0", "stream A owned by both x and y", "owns undeclared stream C",
		"group g on A run by both x and y", `user "Bad"`, "stream B has no owner"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to say %q", err, want)
		}
	}
}

// broker is a private JetStream server with the Shopfloor authorization
// (the text of auth.conf) and a password per user.
type broker struct{ srv *testinfra.NATSServer }

func newBroker(t *testing.T, m natsauth.Matrix) *broker {
	t.Helper()
	return &broker{srv: testinfra.NewNATSServer(t, testinfra.NATSServerOptions{Authorization: &m})}
}

// connect returns user's connection and the permission errors the server
// sent it.
func (b *broker) connect(t *testing.T, user string) (jetstream.JetStream, <-chan error) {
	t.Helper()
	refused := make(chan error, 64)
	nc, err := b.srv.Config(user).Connect("test "+user, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case refused <- err:
		default:
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return js, refused
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// permissionError waits for the server's refusal naming subject.
func permissionError(t *testing.T, refused <-chan error, subject string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-refused:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				t.Logf("refused as expected: %v", err)
				return
			}
		case <-deadline:
			t.Fatalf("no permissions violation for %s within 5s", subject)
		}
	}
}

// withOrders is a broker on which orders (the owner) has created ORDERS,
// and orders' connection.
func withOrders(t *testing.T) (*broker, jetstream.JetStream, <-chan error) {
	t.Helper()
	b := newBroker(t, natsauth.Shopfloor)
	orders, refused := b.connect(t, "orders")
	if err := stream.EnsureStream(ctx(t), orders, stream.StreamConfig{Name: "ORDERS", Partitions: 8}); err != nil {
		t.Fatalf("orders creates its stream: %v", err)
	}
	return b, orders, refused
}

func TestForeignPublishIsRefused(t *testing.T) {
	t.Parallel()
	b, orders, _ := withOrders(t)
	c := ctx(t)
	pub, err := stream.NewPublisher(orders, "ORDERS", 8)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(c, stream.Message{ID: "e1", Key: "o1", Payload: []byte(`{}`)}); err != nil {
		t.Fatalf("orders publishes to ORDERS: %v", err)
	}

	// The server refuses the publish with an error on the connection; the
	// JetStream publish itself sees no acknowledgement and times out.
	payments, refused := b.connect(t, "payments")
	short, cancel := context.WithTimeout(c, time.Second)
	defer cancel()
	_, err = payments.Publish(short, "ORDERS.events.3", []byte(`{"type":"order.placed"}`), jetstream.WithMsgID("forged"))
	if err == nil {
		t.Fatal("payments published to ORDERS.events.3; the broker must refuse it")
	}
	permissionError(t, refused, "ORDERS.events.3")
	info, err := orders.Stream(c, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("ORDERS holds %d messages; want orders' 1 and not the forged one", n)
	}
}

func TestAGroupCannotUseAnotherServicesDurables(t *testing.T) {
	t.Parallel()
	b, orders, ordersRefused := withOrders(t)
	c := ctx(t)
	payments, _ := b.connect(t, "payments")
	runGroup(t, payments, "ORDERS", "payments", func(context.Context, stream.Delivery) error { return nil })

	// notifications running a group named payments: its consumer
	// look-up is refused, so the group never starts.
	notifications, refused := b.connect(t, "notifications")
	g, err := stream.NewGroup(notifications, stream.GroupConfig{Stream: "ORDERS", Name: "payments"},
		func(context.Context, stream.Delivery) error { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(c, 3*time.Second)
	defer cancel()
	if err := g.Run(short); err == nil && short.Err() == nil {
		t.Fatal("notifications ran payments' group")
	}
	permissionError(t, refused, "$JS.API.CONSUMER.INFO.ORDERS.payments-p0")

	s, err := notifications.Stream(c, "ORDERS")
	if err != nil {
		t.Fatalf("notifications looks up ORDERS: %v", err)
	}
	short2, cancel2 := context.WithTimeout(c, time.Second)
	defer cancel2()
	if _, err := s.CreateOrUpdateConsumer(short2, jetstream.ConsumerConfig{Durable: "payments-p3", FilterSubject: "ORDERS.events.3",
		AckPolicy: jetstream.AckExplicitPolicy}); err == nil {
		t.Fatal("notifications created payments-p3")
	}
	permissionError(t, refused, "$JS.API.CONSUMER.CREATE.ORDERS.payments-p3")

	// orders watches payments' lag (consumer info) but cannot pull.
	own, err := orders.Stream(c, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := own.Consumer(c, "payments-p0")
	if err != nil {
		t.Fatalf("orders reads payments' lag: %v", err)
	}
	batch, err := pc.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() {
		t.Fatal("orders pulled a message of payments' durable")
	}
	permissionError(t, ordersRefused, "$JS.API.CONSUMER.MSG.NEXT.ORDERS.payments-p0")
}

// runGroup runs group name on streamName with js until the test ends,
// and returns once its consumers exist.
func runGroup(t *testing.T, js jetstream.JetStream, streamName, name string, h stream.Handler) {
	t.Helper()
	g, err := stream.NewGroup(js, stream.GroupConfig{Stream: streamName, Name: name, MaxDeliver: 1, FetchWait: 200 * time.Millisecond}, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(c) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("group %s: %v", name, err)
		}
	})
	testinfra.Eventually(t, 10*time.Second, func() error {
		s, err := js.Stream(context.Background(), streamName)
		if err != nil {
			return err
		}
		_, err = s.Consumer(context.Background(), stream.ConsumerName(name, 7))
		return err
	})
}

// seen collects the keys a group handled.
type seen struct {
	mu   sync.Mutex
	keys []string
}

func (s *seen) handle(_ context.Context, d stream.Delivery) error {
	if d.Key == "poison" {
		return stream.Permanent(errors.New("poison"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, d.Key)
	return nil
}

func (s *seen) has(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.keys, key) {
		return fmt.Errorf("%s not handled yet (handled: %v)", key, s.keys)
	}
	return nil
}

func TestEveryServiceWorksWithItsOwnCredentials(t *testing.T) {
	t.Parallel()
	b := newBroker(t, natsauth.Shopfloor)
	c := ctx(t)
	js := map[string]jetstream.JetStream{}
	for _, u := range natsauth.Shopfloor.Users {
		js[u.Name], _ = b.connect(t, u.Name)
	}
	// Owners create their streams (every stream of the matrix, a
	// generated service's too); the operator's tools made the tombstone
	// bucket (a discard), which every group reads.
	owner := map[string]string{}
	for _, u := range natsauth.Shopfloor.Users {
		for _, name := range u.Owns {
			owner[name] = u.Name
			if err := stream.EnsureStream(c, js[u.Name], stream.StreamConfig{Name: name, Partitions: 8}); err != nil {
				t.Fatalf("%s creates %s: %v", u.Name, name, err)
			}
		}
	}
	if _, err := js["operator"].CreateKeyValue(c, jetstream.KeyValueConfig{Bucket: stream.DiscardedBucket("ORDERS")}); err != nil {
		t.Fatal(err)
	}
	groups := map[natsauth.Group]*seen{}
	for _, u := range natsauth.Shopfloor.Users {
		for _, g := range u.Consumes {
			groups[g] = &seen{}
			runGroup(t, js[u.Name], g.Stream, g.Name, groups[g].handle)
		}
	}
	for name, user := range owner {
		pub, err := stream.NewPublisher(js[user], name, 8)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{name + "-1", "poison"} {
			if _, err := pub.Publish(c, stream.Message{ID: name + key, Key: key, Payload: []byte(`{}`)}); err != nil {
				t.Fatalf("%s publishes %s: %v", user, name, err)
			}
		}
	}
	for g, s := range groups {
		testinfra.Eventually(t, 10*time.Second, func() error { return s.has(g.Stream + "-1") })
		dlq, err := stream.NewDLQ(js["operator"], g.Stream, nil)
		if err != nil {
			t.Fatal(err)
		}
		testinfra.Eventually(t, 10*time.Second, func() error {
			dead, err := dlq.List(c, g.Name, 10)
			if err == nil && len(dead) != 1 {
				err = fmt.Errorf("group %s on %s: %d dead letters, want the poison one", g.Name, g.Stream, len(dead))
			}
			return err
		})
	}

	// Each group's user reads the oldest unfinished message of a
	// partition, as its lag sampler does (stream.GroupLag: the age of the
	// oldest message, which the lag alerts read).
	for _, u := range natsauth.Shopfloor.Users {
		for _, g := range u.Consumes {
			s, err := js[u.Name].Stream(c, g.Stream)
			if err != nil {
				t.Fatal(err)
			}
			key := g.Stream + "-1"
			short, cancel := context.WithTimeout(c, 2*time.Second)
			m, err := s.GetMsg(short, 1, jetstream.WithGetMsgSubject(stream.SubjectForKey(g.Stream, key, 8)))
			cancel()
			if err != nil || m.Header.Get("Shopfloor-Event-Id") != g.Stream+key {
				t.Errorf("%s reads the oldest message of its group %s on %s: %v", u.Name, g.Name, g.Stream, err)
			}
		}
	}

	// A consumer binds to the stream it reads; it cannot change it.
	short, cancel := context.WithTimeout(c, time.Second)
	defer cancel()
	if err := stream.EnsureStream(short, js["payments"], stream.StreamConfig{Name: "ORDERS", Partitions: 8, MaxAge: time.Minute}); err == nil {
		t.Fatal("payments changed ORDERS' retention")
	}
}
