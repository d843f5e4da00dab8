package wmstream_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
	"github.com/shopfloor/shopfloor/pkg/stream/wmstream"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// engines are the stream engines the adapter runs on. Every adapter test
// and watermill's universal suite run once per engine, with one test body.
var engines = []struct {
	name string
	// start gives a test a broker of its own: a name prefix on the
	// shared NATS server, or an in-process Kafka (kfake) cluster.
	start func(t *testing.T) broker
}{
	{"jetstream", startJetStream},
	{"kafka", startKafka},
}

// subConfig is what a test asks of a subscriber, in neither engine's terms.
type subConfig struct {
	group      string
	partitions int // 0: the engine's default
	maxDeliver int // 0: the default budget (5)
}

// broker is one test's view of an engine.
type broker interface {
	// topic returns a topic name that belongs to the test.
	topic(base string) string
	// publisher and subscriber return the adapter on this broker with
	// test-sized timings, closed when the test ends.
	publisher(t *testing.T, partitions int) (*wmstream.Publisher, error)
	subscriber(t *testing.T, c subConfig) (*wmstream.Subscriber, error)
	// badGroup returns a subscriber whose group template the engine
	// refuses when Subscribe validates it.
	badGroup(t *testing.T) (*wmstream.Subscriber, error)
	// unconnected calls the engine's constructors without a connection
	// (nil JetStream, no seed brokers).
	unconnected() (pubErr, subErr error)
	// stored returns how many messages topic holds.
	stored(t *testing.T, topic string) int
	// deadLetters reads n dead letters of group from topic's dead-letter
	// stream or topic.
	deadLetters(t *testing.T, topic, group string, n int) []stream.DeadLetter
}

// testBackoff spaces the retries of a nacked message.
var testBackoff = backoff.Policy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}

// pubSub returns a publisher and a subscriber of c on b and fails the
// test on an error.
func pubSub(t *testing.T, b broker, c subConfig) (*wmstream.Publisher, *wmstream.Subscriber) {
	t.Helper()
	pub, err := b.publisher(t, c.partitions)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := b.subscriber(t, c)
	if err != nil {
		t.Fatal(err)
	}
	return pub, sub
}

// closeAtEnd closes pub and sub when the test ends. Some suite tests
// leave a subscriber open (TestPublishSubscribeInOrder closes its
// multiplier before subscribing); Close is idempotent.
func closeAtEnd[T interface{ Close() error }](t *testing.T) func(T, error) (T, error) {
	return func(c T, err error) (T, error) {
		if err == nil {
			t.Cleanup(func() { _ = c.Close() })
		}
		return c, err
	}
}

// jetStreamBroker is a test's prefix on the shared NATS server.
type jetStreamBroker struct{ nt *testinfra.NATSPrefix }

func startJetStream(t *testing.T) broker { return jetStreamBroker{testinfra.NATS(t)} }

func (b jetStreamBroker) topic(base string) string { return b.nt.Name(base) }

func (b jetStreamBroker) publisher(t *testing.T, partitions int) (*wmstream.Publisher, error) {
	return closeAtEnd[*wmstream.Publisher](t)(wmstream.NewPublisher(b.nt.JS, wmstream.PublisherConfig{
		Stream: stream.StreamConfig{Partitions: partitions},
	}))
}

func (b jetStreamBroker) subscriber(t *testing.T, c subConfig) (*wmstream.Subscriber, error) {
	return closeAtEnd[*wmstream.Subscriber](t)(wmstream.NewSubscriber(b.nt.JS, wmstream.SubscriberConfig{
		ConsumerGroup: c.group,
		Stream:        stream.StreamConfig{Partitions: c.partitions},
		Group: stream.GroupConfig{
			AckWait:    5 * time.Second,
			FetchWait:  200 * time.Millisecond,
			Backoff:    testBackoff,
			MaxDeliver: c.maxDeliver,
		},
	}, nil))
}

func (b jetStreamBroker) badGroup(t *testing.T) (*wmstream.Subscriber, error) {
	// A watermill message is acknowledged on its own: no batch groups.
	return closeAtEnd[*wmstream.Subscriber](t)(wmstream.NewSubscriber(b.nt.JS, wmstream.SubscriberConfig{
		ConsumerGroup: "batch", Group: stream.GroupConfig{MaxBatch: 8},
	}, nil))
}

func (jetStreamBroker) unconnected() (pubErr, subErr error) {
	_, pubErr = wmstream.NewPublisher(nil, wmstream.PublisherConfig{})
	_, subErr = wmstream.NewSubscriber(nil, wmstream.SubscriberConfig{ConsumerGroup: "g"}, nil)
	return pubErr, subErr
}

