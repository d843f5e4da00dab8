package testinfra

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// shared holds what is started once per test binary and stopped by Main.
var shared struct {
	mu       sync.Mutex
	stoppers []func()
}

// onShutdown registers fn to run when Main stops the shared servers, last
// registered first.
func onShutdown(fn func()) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.stoppers = append(shared.stoppers, fn)
}

// Main runs the tests, stops every server started for this test binary, then
// checks for leaked goroutines (goleak) when the tests passed, and exits.
// Call it from TestMain.
func Main(m *testing.M, opts ...goleak.Option) {
	code := m.Run()
	Shutdown()
	if code == 0 {
		if err := goleak.Find(opts...); err != nil {
			fmt.Fprintf(os.Stderr, "testinfra: goroutines leaked after the tests passed: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// Shutdown stops every shared server and closes shared pools. Main calls it;
// call it yourself only when you write your own TestMain.
func Shutdown() {
	shared.mu.Lock()
	stoppers := shared.stoppers
	shared.stoppers = nil
	shared.mu.Unlock()
	for i := len(stoppers) - 1; i >= 0; i-- {
		stoppers[i]()
	}
}
