package paymenthttp_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
)

// TestWhoMayCallPayments is the authorization table (ADR 0022): every
// route × every kind of caller → the status. The owner is cust-42; each
// row reads a payment of its own, created the way checkout creates it
// (order.placed through the ORDERS consumer), and creates a payment for
// an order of its own. Callers not listed answer 401 (no token, or a
// token that is forged, expired, for another audience or from another
// issuer).
func TestWhoMayCallPayments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	n := 0
	fresh := func() string { n++; return fmt.Sprintf("authz-%d", n) }
	as := func(authz string) map[string]string { return map[string]string{"Authorization": authz} }
	type route struct {
		name string
		do   func(t *testing.T, authz, paymentID, orderID string) resp
		want map[string]int
	}
	routes := []route{
		{"create", func(t *testing.T, authz, _, _ string) resp {
			return b.do(t, "POST", "/v1/payments", createBody(newID()), map[string]string{"Authorization": authz, "Idempotency-Key": fresh()})
		}, map[string]int{authtest.Owner: 403, authtest.OtherCustomer: 403, authtest.Operator: 202, authtest.Service: 403}},
		{"get", func(t *testing.T, authz, id, _ string) resp {
			return b.do(t, "GET", "/v1/payments/"+id, nil, as(authz))
		}, map[string]int{authtest.Owner: 200, authtest.OtherCustomer: 404, authtest.Operator: 200, authtest.Service: 403}},
		{"by-order", func(t *testing.T, authz, _, orderID string) resp {
			return b.do(t, "GET", "/v1/payments?order_id="+orderID, nil, as(authz))
		}, map[string]int{authtest.Owner: 200, authtest.OtherCustomer: 404, authtest.Operator: 200, authtest.Service: 200}},
		// payments' own operator tools (the admin listener, ADR 0023).
		{"open-refunds", func(t *testing.T, authz, _, _ string) resp {
			return b.do(t, "GET", "/v1/admin/refunds", nil, as(authz))
		}, map[string]int{authtest.Owner: 403, authtest.OtherCustomer: 403, authtest.Operator: 200, authtest.Service: 403}},
		{"abandon-refund", func(t *testing.T, authz, _, _ string) resp {
			return b.do(t, "POST", "/v1/admin/refunds/"+newID()+"/abandon", []byte(`{"reason":"test"}`), as(authz))
		}, map[string]int{authtest.Owner: 403, authtest.OtherCustomer: 403, authtest.Operator: 404, authtest.Service: 403}},
		{"audit", func(t *testing.T, authz, _, _ string) resp {
			return b.do(t, "GET", "/v1/admin/audit", nil, as(authz))
		}, map[string]int{authtest.Owner: 403, authtest.OtherCustomer: 403, authtest.Operator: 200, authtest.Service: 403}},
	}
	for _, rt := range routes {
		for _, who := range authtest.CallerNames {
			want, ok := rt.want[who]
			if !ok {
				want = http.StatusUnauthorized
			}
			p := b.placed(t, owner)
			r := rt.do(t, b.callers[who], p.ID, p.OrderID)
			if r.status != want {
				t.Errorf("%s as %s = %d, want %d: %s", rt.name, who, r.status, want, r.body)
			}
			if r.status == http.StatusOK && !strings.HasPrefix(rt.name, "open-") && rt.name != "audit" {
				if got := decode[struct {
					ID string `json:"id"`
				}](t, r); got.ID != p.ID {
					t.Errorf("%s as %s read payment %s, want %s", rt.name, who, got.ID, p.ID)
				}
			}
		}
	}

	// Another customer's payment answers exactly what a missing one
	// answers (status, headers that matter, body), for both reads: no
	// existence oracle for payment or order ids.
	p := b.placed(t, owner)
	other := b.callers[authtest.OtherCustomer]
	for _, tc := range []struct{ name, theirs, missing string }{
		{"get", "/v1/payments/" + p.ID, "/v1/payments/" + newID()},
		{"by-order", "/v1/payments?order_id=" + p.OrderID, "/v1/payments?order_id=" + newID()},
		{"get, not a uuid", "/v1/payments/" + p.ID, "/v1/payments/nope"},
	} {
		theirs, missing := b.do(t, "GET", tc.theirs, nil, as(other)), b.do(t, "GET", tc.missing, nil, as(other))
		if theirs.status != http.StatusNotFound || theirs.status != missing.status || !bytes.Equal(theirs.body, missing.body) {
			t.Errorf("%s: another's = %d %s; missing = %d %s", tc.name, theirs.status, theirs.body, missing.status, missing.body)
		}
		for _, h := range []string{"Content-Type", "Cache-Control", "WWW-Authenticate", "Content-Length"} {
			if theirs.header.Get(h) != missing.header.Get(h) {
				t.Errorf("%s: %s of another's %q, of missing %q", tc.name, h, theirs.header.Get(h), missing.header.Get(h))
			}
		}
	}
}
