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

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notification"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationhttp"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationsvc"
	"github.com/shopfloor/shopfloor/services/notifications/migrations"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func TestListByOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testinfra.Postgres(t, migrations.FS)
	jobs, err := jobqueue.New(db.Pool, jobqueue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer jobs.Close()
	log := slog.New(slog.DiscardHandler)
	svc, err := notificationsvc.New(db.Pool, jobs, nil, nil, notificationsvc.Config{}, log, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.CreateQueues(ctx); err != nil {
		t.Fatal(err)
	}
	orderID := uuid.Must(uuid.NewV7()).String()
	if _, err := svc.Apply(ctx, "notifications", uuid.NewString(), notification.Notification{OrderID: orderID, Kind: notificationsapi.KindReceipt,
		Recipient: "ada@example.com", Currency: "EUR", TotalMinor: 4200, OrderVersion: 2}); err != nil {
		t.Fatal(err)
	}
	mux := httpkit.NewMux(httpkit.NewHealth(), nil)
	notificationhttp.Routes(mux, svc, log)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	type answer struct {
		StatusCode int
		Header     http.Header
	}
	get := func(query string) (answer, []byte) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/v1/notifications" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Header}, b
	}
	for _, q := range []string{"", "?order_id=", "?order_id=42", "?order_id=" + strings.ToUpper(orderID)} {
		resp, b := get(q)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != httpkit.ContentTypeProblem ||
			!strings.Contains(string(b), `"field":"order_id"`) || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %q = %d %s %s", q, resp.StatusCode, resp.Header, b)
		}
	}
	resp, b := get("?order_id=" + orderID)
	var list notificationsapi.NotificationList
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" || json.Unmarshal(b, &list) != nil {
		t.Fatalf("GET = %d %s", resp.StatusCode, b)
	}
	if list.OrderID != orderID || len(list.Notifications) != 1 {
		t.Fatalf("list %+v", list)
	}
	n := list.Notifications[0]
	if n.Kind != notificationsapi.KindReceipt || n.Recipient != "ada@example.com" || n.Status != notificationsapi.StatusQueued ||
		n.Attempts != 0 || n.SentAt != nil || n.MessageID != "<"+n.ID+"@notifications.shopfloor>" || n.OrderVersion != 2 || n.CreatedAt.IsZero() {
		t.Fatalf("notification %+v", n)
	}
	if strings.Contains(string(b), "sent_at") {
		t.Fatalf("unsent notification shows sent_at: %s", b)
	}
	resp, b = get("?order_id=" + uuid.NewString())
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"notifications":[]`) {
		t.Fatalf("unknown order = %d %s", resp.StatusCode, b)
	}
}
