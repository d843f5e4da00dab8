package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
)

// The stream engines a process may run on (STREAM_ENGINE; ADR 0046).
const (
	EngineNATS  = "nats"
	EngineKafka = "kafka"
)

// StreamEngine chooses the engine of the streams (ADR 0046): NATS
// JetStream (STREAM_ENGINE=nats, the default, with NATS_URL and the
// service's NATS user) or Kafka (STREAM_ENGINE=kafka, with KAFKA_BROKERS,
// the cluster's seed brokers, comma-separated host:port). Handlers,
// outbox rows, inboxes and dead-letter headers are the same on both; only
// the wiring (Broker) differs.
type StreamEngine struct {
	Engine       string   `env:"STREAM_ENGINE" envDefault:"nats"`
	KafkaBrokers []string `env:"KAFKA_BROKERS"`
}

// Kafka reports whether the streams run on Kafka.
func (e StreamEngine) Kafka() bool { return e.Engine == EngineKafka }

// Validate reports an unknown engine and seed brokers that are not
// host:port; whether brokers are required depends on the roles (check).
func (e StreamEngine) Validate() []error {
	var errs []error
	if e.Engine != EngineNATS && e.Engine != EngineKafka {
		errs = append(errs, fmt.Errorf("STREAM_ENGINE: %q is neither %s nor %s", e.Engine, EngineNATS, EngineKafka))
	}
	for _, b := range e.KafkaBrokers {
		if _, port, err := net.SplitHostPort(strings.TrimSpace(b)); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("KAFKA_BROKERS: %q is not host:port", b))
		}
	}
	if len(e.KafkaBrokers) > 0 && !e.Kafka() {
		errs = append(errs, fmt.Errorf("KAFKA_BROKERS: set while STREAM_ENGINE is %s (set STREAM_ENGINE=kafka to use them)", e.Engine))
	}
	return errs
}

func (e StreamEngine) seeds() []string {
	seeds := make([]string, len(e.KafkaBrokers))
	for i, b := range e.KafkaBrokers {
		seeds[i] = strings.TrimSpace(b)
	}
	return seeds
}

// Broker is a process's connection to its stream engine: what the relay,
// the consumer groups and the lag readers of a service are built on, on
// either engine (App.ConnectStreams).
type Broker struct {
	engine string
	js     jetstream.JetStream
	kafka  *kgo.Client
	seeds  []string
}

// Engine is EngineNATS or EngineKafka.
func (b *Broker) Engine() string { return b.engine }

// GroupLag is how far group is behind on each partition of streamName
// (stream.GroupLag on NATS, kafkastream.GroupLag on Kafka).
func (b *Broker) GroupLag(ctx context.Context, streamName, group string) ([]stream.PartitionLag, error) {
	if b.kafka != nil {
		return kafkastream.GroupLag(ctx, b.kafka, streamName, group, nil)
	}
	return stream.GroupLag(ctx, b.js, streamName, group, nil)
}

// Runner is a consumer group of either engine.
type Runner interface {
	Run(ctx context.Context) error
}

// ConnectStreams connects to the configured stream engine (STREAM_ENGINE),
// prepares the service's streams (Streams: its own created, the ones it
// reads waited for) and reports the engine's dependency on /readyz ("nats"
// or "kafka"); the connection closes when the command ends. It retries
// until it succeeds or ctx ends.
func (a *App) ConnectStreams(ctx context.Context, streams Streams) (*Broker, error) {
	if !a.serve.StreamEngine.Kafka() {
		nc, js, err := a.ConnectNATS(ctx, a.serve.NATS, a.Health, streams)
		if err != nil {
			return nil, err
		}
		a.Defer(nc.Close)
		return &Broker{engine: EngineNATS, js: js}, nil
	}
	seeds := a.serve.StreamEngine.seeds()
	cl, err := a.ConnectKafka(ctx, seeds, a.Health, streams)
	if err != nil {
		return nil, err
	}
	a.Defer(cl.Close)
	return &Broker{engine: EngineKafka, kafka: cl, seeds: seeds}, nil
}

// kafkaState is the Runtime's Kafka dependency for /readyz.
type kafkaState struct {
	dep  *lifecycle.Dependency
	cl   atomic.Pointer[kgo.Client]
	once atomic.Bool
}

// RequireKafka registers the "kafka" readiness check on health: /readyz
// answers 503 naming kafka until ConnectKafka has connected and prepared
// the topics, and whenever no broker answers. As RequireNATS.
func (rt *Runtime) RequireKafka(health *httpkit.Health) {
	if rt.kafka.once.CompareAndSwap(false, true) {
		health.AddCheck("kafka", rt.kafkaCheck)
	}
}

func (rt *Runtime) kafkaCheck(ctx context.Context) error {
	if err := rt.kafka.dep.Check(ctx); err != nil {
		return err
	}
	if cl := rt.kafka.cl.Load(); cl != nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := cl.Ping(pctx); err != nil {
			return fmt.Errorf("no broker answers: %w", err)
		}
	}
	return nil
}

