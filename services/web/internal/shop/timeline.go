package shop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
	"github.com/shopfloor/shopfloor/services/search/searchapi"
)

// step is one thing that happened to an order, in the service that did
// it. The timeline is read from each service's own API: what the page
// shows is what those services say, not a copy kept here.
type step struct {
	At      time.Time
	Service string
	Title   string
	Detail  string
	// State is done, waiting or failed.
	State string
	// Link reads more (an e-mail).
	Link string
	// TraceID is the trace the step belongs to; TraceLink opens it in the
	// trace viewer (when one is configured).
	TraceID, TraceLink string
}

// timeline is an order's steps, oldest first, and whether nothing more is
// expected (the live stream then ends).
type timeline struct {
	Steps []step
	Final bool
	// Status and Version are the order's, as orders has them now.
	Status  string
	Version int64
}

var errBadID = errors.New("not an order id")

// buildTimeline reads the order from orders and what payments,
// notifications and search know about it: the order and its outbox
// events (orderSteps), the payment (paymentSteps), where the order ended
// up (outcomeSteps), the e-mails (notificationSteps) and the search
// document (searchStep), oldest first.
func (s *Server) buildTimeline(ctx context.Context, id string, u *user) (timeline, ordersapi.Order, error) {
	if !idPattern.MatchString(id) {
		return timeline{}, ordersapi.Order{}, errBadID
	}
	b := s.cfg.Backends
	var o ordersapi.Order
	if _, err := b.get(ctx, "orders", b.Orders, "/v1/orders/"+url.PathEscape(id), nil, u.Access, &o); err != nil {
		return timeline{}, o, err
	}
	tl := timeline{Status: o.Status, Version: o.Version}
	tl.Steps = append(tl.Steps, b.orderSteps(ctx, id, o, u)...)
	tl.Steps = append(tl.Steps, b.paymentSteps(ctx, id, o, u)...)
	tl.Steps = append(tl.Steps, outcomeSteps(o)...)
	tl.Steps = append(tl.Steps, b.notificationSteps(ctx, id, o, u)...)
	// search: the order's document in the projection, and how fresh it is.
	indexed := s.searchStep(ctx, o, u)
	tl.Steps = append(tl.Steps, indexed)

	sort.SliceStable(tl.Steps, func(i, j int) bool { return tl.Steps[i].At.Before(tl.Steps[j].At) })
	settled := o.Status != ordersapi.StatusPendingPayment
	tl.Final = settled && indexed.State == "done" && allDone(tl.Steps)
	return tl, o, nil
}

// orderSteps are the order's acceptance and, from orders' outbox, each
// event of the order and where the relay published it. (Older orders'
// rows are pruned after the relay's retention: then there is nothing to
// show.)
func (b *Backends) orderSteps(ctx context.Context, id string, o ordersapi.Order, u *user) []step {
	steps := []step{{At: o.CreatedAt, Service: "orders", State: "done", Title: "Order accepted",
		Detail: "orders priced it from catalog and wrote the order and its order.placed event (outbox row) in one transaction"}}
	var evs ordersapi.OrderEventList
	if _, err := b.get(ctx, "orders", b.Orders, "/v1/orders/"+url.PathEscape(id)+"/events", nil, u.Access, &evs); err == nil {
		for _, e := range evs.Events {
			steps = append(steps, b.outboxStep(e))
		}
	}
	return steps
}

