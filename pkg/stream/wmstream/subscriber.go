package wmstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/stream"
)

// SubscriberConfig configures a Subscriber.
type SubscriberConfig struct {
	// ConsumerGroup is the pkg/stream group that every Subscribe runs:
	// the consuming service, e.g. "search". Required; letters, digits,
	// '_' and '-'. Subscribers of one group share a topic's messages; each
	// group gets all of them.
	ConsumerGroup string
	// Stream configures the stream of a topic that does not exist yet,
	// created by Subscribe or SubscribeInitialize as by
	// PublisherConfig.Stream, so that a consumer may start first. Use the
	// same value as the publishers'.
	Stream stream.StreamConfig
	// Group is the template of the group each Subscribe runs: retry budget
	// (MaxDeliver), Backoff, AckWait, HandlerTimeout, FetchWait, Deliver,
	// Extract, Tracer, Registerer. Stream and Name are set by Subscribe
	// (the topic and ConsumerGroup) and Partitions from Stream.Partitions.
	// MaxBatch above 1 is refused: a watermill message is acknowledged on
	// its own. HandlerTimeout bounds the time from the broker's delivery
	// to Ack or Nack, including the time the message waits for a reader of
	// the channel.
	Group stream.GroupConfig
}

// Subscriber is a watermill message.Subscriber over the consumer groups of
// pkg/stream's JetStream engine (NewSubscriber) or its Kafka engine
// (NewKafkaSubscriber). It is safe for concurrent use.
type Subscriber struct {
	engine backend
	group  string // consumer group name
	log    *slog.Logger

	mu      sync.Mutex
	closed  bool
	closing chan struct{}  // closed by Close
	running sync.WaitGroup // one per subscription
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// NewSubscriber returns a subscriber on js. A nil logger discards logs.
// Nothing is created on the broker until Subscribe; the group
// configuration is validated there, by pkg/stream.
func NewSubscriber(js jetstream.JetStream, cfg SubscriberConfig, logger *slog.Logger) (*Subscriber, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: wmstream subscriber: nil JetStream", stream.ErrInvalid)
	}
	if cfg.ConsumerGroup == "" {
		return nil, fmt.Errorf("%w: wmstream subscriber: ConsumerGroup is required", stream.ErrInvalid)
	}
	if err := checkTemplate(cfg.Stream.Partitions); err != nil {
		return nil, err
	}
	return newSubscriber(jetStreamBackend{js: js, tmpl: cfg.Stream, gtmpl: cfg.Group}, cfg.ConsumerGroup, logger), nil
}

func newSubscriber(b backend, group string, logger *slog.Logger) *Subscriber {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Subscriber{engine: b, group: group, log: logger, closing: make(chan struct{})}
}

// errNacked is the handler's error for a message the reader nacked: the
// group retries it after a backoff, within its retry budget.
var errNacked = errors.New("wmstream: message nacked")

// Subscribe runs the consumer group on the stream (Kafka: topic) named
// topic, creating it if it does not exist, and returns its messages. The
// group's consumers are created in the background, after Subscribe
// returns; a group that does not exist yet starts at the group template's
// Deliver (default: the oldest retained message). With stream.DeliverNew,
// messages published before those consumers exist are not delivered to the
// new group.
//
// Each message is one delivery: UUID = event ID, Payload, Metadata = the
// message's headers (its metadata as published, plus Shopfloor-Event-Id,
// Shopfloor-Key and on JetStream Nats-Msg-Id). Its Context ends when it is
// acknowledged or nacked, when the delivery's time is up (HandlerTimeout)
// or when the subscription stops; it carries the trace extracted by the
// group template's Extract. Ack: acknowledged (JetStream: with
// confirmation; Kafka: the offset is committed within CommitInterval).
// Nack: delivered again after the template's Backoff; after MaxDeliver
// failed deliveries the message is moved to the dead-letter stream or
// topic "<topic>_DLQ" instead. No Ack or Nack within HandlerTimeout
// counts as a failed delivery.
//
// A partition's next message is delivered only after its current one is
// settled, across all subscribers of the group. The channel closes when ctx
// ends or Close is called, after every delivered message is settled or
// handed back to the broker (JetStream: at most FetchWait plus a few
// seconds; Kafka: once the member has committed and left the group).
// A set-up error that a retry may fix (broker unreachable) is logged and
// retried with backoff; a configuration error closes the channel after
// logging.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("subscribe to %s: %w", topic, ErrClosed)
	}
	s.running.Add(1)
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.closing:
		case <-ctx.Done():
		}
		cancel()
	}()
	fail := func(err error) (<-chan *message.Message, error) {
		cancel()
		s.running.Done()
		return nil, fmt.Errorf("subscribe to %s: %w", topic, err)
	}

	out := make(chan *message.Message)
	g, err := s.engine.group(topic, s.group, handler(ctx, out), s.log)
	if err != nil {
		return fail(err)
	}
	if _, err := s.engine.ensure(ctx, topic); err != nil {
		return fail(err)
	}
	go func() {
		defer s.running.Done()
		defer close(out)
		defer cancel()
		s.run(ctx, g, topic)
	}()
	return out, nil
}

