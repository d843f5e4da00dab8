package service_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestServeChecksTheStreamEngine(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env       map[string]string
		want, not []string
	}{
		{map[string]string{"STREAM_ENGINE": "rabbitmq"}, []string{`STREAM_ENGINE: "rabbitmq" is neither nats nor kafka`}, nil},
		{map[string]string{"STREAM_ENGINE": "kafka"},
			[]string{"KAFKA_BROKERS: required by the consumer role with STREAM_ENGINE=kafka"}, []string{"NATS_URL"}},
		{map[string]string{"STREAM_ENGINE": "kafka", "KAFKA_BROKERS": "kafka:9092,kafka-2"},
			[]string{`KAFKA_BROKERS: "kafka-2" is not host:port`}, []string{"NATS_URL", "required by"}},
		{map[string]string{"KAFKA_BROKERS": "kafka:9092", "NATS_URL": "nats://n:4222"},
			[]string{"KAFKA_BROKERS: set while STREAM_ENGINE is nats"}, nil},
	} {
		env := map[string]string{"DATABASE_URL": "postgres://x", "ROLES": "consumer"}
		for k, v := range c.env {
			env[k] = v
		}
		err := demoProgram(nil).Run(context.Background(), []string{"demo"}, func(k string) string { return env[k] }, io.Discard)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error lacks %q:\n%v", c.env, w, err)
			}
		}
		for _, n := range c.not {
			if err != nil && strings.Contains(err.Error(), n) {
				t.Errorf("%v: error mentions %q:\n%v", c.env, n, err)
			}
		}
	}
}

