package drill

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/chaos/invariant"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// natsNodes are the JetStream cluster's nodes as ctl.sh names them
// (SHOPFLOOR_NATS_NODES=3, ADR 0041); each node's server_name is its
// process name, so stream info names processes.
var natsNodes = []string{"nats", "nats-2", "nats-3"}

// nodeKilled is what natsNodeKilled did in one run.
type nodeKilled struct {
	mu                sync.Mutex
	first, leader     string // the node killed first, the ORDERS leader killed later
	newLeader         string // who led ORDERS after the leader's kill
	replicas          int
	rejoined          bool // the first node was current again before the leader was killed
	killed, restarted []string
}

func (k *nodeKilled) note(f func(k *nodeKilled)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f(k)
}

// natsNodeKilled is the cluster's drill: one node dies and comes back,
// then the node leading ORDERS dies, both mid-load. With three replicas
// a majority stays up throughout, so the streams keep accepting
// publishes after a leader election.
func natsNodeKilled() Drill {
	var runs perRun[nodeKilled]
	return Drill{
		Name:      "nats-node-killed",
		Resource:  "nats",
		Processes: natsNodes,
		NoCompose: "compose's cluster overlay (compose.cluster.yaml) has no Toxiproxy links or published ports for nats-2 and nats-3 yet, so the drill's connection from the host cannot follow the cluster when nats dies",
		Fault: "on a JetStream cluster of three (SHOPFLOOR_NATS_NODES=3, streams with 3 replicas): SIGKILL nats-2 and start it again after a third " +
			"of the fault window; once it has caught up, SIGKILL the node leading ORDERS and start it again after the fault window",
		Proves: "losing a node, then a stream's leader, loses nothing acknowledged and stops nothing for long: publishes resume after the election, " +
			"every order converges once (#1, #2, #3, #5), lags and backlogs drain, the killed nodes catch up and every service reconnects by itself",
		MinFaultFor: 30 * time.Second,
		Cluster:     true,
		Inject: func(ctx context.Context, r *Run) error {
			k := runs.of(r)
			// One connection for the whole fault, made while every node
			// is up: it learns the other nodes from the cluster and
			// follows them when the one it is on dies (the system's NATS
			// address names one node only, which may be the leader).
			nc, js, err := connectNATS(ctx, r.Sys, "nats-node-killed")
			if err != nil {
				return err
			}
			defer nc.Close()
			replicas, leader, err := ordersLeader(ctx, js)
			if err != nil {
				return err
			}
			k.note(func(k *nodeKilled) { k.replicas = replicas })
			if replicas < 3 {
				return fmt.Errorf("ORDERS has %d replica(s): this drill needs the cluster (SHOPFLOOR_NATS_NODES=3)", replicas)
			}
			first := "nats-2"
			if err := kill(first)(ctx, r); err != nil {
				return err
			}
			k.note(func(k *nodeKilled) { k.first, k.killed = first, append(k.killed, first) })
			r.Logf("ORDERS led by %s; killed %s", leader, first)
			if !sleepUntilHealed(ctx, r, r.Cfg.FaultFor/3) {
				return nil
			}
			if err := start(first)(ctx, r); err != nil {
				return err
			}
			k.note(func(k *nodeKilled) { k.restarted = append(k.restarted, first) })
			// The leader may die only once the restarted node is a current
			// replica again: two of three nodes must stay up.
			if err := waitCurrent(ctx, js, first); err != nil {
				return err
			}
			k.note(func(k *nodeKilled) { k.rejoined = true })
			_, leader, err = ordersLeader(ctx, js)
			if err != nil {
				return err
			}
			if err := kill(leader)(ctx, r); err != nil {
				return err
			}
			k.note(func(k *nodeKilled) { k.leader, k.killed = leader, append(k.killed, leader) })
			// Who leads now (the drill's own client follows the cluster).
			var newLeader string
			for range 30 {
				if _, l, err := ordersLeader(ctx, js); err == nil && l != "" && l != leader {
					newLeader = l
					break
				}
				if !sleep(ctx, time.Second) {
					break
				}
			}
			k.note(func(k *nodeKilled) { k.newLeader = newLeader })
			r.Logf("killed %s, the ORDERS leader; ORDERS now led by %q", leader, newLeader)
			return nil
		},
		Heal: func(ctx context.Context, r *Run) error {
			k := runs.of(r)
			var errs []error
			for _, n := range natsNodes {
				k.mu.Lock()
				down := slices.Contains(k.killed, n) && !slices.Contains(k.restarted, n)
				k.mu.Unlock()
				if down {
					errs = append(errs, start(n)(ctx, r))
				}
			}
			return errors.Join(errs...)
		},
		Effect: func(r *Run) invariant.Result {
			k := runs.of(r)
			k.mu.Lock()
			defer k.mu.Unlock()
			ok := k.replicas >= 3 && k.rejoined && k.leader != "" && k.newLeader != "" && k.newLeader != k.leader
			return invariant.Result{Invariant: effectName, Held: ok,
				Evidence: fmt.Sprintf("ORDERS replicas %d; killed %s, which caught up again: %v; then killed the ORDERS leader %q, and %q led after the election",
					k.replicas, k.first, k.rejoined, k.leader, k.newLeader)}
		},
		Probe: func(ctx context.Context, r *Run) func(context.Context) []invariant.Result {
			return func(ctx context.Context) []invariant.Result {
				return []invariant.Result{reconnectedRow(ctx, r), caughtUpRow(ctx, r)}
			}
		},
	}
}

