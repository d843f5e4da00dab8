package target

import (
	"fmt"
	"path/filepath"

	"github.com/shopfloor/shopfloor/pkg/natsauth"
)

// NATSOperator is the NATS user drills and the console connect as, and
// operator commands (`<svc> dlq …`, `search check …`) run as: the only
// user that may read dead letters, republish into any stream and delete
// consumers (natsauth.Shopfloor, ADR 0039).
const NATSOperator = "operator"

// NATSConfig is how a drill reaches the system's NATS directly: NATS as
// NATSOperator with NATSPassword, or without credentials when the
// password is empty (a broker without authorization).
func (s *System) NATSConfig() natsauth.Config {
	c := natsauth.Config{URL: s.NATS}
	if s.NATSPassword != "" {
		c.User, c.Password = NATSOperator, s.NATSPassword
	}
	return c
}

// ReadNATSEnv returns the operator's NATS password from a run directory's
// nats.env (deploy/local/run.sh writes it, mode 0600: every user's
// NATS_<USER>_PASSWORD, which nats-server reads from its environment).
func ReadNATSEnv(runDir string) (string, error) {
	path := filepath.Join(runDir, "nats.env")
	env, err := readEnvFile(path)
	if err != nil {
		return "", fmt.Errorf("NATS credentials: %w (a run started before run.sh wrote nats.env: restart it)", err)
	}
	pw := env[natsauth.PasswordVar(NATSOperator)]
	if pw == "" {
		return "", fmt.Errorf("NATS credentials: %s has no %s", path, natsauth.PasswordVar(NATSOperator))
	}
	return pw, nil
}
