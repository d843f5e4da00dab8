package pspsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults that apply when the matching Faults field is zero.
const (
	// DefaultRetryAfter is the Retry-After of a simulated 429 when
	// Faults.RetryAfter is zero.
	DefaultRetryAfter = time.Second
	// DefaultHang is how long a request hit by TimeoutAfterChargeRate is
	// held open when Faults.Hang is zero, unless the client gives up first.
	DefaultHang = 30 * time.Second
)

// Faults are the failure modes the simulator injects. The zero value
// injects nothing. Rates are probabilities in [0, 1] drawn per request
// from the simulator's seeded random source: 0 never, 1 always.
//
// Which requests are affected:
//
//   - Down affects every request to /charges and /refunds, lookups
//     included;
//   - Latency and ErrorRate affect the same requests;
//   - RateLimitRate and TimeoutAfterChargeRate affect only POST /charges
//     and POST /refunds;
//   - /admin/*, /healthz and /readyz are never affected, so faults can
//     always be switched off again.
//
// They are applied in this order, the first one that answers winning:
// Down, Latency, ErrorRate, RateLimitRate, then the request is processed,
// then TimeoutAfterChargeRate.
//
// In JSON (PUT /admin/faults, GET /admin/faults) durations are Go duration
// strings ("250ms", "2s") and the field names are snake_case:
//
//	{"latency":"250ms","error_rate":0.1,"rate_limit_rate":0,"retry_after":"2s",
//	 "timeout_after_charge_rate":0,"hang":"30s","down":false}
type Faults struct {
	// Latency delays every affected request before anything else happens
	// (Down excepted). A client that gives up during the delay gets no
	// answer and nothing is processed. Zero: no delay.
	Latency time.Duration
	// ErrorRate is the share of affected requests answered 500 or 503
	// (chosen at random, one half each) without being processed.
	ErrorRate float64
	// RateLimitRate is the share of POST requests answered 429 with a
	// Retry-After header (RetryAfter) without being processed.
	RateLimitRate float64
	// RetryAfter is sent in the Retry-After header of a simulated 429, in
	// whole seconds rounded up. Zero: DefaultRetryAfter (1s).
	RetryAfter time.Duration
	// TimeoutAfterChargeRate is the share of POST requests that are
	// processed exactly as without the fault (a charge or refund is
	// created and stored, or replayed, or refused with 422) and then never
	// answered: the server holds the request until the client gives up or
	// Hang has passed, then drops the connection without a response. This
	// is the ambiguous case a client must resolve by looking the charge up
	// by its idempotency key. Requests refused by validation (400) are
	// answered normally.
	TimeoutAfterChargeRate float64
	// Hang is how long a request hit by TimeoutAfterChargeRate is held at
	// most. Zero: DefaultHang (30s).
	Hang time.Duration
	// Down makes every request to /charges and /refunds end with the
	// connection closed and no response at all (hijacked), or with a 503
	// where the connection cannot be hijacked (HTTP/2). Nothing is
	// processed.
	Down bool
}

// faultsJSON is the wire form of Faults.
type faultsJSON struct {
	Latency                string  `json:"latency"`
	ErrorRate              float64 `json:"error_rate"`
	RateLimitRate          float64 `json:"rate_limit_rate"`
	RetryAfter             string  `json:"retry_after"`
	TimeoutAfterChargeRate float64 `json:"timeout_after_charge_rate"`
	Hang                   string  `json:"hang"`
	Down                   bool    `json:"down"`
}

// fieldIssue is one invalid Faults field, named as in JSON and in the
// environment.
type fieldIssue struct {
	json, env, message string
}

// MarshalJSON writes f in the wire form described on Faults.
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{
		Latency:                f.Latency.String(),
		ErrorRate:              f.ErrorRate,
		RateLimitRate:          f.RateLimitRate,
		RetryAfter:             f.RetryAfter.String(),
		TimeoutAfterChargeRate: f.TimeoutAfterChargeRate,
		Hang:                   f.Hang.String(),
		Down:                   f.Down,
	})
}