// paymentSteps are the payment attempt made from order.placed, its
// provider calls and refunds; or that payments has none yet, or cannot be
// asked.
func (b *Backends) paymentSteps(ctx context.Context, id string, o ordersapi.Order, u *user) []step {
	var p paymentsapi.Payment
	_, perr := b.get(ctx, "payments", b.Payments, "/v1/payments", url.Values{"order_id": {id}}, u.Access, &p)
	switch {
	case perr == nil:
	case isStatus(perr, http.StatusNotFound):
		return []step{{At: o.CreatedAt, Service: "payments", State: "waiting", Title: "Waiting for payments",
			Detail: "order.placed is on its way: outbox relay → ORDERS stream → payments' consumer group"}}
	default:
		return []step{{At: time.Now(), Service: "payments", State: "waiting", Title: "payments cannot be asked just now", Detail: errText(perr)}}
	}
	steps := []step{{At: p.CreatedAt, Service: "payments", State: "done", Title: "Payment attempt created",
		Detail: "payments' consumer group took order.placed from its ORDERS partition and, in one transaction, claimed the event (inbox), created the attempt and queued a charge job for " + money(p.AmountMinor, p.Currency)}}
	if st, ok := paymentStatusStep(p); ok {
		steps = append(steps, st)
	}
	for _, c := range p.ProviderCalls {
		steps = append(steps, providerStep(c))
	}
	if p.Status == paymentsapi.StatusSucceeded && o.Status != ordersapi.StatusPaid && o.Status != ordersapi.StatusPendingPayment {
		// The charge landed after the order closed (cancelled, or
		// another payment): orders answers with order.refund_required.
		steps = append(steps, step{At: p.UpdatedAt, Service: "payments", State: "waiting", Title: "Refund due",
			Detail: "the charge landed after the order was " + strings.ReplaceAll(o.Status, "_", " ") + ": orders published order.refund_required, and a refund job is queued"})
	}
	if p.RefundedMinor > 0 {
		steps = append(steps, step{At: p.UpdatedAt, Service: "payments", State: "done", Title: "Refunded",
			Detail: money(p.RefundedMinor, p.Currency) + " went back to the card (order.refund_required or a cancel after payment)"})
	}
	return steps
}

// paymentStatusStep is where the payment stands: confirming, charging,
// succeeded or failed.
func paymentStatusStep(p paymentsapi.Payment) (step, bool) {
	switch {
	case p.Status == paymentsapi.StatusPending && p.OutcomeUnknownSince != nil:
		return step{At: *p.OutcomeUnknownSince, Service: "payments", State: "waiting", Title: "Confirming the payment with the provider",
			Detail: "the provider did not give a definite answer before the worker's attempts ran out; payments' reconciler asks it for the charge by the payment's idempotency key and records what it holds (nothing is charged twice, and no failure is reported before the provider confirms it)"}, true
	case p.Status == paymentsapi.StatusPending:
		return step{At: p.UpdatedAt, Service: "payments", State: "waiting", Title: "Charging",
			Detail: "a worker holds the charge job (visibility timeout) and calls the provider; a timeout or a 5xx is retried with backoff, with the same idempotency key at the provider"}, true
	case p.Status == paymentsapi.StatusSucceeded, p.Status == paymentsapi.StatusRefunded:
		return step{At: p.UpdatedAt, Service: "payments", State: "done", Title: "Payment succeeded",
			Detail: "payments recorded the charge of " + money(p.AmountMinor, p.Currency) + " (" + p.ChargeID + ") and published payment.succeeded through its outbox"}, true
	case p.Status == paymentsapi.StatusFailed:
		return step{At: p.UpdatedAt, Service: "payments", State: "failed", Title: "Payment failed",
			Detail: "reason: " + firstNonEmpty(p.DeclineCode, p.FailureReason, "unknown") + "; nothing was charged"}, true
	}
	return step{}, false
}

// outcomeSteps is where the order ended up, when it did: paid, payment
// failed or cancelled.
func outcomeSteps(o ordersapi.Order) []step {
	switch o.Status {
	case ordersapi.StatusPaid:
		return []step{{At: o.UpdatedAt, Service: "orders", State: "done", Title: "Order paid",
			Detail: fmt.Sprintf("orders consumed payment.succeeded from the PAYMENTS stream and moved the order to paid (version %d)", o.Version)}}
	case ordersapi.StatusPaymentFailed:
		return []step{{At: o.UpdatedAt, Service: "orders", State: "failed", Title: "Payment failed",
			Detail: fmt.Sprintf("orders consumed payment.failed and closed the order (version %d)", o.Version)}}
	case ordersapi.StatusCancelled:
		return []step{{At: o.UpdatedAt, Service: "orders", State: "done", Title: "Order cancelled",
			Detail: fmt.Sprintf("order.cancelled went out through the outbox (version %d); a payment already taken is refunded", o.Version)}}
	}
	return nil
}

