package invariant

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
	"github.com/shopfloor/shopfloor/services/search/searchapi"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// converged is what a healthy system shows for two orders: a paid with a
// good card, b failed with a declined one.
func converged() ([]Order, *observation) {
	orders := []Order{{ID: "a", CustomerID: "c", Email: "c@x"}, {ID: "b", CustomerID: "c", Email: "c@x", Declined: true}}
	o := &observation{
		orders: map[string]ordersapi.Order{
			"a": {ID: "a", Status: ordersapi.StatusPaid, Version: 2},
			"b": {ID: "b", Status: ordersapi.StatusPaymentFailed, Version: 2},
		},
		missing: map[string]bool{},
		full:    true,
		stats: &pspsim.Stats{SucceededByReference: map[string]int{"a": 1}, ChargesByIdempotencyKey: map[string]int{"k-a": 1, "k-b": 1},
			DoubleCharges: []string{}},
		refunded: map[string]bool{},
		mail: []target.Mail{
			{MessageID: "<1>", Subject: "We received your order a"}, {MessageID: "<2>", Subject: "Receipt for your order a"},
			{MessageID: "<3>", Subject: "We received your order b"}, {MessageID: "<4>", Subject: "Payment failed for your order b"},
			{MessageID: "<5>", Subject: "Receipt for your order other-run"},
		},
		search: map[string]searchapi.OrderHit{
			"a": {ID: "a", Status: ordersapi.StatusPaid, Version: 2},
			"b": {ID: "b", Status: ordersapi.StatusPaymentFailed, Version: 2},
		},
		metrics: map[string][]target.Sample{
			"search": {{Name: "stream_consumer_lag_messages", Labels: map[string]string{"stream": "ORDERS", "group": "search", "partition": "0"}}},
			"orders-relay": {
				{Name: "outbox_backlog_rows", Labels: map[string]string{"stream": "ORDERS"}},
			},
			"payments": {
				{Name: "jobqueue_visible_messages", Labels: map[string]string{"queue": "charges"}},
				{Name: "jobqueue_in_flight_messages", Labels: map[string]string{"queue": "charges"}},
				{Name: "jobqueue_visible_messages", Labels: map[string]string{"queue": "charges-dlq"}, Value: 3},
				{Name: "jobqueue_dead_letter_depth", Labels: map[string]string{"queue": "charges-dlq"}, Value: 3},
			},
		},
		scrapeErr: map[string]error{},
		js:        &target.JetStreamState{Messages: map[string]uint64{"ORDERS": 10, "ORDERS_DLQ": 1}},
	}
	return orders, o
}

func baseline() *Baseline {
	return &Baseline{DLQ: map[string]float64{"queue charges-dlq": 3, "stream ORDERS_DLQ": 1}}
}

// failGoodCardUnderFaults makes order a (good card) end payment_failed
// with its charge job dead-lettered, under provider faults, for the
// failure reason why ("": payments did not say).
func failGoodCardUnderFaults(o *observation, opts *Options, why string) {
	opts.AllowPaymentFailed = true
	o.orders["a"] = ordersapi.Order{ID: "a", Status: ordersapi.StatusPaymentFailed, Version: 2}
	o.search["a"] = searchapi.OrderHit{ID: "a", Status: ordersapi.StatusPaymentFailed, Version: 2}
	o.stats.SucceededByReference["a"] = 0
	o.mail[1].Subject = "Payment failed for your order a"
	o.metrics["payments"][3].Value = 4 // its job in the DLQ
	o.failedWhy = map[string]string{"a": why}
}

