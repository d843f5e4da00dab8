package notificationhttp_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
)

// TestWhoMayReadNotifications is the authorization table (ADR 0022):
// GET /v1/notifications?order_id= for orders of every kind × every kind
// of caller → the status, and the notifications each 200 shows. c1
// (authtest's owner) owns order mine, c1-other (the "other customer")
// owns theirs; legacy was recorded before customer ids were stored;
// unknown has no notifications. Callers not listed answer 401 (no token,
// or one that is forged, expired, for another audience or from another
// issuer); service clients 403.
//
// Another customer's order must answer exactly like an unknown one (200,
// empty list, same headers), or the answer tells that the order exists.
func TestWhoMayReadNotifications(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mine, theirs, legacy, unknown := newID(), newID(), newID(), newID()
	b.record(t, mine, owner, notificationsapi.KindOrderReceived)
	b.record(t, mine, owner, notificationsapi.KindReceipt)
	b.record(t, theirs, owner+"-other", notificationsapi.KindOrderReceived)
	b.record(t, legacy, "", notificationsapi.KindOrderReceived)

	status := map[string]int{authtest.Owner: 200, authtest.OtherCustomer: 200, authtest.Operator: 200, authtest.Service: 403}
	both := []string{notificationsapi.KindOrderReceived, notificationsapi.KindReceipt}
	received := []string{notificationsapi.KindOrderReceived}
	orders := []struct {
		name, id string
		// seen are the kinds each caller with a 200 gets (unlisted: none).
		seen map[string][]string
	}{
		{"mine", mine, map[string][]string{authtest.Owner: both, authtest.Operator: both}},
		{"theirs", theirs, map[string][]string{authtest.OtherCustomer: received, authtest.Operator: received}},
		{"legacy", legacy, map[string][]string{authtest.Operator: received}},
		{"unknown", unknown, nil},
	}
	for _, o := range orders {
		for _, who := range authtest.CallerNames {
			want, ok := status[who]
			if !ok {
				want = http.StatusUnauthorized
			}
			a := b.get(t, "?order_id="+o.id, b.callers[who])
			if cc := a.header.Get("Cache-Control"); a.status != want || (cc != "no-store" && cc != "private, no-store") {
				t.Errorf("%s order as %s = %d (Cache-Control %q), want %d: %s", o.name, who, a.status, cc, want, a.body)
				continue
			}
			if want != http.StatusOK {
				if strings.Contains(string(a.body), "@example.com") {
					t.Errorf("%s order as %s: refused, yet the body shows an address: %s", o.name, who, a.body)
				}
				continue
			}
			var list notificationsapi.NotificationList
			if err := json.Unmarshal(a.body, &list); err != nil {
				t.Fatalf("%s order as %s: %v: %s", o.name, who, err, a.body)
			}
			var got []string
			for _, n := range list.Notifications {
				got = append(got, n.Kind)
			}
			if wantKinds := o.seen[who]; !slices.Equal(got, wantKinds) || list.OrderID != o.id {
				t.Errorf("%s order as %s saw %v of %s, want %v", o.name, who, got, list.OrderID, wantKinds)
			}
			// No existence oracle: what a caller may not see reads exactly
			// as the unknown order does.
			if len(o.seen[who]) == 0 && o.id != unknown {
				u := b.get(t, "?order_id="+unknown, b.callers[who])
				same := strings.ReplaceAll(string(u.body), unknown, o.id)
				if a.status != u.status || string(a.body) != same || !maps.EqualFunc(headers(a.header), headers(u.header), slices.Equal) {
					t.Errorf("%s order as %s = %d %v %s; the unknown order = %d %v %s", o.name, who, a.status, a.header, a.body, u.status, u.header, u.body)
				}
			}
		}
	}
}

// headers are h without the ones that differ per response anyway.
func headers(h http.Header) http.Header {
	h = h.Clone()
	h.Del("Date")
	return h
}
