// Package searchtest generates event histories for search's tests and
// benchmarks: products and orders with several versions each, as the
// CATALOG and ORDERS streams carry them (envelopes keyed by entity id,
// each key's versions in order), and publishes them to a stream.
//
// Histories are deterministic for a given *rand.Rand, so a failing test
// can be replayed.
package searchtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// Event is one event of a history: its key (the entity id) and its
// encoded envelope.
type Event struct {
	Key     string
	Type    string
	Version int64
	ID      string
	Payload []byte
}

var (
	adjectives = []string{"Oak", "Walnut", "Brass", "Linen", "Nordic", "Round", "Tall", "Compact", "Vintage", "Modular"}
	nouns      = []string{"lamp", "chair", "table", "rug", "shelf", "mirror", "clock", "vase"}
	german     = map[string]string{"lamp": "Lampe", "chair": "Stuhl", "table": "Tisch", "rug": "Teppich", "shelf": "Regal", "mirror": "Spiegel", "clock": "Uhr", "vase": "Vase"}
)

// NewID returns a UUIDv7 string, as catalog and orders use for ids.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// Envelope encodes one event with the aggregate version, as the outbox
// relay publishes it.
func Envelope(source, typ, subject string, version int64, data any, at time.Time) (Event, error) {
	ev, err := events.New(source, typ, subject, 1, version, data, at)
	if err != nil {
		return Event{}, err
	}
	b, err := events.Marshal(ev)
	if err != nil {
		return Event{}, err
	}
	return Event{Key: subject, Type: typ, Version: version, ID: ev.ID, Payload: b}, nil
}

// Products returns the histories of n products, one slice per product in
// version order: created, then up to maxVersions-1 updates that rename,
// reprice, add or drop the German text, and sometimes archive it.
func Products(rng *rand.Rand, n, maxVersions int) ([][]Event, error) {
	at := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	out := make([][]Event, 0, n)
	for i := range n {
		id := NewID()
		noun := nouns[rng.IntN(len(nouns))]
		pc := catalogapi.ProductChanged{ID: id, Category: noun + "s", Status: "active", SKU: fmt.Sprintf("SKU-%06d", i),
			Translations: map[string]catalogapi.ProductText{"en-US": {Name: name(rng, noun, i), Description: "A " + noun + " for every day."}},
			Prices:       map[string]int64{"EUR": int64(500 + rng.IntN(50_000))},
			Images:       []string{fmt.Sprintf("https://img.shopfloor.dev/%s/%d.jpg", noun, i)}}
		versions := 1 + rng.IntN(maxVersions)
		hist := make([]Event, 0, versions)
		for v := 1; v <= versions; v++ {
			typ := catalogapi.EventProductCreated
			if v > 1 {
				typ = catalogapi.EventProductUpdated
				pc = mutate(rng, pc, noun, i)
				if v == versions && rng.IntN(4) == 0 {
					typ, pc.Status = catalogapi.EventProductArchived, "archived"
				}
			}
			pc.Version = int64(v)
			ev, err := Envelope("catalog", typ, id, int64(v), pc, at.Add(time.Duration(i*10+v)*time.Second))
			if err != nil {
				return nil, err
			}
			hist = append(hist, ev)
		}
		out = append(out, hist)
	}
	return out, nil
}

func name(rng *rand.Rand, noun string, i int) string {
	return fmt.Sprintf("%s %s %d", adjectives[rng.IntN(len(adjectives))], noun, i)
}

// mutate returns a copy of pc with one change: a new name, a new price,
// the German text added or dropped.
func mutate(rng *rand.Rand, pc catalogapi.ProductChanged, noun string, i int) catalogapi.ProductChanged {
	t := make(map[string]catalogapi.ProductText, len(pc.Translations)+1)
	for k, v := range pc.Translations {
		t[k] = v
	}
	prices := map[string]int64{}
	for k, v := range pc.Prices {
		prices[k] = v
	}
	pc.Translations, pc.Prices = t, prices
	switch rng.IntN(3) {
	case 0:
		en := t["en-US"]
		en.Name = name(rng, noun, i)
		t["en-US"] = en
	case 1:
		prices["EUR"] = int64(500 + rng.IntN(50_000))
		prices["USD"] = prices["EUR"] * 108 / 100
	default:
		if _, ok := t["de-DE"]; ok {
			delete(t, "de-DE")
		} else {
			t["de-DE"] = catalogapi.ProductText{Name: fmt.Sprintf("%s %d", german[noun], i), Description: "Für jeden Tag."}
		}
	}
	return pc
}