func TestEvaluateFlagsTheInvariantEachFaultBreaks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(orders []Order, o *observation, opts *Options)
		// want is the invariant expected to change (every other one holds)
		// and whether it is violated for good or still pending.
		want    string
		pending bool
		// evidence must appear in the changed invariant's evidence.
		evidence string
		// cascade are other invariants that follow from the change.
		cascade []string
	}{
		{name: "converged"},
		{name: "lost order", change: func(_ []Order, o *observation, _ *Options) {
			delete(o.orders, "a")
			o.missing["a"] = true
		}, want: NameExist, evidence: "1 of 2 accepted orders answer 404", cascade: []string{NameFinal}},
		{name: "stuck order", change: func(_ []Order, o *observation, _ *Options) {
			o.orders["a"] = ordersapi.Order{ID: "a", Status: ordersapi.StatusPendingPayment, Version: 1}
		}, want: NameFinal, pending: true, evidence: "a (pending_payment)", cascade: []string{NameExpected, NameSearch}},
		{name: "declined card paid", change: func(_ []Order, o *observation, _ *Options) {
			o.orders["b"] = ordersapi.Order{ID: "b", Status: ordersapi.StatusPaid, Version: 2}
			o.search["b"] = searchapi.OrderHit{ID: "b", Status: ordersapi.StatusPaid, Version: 2}
			o.stats.SucceededByReference["b"] = 1
			o.mail[3].Subject = "Receipt for your order b"
		}, want: NameExpected, evidence: "b declined card paid"},
		{name: "good card failed", change: func(_ []Order, o *observation, _ *Options) {
			o.orders["a"] = ordersapi.Order{ID: "a", Status: ordersapi.StatusPaymentFailed, Version: 2}
			o.search["a"] = searchapi.OrderHit{ID: "a", Status: ordersapi.StatusPaymentFailed, Version: 2}
			o.stats.SucceededByReference["a"] = 0
			o.mail[1].Subject = "Payment failed for your order a"
		}, want: NameExpected, evidence: "a good card payment_failed"},
		{name: "good card failed under provider faults", change: func(_ []Order, o *observation, opts *Options) {
			failGoodCardUnderFaults(o, opts, paymentsapi.ReasonRetriesExhausted)
		}},
		{name: "good card refused as invalid under provider faults", change: func(_ []Order, o *observation, opts *Options) {
			failGoodCardUnderFaults(o, opts, paymentsapi.ReasonInvalidRequest)
		}, want: NameExpected, evidence: "a good card payment_failed: invalid_request", cascade: []string{NameDLQ}},
		{name: "failure reason not read yet", change: func(_ []Order, o *observation, opts *Options) {
			failGoodCardUnderFaults(o, opts, "")
		}, want: NameExpected, pending: true, evidence: "1 payment_failed whose reason payments did not give", cascade: []string{NameDLQ}},
		{name: "double charge", change: func(_ []Order, o *observation, _ *Options) {
			o.stats.SucceededByReference["a"] = 2
		}, want: NameChargePaid, evidence: "1 more than once"},
		{name: "paid without a charge", change: func(_ []Order, o *observation, _ *Options) {
			o.stats.SucceededByReference["a"] = 0
		}, want: NameChargePaid, evidence: "1 never"},
		{name: "failed order kept a charge", change: func(_ []Order, o *observation, _ *Options) {
			o.stats.SucceededByReference["b"] = 1
		}, want: NameChargeFail, evidence: "1 with a kept charge"},
		{name: "failed order charged and refunded", change: func(_ []Order, o *observation, _ *Options) {
			o.stats.SucceededByReference["b"] = 1
			o.refunded["b"] = true
		}},
		{name: "e-mail not sent yet", change: func(_ []Order, o *observation, _ *Options) {
			o.mail = o.mail[1:]
		}, want: NameEmail, pending: true, evidence: "1 (order, kind) missing"},
		{name: "e-mail resent with the same Message-ID", change: func(_ []Order, o *observation, _ *Options) {
			o.mail = append(o.mail, o.mail[1])
		}, want: NameEmail, evidence: "1 more than once (1 of them resends"},
		{name: "second e-mail", change: func(_ []Order, o *observation, _ *Options) {
			o.mail = append(o.mail, target.Mail{MessageID: "<9>", Subject: "Receipt for your order a"})
		}, want: NameEmail, evidence: "1 more than once (0 of them resends"},
		{name: "e-mail of the wrong kind", change: func(_ []Order, o *observation, _ *Options) {
			o.mail = append(o.mail, target.Mail{MessageID: "<9>", Subject: "Receipt for your order b"})
		}, want: NameEmail, evidence: "b/receipt×1"},
		{name: "search behind", change: func(_ []Order, o *observation, _ *Options) {
			o.search["a"] = searchapi.OrderHit{ID: "a", Status: ordersapi.StatusPendingPayment, Version: 1}
		}, want: NameSearch, pending: true, evidence: "1/2 orders indexed"},
		{name: "lag", change: func(_ []Order, o *observation, _ *Options) {
			o.metrics["search"][0].Value = 7
		}, want: NameLag, pending: true, evidence: "search ORDERS/search p0: 7"},
		{name: "consumer unreachable", change: func(_ []Order, o *observation, _ *Options) {
			o.scrapeErr["notifications"] = os.ErrDeadlineExceeded
		}, want: NameLag, pending: true, evidence: "unreachable: [notifications]"},
		{name: "backlog", change: func(_ []Order, o *observation, _ *Options) {
			o.metrics["orders-relay"][0].Value = 5
		}, want: NameBacklog, pending: true, evidence: "ORDERS 5"},
		{name: "job in flight", change: func(_ []Order, o *observation, _ *Options) {
			o.metrics["payments"][1].Value = 1
		}, want: NameQueues, pending: true, evidence: "charges in_flight 1"},
		{name: "dead-lettered job", change: func(_ []Order, o *observation, _ *Options) {
			o.metrics["payments"][3].Value = 4
		}, want: NameDLQ, evidence: "charges-dlq +1"},
		{name: "dead-lettered event", change: func(_ []Order, o *observation, _ *Options) {
			o.js.Messages["ORDERS_DLQ"] = 2
		}, want: NameDLQ, evidence: "ORDERS_DLQ +1"},
	}
	// An unreachable process leaves the backlogs unknown too.
	alsoPending := map[string][]string{"consumer unreachable": {NameBacklog}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			orders, o := converged()
			opts := Options{Baseline: baseline()}
			if tt.change != nil {
				tt.change(orders, o, &opts)
			}
			cs := evaluate(orders, o, opts)
			if len(cs) != 11 {
				t.Fatalf("%d results, want 11", len(cs))
			}
			for _, c := range cs {
				if slices.Contains(tt.cascade, c.Invariant) {
					if c.Held {
						t.Errorf("%s holds, but follows from the change (%s)", c.Invariant, c.Evidence)
					}
					continue
				}
				also := false
				for _, n := range alsoPending[tt.name] {
					also = also || n == c.Invariant
				}
				switch {
				case c.Invariant == tt.want || also:
					if c.Held || c.pending != (tt.pending || also) {
						t.Errorf("%s: held %t pending %t, want held false pending %t (%s)", c.Invariant, c.Held, c.pending, tt.pending || also, c.Evidence)
					}
					if !also && !strings.Contains(c.Evidence, tt.evidence) {
						t.Errorf("%s: evidence %q lacks %q", c.Invariant, c.Evidence, tt.evidence)
					}
				case !c.Held || c.pending:
					t.Errorf("%s: held %t pending %t, want held (%s)", c.Invariant, c.Held, c.pending, c.Evidence)
				}
			}
		})
	}
}

