package kafkastream_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// kafka is one test's in-process Kafka (kfake: the Kafka protocol,
// consumer groups and offsets, no JVM) with one partitioned topic.
type kafka struct {
	seeds []string
	cl    *kgo.Client
	topic string
	pub   *kafkastream.Publisher
}

// setup starts a kfake cluster for the test and creates topic "T" with
// partitions partitions and its dead-letter topic.
func setup(t testing.TB, partitions int) kafka {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	k := kafka{seeds: c.ListenAddrs(), topic: "T"}
	if k.cl, err = kgo.NewClient(kafkastream.ClientOpts(k.seeds)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.cl.Close)
	if err := kafkastream.EnsureTopic(context.Background(), k.cl, kafkastream.TopicConfig{Name: k.topic, Partitions: partitions}); err != nil {
		t.Fatalf("EnsureTopic: %v", err)
	}
	if k.pub, err = kafkastream.NewPublisher(k.cl, k.topic); err != nil {
		t.Fatal(err)
	}
	return k
}

// publish publishes msgs one after the other and fails the test on an
// error.
func (k kafka) publish(t *testing.T, msgs ...stream.Message) []stream.Ack {
	t.Helper()
	acks := make([]stream.Ack, len(msgs))
	for i, m := range msgs {
		ack, err := k.pub.Publish(context.Background(), m)
		if err != nil {
			t.Fatalf("Publish %s: %v", m.ID, err)
		}
		acks[i] = ack
	}
	return acks
}

// testGroup is a GroupConfig with timings short enough for tests.
func testGroup(topic, name string) kafkastream.GroupConfig {
	return kafkastream.GroupConfig{
		Topic:            topic,
		Name:             name,
		MaxDeliver:       5,
		Backoff:          backoff.Policy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		HandlerTimeout:   2 * time.Second,
		SessionTimeout:   time.Second,
		RebalanceTimeout: 5 * time.Second,
		LagInterval:      100 * time.Millisecond,
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// running is a Group's Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	t      *testing.T
}

// start makes a group of cfg with h and runs it until the test ends or
// stop is called.
func (k kafka) start(t *testing.T, cfg kafkastream.GroupConfig, h stream.Handler) *running {
	t.Helper()
	return k.startLogging(t, cfg, h, testLogger(t))
}

// startLogging is start with the group logging to log.
func (k kafka) startLogging(t *testing.T, cfg kafkastream.GroupConfig, h stream.Handler, log *slog.Logger) *running {
	t.Helper()
	g, err := kafkastream.NewGroup(k.seeds, cfg, h, log)
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), t: t}
	go func() { r.done <- g.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

// stop cancels Run and waits for it to return.
func (r *running) stop() {
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				r.t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			r.t.Errorf("Run did not return within 20s of its ctx ending")
		}
	})
}