func kafkaCluster(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// TestConnectKafkaWaitsForTheOwnersTopicAndRefusesAnotherPartitionCount:
// a reader's topics are never created by it; it waits (retrying) until
// the owner has created them, and a topic with another partition count
// than configured keeps it waiting, saying why.
func TestConnectKafkaWaitsForTheOwnersTopicAndRefusesAnotherPartitionCount(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	seeds := kafkaCluster(t)
	logs := &testinfra.Buffer{}
	rt, err := service.Start(ctx, "svctest", service.Base{}, logs)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	admin, err := kgo.NewClient(kafkastream.ClientOpts(seeds)...)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)

	health := httpkit.NewHealth()
	done := make(chan error, 1)
	go func() {
		cl, err := rt.ConnectKafka(ctx, seeds, health, service.Streams{
			Own:  []stream.StreamConfig{{Name: "MINE", Partitions: 3}},
			Read: []stream.StreamConfig{{Name: "THEIRS", Partitions: 4}}})
		if err == nil {
			cl.Close()
		}
		done <- err
	}()
	testinfra.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "its owner creates it") {
			return fmt.Errorf("no log line about the missing topic yet: %s", logs)
		}
		return nil
	})
	if _, err := kafkastream.TopicPartitions(ctx, adm, "THEIRS"); err == nil {
		t.Fatal("ConnectKafka created a topic it only reads")
	}
	rec := httptest.NewRecorder()
	health.Readyz().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "kafka") {
		t.Errorf("readiness before the topics exist: %d %s, want 503 naming kafka", rec.Code, rec.Body)
	}
	// The owner creates it with another partition count: still refused.
	if err := kafkastream.EnsureTopic(ctx, admin, kafkastream.TopicConfig{Name: "THEIRS", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	testinfra.Eventually(t, 15*time.Second, func() error {
		if !strings.Contains(logs.String(), "topic THEIRS has 2 partitions, configured 4") {
			return fmt.Errorf("no log line about the partition count yet: %s", logs)
		}
		return nil
	})
	select {
	case err := <-done:
		t.Fatalf("ConnectKafka returned with a topic of another partition count: %v", err)
	default:
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("ConnectKafka succeeded with a topic of another partition count")
	}
	// Its own topic and dead-letter topic it created, with its count.
	for topic, want := range map[string]int{"MINE": 3, "MINE_DLQ": 1} {
		if n, err := kafkastream.TopicPartitions(t.Context(), adm, topic); err != nil || n != want {
			t.Errorf("topic %s: %d partitions (%v), want %d", topic, n, err, want)
		}
	}
}

// TestServeRunsTheRelayAndABatchGroupOnKafka: with STREAM_ENGINE=kafka a
// service's relay publishes its outbox to Kafka and its batch consumer
// group handles every event, with the unchanged wiring calls
// (ConnectStreams, NewRelay, NewBatchGroup); /readyz checks kafka, not
// nats; the broker's lag reader sees the group caught up.
func TestServeRunsTheRelayAndABatchGroupOnKafka(t *testing.T) {
	t.Parallel()
	seeds := kafkaCluster(t)
	db := testinfra.Postgres(t, fstest.MapFS{"00001_outbox.sql": {Data: []byte("-- +goose Up\n" +
		outbox.Schema + outbox.PositionSchema + outbox.ParkSchema + outbox.LeaseSchema + "\n-- +goose Down\nDROP TABLE outbox_leader;\nDROP TABLE outbox;\n")}})
	var (
		mu      sync.Mutex
		handled []string
		broker  *service.Broker
		wired   = make(chan struct{})
	)
	p := demoProgram(func(ctx context.Context, app *service.App, cfg *demoConfig) error {
		b, err := app.ConnectStreams(ctx, service.Streams{Own: []stream.StreamConfig{{Name: "ONE", Partitions: 3}}})
		if err != nil {
			return err
		}
		relay, err := app.NewRelay(app.Pool, b, "ONE", 3)
		if err != nil {
			return err
		}
		app.Go("relay", relay.Run)
		grp, err := app.NewBatchGroup(b, "ONE", "demo", 3, func(_ context.Context, ds []stream.Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			for _, d := range ds {
				handled = append(handled, d.Key+"/"+d.ID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		app.Go("consumer", grp.Run)
		broker = b
		close(wired)
		return nil
	})
	run := func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
		return p.Run(ctx, args, getenv, stdout)
	}
	svc := testinfra.StartService(t, run, "demo", map[string]string{"DATABASE_URL": db.URL, "ROLES": "consumer",
		"STREAM_ENGINE": "kafka", "KAFKA_BROKERS": strings.Join(seeds, ","), "LOG_LEVEL": "WARN"})
	select {
	case <-wired:
	case <-time.After(30 * time.Second):
		t.Fatal("not wired within 30s")
	}
	if broker.Engine() != service.EngineKafka {
		t.Fatalf("engine %s, want kafka", broker.Engine())
	}

	var want []string
	ob := outbox.New("ONE")
	for i := range 30 {
		ev, err := events.New("demo", "widget.changed", fmt.Sprintf("widget-%d", i%7), 1, int64(i/7+1), map[string]any{"i": i}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, ev.Subject+"/"+ev.ID)
		if err := pgx.BeginFunc(t.Context(), db.Pool, func(tx pgx.Tx) error { return ob.Publish(t.Context(), tx, ev) }); err != nil {
			t.Fatal(err)
		}
	}
	testinfra.Eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(handled) < len(want) {
			return fmt.Errorf("%d of %d events handled", len(handled), len(want))
		}
		return nil
	})
	mu.Lock()
	got := slices.Clone(handled)
	mu.Unlock()
	// Per key, in the order written (the relay's rounds and one
	// partition per key keep it).
	byKey := func(xs []string) map[string][]string {
		m := map[string][]string{}
		for _, x := range xs {
			k, id, _ := strings.Cut(x, "/")
			m[k] = append(m[k], id)
		}
		return m
	}
	wk, gk := byKey(want), byKey(got)
	for k, ids := range wk {
		if !slices.Equal(gk[k], ids) {
			t.Errorf("key %s: handled %v, want %v", k, gk[k], ids)
		}
	}

	resp, err := http.Get(svc.Admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "kafka") || strings.Contains(string(body), "nats") {
		t.Errorf("admin /readyz = %d %s, want 200 naming kafka and not nats", resp.StatusCode, body)
	}
	testinfra.Eventually(t, 15*time.Second, func() error {
		lags, err := broker.GroupLag(t.Context(), "ONE", "demo")
		if err != nil {
			return err
		}
		var n uint64
		for _, l := range lags {
			n += l.Messages
		}
		if len(lags) != 3 || n != 0 {
			return fmt.Errorf("lag %+v, want 3 partitions caught up", lags)
		}
		return nil
	})
	svc.Stop()
}

// TestDLQCommandReadsKafkasDeadLetterTopic: `<svc> dlq` with
// STREAM_ENGINE=kafka lists the topic's dead letters, names KAFKA_BROKERS
// when it is missing, and refuses a redrive (not built on Kafka).
func TestDLQCommandReadsKafkasDeadLetterTopic(t *testing.T) {
	t.Parallel()
	seeds := kafkaCluster(t)
	cl, err := kgo.NewClient(kafkastream.ClientOpts(seeds)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkastream.EnsureTopic(t.Context(), cl, kafkastream.TopicConfig{Name: "ONE", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"STREAM_ENGINE": "kafka", "KAFKA_BROKERS": strings.Join(seeds, ",")}
	getenv := func(k string) string { return env[k] }
	var out strings.Builder
	if err := service.DLQCommand(t.Context(), "demo", "ONE", []string{"list"}, getenv, &out); err != nil {
		t.Fatalf("dlq list: %v", err)
	}
	if !strings.HasPrefix(out.String(), "SEQ") {
		t.Errorf("dlq list printed %q, want the table's header", out.String())
	}
	if err := service.DLQCommand(t.Context(), "demo", "ONE", []string{"redrive", "--group", "g"}, getenv, &out); !errors.Is(err, kafkastream.ErrNotBuilt) {
		t.Errorf("dlq redrive on Kafka: %v, want ErrNotBuilt", err)
	}
	delete(env, "KAFKA_BROKERS")
	if err := service.DLQCommand(t.Context(), "demo", "ONE", []string{"list"}, getenv, &out); err == nil || !strings.Contains(err.Error(), "KAFKA_BROKERS") {
		t.Errorf("dlq without brokers: %v, want KAFKA_BROKERS named", err)
	}
}