func TestEvaluateWaitsForFinalOrdersFirst(t *testing.T) {
	t.Parallel()
	orders, o := converged()
	o.full = false
	cs := evaluate(orders, o, Options{})
	if len(cs) != 10 {
		t.Fatalf("%d results, want 10 (no DLQ row without a baseline)", len(cs))
	}
	for _, c := range cs[3:] {
		if !c.pending {
			t.Errorf("%s is decided before the full observation", c.Invariant)
		}
	}
}

// TestKindOfMatchesTheTemplates renders each e-mail template's subject
// line with an order id and checks that KindOf reads it back, so that a
// change of wording in notifications fails here, not silently in a drill.
func TestKindOfMatchesTheTemplates(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../services/notifications/internal/email/templates/*.txt")
	if err != nil || len(files) < 4 {
		t.Fatalf("templates: %v %v", files, err)
	}
	subject := regexp.MustCompile(`\{\{define "subject"\}\}(.*?)\{\{end`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := subject.FindSubmatch(b)
		if m == nil {
			t.Fatalf("%s: no subject template", f)
		}
		const id = "01a208e9-81dc-7865-a433-dd9b00000001"
		line := strings.ReplaceAll(string(m[1]), "{{.OrderID}}", id)
		kind, got, ok := KindOf(line)
		want := strings.TrimSuffix(filepath.Base(f), ".txt")
		if !ok || got != id || kind != want {
			t.Errorf("%s: KindOf(%q) = %q, %q, %t; want %q, %q", f, line, kind, got, ok, want, id)
		}
	}
}
