package pspsim_test

import (
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

func TestNewAndSetFaultsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		faults pspsim.Faults
		want   []string // substrings of the error; none: valid
	}{
		{name: "zero", faults: pspsim.Faults{}},
		{name: "all at the edges", faults: pspsim.Faults{ErrorRate: 1, RateLimitRate: 1, TimeoutAfterChargeRate: 1, Latency: time.Hour, Down: true}},
		{name: "rate above 1", faults: pspsim.Faults{ErrorRate: 1.5}, want: []string{"error_rate", "1.5"}},
		{name: "NaN", faults: pspsim.Faults{RateLimitRate: math.NaN()}, want: []string{"rate_limit_rate"}},
		{name: "negative", faults: pspsim.Faults{TimeoutAfterChargeRate: -0.5, Hang: -time.Second}, want: []string{"timeout_after_charge_rate", "hang"}},
		{name: "negative latency", faults: pspsim.Faults{Latency: -1, RetryAfter: -1}, want: []string{"latency", "retry_after"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, errNew := pspsim.New(pspsim.Config{Faults: tt.faults})
			sim, err := pspsim.New(pspsim.Config{})
			if err != nil {
				t.Fatal(err)
			}
			errSet := sim.SetFaults(tt.faults)
			for _, err := range []error{errNew, errSet, tt.faults.Validate()} {
				if len(tt.want) == 0 {
					if err != nil {
						t.Fatalf("valid faults refused: %v", err)
					}
					continue
				}
				if err == nil {
					t.Fatal("invalid faults accepted")
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Fatalf("error %q does not name %q", err, w)
					}
				}
			}
			if len(tt.want) > 0 && sim.Faults() != (pspsim.Faults{}) {
				t.Fatalf("refused SetFaults changed the faults to %+v", sim.Faults())
			}
		})
	}
}

func TestFaultsFromEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    pspsim.Faults
		wantErr []string // variables the error must name
		notErr  []string // variables it must not name
	}{
		{name: "nothing set", env: map[string]string{}},
		{name: "everything", env: map[string]string{
			"PSP_SIM_LATENCY": "250ms", "PSP_SIM_ERROR_RATE": "0.1", "PSP_SIM_RATE_LIMIT_RATE": "0.25",
			"PSP_SIM_RETRY_AFTER": "3s", "PSP_SIM_TIMEOUT_AFTER_CHARGE_RATE": "1", "PSP_SIM_HANG": "2s", "PSP_SIM_DOWN": "true",
		}, want: pspsim.Faults{Latency: 250 * time.Millisecond, ErrorRate: 0.1, RateLimitRate: 0.25, RetryAfter: 3 * time.Second,
			TimeoutAfterChargeRate: 1, Hang: 2 * time.Second, Down: true}},
		{name: "blank is unset", env: map[string]string{"PSP_SIM_LATENCY": " ", "PSP_SIM_DOWN": ""}},
		{name: "rate out of range", env: map[string]string{"PSP_SIM_ERROR_RATE": "1.5", "PSP_SIM_LATENCY": "1s"},
			wantErr: []string{"PSP_SIM_ERROR_RATE"}, notErr: []string{"PSP_SIM_LATENCY"}},
		{name: "rate not a number", env: map[string]string{"PSP_SIM_RATE_LIMIT_RATE": "half"}, wantErr: []string{"PSP_SIM_RATE_LIMIT_RATE", `"half"`}},
		{name: "negative rate", env: map[string]string{"PSP_SIM_TIMEOUT_AFTER_CHARGE_RATE": "-0.1"}, wantErr: []string{"PSP_SIM_TIMEOUT_AFTER_CHARGE_RATE"}},
		{name: "duration without unit", env: map[string]string{"PSP_SIM_LATENCY": "250"}, wantErr: []string{"PSP_SIM_LATENCY", `"250"`}},
		{name: "negative duration", env: map[string]string{"PSP_SIM_RETRY_AFTER": "-1s"}, wantErr: []string{"PSP_SIM_RETRY_AFTER"}},
		{name: "bad hang", env: map[string]string{"PSP_SIM_HANG": "forever"}, wantErr: []string{"PSP_SIM_HANG"}},
		{name: "bad bool", env: map[string]string{"PSP_SIM_DOWN": "maybe"}, wantErr: []string{"PSP_SIM_DOWN", `"maybe"`}},
		{name: "several", env: map[string]string{"PSP_SIM_DOWN": "maybe", "PSP_SIM_ERROR_RATE": "2", "PSP_SIM_LATENCY": "x"},
			wantErr: []string{"PSP_SIM_DOWN", "PSP_SIM_ERROR_RATE", "PSP_SIM_LATENCY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := pspsim.FaultsFromEnv(func(k string) string { return tt.env[k] })
			if len(tt.wantErr) == 0 {
				if err != nil || got != tt.want {
					t.Fatalf("FaultsFromEnv = %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, faults %+v", got)
			}
			for _, name := range tt.wantErr {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("error %q does not name %s", err, name)
				}
			}
			for _, name := range tt.notErr {
				if strings.Contains(err.Error(), name) {
					t.Errorf("error %q names %s, which is fine", err, name)
				}
			}
			if got != (pspsim.Faults{}) {
				t.Errorf("faults %+v returned with an error", got)
			}
		})
	}
}

