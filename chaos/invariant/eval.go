package invariant

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// Names of the invariants, in report order.
const (
	NameExist      = "#1 every accepted order exists"
	NameFinal      = "#1 every order reaches a final state"
	NameExpected   = "#1 each order ends as its card implies"
	NameChargePaid = "#2 exactly one provider charge per paid order"
	NameChargeFail = "#2 no provider charge kept for a failed order"
	NameEmail      = "#3 exactly one e-mail per (order, kind)"
	NameSearch     = "#5 search shows every order's final status"
	NameLag        = "#5 stream consumer lags drain to 0"
	NameBacklog    = "outbox backlogs drain to 0"
	NameQueues     = "job queues drain to 0"
	NameDLQ        = "#7 nothing dead-lettered"
)

func isFinal(status string) bool {
	switch status {
	case ordersapi.StatusPaid, ordersapi.StatusPaymentFailed, ordersapi.StatusCancelled:
		return true
	}
	return false
}

func ordersDone(orders []Order, o *observation) bool {
	if o.ordersEr != nil {
		return false
	}
	for _, x := range orders {
		if o.missing[x.ID] {
			continue
		}
		if got, ok := o.orders[x.ID]; !ok || !isFinal(got.Status) {
			return false
		}
	}
	return true
}

// evaluate turns one observation into the verdicts.
func evaluate(orders []Order, o *observation, opts Options) []check {
	cs := []check{evalExist(orders, o), evalFinal(orders, o), evalExpected(orders, o, opts)}
	if !o.full {
		for _, name := range []string{NameChargePaid, NameChargeFail, NameEmail, NameSearch, NameLag, NameBacklog, NameQueues} {
			cs = append(cs, check{Result{Invariant: name, Evidence: "waiting for every order to be final"}, true})
		}
		if opts.Baseline != nil {
			cs = append(cs, check{Result{Invariant: NameDLQ, Evidence: "waiting for every order to be final"}, true})
		}
		return cs
	}
	cs = append(cs, evalChargePaid(orders, o), evalChargeFailed(orders, o), evalEmail(orders, o),
		evalSearch(orders, o), evalLag(o), evalBacklog(o), evalQueues(o))
	if opts.Baseline != nil {
		cs = append(cs, evalDLQ(orders, o, opts))
	}
	return cs
}

func evalExist(orders []Order, o *observation) check {
	var missing []string
	for _, x := range orders {
		if o.missing[x.ID] {
			missing = append(missing, x.ID)
		}
	}
	r := Result{Invariant: NameExist, Counts: map[string]int{"accepted": len(orders), "missing": len(missing)}}
	switch {
	case len(missing) > 0:
		r.Evidence = fmt.Sprintf("%d of %d accepted orders answer 404: %s", len(missing), len(orders), examples(missing))
		return check{r, false}
	case o.ordersEr != nil:
		r.Evidence = fmt.Sprintf("orders API: %v", o.ordersEr)
		return check{r, true}
	}
	r.Held, r.Evidence = true, fmt.Sprintf("%d of %d accepted orders found", len(orders), len(orders))
	return check{r, false}
}

func evalFinal(orders []Order, o *observation) check {
	byStatus := map[string]int{}
	var stuck []string
	for _, x := range orders {
		got, ok := o.orders[x.ID]
		switch {
		case o.missing[x.ID]:
			byStatus["lost"]++
		case !ok:
			byStatus["unread"]++
			stuck = append(stuck, x.ID)
		default:
			byStatus[got.Status]++
			if !isFinal(got.Status) {
				stuck = append(stuck, x.ID+" ("+got.Status+")")
			}
		}
	}
	r := Result{Invariant: NameFinal, Evidence: counts(byStatus), Counts: byStatus}
	if len(stuck) > 0 {
		r.Evidence += fmt.Sprintf("; not final: %s", examples(stuck))
		return check{r, true}
	}
	r.Held = byStatus["lost"] == 0
	return check{r, false}
}

