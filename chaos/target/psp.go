package target

import (
	"context"
	"fmt"
	"net/http"

	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

// PSPFaults returns the provider simulator's current fault modes.
func (s *System) PSPFaults(ctx context.Context) (pspsim.Faults, error) {
	var f pspsim.Faults
	if err := GetJSON(ctx, s.Client(), s.PSP+"/admin/faults", &f); err != nil {
		return pspsim.Faults{}, fmt.Errorf("provider faults: %w", err)
	}
	return f, nil
}

// SetPSPFaults replaces the simulator's fault modes (every field: a zero
// field switches that fault off).
func (s *System) SetPSPFaults(ctx context.Context, f pspsim.Faults) error {
	if err := DoJSON(ctx, s.Client(), http.MethodPut, s.PSP+"/admin/faults", nil, f, nil); err != nil {
		return fmt.Errorf("set provider faults: %w", err)
	}
	return nil
}

// PSPStats returns what the simulator counted since it started: charges
// per idempotency key, succeeded charges per reference (order id),
// requests per route and outcome.
func (s *System) PSPStats(ctx context.Context) (pspsim.Stats, error) {
	var st pspsim.Stats
	if err := GetJSON(ctx, s.Client(), s.PSP+"/admin/stats", &st); err != nil {
		return pspsim.Stats{}, fmt.Errorf("provider stats: %w", err)
	}
	return st, nil
}
