package target

import (
	"os"
	"path/filepath"
)

// SecondInstances are the processes of the consumer groups' second
// instances: deploy/local/run.sh starts them unless
// SHOPFLOOR_CONSUMER_INSTANCES=1, compose.yaml always.
var SecondInstances = []string{"catalog-invalidation-2", "orders-consumer-2", "payments-consumer-2", "notifications-consumer-2", "search-consumer-2"}

// DropAbsentInstances removes from e.Metrics the second instances that
// the local run in runDir does not run (no runDir/pids/NAME.pid: it was
// started with SHOPFLOOR_CONSUMER_INSTANCES=1), so that the checks do
// not wait for processes that do not exist. A run directory that cannot
// be read leaves e as it is.
func (e *Endpoints) DropAbsentInstances(runDir string) {
	if _, err := os.Stat(filepath.Join(runDir, "pids")); err != nil {
		return
	}
	for _, name := range SecondInstances {
		if _, err := os.Stat(filepath.Join(runDir, "pids", name+".pid")); err != nil {
			delete(e.Metrics, name)
		}
	}
}
