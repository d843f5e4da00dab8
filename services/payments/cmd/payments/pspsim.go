package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/shopfloor/shopfloor/pkg/config"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

// pspSim is `payments psp-sim`: the payment-provider simulator as its own
// process (an external party in the topology), with fault modes from
// PSP_SIM_* and switchable at run time on PUT /admin/faults.
func pspSim(ctx context.Context, inv *service.Invocation) error {
	type simConfig struct {
		Addr     string     `env:"PSP_SIM_ADDR" envDefault:":8099"`
		Seed     int64      `env:"PSP_SIM_SEED" envDefault:"1"`
		LogLevel slog.Level `env:"LOG_LEVEL" envDefault:"INFO"`
	}
	cfg, err := config.Load[simConfig](inv.Getenv)
	if err != nil {
		return err
	}
	faults, err := pspsim.FaultsFromEnv(inv.Getenv)
	if err != nil {
		return err
	}
	sim, err := service.StartSimulator(ctx, "psp-sim", cfg.LogLevel, inv.Stdout)
	if err != nil {
		return err
	}
	defer sim.Close(ctx)
	psp, err := pspsim.New(pspsim.Config{Logger: sim.Tel.Logger, Registerer: sim.Tel.Registry, Seed: cfg.Seed, Faults: faults})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on PSP_SIM_ADDR %s: %w", cfg.Addr, err)
	}
	sim.Tel.Logger.InfoContext(ctx, "psp simulator listening", "addr", ln.Addr().String(), "faults", fmt.Sprintf("%+v", faults))
	return sim.Serve(ctx, ln, psp.Handler())
}
