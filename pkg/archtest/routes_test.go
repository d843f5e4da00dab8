package archtest_test

import (
	"os"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/shopfloor/shopfloor/pkg/archtest"
)

// TestEveryTransportMountsItsRoutesTheOneWay checks the real services/.
func TestEveryTransportMountsItsRoutesTheOneWay(t *testing.T) {
	t.Parallel()
	got, err := archtest.RoutesViolations(os.DirFS("../.."))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range got {
		t.Error(v)
	}
}

// TestRoutesViolationsFindEachDeparture proves the rule fails on each
// kind of departure and accepts the standard transport.
func TestRoutesViolationsFindEachDeparture(t *testing.T) {
	t.Parallel()
	dir := &fstest.MapFile{Mode: 0o755 | os.ModeDir}
	src := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte("package x\n" + s)} }
	const good = `
type Service interface{ Get() }
type Config struct{ Authz *auth.Verifier; Log *slog.Logger }
func Routes(mux *http.ServeMux, svc Service, cfg Config) {}
`
	fsys := fstest.MapFS{
		// The standard transport; its test file may do as it likes.
		"services/orders/migrations": dir, "services/orders/internal/ordersvc": dir,
		"services/orders/internal/orderhttp/http.go":      src(good),
		"services/orders/internal/orderhttp/http_test.go": src("func AdminRoutes() {}"),
		// The old shapes: a concrete service, dependencies as
		// parameters, admin routes mounted apart.
		"services/pay/migrations": dir, "services/pay/internal/paysvc": dir,
		"services/pay/internal/payhttp/http.go": src(`
type Service struct{}
func Routes(mux *http.ServeMux, svc *paysvc.Service, authz *auth.Verifier, log *slog.Logger) {}
func AdminRoutes(mux *http.ServeMux) {}
`),
		// A config without the verifier; no Routes at all.
		"services/mail/migrations": dir, "services/mail/internal/mailsvc": dir,
		"services/mail/internal/mailhttp/http.go": src("type Service interface{}\ntype Config struct{ Log *slog.Logger }\n"),
		// An edge service (no migrations) is not checked.
		"services/web/internal/shop/shop.go": src("func Routes() {}"),
	}
	got, err := archtest.RoutesViolations(fsys)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"services/mail/internal/mailhttp: Config is not a struct with an Authz field (who may call each route)",
		"services/mail/internal/mailhttp: no Routes: want " + archtest.RoutesSignature,
		"services/pay/internal/payhttp: AdminRoutes: Routes mounts the /v1/admin/ routes too",
		"services/pay/internal/payhttp: Config is not a struct with an Authz field (who may call each route)",
		"services/pay/internal/payhttp: Routes is func Routes(mux *http.ServeMux, svc *paysvc.Service, authz *auth.Verifier, log *slog.Logger): want " +
			archtest.RoutesSignature,
		"services/pay/internal/payhttp: Service is not an interface declared here (the use cases Routes calls)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}
