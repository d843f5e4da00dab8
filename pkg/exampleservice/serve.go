package exampleservice

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/telemetry"
)

// deps are the connections the roles need; nil until all are up.
type deps struct {
	pool *pgxpool.Pool
	nc   *nats.Conn
	pub  message.Publisher
}

// Serve runs the roles of cfg until ctx ends, serving HTTP on ln. The HTTP
// server starts at once, so /healthz and /readyz answer while PostgreSQL
// and NATS are still being connected (with backoff, forever); API routes
// answer 503 until then. On shutdown the HTTP server drains first, then the
// consumer finishes its message, then connections close.
func Serve(ctx context.Context, cfg Config, tel *telemetry.Telemetry, ln net.Listener) error {
	log := tel.Logger
	var current atomic.Pointer[deps]
	pgDep, natsDep := lifecycle.NewDependency("postgres"), lifecycle.NewDependency("nats")
	health := httpkit.NewHealth()
	health.AddCheck("postgres", func(ctx context.Context) error {
		if d := current.Load(); d != nil {
			return d.pool.Ping(ctx)
		}
		return pgDep.Check(ctx)
	})
	health.AddCheck("nats", func(ctx context.Context) error {
		if d := current.Load(); d != nil && !d.nc.IsConnected() {
			return fmt.Errorf("disconnected (%s)", d.nc.Status())
		}
		return natsDep.Check(ctx)
	})

	mux := httpkit.NewMux(health, tel.MetricsHandler())
	if cfg.has("api") {
		svc := &noteService{deps: current.Load, tel: tel, stream: cfg.Stream, now: time.Now}
		routes(mux, svc, log)
	}
	handler := httpkit.Chain(mux,
		httpkit.Trace(tel.TracerProvider, tel.Propagator, tel.MeterProvider),
		httpkit.AccessLog(log),
		httpkit.Recover(log),
		httpkit.LimitBody(httpkit.DefaultMaxBodyBytes),
	)

	g := lifecycle.NewGroup(log)
	g.Add("dependencies", func(ctx context.Context) error {
		d, err := connect(ctx, cfg, tel, pgDep, natsDep)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		defer d.close()
		current.Store(d)
		if cfg.has("consumer") {
			return consume(ctx, cfg, tel, d)
		}
		<-ctx.Done()
		return nil
	})
	g.Add("http", func(ctx context.Context) error {
		log.InfoContext(ctx, "http listening", "addr", ln.Addr().String())
		return httpkit.Serve(ctx, httpkit.ServerConfig{
			Addr:            cfg.HTTPAddr,
			DrainDelay:      cfg.DrainDelay,
			ShutdownTimeout: cfg.ShutdownTimeout,
		}.WithDefaults(), ln, handler, health, log)
	})
	return g.Run(ctx)
}

func connect(ctx context.Context, cfg Config, tel *telemetry.Telemetry, pgDep, natsDep *lifecycle.Dependency) (*deps, error) {
	log := tel.Logger
	pool, err := lifecycle.Connect(ctx, log, pgDep, lifecycle.DefaultRetry, func(ctx context.Context) (*pgxpool.Pool, error) {
		return pgdb.Open(ctx, cfg.DB)
	})
	if err != nil {
		return nil, err
	}
	nc, err := lifecycle.Connect(ctx, log, natsDep, lifecycle.DefaultRetry, func(ctx context.Context) (*nats.Conn, error) {
		nc, err := nats.Connect(cfg.NATSURL, nats.Name(ServiceName), nats.MaxReconnects(-1))
		if err != nil {
			return nil, err
		}
		js, err := jetstream.New(nc)
		if err == nil {
			_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
				Name:       cfg.Stream,
				Subjects:   []string{cfg.Stream},
				Storage:    jetstream.FileStorage,
				MaxAge:     7 * 24 * time.Hour,
				Duplicates: 2 * time.Minute,
			})
		}
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("stream %s: %w", cfg.Stream, err)
		}
		return nc, nil
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	pub, err := wmnats.NewPublisherWithNatsConn(nc, wmnats.PublisherPublishConfig{
		Marshaler:         &wmnats.NATSMarshaler{},
		SubjectCalculator: wmnats.DefaultSubjectCalculator,
		// Nats-Msg-Id = the message UUID (the event id): the broker drops
		// a re-publish inside the stream's duplicate window.
		JetStream: wmnats.JetStreamConfig{TrackMsgId: true},
	}, watermill.NewSlogLogger(log))
	if err != nil {
		nc.Close()
		pool.Close()
		return nil, fmt.Errorf("publisher: %w", err)
	}
	return &deps{pool: pool, nc: nc, pub: tel.PublisherDecorator(pub)}, nil
}

func (d *deps) close() {
	d.nc.Close()
	d.pool.Close()
}

// consume runs the note.created handler until ctx ends, on a durable
// JetStream consumer named after the group that instances share.
//
// It uses watermill-nats' pkg/nats subscriber (JetStream mode), not its beta
// pkg/jetstream one: under -race the beta subscriber closes its output
// channel while a message callback may still send on it (watermill-nats
// v2.1.3, consumer.go monitor vs message_handler.go handleMsg).
func consume(ctx context.Context, cfg Config, tel *telemetry.Telemetry, d *deps) error {
	log := tel.Logger
	sub, err := wmnats.NewSubscriber(wmnats.SubscriberConfig{
		URL:              cfg.NATSURL,
		QueueGroupPrefix: cfg.Group,
		SubscribersCount: 1,
		AckWaitTimeout:   30 * time.Second,
		CloseTimeout:     10 * time.Second,
		SubscribeTimeout: 10 * time.Second,
		NatsOptions:      []nats.Option{nats.Name(ServiceName + "-consumer"), nats.MaxReconnects(-1)},
		Unmarshaler:      &wmnats.NATSMarshaler{},
		JetStream: wmnats.JetStreamConfig{
			DurablePrefix:    cfg.Group,
			SubscribeOptions: []nats.SubOpt{nats.DeliverAll(), nats.AckExplicit(), nats.MaxDeliver(20)},
		},
	}, watermill.NewSlogLogger(log))
	if err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NewSlogLogger(log))
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	router.AddMiddleware(
		middleware.Recoverer,
		tel.ConsumerMiddleware("note-seen"),
		middleware.Retry{MaxRetries: 3, InitialInterval: 100 * time.Millisecond, MaxInterval: 2 * time.Second, Multiplier: 2, Logger: watermill.NewSlogLogger(log)}.Middleware,
	)
	seen := &noteSeen{pool: d.pool, log: log}
	router.AddConsumerHandler("note-seen", cfg.Stream, sub, seen.handle)
	go func() {
		<-ctx.Done()
		_ = router.Close()
	}()
	if err := router.Run(ctx); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	// The router closed the subscription; this closes its connection.
	if err := sub.Close(); err != nil {
		log.WarnContext(ctx, "close subscriber", "err", err)
	}
	return nil
}
