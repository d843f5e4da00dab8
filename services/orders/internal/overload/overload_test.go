package overload

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestSheddingStartsAboveTheThresholdAndStopsOnlyBelowRecovery: shedding starts above the threshold and stops only below
// the recovery level, so an age between the two keeps the current state.
func TestSheddingStartsAboveTheThresholdAndStopsOnlyBelowRecovery(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Threshold: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	for i, step := range []struct {
		age  time.Duration
		shed bool
	}{
		{0, false}, {20 * time.Second, false}, {30 * time.Second, false}, {31 * time.Second, true},
		{20 * time.Second, true}, {15 * time.Second, true}, {14 * time.Second, false}, {20 * time.Second, false},
	} {
		s.observe(context.Background(), step.age)
		rec := httptest.NewRecorder()
		s.Middleware(next).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/orders", nil))
		if got := rec.Code == http.StatusServiceUnavailable; got != step.shed || s.Shedding() != step.shed {
			t.Fatalf("step %d, age %s: status %d, want shedding %v", i, step.age, rec.Code, step.shed)
		}
	}
}

func TestNewRefusesAMissingOrInvertedThreshold(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{}, {Threshold: time.Second, RecoverBelow: 2 * time.Second}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
