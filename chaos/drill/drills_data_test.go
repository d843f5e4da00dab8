package drill

import (
	"net/http"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/chaos/load"
)

// TestUnavailableRowHoldsOnlyFor503sWithRetryAfter: 503s with Retry-After hold; a 500, a 503 without
// Retry-After or a dropped connection while the database is down does not.
func TestUnavailableRowHoldsOnlyFor503sWithRetryAfter(t *testing.T) {
	t.Parallel()
	at := time.Now()
	base := append(answersAt(at, 5, http.StatusCreated, time.Millisecond, false),
		answersAt(at, 7, http.StatusServiceUnavailable, time.Millisecond, true)...)
	for _, tc := range []struct {
		name  string
		extra []load.Answered
		held  bool
	}{
		{"503 with Retry-After", nil, true},
		{"a 500", answersAt(at, 1, http.StatusInternalServerError, time.Millisecond, false), false},
		{"a 503 without Retry-After", answersAt(at, 1, http.StatusServiceUnavailable, time.Millisecond, false), false},
		{"a dropped connection", answersAt(at, 1, 0, time.Millisecond, false), false},
	} {
		row := unavailableRow(load.Result{Answers: append(append([]load.Answered(nil), base...), tc.extra...)}, "PostgreSQL")
		if row.Held != tc.held {
			t.Errorf("%s: held %v, want %v (%s)", tc.name, row.Held, tc.held, row.Evidence)
		}
	}
}
