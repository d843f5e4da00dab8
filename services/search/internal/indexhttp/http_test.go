package indexhttp_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/search/internal/searchtest"
	"github.com/shopfloor/shopfloor/services/search/searchapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// productEvent is one CATALOG event for a product with English (and
// optionally German) text.
func productEvent(t *testing.T, id string, version int64, status, category, name, desc, deName string) searchtest.Event {
	t.Helper()
	tr := map[string]catalogapi.ProductText{"en-US": {Name: name, Description: desc}}
	if deName != "" {
		tr["de-DE"] = catalogapi.ProductText{Name: deName, Description: "Aus Holz."}
	}
	typ := catalogapi.EventProductCreated
	switch {
	case status == "archived":
		typ = catalogapi.EventProductArchived
	case version > 1:
		typ = catalogapi.EventProductUpdated
	}
	ev, err := searchtest.Envelope("catalog", typ, id, version, catalogapi.ProductChanged{ID: id, Version: version, Category: category,
		Status: status, SKU: "SKU-" + strings.ToUpper(id[len(id)-6:]), Translations: tr, Prices: map[string]int64{"EUR": 1000}, Images: []string{}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func names(r searchapi.ProductResults) []string {
	out := make([]string, len(r.Products))
	for i, p := range r.Products {
		out[i] = p.Name
	}
	return out
}

// TestProductSearchRanksNamesFirstAndFiltersAndForgivesTypos: the ranking and filters of the product search,
// on documents built from real CATALOG events by the live consumer.
func TestProductSearchRanksNamesFirstAndFiltersAndForgivesTypos(t *testing.T) {
	t.Parallel()
	s := searchtest.Start(t, 3)
	ids := map[string]string{}
	for _, n := range []string{"walnut", "reading", "shelf", "table", "clock", "draft"} {
		ids[n] = searchtest.NewID()
	}
	s.Publish(t, s.Products.Stream, []searchtest.Event{
		productEvent(t, ids["walnut"], 1, "active", "lamps", "Walnut Lamp", "A lamp of oiled wood.", ""),
		productEvent(t, ids["reading"], 1, "active", "lamps", "Reading light", "Brighter than any walnut lamp you had.", ""),
		productEvent(t, ids["shelf"], 1, "active", "shelves", "Walnut shelf", "For books.", ""),
		productEvent(t, ids["table"], 1, "active", "tables", "Oak table", "Solid oak.", "Tisch aus Eiche"),
		productEvent(t, ids["clock"], 1, "active", "clocks", "Brass clock", "Ticks.", ""),
		productEvent(t, ids["clock"], 2, "archived", "clocks", "Brass clock", "Ticks.", ""),
		productEvent(t, ids["draft"], 1, "draft", "clocks", "Brass alarm", "Rings.", ""),
	})
	s.WaitCaughtUp(t, s.Products)

	search := func(t *testing.T, params url.Values) searchapi.ProductResults {
		t.Helper()
		return searchtest.Decode[searchapi.ProductResults](t, s.Get(t, "/v1/search/products?"+params.Encode()))
	}
	tests := []struct {
		name   string
		params url.Values
		match  string
		want   []string // names, in order
	}{
		{"exact name above a description match", url.Values{"q": {"walnut lamp"}}, "fulltext", []string{"Walnut Lamp", "Reading light"}},
		{"names above descriptions", url.Values{"q": {"walnut"}}, "fulltext", nil}, // checked below: the two names first
		{"category filter", url.Values{"q": {"walnut"}, "category": {"shelves"}}, "fulltext", []string{"Walnut shelf"}},
		{"stemming", url.Values{"q": {"lamps"}}, "fulltext", nil},
		{"one-letter typo", url.Values{"q": {"Walnt lamp"}}, "fuzzy", []string{"Walnut Lamp"}},
		{"one-letter typo, one word", url.Values{"q": {"shelff"}}, "fuzzy", []string{"Walnut shelf"}},
		{"German text in de-DE", url.Values{"q": {"Tische"}, "locale": {"de-DE"}}, "fulltext", []string{"Tisch aus Eiche"}},
		{"German words not in en-US", url.Values{"q": {"Tische"}, "locale": {"en-US"}}, "fuzzy", []string{}},
		{"English words not in de-DE", url.Values{"q": {"oak table"}, "locale": {"de-DE"}}, "fuzzy", []string{}},
		{"archived products disappear", url.Values{"q": {"brass clock"}}, "fuzzy", []string{}},
		{"drafts are not public", url.Values{"q": {"alarm"}}, "fuzzy", []string{}},
	}
	// The group returns when its parallel subtests are done, before the
	// product below is reactivated.
	t.Run("queries", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := search(t, tt.params)
				if r.Match != tt.match {
					t.Errorf("match = %q, want %q (%v)", r.Match, tt.match, names(r))
				}
				if tt.want != nil && !slices.Equal(names(r), tt.want) {
					t.Errorf("names = %q, want %q", names(r), tt.want)
				}
				for _, p := range r.Products {
					if p.Status != "active" || p.Locale != tt.params.Get("locale") && tt.params.Get("locale") != "" {
						t.Errorf("hit %+v: wrong status or locale", p)
					}
				}
			})
		}
	})
	r := search(t, url.Values{"q": {"walnut"}})
	if got := names(r); len(got) != 3 || got[2] != "Reading light" || r.Products[1].Score <= r.Products[2].Score {
		t.Errorf("walnut: %q (scores %v); want both walnut names before the description match", got, r.Products)
	}
	if h := r.Products[0]; h.Locale != "en-US" || h.Prices["EUR"] != 1000 || h.Version != 1 || h.SKU == "" {
		t.Errorf("hit = %+v", h)
	}
	if r := search(t, url.Values{"q": {"lamps"}}); len(r.Products) != 2 {
		t.Errorf("lamps (stemmed to lamp, also the category): %q", names(r))
	}
	// A product archived and then made active again comes back.
	s.Publish(t, s.Products.Stream, []searchtest.Event{productEvent(t, ids["clock"], 3, "active", "clocks", "Brass clock", "Ticks.", "")})
	s.WaitCaughtUp(t, s.Products)
	if r := search(t, url.Values{"q": {"brass clock"}}); !slices.Equal(names(r), []string{"Brass clock"}) || r.Products[0].Version != 3 {
		t.Errorf("reactivated: %+v", r.Products)
	}
}