func evalExpected(orders []Order, o *observation, opts Options) check {
	var good, goodPaid, goodFailed, declined, declinedFailed, unread int
	var wrong []string
	for _, x := range orders {
		got, ok := o.orders[x.ID]
		if !ok || !isFinal(got.Status) {
			continue
		}
		switch {
		case x.Declined:
			declined++
			if got.Status == ordersapi.StatusPaymentFailed {
				declinedFailed++
			} else {
				wrong = append(wrong, x.ID+" declined card "+got.Status)
			}
		default:
			good++
			switch {
			case got.Status == ordersapi.StatusPaid:
				goodPaid++
			case got.Status == ordersapi.StatusPaymentFailed && opts.AllowPaymentFailed:
				// Under provider faults a good card may end failed only
				// because every attempt failed and nothing was charged
				// (retries_exhausted); any other reason (invalid_request:
				// a provider error taken for a refusal) is wrong.
				switch why := o.failedWhy[x.ID]; {
				case exhausted(o, x.ID):
					goodFailed++
				case why == "":
					unread++
				default:
					wrong = append(wrong, x.ID+" good card payment_failed: "+why)
				}
			default:
				wrong = append(wrong, x.ID+" good card "+got.Status)
			}
		}
	}
	r := Result{Invariant: NameExpected, Counts: map[string]int{"good": good, "good_paid": goodPaid, "good_payment_failed": goodFailed,
		"declined": declined, "declined_payment_failed": declinedFailed, "wrong": len(wrong)}}
	r.Evidence = fmt.Sprintf("good card: %d/%d paid", goodPaid, good)
	if goodFailed > 0 {
		r.Evidence += fmt.Sprintf(", %d payment_failed (retries exhausted: allowed under provider faults)", goodFailed)
	}
	if unread > 0 {
		r.Evidence += fmt.Sprintf(", %d payment_failed whose reason payments did not give", unread)
	}
	r.Evidence += fmt.Sprintf("; declined card: %d/%d payment_failed", declinedFailed, declined)
	if len(wrong) > 0 {
		r.Evidence += fmt.Sprintf("; %d wrong: %s", len(wrong), examples(wrong))
		return check{r, false}
	}
	if !ordersDone(orders, o) || unread > 0 {
		return check{r, true}
	}
	r.Held = true
	return check{r, false}
}

// exhausted reports whether the good-card order id, which ended
// payment_failed, failed because its retries were exhausted: payments'
// failure reason says so, or the observation holds no reason for it (a
// partial observation, which never decides this row).
func exhausted(o *observation, id string) bool {
	why, known := o.failedWhy[id]
	return !o.full || !known || why == paymentsapi.ReasonRetriesExhausted
}

func evalChargePaid(orders []Order, o *observation) check {
	r := Result{Invariant: NameChargePaid}
	if o.stats == nil {
		r.Evidence = fmt.Sprintf("provider stats: %v", o.statsErr)
		return check{r, true}
	}
	var paid, once int
	var never, twice []string
	for _, x := range orders {
		if o.orders[x.ID].Status != ordersapi.StatusPaid {
			continue
		}
		paid++
		switch n := o.stats.SucceededByReference[x.ID]; n {
		case 1:
			once++
		case 0:
			never = append(never, x.ID)
		default:
			twice = append(twice, fmt.Sprintf("%s×%d", x.ID, n))
		}
	}
	keys := 0
	for _, n := range o.stats.ChargesByIdempotencyKey {
		if n > 1 {
			keys++
		}
	}
	r.Evidence = fmt.Sprintf("%d paid orders: %d charged once, %d never, %d more than once; keys with more than one charge: %d",
		paid, once, len(never), len(twice), keys)
	r.Counts = map[string]int{"paid": paid, "charged_once": once, "never_charged": len(never), "charged_more_than_once": len(twice), "keys_charged_more_than_once": keys}
	if len(never) > 0 {
		r.Evidence += "; never: " + examples(never)
	}
	if len(twice) > 0 {
		r.Evidence += "; double: " + examples(twice)
	}
	r.Held = len(never) == 0 && len(twice) == 0 && keys == 0
	return check{r, false}
}