// UnmarshalJSON reads the wire form described on Faults. Unknown fields
// and malformed durations are errors; absent fields are zero. The result
// is not validated; call Validate.
func (f *Faults) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var w faultsJSON
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("pspsim: faults: %w", err)
	}
	out, issues := w.faults()
	if len(issues) > 0 {
		return issuesError(issues, func(i fieldIssue) string { return i.json })
	}
	*f = out
	return nil
}

// faults converts the wire form, reporting unparsable durations.
func (w faultsJSON) faults() (Faults, []fieldIssue) {
	f := Faults{
		ErrorRate:              w.ErrorRate,
		RateLimitRate:          w.RateLimitRate,
		TimeoutAfterChargeRate: w.TimeoutAfterChargeRate,
		Down:                   w.Down,
	}
	var issues []fieldIssue
	for _, d := range []struct {
		raw       string
		json, env string
		dst       *time.Duration
	}{
		{w.Latency, "latency", EnvLatency, &f.Latency},
		{w.RetryAfter, "retry_after", EnvRetryAfter, &f.RetryAfter},
		{w.Hang, "hang", EnvHang, &f.Hang},
	} {
		if d.raw == "" {
			continue
		}
		v, err := time.ParseDuration(d.raw)
		if err != nil {
			issues = append(issues, fieldIssue{d.json, d.env, fmt.Sprintf("%q is not a duration such as \"250ms\" or \"2s\"", d.raw)})
			continue
		}
		*d.dst = v
	}
	return f, issues
}

// Validate reports every field out of range: rates must be in [0, 1] (NaN
// is not), durations must not be negative. The error names the fields as
// in JSON.
func (f Faults) Validate() error {
	if issues := f.issues(); len(issues) > 0 {
		return issuesError(issues, func(i fieldIssue) string { return i.json })
	}
	return nil
}

func (f Faults) issues() []fieldIssue {
	var issues []fieldIssue
	for _, r := range []struct {
		v         float64
		json, env string
	}{
		{f.ErrorRate, "error_rate", EnvErrorRate},
		{f.RateLimitRate, "rate_limit_rate", EnvRateLimitRate},
		{f.TimeoutAfterChargeRate, "timeout_after_charge_rate", EnvTimeoutAfterChargeRate},
	} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			issues = append(issues, fieldIssue{r.json, r.env, fmt.Sprintf("%v is not a rate between 0 and 1", r.v)})
		}
	}
	for _, d := range []struct {
		v         time.Duration
		json, env string
	}{
		{f.Latency, "latency", EnvLatency},
		{f.RetryAfter, "retry_after", EnvRetryAfter},
		{f.Hang, "hang", EnvHang},
	} {
		if d.v < 0 {
			issues = append(issues, fieldIssue{d.json, d.env, fmt.Sprintf("%s is negative", d.v)})
		}
	}
	return issues
}

// fieldOrder is the order fields are reported in: the order of Faults.
var fieldOrder = []string{"latency", "error_rate", "rate_limit_rate", "retry_after", "timeout_after_charge_rate", "hang", "down"}

// sortIssues orders issues as the fields of Faults, so that reports do not
// depend on which check found a problem first.
func sortIssues(issues []fieldIssue) []fieldIssue {
	envOrder := []string{EnvLatency, EnvErrorRate, EnvRateLimitRate, EnvRetryAfter, EnvTimeoutAfterChargeRate, EnvHang, EnvDown}
	rank := func(is fieldIssue) int {
		if i := slices.Index(fieldOrder, is.json); i >= 0 {
			return i
		}
		return slices.Index(envOrder, is.env)
	}
	slices.SortStableFunc(issues, func(a, b fieldIssue) int { return rank(a) - rank(b) })
	return issues
}

func issuesError(issues []fieldIssue, name func(fieldIssue) string) error {
	issues = sortIssues(issues)
	errs := make([]error, len(issues))
	for i, is := range issues {
		errs[i] = fmt.Errorf("pspsim: %s: %s", name(is), is.message)
	}
	return errors.Join(errs...)
}

