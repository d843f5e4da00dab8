package shop

// These tests drive the storefront's handlers against stand-ins of the
// public APIs, for the answers that a running system rarely gives on
// demand (an orders 503 mid-checkout, a refusal with field errors). The
// whole journey against the real services runs in a browser in
// deploy/local (TestStorefrontInBrowser).

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/pkg/ratelimit"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
	"github.com/shopfloor/shopfloor/services/search/searchapi"
	"github.com/shopfloor/shopfloor/services/web/internal/console"
	"github.com/shopfloor/shopfloor/services/web/internal/session"
)

const secret = "test-session-secret-0123456789abcdef"

// fakeAPI answers with a status and body set by the test and records
// each request's Authorization and Idempotency-Key.
type fakeAPI struct {
	mu       sync.Mutex
	status   int
	body     any
	header   http.Header
	requests []*http.Request
	bodies   []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, r)
	f.bodies = append(f.bodies, string(b))
	status, body, hdr := f.status, f.body, f.header
	f.mu.Unlock()
	for k, v := range hdr {
		w.Header()[k] = v
	}
	if status >= 300 {
		w.Header().Set("Content-Type", "application/problem+json")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (f *fakeAPI) set(status int, body any, hdr http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.body, f.header = status, body, hdr
}

func (f *fakeAPI) last() (*http.Request, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return nil, ""
	}
	return f.requests[len(f.requests)-1], f.bodies[len(f.bodies)-1]
}

type shopTest struct {
	t       *testing.T
	srv     *httptest.Server
	iss     *authtest.Issuer
	sealer  *session.Sealer
	catalog *fakeAPI
	orders  *fakeAPI
	hc      *http.Client
}

var product = catalogapi.Product{ID: "p1", SKU: "SKU-1", Name: "Oak chair", Version: 3, Price: catalogapi.Price{Currency: "EUR", AmountMinor: 1999}}

func newShop(t *testing.T) *shopTest {
	t.Helper()
	return newShopWith(t, nil)
}

// newShopWith is newShop with the plumbing console c (nil: none).
func newShopWith(t *testing.T, c *console.Console) *shopTest {
	t.Helper()
	iss := authtest.NewIssuer(t)
	st := &shopTest{t: t, iss: iss, catalog: &fakeAPI{status: 200, body: catalogapi.ProductList{Products: []catalogapi.Product{product}},
		header: http.Header{"X-Cache": {"MISS"}}}, orders: &fakeAPI{status: 503, body: httpkit.Problem{Title: "down"}}}
	catalog := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/products/p1" {
			w.Header().Set("X-Cache", "HIT")
			_ = json.NewEncoder(w).Encode(product)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/v1/products/") {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		st.catalog.ServeHTTP(w, r)
	}))
	orders := httptest.NewServer(st.orders)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	t.Cleanup(func() { catalog.Close(); orders.Close(); down.Close() })
	v, err := auth.NewVerifier(iss.Config("web"), "web", auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	flow, err := auth.NewCodeFlow(auth.ClientConfig{Issuer: iss.URL, ClientID: "web", ClientSecret: "web-secret-0123456789"}, "http://shop.test/auth/callback", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.sealer, err = session.New(secret, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Backends: &Backends{Catalog: catalog.URL, Orders: orders.URL, Payments: down.URL, Notifications: down.URL, Search: down.URL,
		HC: &http.Client{Timeout: 5 * time.Second}}, Flow: flow, Verifier: v, Sealer: st.sealer, Log: slog.New(slog.DiscardHandler), Console: c})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Routes(mux)
	st.srv = httptest.NewServer(mux)
	t.Cleanup(st.srv.Close)
	st.hc = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return st
}

// sessionCookie is ada's session, as the sign-in callback would seal it.
func (st *shopTest) sessionCookie(roles ...string) *http.Cookie {
	st.t.Helper()
	tok := st.iss.Token(st.t, authtest.Claims{Subject: "ada", Audience: []string{"web", "orders"}, Roles: roles})
	w := httptest.NewRecorder()
	if err := st.sealer.Set(w, cookieSession, user{Sub: "ada", Name: "Ada", Email: "ada@example.com", Roles: roles, Access: tok,
		Expiry: time.Now().Add(time.Hour)}, time.Hour); err != nil {
		st.t.Fatal(err)
	}
	return w.Result().Cookies()[0]
}