func evalChargeFailed(orders []Order, o *observation) check {
	r := Result{Invariant: NameChargeFail}
	if o.stats == nil {
		r.Evidence = fmt.Sprintf("provider stats: %v", o.statsErr)
		return check{r, true}
	}
	var failed, refunded int
	var kept []string
	for _, x := range orders {
		st := o.orders[x.ID].Status
		if st != ordersapi.StatusPaymentFailed && st != ordersapi.StatusCancelled {
			continue
		}
		failed++
		if n := o.stats.SucceededByReference[x.ID]; n > 0 {
			if n == 1 && o.refunded[x.ID] {
				refunded++
				continue
			}
			kept = append(kept, fmt.Sprintf("%s×%d", x.ID, n))
		}
	}
	r.Evidence = fmt.Sprintf("%d failed or cancelled orders: %d with a kept charge, %d charged and refunded in full", failed, len(kept), refunded)
	r.Counts = map[string]int{"failed_or_cancelled": failed, "kept_charge": len(kept), "refunded_in_full": refunded}
	if len(kept) > 0 {
		r.Evidence += ": " + examples(kept)
	}
	r.Held = len(kept) == 0
	return check{r, false}
}

// subjects map the subject lines of notifications' templates
// (services/notifications/internal/email/templates) to the kind and the
// order id.
var subjects = []struct {
	re   *regexp.Regexp
	kind string
}{
	{regexp.MustCompile(`^We received your order (\S+)$`), notificationsapi.KindOrderReceived},
	{regexp.MustCompile(`^Receipt for your order (\S+)$`), notificationsapi.KindReceipt},
	{regexp.MustCompile(`^Payment failed for your order (\S+)$`), notificationsapi.KindPaymentFailed},
	{regexp.MustCompile(`^Your order (\S+) was cancelled$`), notificationsapi.KindCancelled},
}

// KindOf returns the notification kind and order id of an e-mail subject.
func KindOf(subject string) (kind, orderID string, ok bool) {
	for _, s := range subjects {
		if m := s.re.FindStringSubmatch(strings.TrimSpace(subject)); m != nil {
			return s.kind, m[1], true
		}
	}
	return "", "", false
}

// expectedKinds are the e-mails an order in a final status must have got.
func expectedKinds(status string) []string {
	switch status {
	case ordersapi.StatusPaid:
		return []string{notificationsapi.KindOrderReceived, notificationsapi.KindReceipt}
	case ordersapi.StatusPaymentFailed:
		return []string{notificationsapi.KindOrderReceived, notificationsapi.KindPaymentFailed}
	case ordersapi.StatusCancelled:
		return []string{notificationsapi.KindOrderReceived, notificationsapi.KindCancelled}
	}
	return nil
}

func evalEmail(orders []Order, o *observation) check {
	r := Result{Invariant: NameEmail}
	if o.mailErr != nil {
		r.Evidence = fmt.Sprintf("mailbox: %v", o.mailErr)
		return check{r, true}
	}
	ours := map[string]bool{}
	for _, x := range orders {
		ours[x.ID] = true
	}
	type pair struct{ order, kind string }
	got := map[pair]int{}
	ids := map[pair]map[string]bool{}
	total := 0
	for _, m := range o.mail {
		kind, id, ok := KindOf(m.Subject)
		if !ok || !ours[id] {
			continue
		}
		total++
		p := pair{id, kind}
		got[p]++
		if ids[p] == nil {
			ids[p] = map[string]bool{}
		}
		ids[p][m.MessageID] = true
	}
	var missing, extra, unexpected []string
	resends := 0
	for _, x := range orders {
		got0, known := o.orders[x.ID]
		if !known {
			continue // lost or unread: #1 reports it
		}
		st := got0.Status
		final := isFinal(st)
		kinds := expectedKinds(st)
		if !final {
			kinds = []string{notificationsapi.KindOrderReceived} // the rest depends on what it becomes
		}
		want := map[string]bool{}
		for _, k := range kinds {
			want[k] = true
			switch n := got[pair{x.ID, k}]; {
			case n == 0:
				missing = append(missing, x.ID+"/"+k)
			case n > 1:
				extra = append(extra, fmt.Sprintf("%s/%s×%d", x.ID, k, n))
				resends += n - len(ids[pair{x.ID, k}])
			}
		}
		for _, k := range notificationsapi.Kinds() {
			if !final || want[k] || got[pair{x.ID, k}] == 0 {
				continue
			}
			// A cancelled order may have been paid or have failed first.
			if st == ordersapi.StatusCancelled && (k == notificationsapi.KindReceipt || k == notificationsapi.KindPaymentFailed) && got[pair{x.ID, k}] == 1 {
				continue
			}
			unexpected = append(unexpected, fmt.Sprintf("%s/%s×%d", x.ID, k, got[pair{x.ID, k}]))
		}
	}
	r.Evidence = fmt.Sprintf("%d e-mails for %d orders: %d (order, kind) missing, %d more than once (%d of them resends of the same Message-ID), %d of a kind the order's state does not call for",
		total, len(orders), len(missing), len(extra), resends, len(unexpected))
	r.Counts = map[string]int{"emails": total, "orders": len(orders), "missing": len(missing), "more_than_once": len(extra), "resends": resends, "unexpected": len(unexpected)}
	if len(extra) > 0 {
		r.Evidence += "; more than once: " + examples(extra)
	}
	if len(unexpected) > 0 {
		r.Evidence += "; unexpected: " + examples(unexpected)
	}
	if len(extra) > 0 || len(unexpected) > 0 {
		return check{r, false}
	}
	if len(missing) > 0 {
		r.Evidence += "; missing: " + examples(missing)
		return check{r, true}
	}
	r.Held = true
	return check{r, false}
}