// retryAfter is RetryAfter with its default.
func (f Faults) retryAfter() time.Duration {
	if f.RetryAfter == 0 {
		return DefaultRetryAfter
	}
	return f.RetryAfter
}

// hang is Hang with its default.
func (f Faults) hang() time.Duration {
	if f.Hang == 0 {
		return DefaultHang
	}
	return f.Hang
}

// Environment variables read by FaultsFromEnv.
const (
	// EnvLatency is Faults.Latency, a Go duration ("250ms").
	EnvLatency = "PSP_SIM_LATENCY"
	// EnvErrorRate is Faults.ErrorRate, a number in [0, 1].
	EnvErrorRate = "PSP_SIM_ERROR_RATE"
	// EnvRateLimitRate is Faults.RateLimitRate, a number in [0, 1].
	EnvRateLimitRate = "PSP_SIM_RATE_LIMIT_RATE"
	// EnvRetryAfter is Faults.RetryAfter, a Go duration ("2s").
	EnvRetryAfter = "PSP_SIM_RETRY_AFTER"
	// EnvTimeoutAfterChargeRate is Faults.TimeoutAfterChargeRate, a number
	// in [0, 1].
	EnvTimeoutAfterChargeRate = "PSP_SIM_TIMEOUT_AFTER_CHARGE_RATE"
	// EnvHang is Faults.Hang, a Go duration ("30s").
	EnvHang = "PSP_SIM_HANG"
	// EnvDown is Faults.Down, a boolean as strconv.ParseBool reads it
	// ("true", "1", "false", ...).
	EnvDown = "PSP_SIM_DOWN"
)

// FaultsFromEnv reads the initial faults of a simulator run as a process
// (the sandbox, chaos drills) from the environment, through getenv
// (os.Getenv in a run function). Unset or empty variables leave their
// field zero. The error names every variable that cannot be parsed or is
// out of range (see Validate), for example
//
//	pspsim: PSP_SIM_ERROR_RATE: 1.5 is not a rate between 0 and 1
func FaultsFromEnv(getenv func(string) string) (Faults, error) {
	var f Faults
	var issues []fieldIssue
	get := func(name string) (string, bool) {
		v := strings.TrimSpace(getenv(name))
		return v, v != ""
	}
	for _, d := range []struct {
		env string
		dst *time.Duration
	}{
		{EnvLatency, &f.Latency},
		{EnvRetryAfter, &f.RetryAfter},
		{EnvHang, &f.Hang},
	} {
		raw, ok := get(d.env)
		if !ok {
			continue
		}
		v, err := time.ParseDuration(raw)
		if err != nil {
			issues = append(issues, fieldIssue{env: d.env, message: fmt.Sprintf("%q is not a duration such as \"250ms\" or \"2s\"", raw)})
			continue
		}
		*d.dst = v
	}
	for _, r := range []struct {
		env string
		dst *float64
	}{
		{EnvErrorRate, &f.ErrorRate},
		{EnvRateLimitRate, &f.RateLimitRate},
		{EnvTimeoutAfterChargeRate, &f.TimeoutAfterChargeRate},
	} {
		raw, ok := get(r.env)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			issues = append(issues, fieldIssue{env: r.env, message: fmt.Sprintf("%q is not a number between 0 and 1", raw)})
			continue
		}
		*r.dst = v
	}
	if raw, ok := get(EnvDown); ok {
		v, err := strconv.ParseBool(raw)
		if err != nil {
			issues = append(issues, fieldIssue{env: EnvDown, message: fmt.Sprintf("%q is not a boolean (true or false)", raw)})
		}
		f.Down = v
	}
	// Unparsable values were left zero, which is in range: each variable
	// is reported once.
	issues = append(issues, f.issues()...)
	if len(issues) > 0 {
		return Faults{}, issuesError(issues, func(i fieldIssue) string { return i.env })
	}
	return f, nil
}
