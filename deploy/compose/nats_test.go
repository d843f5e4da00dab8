package compose_test

import (
	"os"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shopfloor/shopfloor/pkg/natsauth"
)

// TestEveryNATSClientConnectsAsItsOwnUser: the broker mounts the
// authorization generated from natsauth.Shopfloor and gets every user's
// password; every process with NATS_URL connects as the user named after
// its service with that user's password (never the operator's, never
// another service's); the console's tools get the operator's (ADR 0039).
func TestEveryNATSClientConnectsAsItsOwnUser(t *testing.T) {
	t.Parallel()
	for _, p := range []*types.Project{load(t), loadCluster(t)} {
		everyNATSClientConnectsAsItsOwnUser(t, p)
	}
}

func everyNATSClientConnectsAsItsOwnUser(t *testing.T, p *types.Project) {
	t.Helper()
	conf, err := os.ReadFile("nats/nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "\ninclude ./auth.conf\n") {
		t.Error("nats/nats.conf does not include ./auth.conf")
	}
	nats := p.Services["nats"]
	mounted := false
	for _, v := range nats.Volumes {
		mounted = mounted || (strings.HasSuffix(v.Source, "/nats/auth.conf") && v.Target == "/etc/nats/auth.conf")
	}
	if !mounted {
		t.Errorf("nats does not mount nats/auth.conf at /etc/nats/auth.conf: %+v", nats.Volumes)
	}
	for _, u := range natsauth.Shopfloor.Users {
		v := natsauth.PasswordVar(u.Name)
		if got := nats.Environment[v]; got == nil || *got != testSecrets[v] {
			t.Errorf("nats: %s = %v, want the secret %s", v, got, v)
		}
	}
	clients := 0
	for name, s := range p.Services {
		if s.Environment["NATS_URL"] == nil {
			continue
		}
		clients++
		svc, _, _ := strings.Cut(name, "-")
		user, pw := s.Environment["NATS_USER"], s.Environment["NATS_PASSWORD"]
		if _, ok := natsauth.Shopfloor.User(svc); !ok || user == nil || *user != svc {
			t.Errorf("%s: NATS_USER %v, want %s (a user of natsauth.Shopfloor)", name, user, svc)
			continue
		}
		if pw == nil || *pw != testSecrets[natsauth.PasswordVar(svc)] {
			t.Errorf("%s: NATS_PASSWORD is not %s", name, natsauth.PasswordVar(svc))
		}
	}
	if clients == 0 {
		t.Fatal("no service sets NATS_URL")
	}
	op := p.Services["web"].Environment["WEB_CONSOLE_NATS_PASSWORD"]
	if op == nil || *op != testSecrets[natsauth.PasswordVar("operator")] {
		t.Errorf("web: WEB_CONSOLE_NATS_PASSWORD %v, want the operator's", op)
	}
}