// notificationSteps are the order's e-mails: one per (order, kind),
// however often the events were delivered; those the order's life so far
// calls for and notifications has not recorded yet are steps still to
// come.
func (b *Backends) notificationSteps(ctx context.Context, id string, o ordersapi.Order, u *user) []step {
	var nl notificationsapi.NotificationList
	if _, err := b.get(ctx, "notifications", b.Notifications, "/v1/notifications", url.Values{"order_id": {id}}, u.Access, &nl); err != nil {
		return []step{{At: time.Now(), Service: "notifications", State: "waiting", Title: "notifications cannot be asked just now", Detail: errText(err)}}
	}
	// The e-mails the order's life so far calls for: one when it is
	// placed, one for where it ended up. One not recorded yet is a
	// step still to come (notifications has not consumed the event).
	expected := map[string]bool{notificationsapi.KindOrderReceived: true}
	if k, ok := map[string]string{ordersapi.StatusPaid: notificationsapi.KindReceipt, ordersapi.StatusPaymentFailed: notificationsapi.KindPaymentFailed,
		ordersapi.StatusCancelled: notificationsapi.KindCancelled}[o.Status]; ok {
		expected[k] = true
	}
	for _, n := range nl.Notifications {
		delete(expected, n.Kind)
	}
	var steps []step
	for _, k := range notificationsapi.Kinds() {
		if expected[k] {
			steps = append(steps, step{At: o.UpdatedAt, Service: "notifications", State: "waiting", Title: "E-mail: " + strings.ReplaceAll(k, "_", " "),
				Detail: "notifications has not recorded it yet: its consumer group applies the ORDERS event, then queues the e-mail"})
		}
	}
	for _, n := range nl.Notifications {
		steps = append(steps, b.notificationStep(id, n))
	}
	return steps
}

// notificationStep is one e-mail: sent (with a link to read it when the
// mail catcher is configured), given up, or queued.
func (b *Backends) notificationStep(id string, n notificationsapi.Notification) step {
	st := step{At: n.CreatedAt, Service: "notifications", Title: "E-mail: " + strings.ReplaceAll(n.Kind, "_", " ")}
	switch n.Status {
	case notificationsapi.StatusSent:
		st.State, st.At = "done", *n.SentAt
		st.Detail = fmt.Sprintf("sent to %s after %d attempt(s); Message-ID %s", n.Recipient, n.Attempts, n.MessageID)
		if b.Mail != "" {
			st.Link = "/mail/" + url.PathEscape(n.ID) + "?order=" + url.QueryEscape(id)
		}
	case notificationsapi.StatusFailed:
		st.State, st.Detail = "failed", "the worker gave up: "+n.LastError+
			". The job waits in notifications' dead-letter queue, with its reason: an operator redrives it from the console once the cause is fixed, and it is sent once."
	default:
		st.State = "waiting"
		st.Detail = fmt.Sprintf("queued in the e-mail job queue (%d attempt(s) so far)", n.Attempts)
		if n.LastError != "" {
			st.Detail += "; last error: " + n.LastError
		}
	}
	return st
}

// outboxStep is one of the order's events in orders' outbox: published
// (stream, partition, sequence, how long after the commit), or waiting
// for the relay.
func (b *Backends) outboxStep(e ordersapi.OrderEvent) step {
	st := step{At: e.CreatedAt, Service: "relay", TraceID: e.TraceID}
	if e.TraceID != "" && b.TraceURL != "" {
		st.TraceLink = strings.ReplaceAll(b.TraceURL, "{trace_id}", url.PathEscape(e.TraceID))
	}
	if e.PublishedAt == nil {
		st.State, st.Title = "waiting", "In the outbox: "+e.Type
		st.Detail = "committed with the order; the relay has not published it yet"
		if e.PublishAttempts > 0 {
			st.Detail += fmt.Sprintf(" (%d failed attempt(s): the broker did not acknowledge; it retries with backoff, and nothing is lost meanwhile)", e.PublishAttempts)
		}
		return st
	}
	st.At, st.State, st.Title = *e.PublishedAt, "done", "Published: "+e.Type
	where := e.Stream
	if e.Partition != nil {
		where += fmt.Sprintf(", partition %d", *e.Partition)
	}
	if e.Sequence != nil {
		where += fmt.Sprintf(", sequence %d", *e.Sequence)
	}
	st.Detail = fmt.Sprintf("the outbox relay published the row to %s (the order id picks the partition, so this order's events stay in order), %s after the commit",
		where, e.PublishedAt.Sub(e.CreatedAt).Round(time.Millisecond))
	if e.PublishAttempts > 0 {
		st.Detail += fmt.Sprintf("; %d earlier attempt(s) failed", e.PublishAttempts)
	}
	return st
}

