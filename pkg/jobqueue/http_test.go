package jobqueue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/jobqueue"
)

func TestAdminRoutesListInspectAndRedriveRedactedAndRefuseBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, jobqueue.Options{Redact: map[string]func([]byte) []byte{"pay": func([]byte) []byte { return []byte(`"[redacted]"`) }}},
		jobqueue.Queue{Name: "pay-dlq"},
		jobqueue.Queue{Name: "pay", MaxReceiveCount: 1, DeadLetterQueue: "pay-dlq", VisibilityTimeout: time.Hour})
	id := b.send(t, "pay", jobqueue.SendInput{Body: []byte(`"4242424242424242"`)}).ID
	m := b.receive(t, "pay", jobqueue.ReceiveInput{})
	if err := b.c.ChangeMessageVisibility(ctx, m[0].ReceiptHandle, 0); err != nil {
		t.Fatal(err)
	}
	b.receive(t, "pay", jobqueue.ReceiveInput{}) // moves it to the DLQ
	mux := http.NewServeMux()
	b.c.AdminRoutes(mux, "/v1/admin/queues")
	srv := httptest.NewServer(mux)
	defer srv.Close()
	call := func(method, path, body string) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out bytes.Buffer
		_, _ = io.Copy(&out, res.Body)
		return res.StatusCode, out.String()
	}
	if code, body := call("GET", "/v1/admin/queues", ""); code != 200 || !strings.Contains(body, `"queue":"pay-dlq"`) {
		t.Fatalf("stats = %d %s", code, body)
	}
	if code, body := call("GET", "/v1/admin/queues/pay-dlq/messages", ""); code != 200 || strings.Contains(body, "4242") || !strings.Contains(body, "redacted") {
		t.Fatalf("list = %d %s", code, body)
	}
	sid := strconv.FormatInt(id, 10)
	if code, body := call("GET", "/v1/admin/queues/pay-dlq/messages/"+sid, ""); code != 200 || strings.Contains(body, "4242") {
		t.Fatalf("inspect = %d %s", code, body)
	}
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/admin/queues/pay-dlq/messages/999999", ""},
		{"GET", "/v1/admin/queues/pay/messages/" + strconv.FormatInt(id, 10), ""},
		{"GET", "/v1/admin/queues/pay-dlq/messages?limit=0", ""},
		{"POST", "/v1/admin/queues/pay/purge", `{"reason":""}`},
		{"POST", "/v1/admin/queues/pay-dlq/redrive", `{"idz":[1]}`},
	} {
		if code, body := call(tc.method, tc.path, tc.body); code/100 != 4 || !json.Valid([]byte(body)) {
			t.Errorf("%s %s %s = %d %s, want a 4xx problem", tc.method, tc.path, tc.body, code, body)
		}
	}
	if code, body := call("POST", "/v1/admin/queues/pay-dlq/redrive", `{"ids":[`+sid+`],"dry_run":true}`); code != 200 || !strings.Contains(body, `"redriven":1`) {
		t.Fatalf("dry run = %d %s", code, body)
	}
	if code, body := call("POST", "/v1/admin/queues/pay-dlq/redrive", `{"ids":[`+sid+`]}`); code != 200 || !strings.Contains(body, `"redriven":1`) {
		t.Fatalf("redrive = %d %s", code, body)
	}
	if msgs := b.receive(t, "pay", jobqueue.ReceiveInput{}); len(msgs) != 1 || msgs[0].ID != id {
		t.Fatalf("after redrive: %+v", msgs)
	}
}