func evalSearch(orders []Order, o *observation) check {
	r := Result{Invariant: NameSearch}
	if o.searchErr != nil {
		r.Evidence = fmt.Sprintf("search API: %v", o.searchErr)
		return check{r, true}
	}
	var behind []string
	ok, lost := 0, 0
	for _, x := range orders {
		if o.missing[x.ID] {
			lost++ // #1 reports it; there is nothing to index
			continue
		}
		want := o.orders[x.ID]
		h, found := o.search[x.ID]
		switch {
		case !found:
			behind = append(behind, x.ID+" absent")
		case h.Status != want.Status || h.Version != want.Version:
			behind = append(behind, fmt.Sprintf("%s %s v%d, orders says %s v%d", x.ID, h.Status, h.Version, want.Status, want.Version))
		default:
			ok++
		}
	}
	r.Evidence = fmt.Sprintf("%d/%d orders indexed with their final status and version", ok, len(orders)-lost)
	r.Counts = map[string]int{"indexed": ok, "orders": len(orders) - lost, "behind": len(behind), "lost": lost}
	if lost > 0 {
		r.Evidence += fmt.Sprintf(" (%d lost orders not looked for)", lost)
	}
	if len(behind) > 0 {
		r.Evidence += "; behind: " + examples(behind)
		return check{r, true}
	}
	r.Held = true
	return check{r, false}
}

