package invariant

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"

	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
	"github.com/shopfloor/shopfloor/services/search/searchapi"
)

// observation is what the system showed at one moment. Fields after
// full are only filled by a full observation; an error leaves its part
// nil and is kept for the evidence.
type observation struct {
	orders   map[string]ordersapi.Order // by id, from orders' API
	missing  map[string]bool            // 404 on a strong read
	ordersEr error

	full     bool
	stats    *pspsim.Stats
	statsErr error
	refunded map[string]bool // failed orders holding a charge whose payment was refunded in full
	// failedWhy is each good-card order's payment failure reason, for
	// the orders that ended payment_failed (payments' failure_reason; ""
	// when it could not be read).
	failedWhy map[string]string
	mail      []target.Mail
	mailErr   error
	search    map[string]searchapi.OrderHit
	searchErr error
	metrics   map[string][]target.Sample // process → samples
	scrapeErr map[string]error
	js        *target.JetStreamState
	jsErr     error
}

// observe reads the orders and, when full, everything else.
func (c *Checker) observe(ctx context.Context, orders []Order, full bool) *observation {
	o := &observation{orders: map[string]ordersapi.Order{}, missing: map[string]bool{}}
	o.ordersEr = c.observeOrders(ctx, orders, o)
	if !full {
		return o
	}
	o.full = true
	if st, err := c.Sys.PSPStats(ctx); err != nil {
		o.statsErr = err
	} else {
		o.stats = &st
		o.refunded = c.refunds(ctx, orders, o)
	}
	o.failedWhy = c.failureReasons(ctx, orders, o)
	o.mail, o.mailErr = c.observeMail(ctx, orders)
	o.search, o.searchErr = c.observeSearch(ctx, orders)
	c.observeMetrics(ctx, o)
	return o
}

func customersOf(orders []Order) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range orders {
		if !seen[x.CustomerID] {
			seen[x.CustomerID] = true
			out = append(out, x.CustomerID)
		}
	}
	sort.Strings(out)
	return out
}

// CustomerOrders lists every order of customer, page by page, as the
// operator (a strong read from orders' PostgreSQL). On an error it
// returns what it read before it.
func CustomerOrders(ctx context.Context, sys *target.System, customer string) ([]ordersapi.Order, error) {
	var out []ordersapi.Order
	token := ""
	for {
		q := url.Values{"customer_id": {customer}, "limit": {"100"}}
		if token != "" {
			q.Set("page_token", token)
		}
		var page ordersapi.OrderList
		if err := sys.GetAs(ctx, target.Operator, sys.Orders+"/v1/orders?"+q.Encode(), &page); err != nil {
			return out, fmt.Errorf("list the orders of %s: %w", customer, err)
		}
		out = append(out, page.Orders...)
		if page.NextPageToken == "" || len(page.Orders) == 0 {
			return out, nil
		}
		token = page.NextPageToken
	}
}

// observeOrders lists each customer's orders (strong reads from
// PostgreSQL) and reads any accepted order the lists did not show, as the
// operator: only an operator may name another customer (ADR 0022), and
// to the operator a 404 means the order does not exist (lost), never
// "someone else's".
func (c *Checker) observeOrders(ctx context.Context, orders []Order, o *observation) error {
	var errs []error
	for _, cust := range customersOf(orders) {
		list, err := CustomerOrders(ctx, c.Sys, cust)
		if err != nil {
			errs = append(errs, err)
		}
		for _, x := range list {
			o.orders[x.ID] = x
		}
	}
	for _, x := range orders {
		if _, ok := o.orders[x.ID]; ok {
			continue
		}
		var one ordersapi.Order
		err := c.Sys.GetAs(ctx, target.Operator, c.Sys.Orders+"/v1/orders/"+url.PathEscape(x.ID), &one)
		switch {
		case target.IsNotFound(err):
			o.missing[x.ID] = true
		case err != nil:
			errs = append(errs, err)
		default:
			o.orders[x.ID] = one
		}
	}
	return errors.Join(errs...)
}

// refunds asks payments, as the operator, about each failed order that
// holds a succeeded charge: a payment refunded in full gave the money
// back.
func (c *Checker) refunds(ctx context.Context, orders []Order, o *observation) map[string]bool {
	out := map[string]bool{}
	for _, x := range orders {
		if o.orders[x.ID].Status != ordersapi.StatusPaymentFailed && o.orders[x.ID].Status != ordersapi.StatusCancelled {
			continue
		}
		if o.stats.SucceededByReference[x.ID] == 0 {
			continue
		}
		p, err := c.paymentOf(ctx, x.ID)
		if err != nil {
			continue
		}
		out[x.ID] = p.Status == paymentsapi.StatusRefunded && p.RefundedMinor >= p.AmountMinor
	}
	return out
}