// ConnectKafka is ConnectNATS for the Kafka engine: a client of the
// cluster at seeds (kafkastream.ClientOpts: acks=all, the idempotent
// producer, the engine-neutral partitioner), the own streams created as
// topics with their dead-letter topics (kafkastream.EnsureTopic), the read
// ones waited for with their partition count checked, and the "kafka"
// dependency on health. It retries with capped backoff until it succeeds
// or ctx ends.
func (rt *Runtime) ConnectKafka(ctx context.Context, seeds []string, health *httpkit.Health, streams Streams) (*kgo.Client, error) {
	rt.RequireKafka(health)
	if len(seeds) == 0 {
		return nil, errors.New("KAFKA_BROKERS: no seed brokers")
	}
	cl, err := lifecycle.Connect(ctx, rt.Log, rt.kafka.dep, lifecycle.DefaultRetry, func(ctx context.Context) (*kgo.Client, error) {
		cl, err := kgo.NewClient(append(kafkastream.ClientOpts(seeds), kgo.ClientID(rt.Name))...)
		if err == nil {
			err = streams.prepareKafka(ctx, cl)
		}
		if err != nil {
			if cl != nil {
				cl.Close()
			}
			return nil, fmt.Errorf("kafka at %s: %w", strings.Join(seeds, ","), err)
		}
		return cl, nil
	})
	if err != nil {
		return nil, err
	}
	rt.kafka.cl.Store(cl)
	return cl, nil
}

// prepareKafka creates the own topics (with the broker's default
// replication factor: 3 on a production cluster, 1 on the sandbox's
// single broker) and checks the read ones exist with their configured
// partition count.
func (s Streams) prepareKafka(ctx context.Context, cl *kgo.Client) error {
	for _, sc := range s.Own {
		if err := kafkastream.EnsureTopic(ctx, cl, kafkastream.TopicConfig{Name: sc.Name, Partitions: sc.Partitions}); err != nil {
			return err
		}
	}
	adm := kadm.NewClient(cl)
	for _, sc := range s.Read {
		n, err := kafkastream.TopicPartitions(ctx, adm, sc.Name)
		if err != nil {
			return fmt.Errorf("%w (its owner creates it)", err)
		}
		if n != sc.Partitions {
			return fmt.Errorf("%w: topic %s has %d partitions, configured %d", stream.ErrPartitionsChanged, sc.Name, n, sc.Partitions)
		}
	}
	return nil
}

// NewRelay is the relay role of a service that publishes streamName with
// the given partition count: pkg/outbox's leader-elected relay over the
// engine's publisher, with its metrics on the service's registry.
func (rt *Runtime) NewRelay(pool *pgxpool.Pool, b *Broker, streamName string, partitions int) (*outbox.Relay, error) {
	var pub outbox.StreamPublisher
	if b.kafka != nil {
		p, err := kafkastream.NewPublisher(b.kafka, streamName)
		if err != nil {
			return nil, err
		}
		pub = p
	} else {
		p, err := stream.NewPublisher(b.js, streamName, partitions)
		if err != nil {
			return nil, err
		}
		pub = p
	}
	return outbox.NewRelay(pool, outbox.StreamSink{streamName: pub},
		outbox.RelayConfig{Stream: streamName, Registerer: rt.Tel.Registry,
			Leader: outbox.Leadership(rt.base.Relay.Leader), ListenURL: rt.base.Relay.ListenURL}, rt.Log)
}

// NewGroup is a consumer role: group consumes streamName (partitions)
// with h, the ConsumerRetries budget, trace context taken from the
// messages, metrics on the service's registry, on the broker's engine.
func (rt *Runtime) NewGroup(b *Broker, streamName, group string, partitions int, h stream.Handler) (Runner, error) {
	if b.kafka != nil {
		return kafkastream.NewGroup(b.seeds, rt.kafkaGroupConfig(streamName, group, partitions), h, rt.Log)
	}
	return stream.NewGroup(b.js, stream.GroupConfig{Stream: streamName, Name: group, Partitions: partitions,
		MaxDeliver: ConsumerRetries.MaxDeliver, Backoff: ConsumerRetries.Backoff,
		Extract: rt.Tel.Extract, Tracer: rt.streamTracer(), Registerer: rt.Tel.Registry}, h, rt.Log)
}

// NewBatchGroup is NewGroup for a batch handler (stream.NewBatchGroup,
// kafkastream.NewBatchGroup), handed up to CONSUMER_MAX_BATCH messages of
// a partition at once.
func (a *App) NewBatchGroup(b *Broker, streamName, group string, partitions int, h stream.BatchHandler) (Runner, error) {
	rt := a.Runtime
	if b.kafka != nil {
		cfg := rt.kafkaGroupConfig(streamName, group, partitions)
		cfg.MaxBatch = a.serve.ConsumerMaxBatch
		return kafkastream.NewBatchGroup(b.seeds, cfg, h, rt.Log)
	}
	return stream.NewBatchGroup(b.js, stream.GroupConfig{Stream: streamName, Name: group, Partitions: partitions,
		MaxBatch: a.serve.ConsumerMaxBatch, MaxDeliver: ConsumerRetries.MaxDeliver, Backoff: ConsumerRetries.Backoff,
		Extract: rt.Tel.Extract, Tracer: rt.streamTracer(), Registerer: rt.Tel.Registry}, h, rt.Log)
}

func (rt *Runtime) kafkaGroupConfig(topic, group string, partitions int) kafkastream.GroupConfig {
	return kafkastream.GroupConfig{Topic: topic, Name: group, Partitions: partitions,
		MaxDeliver: ConsumerRetries.MaxDeliver, Backoff: ConsumerRetries.Backoff,
		Extract: rt.Tel.Extract, Tracer: rt.Tel.Tracer("github.com/shopfloor/shopfloor/pkg/stream/kafka"),
		Registerer: rt.Tel.Registry, ClientOpts: []kgo.Opt{kgo.ClientID(rt.Name)}}
}

func (rt *Runtime) streamTracer() trace.Tracer {
	return rt.Tel.Tracer("github.com/shopfloor/shopfloor/pkg/stream")
}
