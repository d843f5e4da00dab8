package notificationhttp_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/httpkit/openapitest"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notification"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationhttp"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationsvc"
	"github.com/shopfloor/shopfloor/services/notifications/migrations"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// owner is the customer whose orders the tests read; authtest's "other
// customer" is owner+"-other".
const owner = "c1"

type bundle struct {
	db  *testinfra.Database
	svc *notificationsvc.Service
	url string
	// callers are the Authorization values of authtest.Callers (audience
	// "notifications", owner c1).
	callers map[string]string
}

// setup serves notifications' API over its own database, trusting a fake
// issuer for audience "notifications".
func setup(t *testing.T) *bundle {
	t.Helper()
	db := testinfra.Postgres(t, migrations.FS)
	jobs, err := jobqueue.New(db.Pool, jobqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jobs.Close)
	log := slog.New(slog.DiscardHandler)
	svc, err := notificationsvc.New(db.Pool, jobs, nil, nil, notificationsvc.Config{}, log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.CreateQueues(context.Background()); err != nil {
		t.Fatal(err)
	}
	iss := authtest.NewIssuer(t)
	authz, err := auth.NewVerifier(iss.Config("notifications"), "notifications", auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mux := httpkit.NewMux(httpkit.NewHealth(), nil)
	notificationhttp.Routes(mux, svc, notificationhttp.Config{Authz: authz, Log: log, Jobs: jobs})
	// Every request and answer is held to the API's contract.
	srv := httptest.NewServer(openapitest.Load(t, notificationsapi.OpenAPI()).Handler(t, mux))
	t.Cleanup(srv.Close)
	return &bundle{db: db, svc: svc, url: srv.URL, callers: iss.Callers(t, "notifications", owner)}
}

// record records a notification of kind for orderID (customer "" is a
// row recorded before customer ids were stored).
func (b *bundle) record(t *testing.T, orderID, customer, kind string) {
	t.Helper()
	ctx := context.Background()
	if err := pgdb.InTx(ctx, b.db.Pool, func(tx pgx.Tx) error {
		_, err := b.svc.Record(ctx, tx, notification.Notification{OrderID: orderID, EventID: uuid.NewString(),
			CustomerID: customer, Kind: kind, Recipient: "ada@example.com", Currency: "EUR", TotalMinor: 4200, OrderVersion: 2})
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// get sends GET /v1/notifications+query with the Authorization value
// authz ("" for none).
func (b *bundle) get(t *testing.T, query, authz string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, b.url+"/v1/notifications"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, body}
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

func TestListByOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	operator := b.callers[authtest.Operator]
	orderID := newID()
	b.record(t, orderID, owner, notificationsapi.KindReceipt)

	for _, q := range []string{"", "?order_id=", "?order_id=42", "?order_id=" + strings.ToUpper(orderID)} {
		a := b.get(t, q, operator)
		if a.status != http.StatusBadRequest || a.header.Get("Content-Type") != httpkit.ContentTypeProblem ||
			!strings.Contains(string(a.body), `"field":"order_id"`) || a.header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %q = %d %s %s", q, a.status, a.header, a.body)
		}
	}
	a := b.get(t, "?order_id="+orderID, operator)
	var list notificationsapi.NotificationList
	if a.status != http.StatusOK || a.header.Get("Cache-Control") != "no-store" || json.Unmarshal(a.body, &list) != nil {
		t.Fatalf("GET = %d %s", a.status, a.body)
	}
	if list.OrderID != orderID || len(list.Notifications) != 1 {
		t.Fatalf("list %+v", list)
	}
	n := list.Notifications[0]
	if n.Kind != notificationsapi.KindReceipt || n.Recipient != "ada@example.com" || n.Status != notificationsapi.StatusQueued ||
		n.Attempts != 0 || n.SentAt != nil || n.MessageID != "<"+n.ID+"@notifications.shopfloor>" || n.OrderVersion != 2 || n.CreatedAt.IsZero() {
		t.Fatalf("notification %+v", n)
	}
	if strings.Contains(string(a.body), "sent_at") {
		t.Fatalf("unsent notification shows sent_at: %s", a.body)
	}
	a = b.get(t, "?order_id="+uuid.NewString(), operator)
	if a.status != http.StatusOK || !strings.Contains(string(a.body), `"notifications":[]`) {
		t.Fatalf("unknown order = %d %s", a.status, a.body)
	}
}
