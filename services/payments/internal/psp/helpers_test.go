package psp_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/payments/internal/psp"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

type bundle struct {
	sim    *pspsim.Sim
	srv    *httptest.Server
	client *psp.Client
}

// setup runs a simulator with faults on its own server and a client for
// it with the given per-call timeout (0: the default).
func setup(t testing.TB, faults pspsim.Faults, timeout time.Duration) *bundle {
	t.Helper()
	sim, err := pspsim.New(pspsim.Config{Seed: 7, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	client, err := psp.New(psp.Config{BaseURL: srv.URL, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{sim: sim, srv: srv, client: client}
}

func visa(ref string) psp.ChargeRequest {
	return psp.ChargeRequest{AmountMinor: 4999, Currency: "EUR", PaymentMethod: pspsim.TokenVisa, Reference: ref}
}

// wantClass fails the test unless err has class want.
func wantClass(t testing.TB, err error, want psp.Class) {
	t.Helper()
	if got := psp.Classify(err); got != want {
		t.Fatalf("Classify(%v) = %s, want %s", err, got, want)
	}
}