// ordersInfo is the ORDERS stream's info.
func ordersInfo(ctx context.Context, js jetstream.JetStream) (*jetstream.StreamInfo, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := js.Stream(cctx, ordersapi.Stream)
	if err != nil {
		return nil, fmt.Errorf("ORDERS stream info: %w", err)
	}
	return s.CachedInfo(), nil
}

// ordersLeader returns the ORDERS stream's replica count and the node
// that leads it.
func ordersLeader(ctx context.Context, js jetstream.JetStream) (int, string, error) {
	info, err := ordersInfo(ctx, js)
	if err != nil {
		return 0, "", err
	}
	if info.Cluster == nil {
		return info.Config.Replicas, "", nil
	}
	return info.Config.Replicas, info.Cluster.Leader, nil
}

// waitCurrent waits (up to 60 s) until node is a current, online replica
// of ORDERS again.
func waitCurrent(ctx context.Context, js jetstream.JetStream, node string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := replicaCurrent(ctx, js, node)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || !sleep(ctx, time.Second) {
			return fmt.Errorf("%s did not catch up within 60s: %w", node, err)
		}
	}
}

func replicaCurrent(ctx context.Context, js jetstream.JetStream, node string) error {
	info, err := ordersInfo(ctx, js)
	if err != nil {
		return err
	}
	c := info.Cluster
	if c == nil {
		return errors.New("ORDERS has no cluster information")
	}
	if c.Leader == node {
		return nil
	}
	for _, p := range c.Replicas {
		if p.Name == node {
			if p.Current && !p.Offline {
				return nil
			}
			return fmt.Errorf("replica %s: current %v, offline %v, lag %d", p.Name, p.Current, p.Offline, p.Lag)
		}
	}
	return fmt.Errorf("%s is not a replica of ORDERS (leader %s)", node, c.Leader)
}

// caughtUpRow: after the heal every node is the leader or a current
// replica of ORDERS: the killed nodes caught up from the others.
func caughtUpRow(ctx context.Context, r *Run) invariant.Result {
	row := invariant.Result{Invariant: "every node holds a current copy of ORDERS after the heal"}
	nc, js, err := connectNATS(ctx, r.Sys, "nats-node-killed")
	if err != nil {
		row.Evidence = err.Error()
		return row
	}
	defer nc.Close()
	var behind []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		behind = behind[:0]
		for _, n := range natsNodes {
			if err := replicaCurrent(ctx, js, n); err != nil {
				behind = append(behind, fmt.Sprintf("%s (%v)", n, err))
			}
		}
		if len(behind) == 0 || time.Now().After(deadline) || !sleep(ctx, time.Second) {
			break
		}
	}
	row.Held = len(behind) == 0
	row.Evidence = fmt.Sprintf("%d of %d nodes current", len(natsNodes)-len(behind), len(natsNodes))
	if len(behind) > 0 {
		row.Evidence += "; behind: " + fmt.Sprint(behind)
	}
	return row
}