// TestPageTokensWalkTheListOnceAndBelongToTheirQuery: page tokens walk the whole list once, in order, and
// belong to their query.
func TestPageTokensWalkTheListOnceAndBelongToTheirQuery(t *testing.T) {
	t.Parallel()
	s := searchtest.Start(t, 2)
	var log []searchtest.Event
	for i := range 7 {
		log = append(log, productEvent(t, searchtest.NewID(), 1, "active", "lamps", "Lamp "+string(rune('A'+i)), "A lamp.", ""))
	}
	for i := range 5 {
		oid := searchtest.NewID()
		ev, err := searchtest.Envelope(ordersapi.Source, ordersapi.EventOrderPlaced, oid, 1, ordersapi.OrderPlaced{OrderID: oid, CustomerID: "c1",
			CustomerEmail: "c1@example.com", Currency: "EUR", TotalMinor: 100, Items: []ordersapi.Line{{Name: "Lamp", SKU: "L-1", Quantity: 1}}},
			time.Now().Add(time.Duration(i)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		s.Publish(t, s.Orders.Stream, []searchtest.Event{ev})
	}
	s.Publish(t, s.Products.Stream, log)
	s.WaitCaughtUp(t, s.Products)
	s.WaitCaughtUp(t, s.Orders)

	walk := func(path string, items func([]byte) ([]string, string)) []string {
		var all []string
		token := ""
		for range 10 {
			p := path
			if token != "" {
				p += "&page_token=" + url.QueryEscape(token)
			}
			a := s.Get(t, p)
			if a.Status != http.StatusOK {
				t.Fatalf("%s = %d %s", p, a.Status, a.Body)
			}
			got, next := items(a.Body)
			all = append(all, got...)
			if token = next; token == "" {
				return all
			}
		}
		t.Fatalf("%s: more pages than results", path)
		return nil
	}
	products := walk("/v1/search/products?q=lamp&limit=3", func(b []byte) ([]string, string) {
		var r searchapi.ProductResults
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		return names(r), r.NextPageToken
	})
	sorted := slices.Clone(products)
	slices.Sort(sorted)
	if len(products) != 7 || len(slices.Compact(sorted)) != 7 {
		t.Errorf("product pages = %q, want 7 distinct lamps", products)
	}
	var placed []string
	orders := walk("/v1/search/orders?customer_id=c1&limit=2", func(b []byte) ([]string, string) {
		var r searchapi.OrderResults
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, o := range r.Orders {
			ids = append(ids, o.ID)
			placed = append(placed, o.PlacedAt.Format(time.RFC3339Nano))
		}
		return ids, r.NextPageToken
	})
	if len(orders) != 5 || !slices.IsSortedFunc(placed, func(a, b string) int { return strings.Compare(b, a) }) {
		t.Errorf("order pages = %v placed %v, want 5 orders newest first", orders, placed)
	}
	first := searchtest.Decode[searchapi.ProductResults](t, s.Get(t, "/v1/search/products?q=lamp&limit=3"))
	if a := s.Get(t, "/v1/search/products?q=lamps&limit=3&page_token="+url.QueryEscape(first.NextPageToken)); a.Status != http.StatusBadRequest {
		t.Errorf("token with another q = %d %s", a.Status, a.Body)
	}
}

// TestOrderSearchFindsByCustomerStatusAndWords: by customer, status and words, with freshness.
func TestOrderSearchFindsByCustomerStatusAndWords(t *testing.T) {
	t.Parallel()
	s := searchtest.Start(t, 2)
	a, b := searchtest.NewID(), searchtest.NewID()
	mk := func(typ, id string, v int64, data any) searchtest.Event {
		ev, err := searchtest.Envelope(ordersapi.Source, typ, id, v, data, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	s.Publish(t, s.Orders.Stream, []searchtest.Event{
		mk(ordersapi.EventOrderPlaced, a, 1, ordersapi.OrderPlaced{OrderID: a, CustomerID: "c1", CustomerEmail: "ann@example.com", Currency: "EUR", TotalMinor: 4900,
			Items: []ordersapi.Line{{ProductID: "p1", SKU: "LAMP-OAK-01", Name: "Oak lamp", Quantity: 1, UnitPriceMinor: 4900}}}),
		mk(ordersapi.EventOrderPlaced, b, 1, ordersapi.OrderPlaced{OrderID: b, CustomerID: "c2", CustomerEmail: "bob@example.com", Currency: "EUR", TotalMinor: 100,
			Items: []ordersapi.Line{{ProductID: "p2", SKU: "RUG-1", Name: "Linen rug", Quantity: 1, UnitPriceMinor: 100}}}),
		mk(ordersapi.EventOrderPaid, a, 2, ordersapi.OrderStatusChanged{OrderID: a, CustomerID: "c1", CustomerEmail: "ann@example.com", Status: "paid", Currency: "EUR", TotalMinor: 4900}),
	})
	s.WaitCaughtUp(t, s.Orders)
	ids := func(path string) []string {
		r := searchtest.Decode[searchapi.OrderResults](t, s.Get(t, path))
		var out []string
		for _, o := range r.Orders {
			out = append(out, o.ID)
		}
		return out
	}
	for path, want := range map[string][]string{
		"/v1/search/orders?customer_id=c1":                {a},
		"/v1/search/orders?customer_id=c1&status=paid":    {a},
		"/v1/search/orders?status=pending_payment":        {b},
		"/v1/search/orders?q=oak+lamp":                    {a},
		"/v1/search/orders?q=LAMP-OAK-01":                 {a},
		"/v1/search/orders?q=bob@example.com":             {b},
		"/v1/search/orders?q=" + a:                        {a},
		"/v1/search/orders?customer_id=c2&status=paid":    nil,
		"/v1/search/orders?customer_id=nobody&q=oak+lamp": nil,
	} {
		if got := ids(path); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	r := searchtest.Decode[searchapi.OrderResults](t, s.Get(t, "/v1/search/orders?customer_id=c1"))
	if o := r.Orders[0]; o.Status != "paid" || o.Version != 2 || len(o.Items) != 1 || o.Items[0].SKU != "LAMP-OAK-01" || o.TotalMinor != 4900 {
		t.Errorf("order = %+v", o)
	}
}

// TestEveryAnswerSaysHowFreshTheProjectionIs: every answer says when the projection last applied an
// event and how far behind it is, in headers and body.
func TestEveryAnswerSaysHowFreshTheProjectionIs(t *testing.T) {
	t.Parallel()
	s := searchtest.Start(t, 2)
	a := s.Get(t, "/v1/search/products?q=anything")
	if a.Status != http.StatusOK || a.Header.Get(searchapi.HeaderLastApplied) != "" {
		t.Fatalf("empty projection: %d, last applied %q", a.Status, a.Header.Get(searchapi.HeaderLastApplied))
	}
	before := time.Now().Add(-time.Second)
	s.Publish(t, s.Products.Stream, []searchtest.Event{productEvent(t, searchtest.NewID(), 1, "active", "lamps", "Oak lamp", "", "")})
	s.WaitCaughtUp(t, s.Products)
	testinfra.Eventually(t, 10*time.Second, func() error {
		a = s.Get(t, "/v1/search/products?q=oak")
		if a.Header.Get(searchapi.HeaderLagSeconds) == "" {
			return fmt.Errorf("no %s yet", searchapi.HeaderLagSeconds)
		}
		return nil
	})
	r := searchtest.Decode[searchapi.ProductResults](t, a)
	last, err := time.Parse(time.RFC3339Nano, a.Header.Get(searchapi.HeaderLastApplied))
	if err != nil || last.Before(before) || r.Freshness.LastAppliedAt == nil || !r.Freshness.LastAppliedAt.Equal(last) {
		t.Errorf("last applied: header %q (%v), body %v", a.Header.Get(searchapi.HeaderLastApplied), err, r.Freshness.LastAppliedAt)
	}
	if r.Freshness.Stream != s.Products.Stream || r.Freshness.LagSeconds == nil || r.Freshness.LagMessages == nil || r.Freshness.LastEventAt == nil {
		t.Errorf("freshness = %+v", r.Freshness)
	}
	if a.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", a.Header.Get("Cache-Control"))
	}
}

// TestBadParametersAreA400ProblemNamingThem: every bad parameter is a 400 problem that names it.
func TestBadParametersAreA400ProblemNamingThem(t *testing.T) {
	t.Parallel()
	s := searchtest.Start(t, 1)
	long := strings.Repeat("x", 1000)
	tests := []struct {
		path   string
		fields []string
	}{
		{"/v1/search/products", []string{"q"}},
		{"/v1/search/products?q=", []string{"q"}},
		{"/v1/search/products?q=%20%20", []string{"q"}},
		{"/v1/search/products?q=" + long, []string{"q"}},
		{"/v1/search/products?q=lamp&locale=xx-XX", []string{"locale"}},
		{"/v1/search/products?q=lamp&category=Lamps!", []string{"category"}},
		{"/v1/search/products?q=lamp&limit=0", []string{"limit"}},
		{"/v1/search/products?q=lamp&limit=many", []string{"limit"}},
		{"/v1/search/products?q=lamp&page_token=not-a-token", []string{"page_token"}},
		{"/v1/search/products?q=&locale=xx&limit=1000", []string{"q", "locale", "limit"}},
		{"/v1/search/orders?q=", []string{"q"}},
		{"/v1/search/orders?q=" + long, []string{"q"}},
		{"/v1/search/orders?status=shipped", []string{"status"}},
		{"/v1/search/orders?customer_id=", []string{"customer_id"}},
		{"/v1/search/orders?page_token=e30", []string{"page_token"}},
	}
	for _, tt := range tests {
		t.Run(tt.path[:min(len(tt.path), 60)], func(t *testing.T) {
			t.Parallel()
			a := s.Get(t, tt.path)
			if a.Status != http.StatusBadRequest || a.Header.Get("Content-Type") != httpkit.ContentTypeProblem {
				t.Fatalf("= %d %s %s", a.Status, a.Header.Get("Content-Type"), a.Body)
			}
			var p httpkit.Problem
			if err := json.Unmarshal(a.Body, &p); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range p.Errors {
				got = append(got, f.Field)
				if f.Message == "" || !strings.Contains(p.Detail, f.Field) {
					t.Errorf("field %s: message %q, detail %q", f.Field, f.Message, p.Detail)
				}
			}
			if !slices.Equal(got, tt.fields) || p.Class() != "invalid-query" {
				t.Errorf("problem %s names %v, want %v", p.Type, got, tt.fields)
			}
		})
	}
	if a := s.Get(t, "/v1/search/nothing"); a.Status != http.StatusNotFound {
		t.Errorf("unknown route = %d", a.Status)
	}
}
