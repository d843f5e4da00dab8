package target

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"

	"github.com/shopfloor/shopfloor/pkg/pgroles"
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
// written for deploy/compose/compose.chaos.yaml and has not been run on this
// repository's CI machines (no container engine there).
type Compose struct {
	// Files are the compose files (-f), e.g. deploy/compose/compose.yaml
	// and deploy/compose/compose.chaos.yaml.
	Files []string
	// DryRun, when set, receives each command line (Command, joined by
	// spaces, one per line) instead of running it: Kill and Start then
	// return nil without a container engine. Tests render the commands
	// a drill would run this way.
	DryRun io.Writer
	// NATSPassword is the operator's NATS password: Exec runs operator
	// commands as the operator (NATS_USER, NATS_PASSWORD; ADR 0039),
	// passing the password through the environment, not the command
	// line. Empty: with the container's own NATS user.
	NATSPassword string
	// DatabaseOwners are the owner roles' DATABASE_URLs by binary
	// (search: postgres://search_owner:…@postgres:5432/search): Exec runs
	// that binary's operator commands as its database's owner (ADR 0040;
	// search check and rebuild create tables, which the app role the
	// container runs as may not), the URL passed through the environment.
	DatabaseOwners map[string]string
}

var _ Processes = (*Compose)(nil)

// Kill runs `docker compose kill -s SIGKILL NAME`. A container killed by
// the CLI is not restarted by its restart policy.
func (c *Compose) Kill(ctx context.Context, name string) error {
	return c.run(ctx, "kill", "-s", "SIGKILL", name)
}

// Start runs `docker compose start NAME`.
func (c *Compose) Start(ctx context.Context, name string) error { return c.run(ctx, "start", name) }

// Command returns the argv of `docker compose -f FILE… ARGS…`: what Kill
// and Start run (Kill: args "kill", "-s", "SIGKILL", NAME; Start:
// "start", NAME).
func (c *Compose) Command(args ...string) []string {
	full := []string{"docker", "compose"}
	for _, f := range c.Files {
		full = append(full, "-f", f)
	}
	return append(full, args...)
}

func (c *Compose) run(ctx context.Context, args ...string) error {
	full := c.Command(args...)
	if c.DryRun != nil {
		if _, err := fmt.Fprintln(c.DryRun, strings.Join(full, " ")); err != nil {
			return fmt.Errorf("dry run of %s: %w", strings.Join(full, " "), err)
		}
		return nil
	}
	cmd := exec.CommandContext(ctx, full[0], full[1:]...) //nolint:gosec // G204: the docker CLI with fixed verbs and the drill's process names
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(full, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Commands runs an operator command of a process's binary with that
// process's configuration (its environment: DATABASE_URL, NATS_URL, …),
// as an operator does: `<svc> dlq …`, `<svc> audit …`,
// `search check …`. Ctl and Compose implement it.
type Commands interface {
	// Exec runs the binary of process (orders-relay runs orders) with
	// args and returns its standard output; an exit status other than 0
	// is an error that carries the output.
	Exec(ctx context.Context, process string, args ...string) (string, error)
}

var (
	_ Commands = (*Ctl)(nil)
	_ Commands = (*Compose)(nil)
)

// Exec runs `ctl.sh exec NAME ARGS...`: the process's recorded command
// line with its last word (serve) replaced by args.
func (c *Ctl) Exec(ctx context.Context, process string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.Script, append([]string{"exec", process}, args...)...) //nolint:gosec // G204: the operator's own ctl.sh
	cmd.Env = append(os.Environ(), c.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ctl.sh exec %s %s: %w: %s%s", process, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()), tail(out))
	}
	return string(out), nil
}

// ExecArgs is the docker command line Exec runs for process: `docker
// compose -f … exec -T NAME BINARY ARGS...`, the binary being the
// process name's first word (search-consumer-2 runs search). With a
// NATSPassword it runs as the NATS operator: `-e NATS_USER=operator -e
// NATS_PASSWORD` (the value from Exec's environment); with the binary's
// entry in DatabaseOwners, as its database's owner: `-e DATABASE_URL`.
func (c *Compose) ExecArgs(process string, args ...string) []string {
	full := []string{"compose"}
	for _, f := range c.Files {
		full = append(full, "-f", f)
	}
	full = append(full, "exec", "-T")
	if c.NATSPassword != "" {
		full = append(full, "-e", "NATS_USER="+NATSOperator, "-e", "NATS_PASSWORD")
	}
	binary, _, _ := strings.Cut(process, "-")
	if c.DatabaseOwners[binary] != "" {
		full = append(full, "-e", "DATABASE_URL")
	}
	return append(append(full, process, binary), args...)
}

// Exec runs `docker compose exec -T NAME BINARY ARGS...` (ExecArgs).
// With DryRun it writes the command line instead and returns no output.
func (c *Compose) Exec(ctx context.Context, process string, args ...string) (string, error) {
	full := c.ExecArgs(process, args...)
	if c.DryRun != nil {
		if _, err := fmt.Fprintln(c.DryRun, "docker "+strings.Join(full, " ")); err != nil {
			return "", fmt.Errorf("dry run of docker %s: %w", strings.Join(full, " "), err)
		}
		return "", nil
	}
	cmd := exec.CommandContext(ctx, "docker", full...) //nolint:gosec // G204: docker compose with the drill's own arguments
	cmd.Env = os.Environ()
	if c.NATSPassword != "" {
		cmd.Env = append(cmd.Env, "NATS_PASSWORD="+c.NATSPassword)
	}
	if binary, _, _ := strings.Cut(process, "-"); c.DatabaseOwners[binary] != "" {
		cmd.Env = append(cmd.Env, "DATABASE_URL="+c.DatabaseOwners[binary])
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s%s", strings.Join(full, " "), err, bytes.TrimSpace(stderr.Bytes()), tail(out))
	}
	return string(out), nil
}

// tail is the last 300 bytes of out, for an error message.
func tail(out []byte) string {
	out = bytes.TrimSpace(out)
	if len(out) == 0 {
		return ""
	}
	if len(out) > 300 {
		out = out[len(out)-300:]
	}
	return "; output: " + string(out)
}

// ComposeDatabaseOwners are the owner roles' URLs inside compose's network
// for every database in Databases whose <SVC>_DB_OWNER_PASSWORD lookup
// finds (compose's .env; ADR 0040).
func ComposeDatabaseOwners(lookup func(key string) (string, error)) map[string]string {
	out := map[string]string{}
	for _, db := range Databases {
		ownerVar, _ := pgroles.PasswordVars(db)
		pw, err := lookup(ownerVar)
		if err != nil || pw == "" {
			continue
		}
		u := url.URL{Scheme: "postgres", User: url.UserPassword(db+"_owner", pw), Host: "postgres:5432", Path: "/" + db, RawQuery: "sslmode=disable"}
		out[db] = u.String()
	}
	return out
}
