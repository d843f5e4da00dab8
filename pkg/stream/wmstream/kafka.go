package wmstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
)

// KafkaPublisherConfig configures a Publisher on Kafka. The zero value is
// usable.
type KafkaPublisherConfig struct {
	// Topic configures a topic that does not exist yet, created with its
	// dead-letter topic "<topic>_DLQ" on the topic's first Publish
	// (kafkastream.EnsureTopic). Name is ignored (the topic is the name);
	// zero fields take kafkastream's defaults (8 partitions, the broker's
	// replication factor, 1 dead-letter partition). A topic that exists is
	// used as it is; only Partitions, when set, must match it (else
	// Publish fails with stream.ErrPartitionsChanged).
	Topic kafkastream.TopicConfig
	// Options are passed to each topic's kafkastream.Publisher, e.g.
	// kafkastream.WithInject.
	Options []kafkastream.PublisherOption
	// ClientOpts are added to the publisher's client after
	// kafkastream.ClientOpts (TLS, SASL, a logger). Do not replace the
	// partitioner: it makes a key's partition the same on both engines.
	ClientOpts []kgo.Opt
	// Timeout bounds one message's publish when msg.Context() has no
	// deadline (franz-go itself waits for the brokers without limit).
	// Default 5s, as pkg/stream's JetStream publisher.
	Timeout time.Duration
}

// KafkaSubscriberConfig configures a Subscriber on Kafka.
type KafkaSubscriberConfig struct {
	// ConsumerGroup is the Kafka group.id every Subscribe runs: the
	// consuming service, e.g. "search". Required; letters, digits, '_'
	// and '-'. Subscribers of one group share a topic's partitions; each
	// group gets all messages.
	ConsumerGroup string
	// Topic configures a topic that does not exist yet, created by
	// Subscribe or SubscribeInitialize as by KafkaPublisherConfig.Topic,
	// so that a consumer may start first. Use the same value as the
	// publishers'.
	Topic kafkastream.TopicConfig
	// Group is the template of the group each Subscribe runs: retry budget
	// (MaxDeliver), Backoff, HandlerTimeout, SessionTimeout,
	// RebalanceTimeout, CommitInterval, Deliver, Extract, Tracer,
	// Registerer, ClientOpts (also used by the subscriber's admin
	// client). Topic and Name are set by Subscribe (the topic and
	// ConsumerGroup) and Partitions from Topic.Partitions. HandlerTimeout
	// bounds the time from the delivery to Ack or Nack, including the time
	// the message waits for a reader of the channel.
	Group kafkastream.GroupConfig
}

