package psp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/services/payments/internal/psp"
)

// newFake serves h on a test server closed with the test.
func newFake(t testing.TB, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// bodyTracker is a RoundTripper that records whether every response body
// it hands out has been closed.
type bodyTracker struct {
	mu     sync.Mutex
	open   int
	served int
}

func (bt *bodyTracker) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	bt.mu.Lock()
	bt.open++
	bt.served++
	bt.mu.Unlock()
	res.Body = &trackedBody{ReadCloser: res.Body, bt: bt}
	return res, nil
}

func (bt *bodyTracker) counts() (open, served int) {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	return bt.open, bt.served
}

type trackedBody struct {
	io.ReadCloser
	bt   *bodyTracker
	once sync.Once
}

func (b *trackedBody) Close() error {
	b.once.Do(func() {
		b.bt.mu.Lock()
		b.bt.open--
		b.bt.mu.Unlock()
	})
	return b.ReadCloser.Close()
}

var fixedNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const chargeJSON = `{"id":"ch_1","status":"succeeded","amount_minor":100,"currency":"EUR","payment_method":"tok_visa","reference":"o","idempotency_key":"k","created_at":"2026-03-01T12:00:00Z"}`

// Each kind of answer a provider can give, the class the client gives it,
// and, always, a closed response body.
func TestEveryProviderAnswerGetsItsClassAndAClosedBody(t *testing.T) {
	t.Parallel()
	problemJSON := func(status int, class, detail string) string {
		b, _ := json.Marshal(map[string]any{"type": "https://psp.example/problems/" + class, "title": http.StatusText(status), "status": status, "detail": detail})
		return string(b)
	}
	tests := []struct {
		name        string
		status      int
		contentType string
		header      map[string]string
		body        string
		want        psp.Class
		check       func(t *testing.T, ch psp.Charge, err error)
	}{
		{name: "201 charge", status: 201, contentType: "application/json", body: chargeJSON, want: psp.ClassNone,
			check: func(t *testing.T, ch psp.Charge, _ error) {
				if ch.ID != "ch_1" || ch.AmountMinor != 100 || !ch.CreatedAt.Equal(fixedNow) || ch.Replayed {
					t.Fatalf("charge %+v", ch)
				}
			}},
		{name: "200 replayed charge with unknown fields", status: 200, contentType: "application/json",
			header: map[string]string{"Idempotent-Replayed": "true"},
			body:   strings.Replace(chargeJSON, `"id"`, `"livemode":false,"id"`, 1), want: psp.ClassNone,
			check: func(t *testing.T, ch psp.Charge, _ error) {
				if ch.ID != "ch_1" || !ch.Replayed {
					t.Fatalf("charge %+v", ch)
				}
			}},
		{name: "200 with a declined charge", status: 200, contentType: "application/json",
			body: strings.Replace(chargeJSON, `"succeeded"`, `"declined","decline_code":"card_declined"`, 1), want: psp.ClassDeclined},
		{name: "402 unreadable", status: 402, contentType: "text/plain", body: "declined", want: psp.ClassDeclined,
			check: func(t *testing.T, _ psp.Charge, err error) {
				var de *psp.DeclinedError
				if !errors.As(err, &de) || de.Code != "" || !strings.Contains(err.Error(), "no decline code") {
					t.Fatalf("err %v", err)
				}
			}},
		{name: "201 garbage", status: 201, contentType: "application/json", body: `{"id":`, want: psp.ClassAmbiguous,
			check: func(t *testing.T, _ psp.Charge, err error) {
				var te *psp.TransportError
				if !errors.As(err, &te) || te.StatusCode != http.StatusCreated || !te.MaybeProcessed {
					t.Fatalf("err %#v", err)
				}
			}},
		{name: "201 without id", status: 201, contentType: "application/json", body: `{}`, want: psp.ClassAmbiguous},
		{name: "201 in an unknown state", status: 201, contentType: "application/json",
			body: strings.Replace(chargeJSON, `"succeeded"`, `"pending"`, 1), want: psp.ClassAmbiguous},
		{name: "201 beyond 1 MiB", status: 201, contentType: "application/json",
			body: `{"id":"ch_1","pad":"` + strings.Repeat("x", 1<<20) + `"}`, want: psp.ClassAmbiguous},
		{name: "500 problem", status: 500, contentType: "application/problem+json", body: problemJSON(500, "boom", "try later"), want: psp.ClassTransient,
			check: func(t *testing.T, _ psp.Charge, err error) {
				var se *psp.StatusError
				if !errors.As(err, &se) || se.Type != "https://psp.example/problems/boom" || se.Detail != "try later" {
					t.Fatalf("err %#v", err)
				}
				if want := "psp: charge: 500 Internal Server Error: try later"; err.Error() != want {
					t.Fatalf("message %q, want %q", err, want)
				}
			}},
		{name: "500 plain text", status: 500, contentType: "text/plain", body: "upstream exploded\n", want: psp.ClassTransient,
			check: func(t *testing.T, _ psp.Charge, err error) {
				var se *psp.StatusError
				if !errors.As(err, &se) || se.Detail != "upstream exploded" || se.Type != "" {
					t.Fatalf("err %#v", err)
				}
			}},
		{name: "503", status: 503, want: psp.ClassTransient},
		{name: "501", status: 501, want: psp.ClassTransient},
		{name: "502 gateway", status: 502, want: psp.ClassAmbiguous},
		{name: "504 gateway timeout", status: 504, want: psp.ClassAmbiguous},
		{name: "409 in flight", status: 409, want: psp.ClassTransient},
		{name: "301 moved, not followed", status: 301, header: map[string]string{"Location": "/elsewhere"}, want: psp.ClassAmbiguous},
		{name: "303 see other, not followed", status: 303, header: map[string]string{"Location": "/charges/ch_1"}, want: psp.ClassAmbiguous},
		{name: "307 temporary redirect, not followed", status: 307, header: map[string]string{"Location": "/elsewhere"}, want: psp.ClassAmbiguous},
		{name: "400", status: 400, want: psp.ClassInvalid},
		{name: "401", status: 401, want: psp.ClassInvalid},
		{name: "403", status: 403, want: psp.ClassInvalid},
		{name: "404", status: 404, want: psp.ClassInvalid,
			check: func(t *testing.T, _ psp.Charge, err error) {
				if !errors.Is(err, psp.ErrNotFound) {
					t.Fatalf("404 %v does not match ErrNotFound", err)
				}
			}},
		{name: "422", status: 422, contentType: "application/problem+json", body: problemJSON(422, "idempotency-key-reused", "x"), want: psp.ClassInvalid},
		{name: "429 seconds", status: 429, header: map[string]string{"Retry-After": "7"}, want: psp.ClassRateLimited,
			check: retryAfter(7 * time.Second)},
		{name: "429 date", status: 429, header: map[string]string{"Retry-After": fixedNow.Add(90 * time.Second).Format(http.TimeFormat)},
			want: psp.ClassRateLimited, check: retryAfter(90 * time.Second)},
		{name: "429 date in the past", status: 429, header: map[string]string{"Retry-After": fixedNow.Add(-time.Hour).Format(http.TimeFormat)},
			want: psp.ClassRateLimited, check: retryAfter(0)},
		{name: "429 without Retry-After", status: 429, want: psp.ClassRateLimited, check: retryAfter(0)},
		{name: "429 unreadable Retry-After", status: 429, header: map[string]string{"Retry-After": "soon"}, want: psp.ClassRateLimited, check: retryAfter(0)},
		{name: "429 absurd Retry-After", status: 429, header: map[string]string{"Retry-After": "999999999999"}, want: psp.ClassRateLimited, check: retryAfter(24 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var gotKey string
			srv := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				gotKey = r.Header.Get("Idempotency-Key")
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				if tt.contentType != "" {
					w.Header().Set("Content-Type", tt.contentType)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			bt := &bodyTracker{}
			c, err := psp.New(psp.Config{BaseURL: srv.URL, HTTPClient: &http.Client{Transport: bt}, Now: func() time.Time { return fixedNow }})
			if err != nil {
				t.Fatal(err)
			}
			ch, err := c.Charge(context.Background(), "k", visa("o"))
			wantClass(t, err, tt.want)
			if err != nil && ch != (psp.Charge{}) {
				t.Fatalf("charge %+v returned with an error", ch)
			}
			if tt.check != nil {
				tt.check(t, ch, err)
			}
			if gotKey != "k" {
				t.Fatalf("Idempotency-Key %q", gotKey)
			}
			if open, served := bt.counts(); open != 0 || served != 1 {
				t.Fatalf("%d response bodies left open of %d", open, served)
			}
		})
	}
}

func retryAfter(want time.Duration) func(t *testing.T, _ psp.Charge, err error) {
	return func(t *testing.T, _ psp.Charge, err error) {
		t.Helper()
		var rl *psp.RateLimitedError
		if !errors.As(err, &rl) || rl.RetryAfter != want {
			t.Fatalf("err %#v, want RetryAfter %s", err, want)
		}
	}
}

// Lookups change nothing: an unusable answer to one is transient.
func TestFindChargeUnusableAnswer(t *testing.T) {
	t.Parallel()
	srv := newFake(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":`)
	})
	c, err := psp.New(psp.Config{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.FindCharge(context.Background(), "k")
	wantClass(t, err, psp.ClassTransient)
}

// What goes on the wire.
func TestRequestsOnTheWireCarryKeysAndBodies(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, path, query, key, contentType, accept string
		body                                          map[string]any
	}
	var mu sync.Mutex
	var got []seen
	srv := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		s := seen{method: r.Method, path: r.URL.Path, query: r.URL.Query().Get("idempotency_key"), key: r.Header.Get("Idempotency-Key"),
			contentType: r.Header.Get("Content-Type"), accept: r.Header.Get("Accept")}
		if r.Body != nil {
			_ = json.NewDecoder(r.Body).Decode(&s.body)
		}
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/refunds" {
			_, _ = io.WriteString(w, `{"id":"re_1","charge_id":"ch_1","amount_minor":5,"status":"succeeded","idempotency_key":"r&1"}`)
			return
		}
		_, _ = io.WriteString(w, chargeJSON)
	})
	c, err := psp.New(psp.Config{BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Charge(ctx, "a/b c", psp.ChargeRequest{AmountMinor: 5, Currency: "EUR", PaymentMethod: "tok_visa", Reference: "o-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.FindCharge(ctx, "a/b c&d=e"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refund(ctx, "r&1", psp.RefundRequest{ChargeID: "ch_1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refund(ctx, "r&2", psp.RefundRequest{ChargeID: "ch_1", AmountMinor: 5}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`POST /charges key="a/b c" ct="application/json" accept="application/json" body=map[amount_minor:5 currency:EUR payment_method:tok_visa reference:o-1]`,
		`GET /charges?idempotency_key="a/b c&d=e" key="" ct="" accept="application/json" body=map[]`,
		`POST /refunds key="r&1" ct="application/json" accept="application/json" body=map[charge_id:ch_1]`,
		`POST /refunds key="r&2" ct="application/json" accept="application/json" body=map[amount_minor:5 charge_id:ch_1]`,
	}
	if len(got) != len(want) {
		t.Fatalf("%d requests, want %d", len(got), len(want))
	}
	for i, s := range got {
		line := fmt.Sprintf("%s %s key=%q ct=%q accept=%q body=%v", s.method, s.path, s.key, s.contentType, s.accept, s.body)
		if s.query != "" {
			line = fmt.Sprintf("%s %s?idempotency_key=%q key=%q ct=%q accept=%q body=%v", s.method, s.path, s.query, s.key, s.contentType, s.accept, s.body)
		}
		if line != want[i] {
			t.Errorf("request %d:\n got %s\nwant %s", i, line, want[i])
		}
	}
}

func TestClassifySortsErrorsThroughWrapping(t *testing.T) {
	t.Parallel()
	declined := &psp.DeclinedError{Code: "card_declined"}
	tests := []struct {
		name string
		err  error
		want psp.Class
	}{
		{"nil", nil, psp.ClassNone},
		{"declined", declined, psp.ClassDeclined},
		{"wrapped declined", fmt.Errorf("job 7: %w", declined), psp.ClassDeclined},
		{"rate limited", &psp.RateLimitedError{RetryAfter: time.Second}, psp.ClassRateLimited},
		{"joined", errors.Join(errors.New("x"), &psp.RateLimitedError{}), psp.ClassRateLimited},
		{"not sent", &psp.TransportError{Err: errors.New("dial")}, psp.ClassTransient},
		{"maybe sent", fmt.Errorf("w: %w", &psp.TransportError{MaybeProcessed: true, Err: context.DeadlineExceeded}), psp.ClassAmbiguous},
		{"503", &psp.StatusError{StatusCode: 503}, psp.ClassTransient},
		{"504", &psp.StatusError{StatusCode: 504}, psp.ClassAmbiguous},
		{"422", &psp.StatusError{StatusCode: 422}, psp.ClassInvalid},
		{"2xx as error", &psp.StatusError{StatusCode: 200}, psp.ClassAmbiguous},
		{"invalid argument", fmt.Errorf("x: %w", psp.ErrInvalidArgument), psp.ClassInvalid},
		{"unknown", errors.New("who knows"), psp.ClassAmbiguous},
		{"bare deadline", context.DeadlineExceeded, psp.ClassAmbiguous},
	}
	for _, tt := range tests {
		if got := psp.Classify(tt.err); got != tt.want {
			t.Errorf("%s: Classify = %s, want %s", tt.name, got, tt.want)
		}
	}
	names := map[psp.Class]string{
		psp.ClassNone: "none", psp.ClassDeclined: "declined", psp.ClassRateLimited: "rate_limited",
		psp.ClassTransient: "transient", psp.ClassAmbiguous: "ambiguous", psp.ClassInvalid: "invalid", psp.Class(42): "class(42)",
	}
	for c, want := range names {
		if c.String() != want {
			t.Errorf("String() = %q, want %q", c.String(), want)
		}
	}
}
