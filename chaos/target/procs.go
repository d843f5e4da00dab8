package target

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Processes stops and starts single role processes by name (orders-relay,
// payments-worker, search, nats, …: the names of `deploy/local/ctl.sh
// status` and of the compose services).
type Processes interface {
	// Kill ends the process with SIGKILL (a crash, not a shutdown) and
	// keeps it down until Start.
	Kill(ctx context.Context, name string) error
	// Start lets the process run again; it returns once it was started,
	// not once it is ready.
	Start(ctx context.Context, name string) error
}

// Ctl controls a deploy/local run through deploy/local/ctl.sh.
type Ctl struct {
	// Script is the path of ctl.sh.
	Script string
	// Env is added to the environment of every call (SHOPFLOOR_RUN_DIR
	// selects the run).
	Env []string
}

var _ Processes = (*Ctl)(nil)

// Kill runs `ctl.sh kill NAME`.
func (c *Ctl) Kill(ctx context.Context, name string) error { return c.run(ctx, "kill", name) }

// Start runs `ctl.sh start NAME`.
func (c *Ctl) Start(ctx context.Context, name string) error { return c.run(ctx, "start", name) }

// Up runs `ctl.sh up` and returns when every process is ready.
func (c *Ctl) Up(ctx context.Context) error { return c.run(ctx, "up") }

// Down runs `ctl.sh down`.
func (c *Ctl) Down(ctx context.Context) error { return c.run(ctx, "down") }

func (c *Ctl) run(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, c.Script, args...) //nolint:gosec // G204: the operator's own ctl.sh with fixed verbs
	cmd.Env = append(os.Environ(), c.Env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctl.sh %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Compose controls a docker compose project with the docker CLI. It was
// written for chaos/compose.chaos.yaml and has not been run on this
// repository's CI machines (no container engine there).
type Compose struct {
	// Files are the compose files (-f), e.g. deploy/compose/compose.yaml
	// and chaos/compose.chaos.yaml.
	Files []string
}

var _ Processes = (*Compose)(nil)

// Kill runs `docker compose kill -s SIGKILL NAME`. A container killed by
// the CLI is not restarted by its restart policy.
func (c *Compose) Kill(ctx context.Context, name string) error {
	return c.run(ctx, "kill", "-s", "SIGKILL", name)
}

// Start runs `docker compose start NAME`.
func (c *Compose) Start(ctx context.Context, name string) error { return c.run(ctx, "start", name) }

func (c *Compose) run(ctx context.Context, args ...string) error {
	full := []string{"compose"}
	for _, f := range c.Files {
		full = append(full, "-f", f)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, "docker", full...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker %s: %w: %s", strings.Join(full, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
