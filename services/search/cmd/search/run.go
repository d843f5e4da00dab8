package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/search/internal/indexhttp"
	"github.com/shopfloor/shopfloor/services/search/internal/indexpg"
	"github.com/shopfloor/shopfloor/services/search/internal/indexstream"
	"github.com/shopfloor/shopfloor/services/search/internal/indexsvc"
	"github.com/shopfloor/shopfloor/services/search/migrations"
)

// Streams is what every command that reads the streams needs.
type Streams struct {
	// NATSURL is required by the api role (it reads the consumer lag
	// from the broker), the consumer role and the rebuild and check
	// commands.
	NATSURL string `env:"NATS_URL"`
	// Partitions of CATALOG and ORDERS: the counts the streams were
	// created with (search ensures the streams exist with them).
	CatalogPartitions int `env:"CATALOG_PARTITIONS" envDefault:"8"`
	OrdersPartitions  int `env:"ORDERS_PARTITIONS" envDefault:"8"`
}

// validate reports bad partition counts and, if needed, a missing URL.
func (s Streams) validate(needNATS bool, who string) []error {
	var errs []error
	if needNATS && s.NATSURL == "" {
		errs = append(errs, fmt.Errorf("NATS_URL: required by %s", who))
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"CATALOG_PARTITIONS", s.CatalogPartitions}, {"ORDERS_PARTITIONS", s.OrdersPartitions}} {
		if err := stream.CheckPartitions(v.name, v.n); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// sources are the live projections and their streams.
func (s Streams) sources() (products, orders indexsvc.Source) {
	return indexsvc.Source{Stream: catalogapi.Stream, Partitions: s.CatalogPartitions, Projection: indexpg.LiveProducts},
		indexsvc.Source{Stream: ordersapi.Stream, Partitions: s.OrdersPartitions, Projection: indexpg.LiveOrders}
}

// Config is the serve command's configuration, from the environment.
type Config struct {
	service.Base
	service.HTTP
	Streams
	HTTPAddr string `env:"HTTP_ADDR" envDefault:":8085"`
	// AdminAddr is the admin listener: /metrics and /readyz details. Never publish it (ADR 0023).
	AdminAddr string `env:"ADMIN_ADDR" envDefault:":9085"`
	// LagInterval is how often the live groups' lag is read from the
	// broker (for the answers' freshness and the gauges).
	LagInterval time.Duration `env:"LAG_INTERVAL" envDefault:"2s"`
	// Auth is the identity provider whose access tokens the api role
	// accepts for order search (AUTH_ISSUER, AUTH_AUDIENCE default "search").
	Auth auth.Config
	// Roles: api (the search API), consumer (the CATALOG and ORDERS
	// projections, group "search").
	Roles []string `env:"ROLES" envDefault:"api,consumer"`
}

// Validate reports rules beyond one value's syntax.
func (c Config) Validate() []error {
	errs := service.CheckRoles(c.Roles, []string{"api", "consumer"})
	errs = append(errs, c.validate(true, "the api and consumer roles")...)
	if slices.Contains(c.Roles, "api") {
		errs = append(errs, c.Auth.Validate()...)
	}
	if c.LagInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("LAG_INTERVAL: must be at least 100ms (got %s)", c.LagInterval))
	}
	return errs
}

func (c Config) has(role string) bool { return slices.Contains(c.Roles, role) }

// replayConfig is the configuration of the rebuild and check commands.
type replayConfig struct {
	service.Base
	Streams
}

// Validate reports rules beyond one value's syntax.
func (c replayConfig) Validate() []error {
	return c.validate(true, "the rebuild and check commands")
}

const usage = `usage: search [serve | migrate | audit ... | rebuild --stream CATALOG|ORDERS [--allow-missing] [--timeout 1h] | check --stream CATALOG|ORDERS [--timeout 1h] | stream-dlq --stream CATALOG|ORDERS list|inspect|redrive|discard ...]`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 1 {
		cmd = args[1]
	}
	rest := args[min(2, len(args)):]
	switch cmd {
	case "serve":
		cfg, err := config.Load[Config](getenv)
		if err != nil {
			return err
		}
		rt, err := service.Start(ctx, "search", cfg.Base, stdout)
		if err != nil {
			return err
		}
		defer rt.Close(ctx)
		lns, err := service.Listen(cfg.HTTPAddr, cfg.AdminAddr)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, rt, lns)
	case "migrate", "audit":
		base, err := config.Load[service.Base](getenv)
		if err != nil {
			return err
		}
		rt, err := service.Start(ctx, "search", base, stdout)
		if err != nil {
			return err
		}
		defer rt.Close(ctx)
		if cmd == "audit" {
			return rt.AuditCommand(ctx, args[min(2, len(args)):], stdout)
		}
		return rt.Migrate(ctx, migrations.FS)
	case "rebuild", "check":
		return replay(ctx, cmd, rest, getenv, stdout)
	case "stream-dlq":
		name, dlqArgs, err := streamFlag(rest)
		if err != nil {
			return err
		}
		return service.DLQCommand(ctx, "search", name, dlqArgs, getenv, stdout)
	default:
		return fmt.Errorf("unknown command %q (%s)", cmd, usage)
	}
}