// providerStep is one call payments' worker made to the provider.
func providerStep(c paymentsapi.ProviderCall) step {
	st := step{At: c.At, Service: "provider", State: "retry"}
	took := fmt.Sprintf("delivery %d of the job, %d ms", c.Attempt, c.DurationMs)
	op := map[string]string{paymentsapi.OpCharge: "Charge", paymentsapi.OpFindCharge: "Look-up", paymentsapi.OpRefund: "Refund"}[c.Operation]
	switch c.Outcome {
	case paymentsapi.OutcomeCharged, paymentsapi.OutcomeRefunded:
		st.State, st.Title, st.Detail = "done", op+": "+c.Outcome, took
	case paymentsapi.OutcomeFound:
		st.State, st.Title = "done", op+": the charge exists"
		st.Detail = "the lost answer's charge was found under the same idempotency key and is recorded instead of charging again; " + took
	case paymentsapi.OutcomeDeclined:
		st.State, st.Title, st.Detail = "failed", op+": declined", "the card refused it (final); "+took
	case paymentsapi.OutcomeNotFound:
		st.Title, st.Detail = op+": no charge yet", "retried later with the same idempotency key; "+took
	case paymentsapi.OutcomeAmbiguous:
		st.Title = op + ": no answer"
		st.Detail = "it may have been processed (a timeout after sending): payments asks the provider before any retry, never charges with a new key; " + took
	case paymentsapi.OutcomeRateLimited:
		st.Title, st.Detail = op+": rate limited (429)", "nothing was processed; retried"
		if c.RetryAfterMs != nil {
			st.Detail += fmt.Sprintf(" after the provider's Retry-After of %.1f s", float64(*c.RetryAfterMs)/1000)
		}
		st.Detail += "; " + took
	case paymentsapi.OutcomeTransient:
		st.Title, st.Detail = op+": failed, not processed", "retried with capped exponential backoff and jitter; "+took
	default:
		st.State, st.Title, st.Detail = "failed", op+": "+strings.ReplaceAll(c.Outcome, "_", " "), "the provider rejected the request; the job went to the dead-letter queue; "+took
	}
	return st
}

func allDone(steps []step) bool {
	for _, st := range steps {
		if st.State == "waiting" {
			return false
		}
	}
	return true
}

// searchStep finds the order among the customer's newest orders in the
// search projection (search has no lookup by id: it is a list and text
// index, and this is a demo's page, not a hot path).
func (s *Server) searchStep(ctx context.Context, o ordersapi.Order, u *user) step {
	b := s.cfg.Backends
	var res searchapi.OrderResults
	q := url.Values{"limit": {"50"}}
	if u.IsOperator() {
		q.Set("customer_id", o.CustomerID)
	}
	h, err := b.get(ctx, "search", b.Search, "/v1/search/orders", q, u.Access, &res)
	if err != nil {
		return step{At: time.Now(), Service: "search", State: "waiting", Title: "search cannot be asked just now", Detail: errText(err)}
	}
	lag := ""
	if l := h.Get(searchapi.HeaderLagSeconds); l != "" {
		lag = "; projection lag " + l + " s"
	}
	for _, hit := range res.Orders {
		if hit.ID != o.ID {
			continue
		}
		if hit.Version < o.Version {
			return step{At: hit.UpdatedAt, Service: "search", State: "waiting", Title: "Indexed, catching up",
				Detail: fmt.Sprintf("search shows status %s (version %d); orders is at version %d%s", hit.Status, hit.Version, o.Version, lag)}
		}
		return step{At: hit.UpdatedAt, Service: "search", State: "done", Title: "Indexed in search",
			Detail: fmt.Sprintf("status %s, version %d: the projection applied the ORDERS events in order, skipping stale versions%s", hit.Status, hit.Version, lag)}
	}
	return step{At: o.CreatedAt, Service: "search", State: "waiting", Title: "Not in search yet",
		Detail: "search's consumer group has not applied order.placed" + lag}
}

func errText(err error) string {
	var ua *Unavailable
	if errors.As(err, &ua) {
		return ua.Service + " is unavailable; the page keeps asking"
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return fmt.Sprintf("%s answered %d", ae.Service, ae.Status)
	}
	return "unavailable"
}