// NewKafkaPublisher returns a publisher to the Kafka cluster at seeds,
// with a client of its own (kafkastream.ClientOpts: acks=all, the
// idempotent producer, pkg/stream's partitioner) that Close closes.
// Nothing is contacted until the first Publish.
//
// Differences from NewPublisher's JetStream: there is no broker-side
// de-duplication by UUID, so a message published twice is stored twice
// (consumers drop the copy by event ID, pkg/inbox); metadata travels as
// Kafka record headers, which take any key and value.
func NewKafkaPublisher(seeds []string, cfg KafkaPublisherConfig) (*Publisher, error) {
	if len(seeds) == 0 {
		return nil, fmt.Errorf("%w: wmstream kafka publisher: no seed brokers", stream.ErrInvalid)
	}
	if err := checkTemplate(cfg.Topic.Partitions); err != nil {
		return nil, err
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("%w: wmstream kafka publisher: negative Timeout %s", stream.ErrInvalid, cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	cl, err := kgo.NewClient(append(kafkastream.ClientOpts(seeds), cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("wmstream kafka publisher: client: %w", err)
	}
	return newPublisher(kafkaBackend{cl: cl, tmpl: cfg.Topic, options: cfg.Options, timeout: cfg.Timeout}), nil
}

// NewKafkaSubscriber returns a subscriber of the Kafka cluster at seeds. A
// nil logger discards logs. Nothing is contacted until Subscribe; the
// group configuration is validated there, by kafkastream.NewGroup. Each
// Subscribe runs a kafkastream.Group with a client of its own; an admin
// client, closed by Close, creates topics.
//
// Differences from NewSubscriber's JetStream: a received message's
// metadata holds Shopfloor-Event-Id and Shopfloor-Key but no Nats-Msg-Id;
// the retry budget counts deliveries in this process (a message that
// comes back after a rebalance or crash starts again at 1); a stopped
// member hands its partitions to the others through a rebalance; Close
// commits the offsets of the acknowledged messages.
func NewKafkaSubscriber(seeds []string, cfg KafkaSubscriberConfig, logger *slog.Logger) (*Subscriber, error) {
	if len(seeds) == 0 {
		return nil, fmt.Errorf("%w: wmstream kafka subscriber: no seed brokers", stream.ErrInvalid)
	}
	if cfg.ConsumerGroup == "" {
		return nil, fmt.Errorf("%w: wmstream kafka subscriber: ConsumerGroup is required", stream.ErrInvalid)
	}
	if err := checkTemplate(cfg.Topic.Partitions); err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(kafkastream.ClientOpts(seeds), cfg.Group.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("wmstream kafka subscriber: client: %w", err)
	}
	return newSubscriber(kafkaBackend{seeds: seeds, cl: cl, tmpl: cfg.Topic, gtmpl: cfg.Group}, cfg.ConsumerGroup, logger), nil
}

// kafkaBackend is pkg/stream/kafka (franz-go).
type kafkaBackend struct {
	seeds   []string                      // subscribers: each group's own client
	cl      *kgo.Client                   // owned: topics, and publishes
	tmpl    kafkastream.TopicConfig       // topics created on first use
	options []kafkastream.PublisherOption // publishers
	timeout time.Duration                 // publishes without a deadline
	gtmpl   kafkastream.GroupConfig       // subscribers' template
}

var _ backend = kafkaBackend{}

// ensure creates what is missing of the topic and its dead-letter topic
// (a consumer group refuses to start without both) and leaves what exists
// as it is. It creates before it asks: franz-go caches a metadata answer
// for a while (kgo.MetadataMinAge), so asking about a topic before
// creating it would keep answering "unknown topic".
func (b kafkaBackend) ensure(ctx context.Context, topic string) (int, error) {
	adm := kadm.NewClient(b.cl)
	cfg := b.tmpl
	cfg.Name = topic
	err := kafkastream.EnsureTopic(ctx, b.cl, cfg)
	if b.tmpl.Partitions == 0 && errors.Is(err, stream.ErrPartitionsChanged) {
		// The topics exist with other counts than the defaults: take
		// them as they are, and create the one that may be missing.
		if cfg.Partitions, err = kafkastream.TopicPartitions(ctx, adm, topic); err == nil {
			if n, err := kafkastream.TopicPartitions(ctx, adm, kafkastream.DLQTopic(topic)); err == nil && cfg.DLQPartitions == 0 {
				cfg.DLQPartitions = n
			}
			err = kafkastream.EnsureTopic(ctx, b.cl, cfg)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("topic %s: %w", topic, err)
	}
	n, err := kafkastream.TopicPartitions(ctx, adm, topic)
	if err != nil {
		return 0, fmt.Errorf("topic %s: %w", topic, err)
	}
	return n, checkPartitions(topic, n, b.tmpl.Partitions)
}

func (b kafkaBackend) publisher(topic string, _ int) (topicPublisher, error) {
	p, err := kafkastream.NewPublisher(b.cl, topic, b.options...)
	if err != nil {
		return nil, err
	}
	return timeoutPublisher{p, b.timeout}, nil
}

func (b kafkaBackend) group(topic, name string, h stream.Handler, log *slog.Logger) (groupRunner, error) {
	cfg := b.gtmpl
	cfg.Topic, cfg.Name, cfg.Partitions = topic, name, b.tmpl.Partitions
	return kafkastream.NewGroup(b.seeds, cfg, h, log)
}

func (b kafkaBackend) close() { b.cl.Close() }

// timeoutPublisher bounds a publish whose ctx has no deadline.
type timeoutPublisher struct {
	p       *kafkastream.Publisher
	timeout time.Duration
}

func (t timeoutPublisher) Publish(ctx context.Context, m stream.Message) (stream.Ack, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.timeout)
		defer cancel()
	}
	return t.p.Publish(ctx, m)
}
