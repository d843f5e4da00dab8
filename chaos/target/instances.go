package target

import (
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// SecondInstances are the processes of the consumer groups' second
// instances: deploy/local/run.sh starts them unless
// SHOPFLOOR_CONSUMER_INSTANCES=1, compose.yaml always.
var SecondInstances = []string{"catalog-invalidation-2", "orders-consumer-2", "payments-consumer-2", "notifications-consumer-2", "search-consumer-2"}

// MaxReplicas is the most instances of a role deploy/local/run.sh runs
// (SHOPFLOOR_REPLICAS, deploy/local/replicas.sh).
const MaxReplicas = 3

// ReplicaAdminOffset is how far instance k+1's admin listener is from
// instance k's (replicas.sh's instance_admin).
const ReplicaAdminOffset = 2000

// Replica is the name of instance k (2..MaxReplicas) of a process.
func Replica(name string, k int) string { return name + "-r" + strconv.Itoa(k) }

// IsReplica reports whether name is a further instance of a process.
func IsReplica(name string) bool {
	for k := 2; k <= MaxReplicas; k++ {
		if strings.HasSuffix(name, "-r"+strconv.Itoa(k)) {
			return true
		}
	}
	return false
}

// addReplicas adds the further instances of every process of a local run
// (SHOPFLOOR_REPLICAS up to MaxReplicas) to e.Metrics; the consumer
// groups' second instances have none. DropAbsentInstances removes those
// the run does not have.
func (e *Endpoints) addReplicas() {
	// The first instances, before any replica is added: a map grown while
	// it is ranged over may show the new keys too.
	firsts := make(map[string]string, len(e.Metrics))
	for name, admin := range e.Metrics {
		if !slices.Contains(SecondInstances, name) {
			firsts[name] = admin
		}
	}
	for name, admin := range firsts {
		u, err := url.Parse(admin)
		if err != nil {
			continue
		}
		port, err := strconv.Atoi(u.Port())
		if err != nil {
			continue
		}
		for k := 2; k <= MaxReplicas; k++ {
			r := *u
			r.Host = u.Hostname() + ":" + strconv.Itoa(port+ReplicaAdminOffset*(k-1))
			e.Metrics[Replica(name, k)] = r.String()
		}
	}
}

// DropAbsentInstances removes from e.Metrics the further instances that
// the local run in runDir does not run (no runDir/pids/NAME.pid: it was
// started with SHOPFLOOR_CONSUMER_INSTANCES=1, or with fewer
// SHOPFLOOR_REPLICAS), so that the checks do not wait for processes that
// do not exist. A run directory that cannot be read leaves e as it is.
func (e *Endpoints) DropAbsentInstances(runDir string) {
	if _, err := os.Stat(filepath.Join(runDir, "pids")); err != nil {
		return
	}
	for name := range e.Metrics {
		if !slices.Contains(SecondInstances, name) && !IsReplica(name) {
			continue
		}
		if _, err := os.Stat(filepath.Join(runDir, "pids", name+".pid")); err != nil {
			delete(e.Metrics, name)
		}
	}
}