// streamFlag reads a leading "--stream NAME" (or --stream=NAME) naming
// CATALOG or ORDERS and returns the rest of args.
func streamFlag(args []string) (string, []string, error) {
	var name string
	switch {
	case len(args) >= 2 && args[0] == "--stream":
		name, args = args[1], args[2:]
	case len(args) >= 1 && strings.HasPrefix(args[0], "--stream="):
		name, args = strings.TrimPrefix(args[0], "--stream="), args[1:]
	}
	if name != catalogapi.Stream && name != ordersapi.Stream {
		return "", nil, fmt.Errorf("--stream: must be %s or %s (got %q); %s", catalogapi.Stream, ordersapi.Stream, name, usage)
	}
	return name, args, nil
}

// replay is `search rebuild` and `search check`: it prints the report as
// JSON. check fails when it finds differences; rebuild fails when it
// cannot swap.
func replay(ctx context.Context, cmd string, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	name := fs.String("stream", "", "CATALOG or ORDERS")
	allowMissing := fs.Bool("allow-missing", false, "swap even when the rebuilt projection lacks documents the live one has")
	timeout := fs.Duration("timeout", time.Hour, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w; %s", cmd, err, usage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q; %s", cmd, fs.Args(), usage)
	}
	if *allowMissing && cmd == "check" {
		return fmt.Errorf("check: --allow-missing applies to rebuild only; %s", usage)
	}
	if _, _, err := streamFlag([]string{"--stream", *name}); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	cfg, err := config.Load[replayConfig](getenv)
	if err != nil {
		return err
	}
	// The timeout covers connecting too: an operator's command gives up
	// instead of retrying an unreachable dependency forever.
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rt, err := service.Start(ctx, "search", cfg.Base, stdout)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	pool, err := rt.OpenPG(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	nc, js, err := rt.ConnectNATS(ctx, cfg.NATSURL, httpkit.NewHealth())
	if err != nil {
		return err
	}
	defer nc.Close()
	src, orders := cfg.sources()
	if *name == ordersapi.Stream {
		src = orders
	}
	metrics, err := indexstream.NewMetrics(rt.Tel.Registry)
	if err != nil {
		return err
	}
	rep, err := indexsvc.NewReplayer(pool, js, rt.Log, time.Now).Run(ctx, indexsvc.ReplayConfig{
		Source: src, Swap: cmd == "rebuild", AllowMissing: *allowMissing, Timeout: *timeout, Metrics: metrics})
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if perr := enc.Encode(rep); perr != nil {
		return errors.Join(err, perr)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", cmd, *name, err)
	}
	if cmd == "check" && rep.Diff.Differences() > 0 {
		return fmt.Errorf("check %s: %d documents differ from a rebuild (%d mismatched, %d missing, %d extra)",
			*name, rep.Diff.Differences(), rep.Diff.Mismatched, rep.Diff.Missing, rep.Diff.Extra)
	}
	return nil
}

// serve runs the roles. HTTP starts at once (health answers while the
// dependencies are being connected); the API is mounted once PostgreSQL
// and NATS are up.
func serve(ctx context.Context, cfg Config, rt *service.Runtime, lns service.Listeners) error {
	log, tel := rt.Log, rt.Tel
	health := httpkit.NewHealth()
	health.AddCheck("postgres", rt.PG.Check)
	rt.RequireNATS(health) // both roles need it
	// No admin API: the admin listener serves metrics and readiness details.
	mux := rt.NewMuxes(health)
	api := service.NewGate("search")
	authz, err := rt.APIVerifier(cfg.Auth, cfg.has("api"), health)
	if err != nil {
		return err
	}
	mux.Public.Handle("/v1/", api)

	g := lifecycle.NewGroup(log)
	g.Add("app", func(ctx context.Context) error {
		pool, err := rt.OpenPG(ctx)
		if err != nil {
			return service.Canceled(err)
		}
		defer pool.Close()
		products, orders := cfg.sources()
		nc, js, err := rt.ConnectNATS(ctx, cfg.NATSURL, health,
			stream.StreamConfig{Name: products.Stream, Partitions: products.Partitions},
			stream.StreamConfig{Name: orders.Stream, Partitions: orders.Partitions})
		if err != nil {
			return service.Canceled(err)
		}
		defer nc.Close()
		ag := lifecycle.NewGroup(log)
		lags, err := indexsvc.NewLagSampler(js, pool, indexstream.Group, []indexsvc.Source{products, orders},
			indexsvc.LagConfig{Interval: cfg.LagInterval, Registerer: tel.Registry}, log)
		if err != nil {
			return err
		}
		ag.Add("lag-sampler", lags.Run)
		if cfg.has("consumer") {
			metrics, err := indexstream.NewMetrics(tel.Registry)
			if err != nil {
				return err
			}
			for _, src := range []indexsvc.Source{products, orders} {
				metrics.Zero(src.Stream)
				p := &indexstream.Projector{Pool: pool, Projection: src.Projection, Stream: src.Stream, Metrics: metrics, Log: log}
				grp, err := rt.NewGroup(js, src.Stream, indexstream.Group, src.Partitions, p.Handle)
				if err != nil {
					return err
				}
				ag.Add(strings.ToLower(src.Stream)+"-consumer", grp.Run)
			}
		}
		if cfg.has("api") {
			apiMux := http.NewServeMux()
			indexhttp.Routes(apiMux, indexsvc.NewSearcher(pool, products, orders, lags), authz, log)
			api.Open(apiMux)
		}
		ag.Add("wait", func(ctx context.Context) error { <-ctx.Done(); return nil })
		return ag.Run(ctx)
	})
	g.Add("http", func(ctx context.Context) error {
		return rt.ServeMuxes(ctx, cfg.HTTP, lns, mux, health)
	})
	return g.Run(ctx)
}