func TestFaultsRoundTripThroughJSONWithReadableDurations(t *testing.T) {
	t.Parallel()
	f := pspsim.Faults{Latency: 1500 * time.Millisecond, ErrorRate: 0.5, RateLimitRate: 0.25, RetryAfter: 2 * time.Second,
		TimeoutAfterChargeRate: 0.125, Hang: time.Minute, Down: true}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"latency":"1.5s","error_rate":0.5,"rate_limit_rate":0.25,"retry_after":"2s","timeout_after_charge_rate":0.125,"hang":"1m0s","down":true}`
	if string(b) != want {
		t.Fatalf("JSON %s, want %s", b, want)
	}
	var back pspsim.Faults
	if err := json.Unmarshal(b, &back); err != nil || back != f {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	for _, bad := range []string{`{"latency":"fast"}`, `{"surprise":true}`, `{"error_rate":"1"}`} {
		back = f
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s accepted", bad)
		}
		if back != f {
			t.Errorf("%s: target modified on error: %+v", bad, back)
		}
	}
}

func TestMetricsCountRequestsByRouteAndOutcomeAcrossSimulators(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := setup(t, pspsim.Config{Registerer: reg})
	b.postCharge(t, "k1", visa("o1"))
	b.postCharge(t, "k1", visa("o1"))
	b.postCharge(t, "k2", charge{AmountMinor: 1, Currency: "EUR", PaymentMethod: pspsim.TokenExpiredCard, Reference: "o2"})
	if err := b.sim.SetFaults(pspsim.Faults{RateLimitRate: 1}); err != nil {
		t.Fatal(err)
	}
	b.postCharge(t, "k3", visa("o3"))

	// A second simulator on the same registry shares the counters.
	other, err := pspsim.New(pspsim.Config{Registerer: reg})
	if err != nil {
		t.Fatalf("second simulator on one registry: %v", err)
	}
	_ = other

	tests := []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{"pspsim_requests_total", map[string]string{"route": "create_charge", "outcome": "created"}, 1},
		{"pspsim_requests_total", map[string]string{"route": "create_charge", "outcome": "replayed"}, 1},
		{"pspsim_requests_total", map[string]string{"route": "create_charge", "outcome": "declined"}, 1},
		{"pspsim_requests_total", map[string]string{"route": "create_charge", "outcome": "fault_rate_limited"}, 1},
		{"pspsim_charges_total", map[string]string{"status": "succeeded"}, 1},
		{"pspsim_charges_total", map[string]string{"status": "declined"}, 1},
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	// counterValue returns the value of the counter with exactly labels,
	// or -1.
	counterValue := func(name string, labels map[string]string) float64 {
		for _, mf := range families {
			if mf.GetName() != name {
				continue
			}
		next:
			for _, m := range mf.GetMetric() {
				if len(m.GetLabel()) != len(labels) {
					continue
				}
				for _, lp := range m.GetLabel() {
					if labels[lp.GetName()] != lp.GetValue() {
						continue next
					}
				}
				return m.GetCounter().GetValue()
			}
		}
		return -1
	}
	for _, tt := range tests {
		if got := counterValue(tt.metric, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
		}
	}

	// A different collector under the same name is a wiring error.
	clash := prometheus.NewRegistry()
	clash.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "pspsim_requests_total", Help: "x"}))
	if _, err := pspsim.New(pspsim.Config{Registerer: clash}); err == nil {
		t.Fatal("New accepted a registry with a clashing metric")
	}
}

func TestAdminAndProbesAreNotCounted(t *testing.T) {
	t.Parallel()
	b := setup(t, pspsim.Config{})
	for _, path := range []string{"/admin/faults", "/admin/stats", "/healthz"} {
		if r := b.do(t, request{method: http.MethodGet, path: path}); r.status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, r.status)
		}
	}
	if s := b.sim.Stats(); len(s.Requests) != 0 {
		t.Fatalf("admin and probe requests counted: %v", s.Requests)
	}
}