// do sends a request (a form when form is not nil) from the shop's own
// origin unless hdr says otherwise, and returns status, Location and body.
func (st *shopTest) do(method, path string, form url.Values, hdr http.Header, cookies ...*http.Cookie) (int, string, string) {
	st.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, st.srv.URL+path, body)
	if err != nil {
		st.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range hdr {
		req.Header[k] = v
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := st.hc.Do(req)
	if err != nil {
		st.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusSeeOther && !strings.HasPrefix(ct, "text/html") {
		st.t.Errorf("%s %s: Content-Type %q, want a page", method, path, ct)
	}
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

func filledForm(key string) url.Values {
	return url.Values{"idempotency_key": {key}, "item": {"p1:2"}, "name": {"Ada"}, "line1": {"1 Main St"}, "city": {"Berlin"},
		"postal_code": {"10115"}, "country": {"de"}, "card": {"tok_visa"}}
}

func TestPagesAnswerBadInputWithReadablePages(t *testing.T) {
	t.Parallel()
	st := newShop(t)
	for _, tc := range []struct {
		method, path string
		form         url.Values
		hdr          http.Header
		status       int
		says         string
	}{
		{"GET", "/", nil, nil, 200, "Oak chair"},
		{"GET", "/", nil, nil, 200, `data-testid="x-cache">MISS`},
		{"GET", "/products/p1", nil, nil, 200, `data-testid="x-cache">HIT`},
		{"GET", "/products/missing", nil, nil, 404, "No such product"},
		{"GET", "/products/bad%20id", nil, nil, 404, "No such product"},
		{"GET", "/no/such/page", nil, nil, 404, "Not found"},
		{"GET", "/?q=" + strings.Repeat("x", 101), nil, nil, 400, "too long"},
		{"GET", "/?q=chair", nil, nil, 503, "search is unavailable"},
		{"POST", "/cart/add", url.Values{"product_id": {"p1"}, "quantity": {"0"}}, nil, 400, "quantity from 1 to 10"},
		{"POST", "/cart/add", url.Values{"product_id": {"p1"}, "quantity": {"x"}}, nil, 400, "quantity from 1 to 10"},
		{"POST", "/cart/add", url.Values{"product_id": {"missing"}, "quantity": {"1"}}, nil, 400, "not for sale"},
		{"POST", "/cart/add", url.Values{"product_id": {"p1"}, "quantity": {"1"}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}, 403, "from another site"},
		{"POST", "/checkout", filledForm("0123456789abcdef0123456789abcdef"), nil, 401, "sign in"},
		{"GET", "/orders/o1/events", nil, nil, 401, "sign in"},
		{"GET", "/auth/callback?state=x&code=y", nil, nil, 400, "sign-in has expired"},
	} {
		status, _, body := st.do(tc.method, tc.path, tc.form, tc.hdr)
		if status != tc.status || !strings.Contains(body, tc.says) {
			t.Errorf("%s %s: %d, want %d with %q:\n%.400s", tc.method, tc.path, status, tc.status, tc.says, body)
		}
		if strings.Contains(body, "goroutine") || strings.Contains(body, "runtime error") {
			t.Errorf("%s %s shows internals:\n%s", tc.method, tc.path, body)
		}
	}
}

func TestSignedInPagesNeedAValidSession(t *testing.T) {
	t.Parallel()
	st := newShop(t)
	status, loc, _ := st.do("GET", "/checkout", nil, nil)
	if status != http.StatusSeeOther || loc != "/signin?return=%2Fcheckout" {
		t.Errorf("GET /checkout signed out: %d → %q, want 303 to /signin?return=/checkout", status, loc)
	}
	forged := st.sessionCookie(auth.RoleCustomer)
	forged.Value = forged.Value[:len(forged.Value)-4] + "AAAA"
	if status, loc, _ := st.do("GET", "/orders", nil, nil, forged); status != http.StatusSeeOther || !strings.HasPrefix(loc, "/signin") {
		t.Errorf("a tampered session cookie: %d → %q, want a sign-in redirect", status, loc)
	}
	// The sign-in goes to the provider with PKCE (S256), a state and a
	// nonce, and never returns anywhere but to this site: the return
	// path sealed in the sign-in cookie is checked as the callback will
	// read it.
	for ret, want := range map[string]string{"/orders": "/orders", "//evil.example/x": "/", "https://evil.example": "/", "/\\evil": "/"} {
		resp, err := st.hc.Get(st.srv.URL + "/signin?return=" + url.QueryEscape(ret))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		loc := resp.Header.Get("Location")
		u, err := url.Parse(loc)
		if err != nil || resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, st.iss.URL+"/authorize?") {
			t.Fatalf("sign-in: %d → %q", resp.StatusCode, loc)
		}
		q := u.Query()
		if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" ||
			q.Get("client_id") != "web" || q.Get("redirect_uri") != "http://shop.test/auth/callback" {
			t.Errorf("authorization request %v", q)
		}
		callback := httptest.NewRequest(http.MethodGet, "/auth/callback", nil)
		for _, c := range resp.Cookies() {
			callback.AddCookie(c)
		}
		var si signInState
		if err := st.sealer.Open(callback, cookieSignIn, &si); err != nil {
			t.Fatalf("return %q: no sign-in cookie: %v", ret, err)
		}
		if si.Return != want || si.State != q.Get("state") || si.Nonce != q.Get("nonce") || si.Verifier == "" {
			t.Errorf("return %q: sealed %+v (state %q), want return %q and the request's state and nonce", ret, si, q.Get("state"), want)
		}
	}
}

func TestCheckoutKeepsItsKeyUntilOrdersDecides(t *testing.T) {
	t.Parallel()
	st := newShop(t)
	ada := st.sessionCookie(auth.RoleCustomer)
	key := "0123456789abcdef0123456789abcdef"

	// Orders unavailable: 503, the form again with the same key, and a
	// sentence that pressing again is safe.
	status, _, body := st.do("POST", "/checkout", filledForm(key), nil, ada)
	req, sent := st.orders.last()
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `value="`+key+`"`) || !strings.Contains(body, "it is safe") {
		t.Errorf("orders down: %d, want 503 with the same key:\n%.600s", status, body)
	}
	if req == nil || req.Header.Get(idempotency.HeaderKey) != key || !strings.HasPrefix(req.Header.Get("Authorization"), "Bearer ey") {
		t.Fatalf("orders got Idempotency-Key %q and Authorization %q", req.Header.Get(idempotency.HeaderKey), req.Header.Get("Authorization"))
	}
	var in ordersapi.CreateOrder
	if err := json.Unmarshal([]byte(sent), &in); err != nil || in.CustomerEmail != "ada@example.com" || len(in.Items) != 1 ||
		in.Items[0] != (ordersapi.LineInput{ProductID: "p1", Quantity: 2}) || in.PaymentMethod != "tok_visa" || in.Shipping.Country != "DE" {
		t.Errorf("orders got %s", sent)
	}

	// Orders refuses with field errors: 422, the errors on the page, and
	// a new key (the refused request stored nothing).
	st.orders.set(422, httpkit.Problem{Title: "Unprocessable", Detail: "the order is not valid; see errors",
		Errors: []httpkit.FieldError{{Field: "shipping_address.postal_code", Message: "is not a postal code"}}}, nil)
	status, _, body = st.do("POST", "/checkout", filledForm(key), nil, ada)
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, "is not a postal code") || strings.Contains(body, `value="`+key+`"`) {
		t.Errorf("orders refused: %d, want 422 with the field error and a new key:\n%.600s", status, body)
	}

	// Placed, and placed again (a replay): both go to the order page,
	// which says which it was.
	st.orders.set(201, ordersapi.Order{ID: "o-1"}, nil)
	if status, loc, _ := st.do("POST", "/checkout", filledForm(key), nil, ada); status != http.StatusSeeOther || loc != "/orders/o-1?placed=1" {
		t.Errorf("placed: %d → %q", status, loc)
	}
	st.orders.set(201, ordersapi.Order{ID: "o-1"}, http.Header{idempotency.HeaderReplayed: {"true"}})
	if status, loc, _ := st.do("POST", "/checkout", filledForm(key), nil, ada); status != http.StatusSeeOther || loc != "/orders/o-1?replayed=1" {
		t.Errorf("replayed: %d → %q", status, loc)
	}

	// The form is checked before orders is asked.
	before := len(st.orders.requests)
	bad := filledForm(key)
	bad.Set("card", "4111111111111111")
	bad.Set("city", "")
	status, _, body = st.do("POST", "/checkout", bad, nil, ada)
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, `Test card</a> choose one of the test cards`) || !strings.Contains(body, `City</a> is required`) {
		t.Errorf("bad form: %d:\n%s", status, body[strings.Index(body, "<h1>"):])
	}
	for _, f := range []url.Values{{"item": {"p1:2"}}, {"idempotency_key": {key}, "item": {"p1:99"}}, {"idempotency_key": {key}, "item": {"p1"}}} {
		if status, _, _ := st.do("POST", "/checkout", f, nil, ada); status != http.StatusBadRequest {
			t.Errorf("form %v: %d, want 400", f, status)
		}
	}
	if len(st.orders.requests) != before {
		t.Errorf("orders was asked about forms the shop refused")
	}

	// An operator cannot check out.
	if status, _, _ := st.do("POST", "/checkout", filledForm(key), nil, st.sessionCookie(auth.RoleOperator)); status != http.StatusForbidden {
		t.Errorf("operator checkout: %d, want 403", status)
	}
}

