package index_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/search/internal/index"
)

// schemaV2 returns ev as schemaversion 2, which this build does not know
// (events.Readable): its valid v1 payload must not be read as v1.
func schemaV2(ev events.Envelope) events.Envelope {
	ev.SchemaVersion = 2
	return ev
}

func envelope(t *testing.T, source, typ, subject string, version int64, data any) events.Envelope {
	t.Helper()
	ev, err := events.New(source, typ, subject, 1, version, data, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestProductFromEvent(t *testing.T) {
	t.Parallel()
	full := catalogapi.ProductChanged{ID: "p1", Version: 3, Category: "lamps", Status: "active", SKU: "LAMP-1",
		Translations: map[string]catalogapi.ProductText{"en-US": {Name: " Oak lamp ", Description: "d"}, "de-DE": {Name: "Eichenlampe"}, "fr-FR": {Name: "Lampe"}},
		Prices:       map[string]int64{"EUR": 4900}, Images: []string{"https://i/1.jpg"}}
	p, err := index.ProductFromEvent(envelope(t, "catalog", catalogapi.EventProductUpdated, "p1", 3, full))
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != "p1" || p.Version != 3 || !p.HasText || len(p.Texts) != 3 || p.Prices["EUR"] != 4900 || len(p.Images) != 1 {
		t.Fatalf("product = %+v", p)
	}
	// Sorted by locale, names trimmed, configuration per language.
	want := []index.Text{{"de-DE", "german", "Eichenlampe", ""}, {"en-US", "english", "Oak lamp", "d"}, {"fr-FR", "simple", "Lampe", ""}}
	for i, tx := range p.Texts {
		if tx != want[i] {
			t.Errorf("text %d = %+v, want %+v", i, tx, want[i])
		}
	}

	// An event from before catalog carried the text: indexed without it.
	legacy, err := index.ProductFromEvent(envelope(t, "catalog", catalogapi.EventProductCreated, "p2", 1,
		catalogapi.ProductChanged{ID: "p2", Version: 1, Category: "lamps", Status: "active"}))
	if err != nil || legacy.HasText || len(legacy.Texts) != 0 || legacy.Prices == nil || legacy.Images == nil {
		t.Fatalf("legacy event: %+v, %v", legacy, err)
	}

	for name, ev := range map[string]events.Envelope{
		"subject differs": envelope(t, "catalog", catalogapi.EventProductUpdated, "other", 3, full),
		"no status":       envelope(t, "catalog", catalogapi.EventProductUpdated, "p1", 3, catalogapi.ProductChanged{ID: "p1"}),
		"wrong types":     envelope(t, "catalog", catalogapi.EventProductUpdated, "p1", 3, map[string]any{"id": 1}),
		"schema v2":       schemaV2(envelope(t, "catalog", catalogapi.EventProductUpdated, "p1", 3, full)),
	} {
		if _, err := index.ProductFromEvent(ev); !errors.Is(err, index.ErrPoison) {
			t.Errorf("%s: err = %v, want ErrPoison", name, err)
		}
	}
	if _, err := index.ProductFromEvent(envelope(t, "catalog", "product.repriced", "p1", 4, full)); !errors.Is(err, index.ErrIgnored) {
		t.Errorf("unknown type: err = %v, want ErrIgnored", err)
	}
}

func TestOrderFromEvent(t *testing.T) {
	t.Parallel()
	placed := ordersapi.OrderPlaced{OrderID: "o1", CustomerID: "c1", CustomerEmail: "a@example.com", Currency: "EUR", TotalMinor: 900,
		Items: []ordersapi.Line{{ProductID: "p1", SKU: "LAMP-1", Name: "Oak lamp", Quantity: 1, UnitPriceMinor: 900}}, Version: 1}
	o, err := index.OrderFromEvent(envelope(t, "orders", ordersapi.EventOrderPlaced, "o1", 1, placed))
	if err != nil || o.Status != ordersapi.StatusPendingPayment || len(o.Items) != 1 || o.ItemText() != "Oak lamp LAMP-1 p1" {
		t.Fatalf("placed: %+v, %v", o, err)
	}
	paid := ordersapi.OrderStatusChanged{OrderID: "o1", CustomerID: "c1", Status: ordersapi.StatusPaid, Version: 2, Currency: "EUR", TotalMinor: 900}
	o, err = index.OrderFromEvent(envelope(t, "orders", ordersapi.EventOrderPaid, "o1", 2, paid))
	if err != nil || o.Status != ordersapi.StatusPaid || o.Items != nil || o.Version != 2 {
		t.Fatalf("paid: %+v, %v", o, err)
	}
	bad := paid
	bad.Status = "shipped"
	for name, ev := range map[string]events.Envelope{
		"unknown status":  envelope(t, "orders", ordersapi.EventOrderPaid, "o1", 2, bad),
		"subject differs": envelope(t, "orders", ordersapi.EventOrderPlaced, "o2", 1, placed),
		"schema v2":       schemaV2(envelope(t, "orders", ordersapi.EventOrderPaid, "o1", 2, paid)),
	} {
		if _, err := index.OrderFromEvent(ev); !errors.Is(err, index.ErrPoison) {
			t.Errorf("%s: err = %v, want ErrPoison", name, err)
		}
	}
	if _, err := index.OrderFromEvent(envelope(t, "orders", ordersapi.EventOrderRefundRequired, "o1", 2, ordersapi.RefundRequired{OrderID: "o1"})); !errors.Is(err, index.ErrIgnored) {
		t.Errorf("refund_required: err = %v, want ErrIgnored", err)
	}
}

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	c := index.Cursor{Mode: index.MatchFuzzy, Score: 0.1 + 0.2, ID: "p1", Query: "abc"}
	got, err := index.DecodeCursor(c.Encode())
	if err != nil || got != c {
		t.Fatalf("round trip = %+v, %v; want %+v (scores must survive exactly)", got, err, c)
	}
	for _, bad := range []string{"", "%%%", "e30", strings.Repeat("A", 600), "eyJpZCI6InAxIiwicSI6ImFiYyIsIngiOjF9"} {
		if _, err := index.DecodeCursor(bad); err == nil {
			t.Errorf("DecodeCursor(%q) accepted", bad)
		}
	}
}

// TestParseQueriesNameEveryBadParameterAndDefaultTheRest: every bad parameter is named; good ones get defaults.
func TestParseQueriesNameEveryBadParameterAndDefaultTheRest(t *testing.T) {
	t.Parallel()
	pq, err := index.ParseProductQuery(url.Values{"q": {"  oak lamp "}})
	if err != nil || pq.Q != "oak lamp" || pq.Locale != index.DefaultLocale || pq.Limit != index.DefaultLimit || pq.After != nil {
		t.Fatalf("defaults: %+v, %v", pq, err)
	}
	other := index.Cursor{Mode: index.MatchFullText, ID: "p1", Query: "not-this-query"}
	mine := index.Cursor{Mode: index.MatchFullText, ID: "p1", Query: pq.Fingerprint()}
	if q, err := index.ParseProductQuery(url.Values{"q": {"oak lamp"}, "page_token": {mine.Encode()}}); err != nil || q.After == nil || q.After.ID != "p1" {
		t.Fatalf("own token: %+v, %v", q, err)
	}
	tests := []struct {
		name   string
		orders bool
		v      url.Values
		want   []string // fields named
	}{
		{"products: no q", false, url.Values{}, []string{"q"}},
		{"products: blank q", false, url.Values{"q": {"   "}}, []string{"q"}},
		{"products: 1000 characters", false, url.Values{"q": {strings.Repeat("a", 1000)}}, []string{"q"}},
		{"products: everything wrong", false, url.Values{"q": {""}, "locale": {"xx-XX"}, "category": {"Lamps!"}, "limit": {"0"}, "page_token": {"zz"}},
			[]string{"q", "category", "locale", "limit", "page_token"}},
		{"products: token of another query", false, url.Values{"q": {"oak"}, "page_token": {other.Encode()}}, []string{"page_token"}},
		{"orders: empty q", true, url.Values{"q": {""}}, []string{"q"}},
		{"orders: unknown status", true, url.Values{"status": {"shipped"}}, []string{"status"}},
		{"orders: empty customer, big limit", true, url.Values{"customer_id": {""}, "limit": {"101"}}, []string{"customer_id", "limit"}},
		{"orders: product token", true, url.Values{"page_token": {mine.Encode()}}, []string{"page_token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var err error
			if tt.orders {
				_, err = index.ParseOrderQuery(tt.v)
			} else {
				_, err = index.ParseProductQuery(tt.v)
			}
			var iq *index.InvalidQueryError
			if !errors.As(err, &iq) {
				t.Fatalf("err = %v, want *InvalidQueryError", err)
			}
			var got []string
			for _, f := range iq.Fields {
				got = append(got, f.Field)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("fields = %v, want %v (%v)", got, tt.want, err)
			}
		})
	}
	oq, err := index.ParseOrderQuery(url.Values{})
	if err != nil || oq.Limit != index.DefaultLimit {
		t.Fatalf("empty order query: %+v, %v", oq, err)
	}
}

func TestTextConfigPicksTheStemmerByLanguage(t *testing.T) {
	t.Parallel()
	for loc, want := range map[string]string{"en-US": "english", "en-GB": "english", "de-DE": "german", "de-AT": "german", "fr-FR": "simple", "": "simple"} {
		if got := index.TextConfig(loc); got != want {
			t.Errorf("TextConfig(%q) = %q, want %q", loc, got, want)
		}
	}
}
