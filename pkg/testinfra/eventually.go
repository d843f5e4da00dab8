package testinfra

import (
	"testing"
	"time"
)

// Eventually polls cond every 20ms until it returns nil, and fails the test
// with cond's last error when within has passed. Use it to wait for
// asynchronous work (a relay, a consumer, a server becoming ready) instead
// of time.Sleep: it returns as soon as the work is done, and a test that
// fails says what it was waiting for.
func Eventually(tb testing.TB, within time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not within %s: %v", within, err)
		}
		<-tick.C
	}
}