// TestBackendCallsCarryTheVisitorsAddress: a page's calls to the services
// say whom they are made for (X-Forwarded-For: the address the page's
// rate limit saw), so a service that trusts web limits each visitor in
// their own bucket instead of all of them in web's.
func TestBackendCallsCarryTheVisitorsAddress(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{status: http.StatusOK, body: catalogapi.ProductList{}}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	visitor := netip.MustParseAddr("198.51.100.7")
	b := &Backends{Catalog: srv.URL, HC: &http.Client{Timeout: 5 * time.Second}}
	ctx := ratelimit.WithClientAddr(context.Background(), visitor)
	if _, err := b.call(ctx, "catalog", http.MethodGet, b.Catalog, "/v1/products?limit=1", "", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.call(context.Background(), "catalog", http.MethodGet, b.Catalog, "/v1/products?limit=2", "", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	var got []string
	for _, r := range api.requests {
		got = append(got, r.URL.RawQuery+"="+r.Header.Get("X-Forwarded-For"))
	}
	if want := []string{"limit=1=198.51.100.7", "limit=2="}; !slices.Equal(got, want) {
		t.Errorf("catalog saw %v, want %v (the visitor's address, none without one)", got, want)
	}
}

func TestParseItemsAndMoney(t *testing.T) {
	t.Parallel()
	if c, ok := parseItems([]string{"a:1", "b_2:10"}); !ok || len(c.Lines) != 2 || c.Lines[1].Quantity != 10 {
		t.Errorf("good items: %+v %v", c, ok)
	}
	for _, bad := range [][]string{{"a:0"}, {"a:11"}, {"a"}, {"a b:1"}, {":1"}, make([]string, maxCartLines+1)} {
		if _, ok := parseItems(bad); ok {
			t.Errorf("items %q were accepted", bad)
		}
	}
	for minor, want := range map[int64]string{0: "0.00 EUR", 5: "0.05 EUR", 123456: "1234.56 EUR", -250: "-2.50 EUR"} {
		if got := money(minor, "EUR"); got != want {
			t.Errorf("money(%d) = %q, want %q", minor, got, want)
		}
	}
}

// TestTimelineIsFinalOnlyWhenEveryStepIsIn: a paid order whose receipt
// notifications has not recorded yet, or whose search document is behind,
// is not final (the page keeps listening); with both in, it is.
func TestTimelineIsFinalOnlyWhenEveryStepIsIn(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	order := ordersapi.Order{ID: "o1", CustomerID: "ada", Status: ordersapi.StatusPaid, Version: 2, CreatedAt: now, UpdatedAt: now}
	pay := paymentsapi.Payment{ID: "p1", OrderID: "o1", Status: paymentsapi.StatusSucceeded, CreatedAt: now, UpdatedAt: now,
		ProviderCalls: []paymentsapi.ProviderCall{{Attempt: 1, Operation: paymentsapi.OpCharge, Outcome: paymentsapi.OutcomeCharged, At: now}}}
	sent := now
	received := notificationsapi.Notification{ID: "n1", OrderID: "o1", Kind: notificationsapi.KindOrderReceived, Status: notificationsapi.StatusSent, SentAt: &sent, CreatedAt: now}
	receipt := received
	receipt.ID, receipt.Kind = "n2", notificationsapi.KindReceipt
	var mu sync.Mutex
	notes := []notificationsapi.Notification{received}
	hitVersion := int64(2)
	placed := ordersapi.OrderEvent{EventID: "e1", Type: ordersapi.EventOrderPlaced, Stream: ordersapi.Stream, CreatedAt: now,
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", PublishAttempts: 1}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/v1/orders/o1":
			_ = json.NewEncoder(w).Encode(order)
		case "/v1/orders/o1/events":
			_ = json.NewEncoder(w).Encode(ordersapi.OrderEventList{Events: []ordersapi.OrderEvent{placed}})
		case "/v1/payments":
			_ = json.NewEncoder(w).Encode(pay)
		case "/v1/notifications":
			_ = json.NewEncoder(w).Encode(notificationsapi.NotificationList{Notifications: notes})
		case "/v1/search/orders":
			_ = json.NewEncoder(w).Encode(searchapi.OrderResults{Orders: []searchapi.OrderHit{{ID: "o1", Status: ordersapi.StatusPaid, Version: hitVersion, UpdatedAt: now}}})
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(api.Close)
	s := &Server{cfg: Config{Backends: &Backends{Orders: api.URL, Payments: api.URL, Notifications: api.URL, Search: api.URL, HC: api.Client(),
		TraceURL: "https://grafana.example/explore?trace={trace_id}"}}}
	u := &user{Sub: "ada", Roles: []string{auth.RoleCustomer}}
	var tl timeline
	final := func() (bool, []string) {
		var err error
		tl, _, err = s.buildTimeline(t.Context(), "o1", u)
		if err != nil {
			t.Fatal(err)
		}
		var waiting []string
		for _, st := range tl.Steps {
			if st.State == "waiting" {
				waiting = append(waiting, st.Title)
			}
		}
		return tl.Final, waiting
	}
	if f, w := final(); f || len(w) != 2 || w[0] != "In the outbox: "+ordersapi.EventOrderPlaced || w[1] != "E-mail: receipt" {
		t.Errorf("order.placed not published, no receipt yet: final %v, waiting %v; want not final, waiting for both", f, w)
	}
	mu.Lock()
	at, part, seq := now.Add(12*time.Millisecond), 3, int64(42)
	placed.PublishedAt, placed.Partition, placed.Sequence = &at, &part, &seq
	mu.Unlock()
	if f, w := final(); f || len(w) != 1 || w[0] != "E-mail: receipt" {
		t.Errorf("no receipt yet: final %v, waiting %v; want not final, waiting for the receipt", f, w)
	}
	pub := tl.Steps[slices.IndexFunc(tl.Steps, func(st step) bool { return st.Title == "Published: "+ordersapi.EventOrderPlaced })]
	if !strings.Contains(pub.Detail, "ORDERS, partition 3, sequence 42") || !strings.Contains(pub.Detail, "12ms after the commit") ||
		pub.TraceLink != "https://grafana.example/explore?trace=4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("published step: %+v", pub)
	}
	mu.Lock()
	notes, hitVersion = append(notes, receipt), 1
	mu.Unlock()
	if f, w := final(); f || len(w) != 1 || w[0] != "Indexed, catching up" {
		t.Errorf("search behind: final %v, waiting %v", f, w)
	}
	mu.Lock()
	hitVersion = 2
	mu.Unlock()
	if f, w := final(); !f || len(w) != 0 {
		t.Errorf("all in: final %v, waiting %v", f, w)
	}
}

// TestPagesMoveToThePublicHostName: a page asked for under another host
// name than WEB_PUBLIC_URL's is redirected there, path and query kept;
// under the public one it is served.
func TestPagesMoveToThePublicHostName(t *testing.T) {
	t.Parallel()
	s := &Server{cfg: Config{PublicURL: "http://127.0.0.1:8000"}}
	h := s.canonicalHost(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	for host, want := range map[string]int{"localhost:8000": http.StatusPermanentRedirect, "127.0.0.1:8000": http.StatusTeapot} {
		r := httptest.NewRequest(http.MethodGet, "http://"+host+"/products/p1?x=1", nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("GET under %s: %d, want %d", host, w.Code, want)
		}
		if want == http.StatusPermanentRedirect && w.Header().Get("Location") != "http://127.0.0.1:8000/products/p1?x=1" {
			t.Errorf("GET under %s: Location %q", host, w.Header().Get("Location"))
		}
	}
}

// TestConsoleAnswersBadInputWithReadablePages: the console is for
// operators only, and a name it does not know (a service, queue, stream,
// switch, drill) or a malformed form gets a readable 404 or 400 page,
// never a 5xx and never a switch thrown. The system behind it is
// unreachable on purpose: nothing is asked of it before the input is
// checked.
func TestConsoleAnswersBadInputWithReadablePages(t *testing.T) {
	t.Parallel()
	st := newShopWith(t, console.New(&target.System{Endpoints: target.LocalEndpoints(1)}))
	if status, _, body := st.do("GET", "/console", nil, nil, st.sessionCookie(auth.RoleCustomer)); status != http.StatusForbidden || !strings.Contains(body, "Operators only") {
		t.Errorf("a customer at /console: %d", status)
	}
	op := st.sessionCookie(auth.RoleOperator)
	for _, tc := range []struct {
		method, path string
		form         url.Values
		want         int
	}{
		{"GET", "/console/dead-letters/orders/charges-dlq/1", nil, http.StatusNotFound},
		{"GET", "/console/dead-letters/payments/charges-dlq/x", nil, http.StatusNotFound},
		{"GET", "/console/dead-letters/payments/..%2Fetc/1", nil, http.StatusNotFound},
		{"GET", "/console/stream-dead-letters/NOPE/1", nil, http.StatusNotFound},
		{"GET", "/console/stream-dead-letters/ORDERS/0", nil, http.StatusNotFound},
		{"POST", "/console/cache/sideways", url.Values{}, http.StatusNotFound},
		{"POST", "/console/nothing/here", url.Values{}, http.StatusNotFound},
		{"POST", "/console/links/nope", url.Values{"enabled": {"false"}}, http.StatusBadRequest},
		{"POST", "/console/mail/blue", url.Values{}, http.StatusBadRequest},
		{"POST", "/console/provider/melt", url.Values{}, http.StatusBadRequest},
		{"POST", "/console/drills/run", url.Values{"drill": {"redis-down"}, "seconds": {"abc"}}, http.StatusBadRequest},
		{"POST", "/console/drills/run", url.Values{"drill": {"no-such-drill"}, "seconds": {"30"}}, http.StatusBadRequest},
		{"POST", "/console/dead-letters/payments/charges-dlq/redrive", url.Values{"id": {"-3"}}, http.StatusBadRequest},
		{"POST", "/console/stream-dead-letters/ORDERS/redrive", url.Values{"seq": {"1"}}, http.StatusBadRequest},
	} {
		status, _, body := st.do(tc.method, tc.path, tc.form, nil, op)
		if status != tc.want || strings.Contains(body, "goroutine") || !strings.Contains(body, "<h1>") {
			t.Errorf("%s %s: %d, want %d:\n%.300s", tc.method, tc.path, status, tc.want, body)
		}
	}
}

// TestTimelineShowsAnUnknownOutcomeBeingConfirmed: a pending payment whose
// outcome is unknown (the worker's attempts ran out) reads as being
// confirmed with the provider, never as failed or "nothing was charged".
func TestTimelineShowsAnUnknownOutcomeBeingConfirmed(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	order := ordersapi.Order{ID: "o1", CustomerID: "ada", Status: ordersapi.StatusPendingPayment, Version: 1, CreatedAt: now, UpdatedAt: now}
	pay := paymentsapi.Payment{ID: "p1", OrderID: "o1", Status: paymentsapi.StatusPending, CreatedAt: now, UpdatedAt: now, OutcomeUnknownSince: &now}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/orders/o1":
			_ = json.NewEncoder(w).Encode(order)
		case "/v1/payments":
			_ = json.NewEncoder(w).Encode(pay)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(api.Close)
	s := &Server{cfg: Config{Backends: &Backends{Orders: api.URL, Payments: api.URL, Notifications: api.URL, Search: api.URL, HC: api.Client()}}}
	tl, _, err := s.buildTimeline(t.Context(), "o1", &user{Sub: "ada", Roles: []string{auth.RoleCustomer}})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(tl.Steps, func(st step) bool { return st.Service == "payments" && st.State == "waiting" })
	if i < 0 || tl.Steps[i].Title != "Confirming the payment with the provider" || tl.Final {
		t.Fatalf("steps %+v", tl.Steps)
	}
	for _, st := range tl.Steps {
		if strings.Contains(st.Detail, "nothing was charged") || st.State == "failed" {
			t.Errorf("step %+v claims an outcome", st)
		}
	}
}