// timelineEvents streams the timeline as server-sent events: an event
// "timeline" with the rendered list whenever it changes, then "final"
// when nothing more is expected. The backends are read every
// TimelinePoll; the stream ends after TimelineMax (EventSource
// reconnects by itself).
func (s *Server) timelineEvents(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PathValue("id")
	if !idPattern.MatchString(id) {
		s.fail(w, r, http.StatusNotFound, "No such order", "There is no such order.")
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.TimelineMax)
	defer cancel()
	// The stream outlives the server's write timeout.
	_ = rc.SetWriteDeadline(time.Time{})
	var last []byte
	tick := time.NewTicker(s.cfg.TimelinePoll)
	defer tick.Stop()
	for {
		tl, _, err := s.buildTimeline(ctx, id, u)
		switch {
		case err == nil:
			var buf bytes.Buffer
			if err := s.pages["order"].ExecuteTemplate(&buf, "timeline", tl); err != nil {
				s.cfg.Log.ErrorContext(ctx, "render timeline", "err", err)
				return
			}
			if !bytes.Equal(buf.Bytes(), last) {
				last = buf.Bytes()
				if err := writeEvent(w, "timeline", buf.Bytes()); err != nil {
					return
				}
			}
			if tl.Final {
				_ = writeEvent(w, "final", []byte("done"))
				_ = rc.Flush()
				return
			}
		case isStatus(err, http.StatusNotFound), errors.Is(err, errBadID):
			_ = writeEvent(w, "gone", []byte("no such order"))
			_ = rc.Flush()
			return
		case ctx.Err() != nil:
			return
		default:
			// A backend is down: say so, keep asking.
			if err := writeEvent(w, "status", []byte(errText(err))); err != nil {
				return
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// writeEvent writes one SSE event; data lines are split at newlines.
func writeEvent(w http.ResponseWriter, event string, data []byte) error {
	var b bytes.Buffer
	b.WriteString("event: " + event + "\n")
	for _, line := range bytes.Split(data, []byte("\n")) {
		b.WriteString("data: ")
		b.Write(line)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// mailMessage is the part of the SMTP sink's message that the page shows.
type mailMessage struct {
	Subject    string    `json:"subject"`
	MessageID  string    `json:"message_id"`
	ReceivedAt time.Time `json:"received_at"`
	Text       string    `json:"text"`
	To         []string  `json:"to"`
}

type mailData struct {
	OrderID string
	Kind    string
	Message mailMessage
}

// mail shows an e-mail of one of the person's orders, as the sandbox's
// SMTP sink received it. The notification is read with the person's token
// (notifications decides whose it is); only then is the sink asked.
func (s *Server) mail(w http.ResponseWriter, r *http.Request, u *user) {
	b := s.cfg.Backends
	id, orderID := r.PathValue("id"), r.URL.Query().Get("order")
	if b.Mail == "" || !idPattern.MatchString(id) || !idPattern.MatchString(orderID) {
		s.fail(w, r, http.StatusNotFound, "No such e-mail", "There is no such e-mail, or it is not yours to read.")
		return
	}
	var nl notificationsapi.NotificationList
	if _, err := b.get(r.Context(), "notifications", b.Notifications, "/v1/notifications", url.Values{"order_id": {orderID}}, u.Access, &nl); err != nil {
		s.backendFailed(w, r, err)
		return
	}
	var n *notificationsapi.Notification
	for i := range nl.Notifications {
		if nl.Notifications[i].ID == id {
			n = &nl.Notifications[i]
		}
	}
	if n == nil || n.Status != notificationsapi.StatusSent {
		s.fail(w, r, http.StatusNotFound, "No such e-mail", "There is no such e-mail, or it is not yours to read.")
		return
	}
	var msgs []mailMessage
	if _, err := b.get(r.Context(), "mail sink", b.Mail, "/api/messages", url.Values{"to": {n.Recipient}}, "", &msgs); err != nil {
		s.backendFailed(w, r, err)
		return
	}
	want := strings.Trim(n.MessageID, "<>")
	for _, m := range msgs {
		if strings.Trim(m.MessageID, "<>") == want {
			s.render(w, r, http.StatusOK, "mail", page{Title: m.Subject, User: u, Data: mailData{OrderID: orderID, Kind: n.Kind, Message: m}})
			return
		}
	}
	s.fail(w, r, http.StatusNotFound, "The e-mail is not in the mail sink", "notifications sent it, but the sandbox's SMTP sink no longer holds it (it keeps messages in memory until it restarts).")
}
