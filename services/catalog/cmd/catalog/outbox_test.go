package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/outbox"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

// TestOutboxCommandReachesTheOperatorToolOnTheServiceDatabase: `catalog outbox ...` reaches pkg/outbox's operator
// tool on the service's own database (orders and payments wire it the
// same way, through service.Runtime.OutboxCommand).
func TestOutboxCommandReachesTheOperatorToolOnTheServiceDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, nil)
	env := map[string]string{"DATABASE_URL": db.URL}
	getenv := func(k string) string { return env[k] }
	if err := run(ctx, []string{"catalog", "migrate"}, getenv, &testinfra.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var out testinfra.Buffer
	if err := run(ctx, []string{"catalog", "outbox", "parked"}, getenv, &out); err != nil || !strings.Contains(out.String(), "no parked rows") {
		t.Errorf("outbox parked: %v, printed %q", err, out.String())
	}
	if err := run(ctx, []string{"catalog", "outbox", "unpark", "7"}, getenv, &testinfra.Buffer{}); !errors.Is(err, outbox.ErrNotParked) {
		t.Errorf("outbox unpark 7 on an empty outbox: %v, want ErrNotParked", err)
	}
	if err := run(ctx, []string{"catalog", "outbox"}, getenv, &testinfra.Buffer{}); !errors.Is(err, outbox.ErrUsage) {
		t.Errorf("outbox without a command: %v, want the usage", err)
	}
}