// failureReasons asks payments, as the operator, why each good-card
// order that ended payment_failed failed.
func (c *Checker) failureReasons(ctx context.Context, orders []Order, o *observation) map[string]string {
	out := map[string]string{}
	for _, x := range orders {
		if x.Declined || o.orders[x.ID].Status != ordersapi.StatusPaymentFailed {
			continue
		}
		why := "" // not read: the row waits for it
		if p, err := c.paymentOf(ctx, x.ID); err == nil {
			why = p.FailureReason
		}
		out[x.ID] = why
	}
	return out
}

// paymentOf asks payments, as the operator, for order id's payment.
func (c *Checker) paymentOf(ctx context.Context, id string) (paymentsapi.Payment, error) {
	var p paymentsapi.Payment
	err := c.Sys.GetAs(ctx, target.Operator, c.Sys.Payments+"/v1/payments?order_id="+url.QueryEscape(id), &p)
	return p, err
}

// observeMail reads the e-mails to the orders' addresses: per address
// when there are few, all at once otherwise.
func (c *Checker) observeMail(ctx context.Context, orders []Order) ([]target.Mail, error) {
	if c.Sys.Mail == nil {
		return nil, errors.New("no mailbox configured")
	}
	seen := map[string]bool{}
	var addrs []string
	for _, x := range orders {
		if !seen[x.Email] {
			seen[x.Email] = true
			addrs = append(addrs, x.Email)
		}
	}
	if len(addrs) > 20 {
		return c.Sys.Mail.Messages(ctx, "")
	}
	var out []target.Mail
	for _, a := range addrs {
		m, err := c.Sys.Mail.Messages(ctx, a)
		if err != nil {
			return nil, err
		}
		out = append(out, m...)
	}
	return out, nil
}

// observeSearch pages through each customer's orders in search, as the
// operator (a customer's search is scoped to itself).
func (c *Checker) observeSearch(ctx context.Context, orders []Order) (map[string]searchapi.OrderHit, error) {
	out := map[string]searchapi.OrderHit{}
	for _, cust := range customersOf(orders) {
		token := ""
		for {
			q := url.Values{"customer_id": {cust}, "limit": {"100"}}
			if token != "" {
				q.Set("page_token", token)
			}
			var page searchapi.OrderResults
			if err := c.Sys.GetAs(ctx, target.Operator, c.Sys.Search+"/v1/search/orders?"+q.Encode(), &page); err != nil {
				return out, err
			}
			for _, h := range page.Orders {
				out[h.ID] = h
			}
			if page.NextPageToken == "" || len(page.Orders) == 0 {
				break
			}
			token = page.NextPageToken
		}
	}
	return out, nil
}

// observeMetrics scrapes every role process and reads NATS monitoring.
func (c *Checker) observeMetrics(ctx context.Context, o *observation) {
	o.metrics, o.scrapeErr = map[string][]target.Sample{}, map[string]error{}
	for name, base := range c.Sys.Metrics {
		s, err := target.Scrape(ctx, c.Sys.Client(), base)
		if err != nil {
			o.scrapeErr[name] = err
			continue
		}
		o.metrics[name] = s
	}
	if c.Sys.NATSMonitor == "" {
		o.jsErr = errors.New("no NATS monitoring URL")
		return
	}
	js, err := c.Sys.JetStream(ctx)
	if err != nil {
		o.jsErr = err
		return
	}
	o.js = &js
}

// deadLetters is the depth of every dead-letter queue and stream:
// jobqueue_dead_letter_depth per queue (the largest any process reports:
// they read the same table), the messages of each *_DLQ stream and, on
// the Kafka engine, the records the groups dead-lettered into each
// <topic>_DLQ topic (stream_kafka_dead_lettered_total summed over the
// processes: counters of this run's processes, which a restart resets).
func deadLetters(o *observation) map[string]float64 {
	out := map[string]float64{}
	for _, samples := range o.metrics {
		for _, s := range samples {
			switch s.Name {
			case "jobqueue_dead_letter_depth":
				k := "queue " + s.Label("queue")
				out[k] = max(out[k], s.Value)
			case "stream_kafka_dead_lettered_total":
				out["stream "+s.Label("stream")+"_DLQ"] += s.Value
			}
		}
	}
	if o.js != nil {
		for name, n := range o.js.Messages {
			if len(name) > 4 && name[len(name)-4:] == "_DLQ" {
				out["stream "+name] = float64(n)
			}
		}
	}
	return out
}

func examples(ids []string) string {
	sort.Strings(ids)
	if len(ids) > 3 {
		return fmt.Sprintf("%v …", ids[:3])
	}
	return fmt.Sprint(ids)
}