// unreachable lists the processes whose /metrics could not be read.
func unreachable(o *observation) []string {
	var out []string
	for name := range o.scrapeErr {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func evalLag(o *observation) check {
	r := Result{Invariant: NameLag}
	var nonzero []string
	series, groups := 0, map[string]bool{}
	for name, samples := range o.metrics {
		for _, s := range samples {
			// Either engine's gauge (pkg/stream's on NATS,
			// pkg/stream/kafka's on Kafka: the same labels).
			if s.Name != "stream_consumer_lag_messages" && s.Name != "stream_kafka_consumer_lag_messages" {
				continue
			}
			series++
			groups[s.Label("stream")+"/"+s.Label("group")] = true
			if s.Value != 0 {
				nonzero = append(nonzero, fmt.Sprintf("%s %s/%s p%s: %g", name, s.Label("stream"), s.Label("group"), s.Label("partition"), s.Value))
			}
		}
	}
	r.Evidence = fmt.Sprintf("%d partitions of %d groups, %d above 0", series, len(groups), len(nonzero))
	r.Counts = map[string]int{"partitions": series, "groups": len(groups), "above_zero": len(nonzero)}
	if len(nonzero) > 0 {
		r.Evidence += ": " + examples(nonzero)
	}
	if u := unreachable(o); len(u) > 0 {
		r.Evidence += fmt.Sprintf("; /metrics unreachable: %v", u)
		return check{r, true}
	}
	if len(nonzero) > 0 || series == 0 {
		return check{r, true}
	}
	r.Held = true
	return check{r, false}
}

func evalBacklog(o *observation) check {
	r := Result{Invariant: NameBacklog}
	backlog := map[string]float64{}
	for _, samples := range o.metrics {
		for _, s := range samples {
			if s.Name == "outbox_backlog_rows" {
				backlog[s.Label("stream")] = max(backlog[s.Label("stream")], s.Value)
			}
		}
	}
	names := make([]string, 0, len(backlog))
	pending := false
	for k, v := range backlog {
		names = append(names, fmt.Sprintf("%s %g", k, v))
		pending = pending || v != 0
	}
	sort.Strings(names)
	r.Evidence = "rows: " + strings.Join(names, ", ")
	r.Counts = map[string]int{}
	for k, v := range backlog {
		r.Counts[k] = int(v)
	}
	if u := unreachable(o); len(u) > 0 {
		r.Evidence += fmt.Sprintf("; /metrics unreachable: %v", u)
		return check{r, true}
	}
	if pending || len(backlog) == 0 {
		return check{r, true}
	}
	r.Held = true
	return check{r, false}
}

func evalQueues(o *observation) check {
	r := Result{Invariant: NameQueues}
	depth := map[string]float64{}
	for _, samples := range o.metrics {
		for _, s := range samples {
			switch s.Name {
			case "jobqueue_visible_messages", "jobqueue_in_flight_messages", "jobqueue_delayed_messages":
				q := s.Label("queue")
				if strings.HasSuffix(q, "-dlq") {
					continue
				}
				k := q + " " + strings.TrimSuffix(strings.TrimPrefix(s.Name, "jobqueue_"), "_messages")
				depth[k] = max(depth[k], s.Value)
			}
		}
	}
	var parts []string
	pending := false
	for k, v := range depth {
		if v != 0 {
			parts = append(parts, fmt.Sprintf("%s %g", k, v))
			pending = true
		}
	}
	sort.Strings(parts)
	r.Evidence = fmt.Sprintf("%d gauges (visible, in flight, delayed), all 0", len(depth))
	r.Counts = map[string]int{"gauges": len(depth), "not_empty": len(parts)}
	if pending {
		r.Evidence = "not empty: " + strings.Join(parts, ", ")
	}
	if pending || len(depth) == 0 {
		return check{r, true}
	}
	r.Held = true
	return check{r, false}
}

func evalDLQ(orders []Order, o *observation, opts Options) check {
	r := Result{Invariant: NameDLQ}
	if o.js == nil {
		r.Evidence = fmt.Sprintf("NATS monitoring: %v", o.jsErr)
		return check{r, true}
	}
	now := deadLetters(o)
	// Under provider faults a charge job may exhaust its receives: it is
	// dead-lettered and its order ends payment_failed. Those are allowed.
	allowed := 0
	if opts.AllowPaymentFailed {
		for _, x := range orders {
			if !x.Declined && o.orders[x.ID].Status == ordersapi.StatusPaymentFailed && exhausted(o, x.ID) {
				allowed++
			}
		}
	}
	var grew, parts []string
	r.Counts = map[string]int{}
	for k, v := range now {
		d := v - opts.Baseline.DLQ[k]
		r.Counts[strings.TrimPrefix(strings.TrimPrefix(k, "queue "), "stream ")] = int(d)
		parts = append(parts, fmt.Sprintf("%s +%g", strings.TrimPrefix(strings.TrimPrefix(k, "queue "), "stream "), d))
		if d <= 0 {
			continue
		}
		if k == "queue charges-dlq" && d <= float64(allowed) {
			continue
		}
		grew = append(grew, fmt.Sprintf("%s +%g", k, d))
	}
	sort.Strings(parts)
	r.Evidence = strings.Join(parts, ", ")
	if allowed > 0 {
		r.Evidence += fmt.Sprintf(" (charges-dlq may hold the %d exhausted payments)", allowed)
	}
	r.Held = len(grew) == 0
	return check{r, false}
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	total := 0
	for k, n := range m {
		keys = append(keys, k)
		total += n
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", m[k], k)
	}
	return fmt.Sprintf("%d orders: %s", total, strings.Join(parts, ", "))
}