// setupRetry spaces the attempts to start a group whose set-up failed.
var setupRetry = backoff.Policy{Initial: 500 * time.Millisecond, Max: 30 * time.Second}

// run runs g until ctx ends, retrying a set-up that failed for a reason
// other than the configuration.
func (s *Subscriber) run(ctx context.Context, g groupRunner, topic string) {
	log := s.log.With("topic", topic, "group", s.group)
	for attempt := 1; ; attempt++ {
		err := g.Run(ctx)
		switch {
		case err == nil:
			return // ctx ended
		case errors.Is(err, stream.ErrInvalid), errors.Is(err, stream.ErrPartitionsChanged):
			log.ErrorContext(ctx, "consumer group cannot start; closing the subscription", "error", err)
			return
		}
		log.WarnContext(ctx, "consumer group set-up failed; retrying", "attempt", attempt, "error", err)
		if setupRetry.Sleep(ctx, attempt) != nil {
			return
		}
		if _, err := s.engine.ensure(ctx, topic); err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, "topic set-up failed", "error", err)
		}
	}
}

// handler hands each delivery to out as a watermill message and waits for
// the reader's verdict, or until the subscription (subCtx) stops: then the
// message is handed back at once. An engine may give a running handler
// time to finish after its group stops (Kafka: HandlerTimeout); a message
// that waits for a reader, or a reader that Close interrupts, needs none.
func handler(subCtx context.Context, out chan<- *message.Message) stream.Handler {
	return func(ctx context.Context, d stream.Delivery) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // the message's Context ends with its delivery
		stop := context.AfterFunc(subCtx, cancel)
		defer stop()
		msg := message.NewMessage(d.ID, d.Payload)
		msg.Metadata = d.Headers
		msg.SetContext(ctx)

		if ctx.Err() != nil {
			return fmt.Errorf("deliver %s: %w", d.ID, ctx.Err())
		}
		select {
		case out <- msg:
		case <-ctx.Done():
			return fmt.Errorf("deliver %s: no reader: %w", d.ID, ctx.Err())
		}
		select {
		case <-msg.Acked():
			return nil
		case <-msg.Nacked():
			return fmt.Errorf("%s: %w", d.ID, errNacked)
		case <-ctx.Done():
			// An Ack that raced with the end of the delivery still counts.
			select {
			case <-msg.Acked():
				return nil
			default:
				return fmt.Errorf("%s: neither acked nor nacked: %w", d.ID, ctx.Err())
			}
		}
	}
}

// SubscribeInitialize creates the stream of topic if it does not exist, so
// that publishers and subscribers can start in any order. Subscribe does
// it too.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.engine.ensure(ctx, topic)
	return err
}

// Close stops every subscription of s and waits until their channels are
// closed: every delivered message that was not acknowledged by then is
// handed back to the broker for another subscriber. Later Subscribe calls
// fail with ErrClosed. On JetStream the NATS connection belongs to the
// caller and stays open; on Kafka the subscriber's admin client is closed
// (each group's own client closes when its subscription stops). Close is
// idempotent.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	first := !s.closed
	if first {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.running.Wait()
	if first {
		s.engine.close()
	}
	return nil
}
