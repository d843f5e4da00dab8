package drill

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/chaos/load"
)

// answersAt makes n answers with status, each took, spread one
// millisecond apart from at.
func answersAt(at time.Time, n, status int, took time.Duration, retryAfter bool) []load.Answered {
	out := make([]load.Answered, n)
	for i := range out {
		out[i] = load.Answered{At: at.Add(time.Duration(i) * time.Millisecond), Took: took, Status: status, RetryAfter: retryAfter}
	}
	return out
}

func TestQuantileIsTheNearestRankAndZeroForNone(t *testing.T) {
	t.Parallel()
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.95, 95 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := quantile(ds, tc.p); got != tc.want {
			t.Errorf("quantile(1..100ms, %g) = %s, want %s", tc.p, got, tc.want)
		}
	}
	if got := quantile(nil, 0.99); got != 0 {
		t.Errorf("quantile(nil) = %s, want 0", got)
	}
}

func TestRefusalRowHoldsOnlyForFast503sWithRetryAfter(t *testing.T) {
	t.Parallel()
	start := time.Unix(1000, 0)
	fault, heal := start.Add(10*time.Second), start.Add(20*time.Second)
	before := answersAt(start, 10, http.StatusCreated, 20*time.Millisecond, false)
	fast := answersAt(fault, 97, http.StatusServiceUnavailable, 3*time.Millisecond, true)
	probes := answersAt(fault.Add(time.Second), 3, http.StatusServiceUnavailable, 2*time.Second, true) // the cut's first calls, a probe
	// At 2/s over a 10s fault: at most 2 × 3 + 2 + 1 = 9 slow refusals.
	tooMany := answersAt(fault.Add(time.Second), 10, http.StatusServiceUnavailable, 2*time.Second, true)
	for _, tc := range []struct {
		name string
		ans  []load.Answered
		held bool
		want string
	}{
		{"fast refusals, a few probes", concat(before, fast, probes), true, "503×100"},
		{"no breaker: every refusal waits for its attempts", concat(before, answersAt(fault, 100, http.StatusServiceUnavailable, 6*time.Second, true)), false, "p50 6s"},
		{"more slow refusals than the first timeout and the probes explain", concat(before, fast, tooMany), false, "10 slower than 100ms"},
		{"a 503 without Retry-After", concat(before, fast, answersAt(fault, 1, http.StatusServiceUnavailable, time.Millisecond, false)), false, "503 without Retry-After: 1"},
		{"a 500 after the heal", concat(before, fast, answersAt(heal.Add(time.Second), 1, http.StatusInternalServerError, time.Millisecond, false)), false, "(whole run): 1"},
		{"nothing refused", before, false, "no answers"},
	} {
		r := &Run{Cfg: Config{Rate: 2}, FaultStart: fault, HealEnd: heal, loadResult: load.Result{Answers: tc.ans}}
		got := refusalRow(r)
		if got.Held != tc.held || !strings.Contains(got.Evidence, tc.want) {
			t.Errorf("%s: held %t, %q; want held %t and %q", tc.name, got.Held, got.Evidence, tc.held, tc.want)
		}
	}
}

func TestShedRowHoldsOnlyWhenCheckoutShedWithRetryAfter(t *testing.T) {
	t.Parallel()
	start := time.Unix(1000, 0)
	fault, heal := start.Add(10*time.Second), start.Add(40*time.Second)
	ok := concat(answersAt(fault, 50, http.StatusCreated, 300*time.Millisecond, false), answersAt(fault, 20, http.StatusServiceUnavailable, time.Millisecond, true))
	shed := func(backlog, busy float64) map[string]float64 {
		return map[string]float64{"orders_checkout_shed_total": backlog, "orders_checkout_busy_total": busy}
	}
	for _, tc := range []struct {
		name string
		res  load.Result
		shed map[string]float64
		held bool
		want string
	}{
		{"shed with Retry-After", load.Result{Answers: ok}, shed(20, 0), true, "shed_total +20"},
		{"refused at the pool with Retry-After", load.Result{Answers: ok}, shed(0, 20), true, "busy_total +20"},
		{"shedding off", load.Result{Answers: answersAt(fault, 50, http.StatusCreated, time.Second, false)}, shed(0, 0), false, "shed_total +0"},
		{"a 503 without Retry-After", load.Result{Answers: ok, NoRetryAfter: map[int]int{503: 2}}, shed(20, 0), false, "without Retry-After: 2"},
		{"a 500", load.Result{Answers: concat(ok, answersAt(fault, 1, http.StatusInternalServerError, time.Millisecond, false))}, shed(20, 0), false, "other 5xx: 1"},
	} {
		r := &Run{FaultStart: fault, HealEnd: heal, Samples: NewSampler(nil), loadResult: tc.res}
		got := shedRow(r, tc.shed)
		if got.Held != tc.held || !strings.Contains(got.Evidence, tc.want) {
			t.Errorf("%s: held %t, %q; want held %t and %q", tc.name, got.Held, got.Evidence, tc.held, tc.want)
		}
	}
}