func (b jetStreamBroker) stored(t *testing.T, topic string) int {
	t.Helper()
	s, err := b.nt.JS.Stream(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return int(info.State.Msgs)
}

func (b jetStreamBroker) deadLetters(t *testing.T, topic, group string, n int) []stream.DeadLetter {
	t.Helper()
	dlq, err := stream.NewDLQ(b.nt.JS, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	var letters []stream.DeadLetter
	testinfra.Eventually(t, 10*time.Second, func() error {
		if letters, err = dlq.List(t.Context(), group, n+10); err != nil || len(letters) < n {
			return errors.Join(err, errors.New("dead letters "+strconv.Itoa(len(letters))+", want "+strconv.Itoa(n)))
		}
		return nil
	})
	return letters
}

// kafkaBroker is a test's own kfake cluster.
type kafkaBroker struct {
	seeds []string
	adm   *kadm.Client
}

// startKafka starts an in-process Kafka for the test. The group session
// floor is lowered so that tests may use short session timeouts.
func startKafka(t *testing.T) broker {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kafkaBroker{seeds: c.ListenAddrs(), adm: kadm.NewClient(cl)}
}

func (kafkaBroker) topic(base string) string { return base } // the cluster is the test's

func (b kafkaBroker) publisher(t *testing.T, partitions int) (*wmstream.Publisher, error) {
	return closeAtEnd[*wmstream.Publisher](t)(wmstream.NewKafkaPublisher(b.seeds, wmstream.KafkaPublisherConfig{
		Topic: kafkastream.TopicConfig{Partitions: partitions},
	}))
}

func (b kafkaBroker) subscriber(t *testing.T, c subConfig) (*wmstream.Subscriber, error) {
	return closeAtEnd[*wmstream.Subscriber](t)(wmstream.NewKafkaSubscriber(b.seeds, wmstream.KafkaSubscriberConfig{
		ConsumerGroup: c.group,
		Topic:         kafkastream.TopicConfig{Partitions: c.partitions},
		Group: kafkastream.GroupConfig{
			HandlerTimeout:   5 * time.Second, // AckWait's role
			SessionTimeout:   2 * time.Second,
			RebalanceTimeout: 10 * time.Second,
			CommitInterval:   200 * time.Millisecond,
			Backoff:          testBackoff,
			MaxDeliver:       c.maxDeliver,
		},
	}, nil))
}

func (b kafkaBroker) badGroup(t *testing.T) (*wmstream.Subscriber, error) {
	// A revoke waits for the handler: the rebalance must outlast it.
	return closeAtEnd[*wmstream.Subscriber](t)(wmstream.NewKafkaSubscriber(b.seeds, wmstream.KafkaSubscriberConfig{
		ConsumerGroup: "slow",
		Group:         kafkastream.GroupConfig{HandlerTimeout: time.Minute, RebalanceTimeout: time.Second},
	}, nil))
}

func (kafkaBroker) unconnected() (pubErr, subErr error) {
	_, pubErr = wmstream.NewKafkaPublisher(nil, wmstream.KafkaPublisherConfig{})
	_, subErr = wmstream.NewKafkaSubscriber(nil, wmstream.KafkaSubscriberConfig{ConsumerGroup: "g"}, nil)
	return pubErr, subErr
}

func (b kafkaBroker) stored(t *testing.T, topic string) int {
	t.Helper()
	ends, err := b.adm.ListEndOffsets(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", topic, o.Partition, o.Err)
		}
		n += int(o.Offset) // nothing is deleted in a test: the log starts at 0
	})
	return n
}

func (b kafkaBroker) deadLetters(t *testing.T, topic, group string, n int) []stream.DeadLetter {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.seeds...), kgo.ConsumeTopics(kafkastream.DLQTopic(topic)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var letters []stream.DeadLetter
	for len(letters) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d dead letters: %v", len(letters), n, ctx.Err())
		}
		for _, r := range fs.Records() {
			h := map[string]string{}
			for _, kv := range r.Headers {
				h[kv.Key] = string(kv.Value)
			}
			if h[stream.HeaderDLQGroup] != group {
				continue
			}
			attempts, _ := strconv.Atoi(h[stream.HeaderDLQAttempts])
			letters = append(letters, stream.DeadLetter{
				Group: group, EventID: h[stream.HeaderEventID], Key: h[stream.HeaderKey],
				ErrorClass: h[stream.HeaderDLQErrorClass], Error: h[stream.HeaderDLQError],
				Attempts: attempts, Payload: r.Value, Headers: h,
			})
		}
	}
	return letters
}
