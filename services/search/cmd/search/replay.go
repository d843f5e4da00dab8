package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/search/internal/indexstream"
	"github.com/shopfloor/shopfloor/services/search/internal/indexsvc"
)

// replay is `search rebuild` and `search check`: it prints the report as
// JSON. check fails when it finds differences; rebuild fails when it
// cannot swap.
func replay(cmd string) func(ctx context.Context, inv *service.Invocation) error {
	return func(ctx context.Context, inv *service.Invocation) error {
		return replayStream(ctx, cmd, inv.Args, inv.Getenv, inv.Stdout)
	}
}

// replayUsage is the synopsis of rebuild and check, for their errors.
const replayUsage = "usage: search rebuild|check --stream CATALOG|ORDERS [--allow-missing] [--timeout 1h]"

func replayStream(ctx context.Context, cmd string, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	name := fs.String("stream", "", "CATALOG or ORDERS")
	allowMissing := fs.Bool("allow-missing", false, "swap even when the rebuilt projection lacks documents the live one has")
	timeout := fs.Duration("timeout", time.Hour, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w; %s", cmd, err, replayUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q; %s", cmd, fs.Args(), replayUsage)
	}
	if *allowMissing && cmd == "check" {
		return fmt.Errorf("check: --allow-missing applies to rebuild only; %s", replayUsage)
	}
	if *name != catalogapi.Stream && *name != ordersapi.Stream {
		return fmt.Errorf("%s --stream: must be %s or %s (got %q); %s", cmd, catalogapi.Stream, ordersapi.Stream, *name, replayUsage)
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
	nc, js, err := rt.ConnectNATS(ctx, cfg.NATS, httpkit.NewHealth(), service.Streams{})
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
