package console

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/chaos/target"
)

// TestRunDrillChecksWhatItIsAsked: a console without a drill system, an
// unknown drill or a load outside 10 s–2 min is refused before anything
// runs; a drill against a system that does not answer ends with why.
func TestRunDrillChecksWhatItIsAsked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := New(&target.System{})
	if err := c.RunDrill(ctx, "redis-down", 30*time.Second, "oscar"); err == nil || c.Drill() != nil {
		t.Fatalf("without a drill system: %v, run %+v", err, c.Drill())
	}
	// Nothing listens on these ports (base 1: 1+80 … are privileged and unused).
	c.EnableDrills(&target.System{Endpoints: target.LocalEndpoints(1), HTTP: nil})
	for _, bad := range []struct {
		name string
		d    time.Duration
	}{{"no-such-drill", 30 * time.Second}, {"all", 30 * time.Second}, {"redis-down", 5 * time.Second}, {"redis-down", 3 * time.Minute}} {
		if err := c.RunDrill(ctx, bad.name, bad.d, "oscar"); err == nil {
			t.Errorf("RunDrill(%q, %s): no error", bad.name, bad.d)
		}
	}
	if c.Drill() != nil {
		t.Fatal("a refused drill left a run")
	}
	if err := c.RunDrill(ctx, "redis-down", 10*time.Second, "oscar"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for c.Drill().Running && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	run := c.Drill()
	if run.Running || run.Err == "" || !strings.Contains(run.Err, "redis-down") || run.Operator != "oscar" || len(run.Results) != 0 {
		t.Errorf("a drill against nothing: %+v, want it ended with why", run)
	}
}