// Orders returns the histories of n orders: order.placed, then (mostly)
// paid or payment_failed, sometimes cancelled, sometimes a
// refund_required that the index ignores.
func Orders(rng *rand.Rand, n int) ([][]Event, error) {
	at := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	out := make([][]Event, 0, n)
	for i := range n {
		id := NewID()
		noun := nouns[rng.IntN(len(nouns))]
		customer := fmt.Sprintf("cust-%d", rng.IntN(max(n/5, 1)))
		qty := 1 + rng.IntN(3)
		unit := int64(500 + rng.IntN(10_000))
		placed := ordersapi.OrderPlaced{OrderID: id, CustomerID: customer, CustomerEmail: customer + "@example.com", Currency: "EUR",
			TotalMinor: unit * int64(qty), Version: 1,
			Items: []ordersapi.Line{{ProductID: NewID(), SKU: fmt.Sprintf("SKU-%06d", rng.IntN(10_000)), Name: name(rng, noun, i), Quantity: qty, UnitPriceMinor: unit, CatalogVersion: 1}}}
		t := at.Add(time.Duration(i) * time.Second)
		ev, err := Envelope(ordersapi.Source, ordersapi.EventOrderPlaced, id, 1, placed, t)
		if err != nil {
			return nil, err
		}
		hist := []Event{ev}
		status := func(typ, st string, v int64) error {
			ev, err := Envelope(ordersapi.Source, typ, id, v, ordersapi.OrderStatusChanged{OrderID: id, CustomerID: customer,
				CustomerEmail: placed.CustomerEmail, Status: st, Version: v, Currency: "EUR", TotalMinor: placed.TotalMinor}, t.Add(time.Duration(v)*time.Minute))
			hist = append(hist, ev)
			return err
		}
		switch r := rng.IntN(10); {
		case r < 6:
			err = status(ordersapi.EventOrderPaid, ordersapi.StatusPaid, 2)
			if err == nil && rng.IntN(5) == 0 {
				ev, err = Envelope(ordersapi.Source, ordersapi.EventOrderRefundRequired, id, 2, ordersapi.RefundRequired{OrderID: id,
					PaymentID: NewID(), AmountMinor: placed.TotalMinor, Currency: "EUR", Status: ordersapi.StatusPaid, Version: 2, Reason: "paid twice"}, t.Add(3*time.Minute))
				hist = append(hist, ev)
			}
		case r < 8:
			err = status(ordersapi.EventOrderPaymentFailed, ordersapi.StatusPaymentFailed, 2)
			if err == nil && rng.IntN(2) == 0 {
				err = status(ordersapi.EventOrderCancelled, ordersapi.StatusCancelled, 3)
			}
		case r < 9:
			err = status(ordersapi.EventOrderCancelled, ordersapi.StatusCancelled, 2)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, hist)
	}
	return out, nil
}

// Interleave merges the histories into one log in a random order that
// keeps each key's events in order: what a stream holds when the
// entities change concurrently.
func Interleave(rng *rand.Rand, histories [][]Event) []Event {
	next := make([]int, len(histories))
	live := make([]int, 0, len(histories))
	total := 0
	for i, h := range histories {
		if len(h) > 0 {
			live = append(live, i)
			total += len(h)
		}
	}
	out := make([]Event, 0, total)
	for len(live) > 0 {
		j := rng.IntN(len(live))
		k := live[j]
		out = append(out, histories[k][next[k]])
		next[k]++
		if next[k] == len(histories[k]) {
			live[j] = live[len(live)-1]
			live = live[:len(live)-1]
		}
	}
	return out
}

// Publish publishes log to pub in order, in batches of up to 1000
// messages (PublishAsync keeps a batch's per-key order when every message
// is stored), and fails on the first message the broker did not take.
func Publish(ctx context.Context, pub *stream.Publisher, log []Event) error {
	const batch = 1000
	for start := 0; start < len(log); start += batch {
		end := min(start+batch, len(log))
		msgs := make([]stream.Message, 0, end-start)
		for _, ev := range log[start:end] {
			msgs = append(msgs, stream.Message{ID: ev.ID, Key: ev.Key, Payload: ev.Payload, Headers: map[string]string{"ce_type": ev.Type}})
		}
		for i, r := range pub.PublishAsync(ctx, msgs) {
			if r.Err != nil {
				return fmt.Errorf("publish event %d of %d: %w", start+i+1, len(log), r.Err)
			}
		}
	}
	return nil
}