func TestRecoversRowComparesTheP99AfterTheHealWithTheBaseline(t *testing.T) {
	t.Parallel()
	start := time.Unix(1000, 0)
	fault, heal := start.Add(15*time.Second), start.Add(45*time.Second)
	base := answersAt(start, 100, http.StatusCreated, 200*time.Millisecond, false)
	for _, tc := range []struct {
		name  string
		after time.Duration
		held  bool
	}{{"back near the baseline", 300 * time.Millisecond, true}, {"still slow", 2 * time.Second, false}} {
		ans := concat(base, answersAt(heal.Add(12*time.Second), 50, http.StatusCreated, tc.after, false))
		r := &Run{start: start, Cfg: Config{Duration: 60 * time.Second}, FaultStart: fault, HealEnd: heal, loadResult: load.Result{Answers: ans}}
		if got := recoversRow(t.Context(), r); got.Held != tc.held {
			t.Errorf("%s: held %t, %q; want %t", tc.name, got.Held, got.Evidence, tc.held)
		}
	}
}

func TestStormRowFailsOnTooManyTimeoutsOrAnOpenBreaker(t *testing.T) {
	t.Parallel()
	before := map[string]float64{"stream_redeliveries_total": 10, `breaker_transitions_total{to="open"}`: 1}
	for _, tc := range []struct {
		name  string
		after map[string]float64
		res   load.Result
		held  bool
		want  string
	}{
		{"quiet", map[string]float64{"stream_redeliveries_total": 12, `breaker_transitions_total{to="open"}`: 1}, load.Result{Started: 1000}, true, "stream_redeliveries_total +2"},
		{"client timeouts", map[string]float64{"stream_redeliveries_total": 10}, load.Result{Started: 1000, Retries: map[int]int{0: 20}}, false, "network errors 20"},
		{"refusals with Retry-After are backpressure, not timeouts", map[string]float64{"stream_redeliveries_total": 10, `http_inflight_rejected_total{limiter="orders-api"}`: 300, "orders_checkout_busy_total": 200},
			load.Result{Started: 1000, Retries: map[int]int{503: 500}}, true, "orders_checkout_busy_total +200"},
		{"the cache failing open on a slow Redis is by design", map[string]float64{"stream_redeliveries_total": 10, "cache_redis_errors_total": 40},
			load.Result{Started: 1000}, true, "cache_redis_errors_total +40"},
		{"a breaker opened", map[string]float64{"stream_redeliveries_total": 10, `breaker_transitions_total{to="open"}`: 2}, load.Result{Started: 1000}, false, "+1"},
	} {
		r := &Run{loadResult: tc.res}
		got := stormRow(r, before, tc.after)
		if got.Held != tc.held || !strings.Contains(got.Evidence, tc.want) {
			t.Errorf("%s: held %t, %q; want held %t and %q", tc.name, got.Held, got.Evidence, tc.held, tc.want)
		}
	}
}

func TestMergeLoadsAddsCountsAndOrders(t *testing.T) {
	t.Parallel()
	a := load.Result{Started: 2, Accepted: []load.Order{{ID: "a"}}, Retries: map[int]int{503: 1}}
	b := load.Result{Started: 3, Accepted: []load.Order{{ID: "b"}}, Retries: map[int]int{503: 2, 0: 1}, Refused: map[int]int{422: 1},
		RefusedSample: map[int]string{422: "bad"}, NoRetryAfter: map[int]int{503: 1}, Answers: []load.Answered{{Status: 201}}}
	got := mergeLoads(a, b)
	if got.Started != 5 || len(got.Accepted) != 2 || got.Retries[503] != 3 || got.Retries[0] != 1 || got.Refused[422] != 1 ||
		got.RefusedSample[422] != "bad" || got.NoRetryAfter[503] != 1 || len(got.Answers) != 1 {
		t.Fatalf("mergeLoads = %+v", got)
	}
}

func concat(as ...[]load.Answered) []load.Answered {
	var out []load.Answered
	for _, a := range as {
		out = append(out, a...)
	}
	return out
}
