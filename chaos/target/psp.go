package target

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

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

// FaultPresets are named sets of provider faults, each with what it
// teaches (the web console offers them).
var FaultPresets = []FaultPreset{
	{"none", "No faults", "The provider answers every call at once.", pspsim.Faults{}},
	{"timeout-after-charge", "Timeout after charge", "It charges, then never answers: payments looks the charge up with the same idempotency key instead of charging again.",
		pspsim.Faults{TimeoutAfterChargeRate: 1, Hang: 6 * time.Second}},
	{"rate-limit", "429 half the time", "Nothing is processed; payments waits for the provider's Retry-After.",
		pspsim.Faults{RateLimitRate: 0.5, RetryAfter: time.Second}},
	{"errors", "5xx half the time", "Certainly not processed: retried with capped exponential backoff and jitter.", pspsim.Faults{ErrorRate: 0.5}},
	{"slow", "3 s per call", "Charges take longer; orders stay pending meanwhile, and can be cancelled (then refunded).", pspsim.Faults{Latency: 3 * time.Second}},
	{"down", "Down", "Every call is refused: charges wait in the queue (delayed), none is lost.", pspsim.Faults{Down: true}},
}

// FaultPreset is a named set of provider faults.
type FaultPreset struct {
	Name, Label, Teaches string
	Faults               pspsim.Faults
}

// DescribeFaults says which faults f switches on ("none" when none).
func DescribeFaults(f pspsim.Faults) string {
	var on []string
	if f.Down {
		on = append(on, "down")
	}
	if f.TimeoutAfterChargeRate > 0 {
		on = append(on, fmt.Sprintf("timeout after charge %.0f%%", 100*f.TimeoutAfterChargeRate))
	}
	if f.RateLimitRate > 0 {
		on = append(on, fmt.Sprintf("429 %.0f%%", 100*f.RateLimitRate))
	}
	if f.ErrorRate > 0 {
		on = append(on, fmt.Sprintf("5xx %.0f%%", 100*f.ErrorRate))
	}
	if f.Latency > 0 {
		on = append(on, "latency "+f.Latency.String())
	}
	if len(on) == 0 {
		return "none"
	}
	return strings.Join(on, ", ")
}
