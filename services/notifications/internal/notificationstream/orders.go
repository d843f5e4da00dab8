// Package notificationstream holds notifications' consumer of the ORDERS
// stream (group "notifications"): order.placed, order.paid,
// order.payment_failed and order.cancelled each record one notification
// and enqueue its e-mail; every other event type is acknowledged
// untouched.
//
// Replay-safe: the inbox claims (inbox.ApplyBatch), the notifications
// (exactly one row per (order, kind)) and the e-mail jobs commit in one
// transaction per batch of a partition's events,
// so a redelivery (a lost ack, a consumer crash mid-batch), a replay of
// the whole stream or a rebuild through a new consumer group reading from
// the start records nothing new and sends no e-mail twice. The customer's
// address and id travel in the order events: notifications never calls
// another service. An event without a customer id is still sent (the
// e-mail is owed); its notification is visible to operators only.
package notificationstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/inbox"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notification"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notificationsvc"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// Group is notifications' consumer group on ORDERS.
const Group = "notifications"

// Applier records the notification an event calls for in a transaction,
// and counts it once that transaction committed (notificationsvc.Service).
type Applier interface {
	Record(ctx context.Context, tx pgx.Tx, n notification.Notification) (created bool, err error)
	Created(kind string)
}

var _ Applier = (*notificationsvc.Service)(nil)

// Orders handles ORDERS deliveries.
type Orders struct {
	// Pool is notifications' database: the inbox and the notifications.
	Pool    *pgxpool.Pool
	Applier Applier
	// Group names the inbox claims; empty is Group. A rebuild through a
	// new consumer group uses that group's name here.
	Group string
	Log   *slog.Logger
}

// orderSchemas are the ORDERS schemas this build reads
// (events.Readable: an unknown schemaversion is poison).
var orderSchemas = ordersapi.Schemas()

// Handle is the stream.Handler: HandleBatch of one delivery.
func (h *Orders) Handle(ctx context.Context, d stream.Delivery) error {
	return h.HandleBatch(ctx, []stream.Delivery{d})
}

// recorded is one event of a batch that records a notification.
type recorded struct {
	ev      events.Envelope
	n       notification.Notification
	created bool
}

// HandleBatch is the stream.BatchHandler: the notifications of every
// event in ds, their e-mail jobs and their inbox claims commit in one
// transaction (inbox.ApplyBatch), in stream order. An unreadable event, a
// payload that does not decode, or one without a usable order id or
// customer address is poison (stream.Permanent: a batch that holds one
// fails, the group hands its events over one at a time, and the poison
// one is dead-lettered alone, never blocking the partition); database
// errors are retried; event types that send no e-mail are acknowledged
// untouched.
func (h *Orders) HandleBatch(ctx context.Context, ds []stream.Delivery) error {
	group := h.Group
	if group == "" {
		group = Group
	}
	rs := make([]*recorded, 0, len(ds))
	effects := make([]inbox.Effect, 0, len(ds))
	for _, d := range ds {
		r, err := decode(d)
		if err != nil {
			return err
		}
		if r == nil {
			continue // not ours (order.refund_required, types added later)
		}
		rs = append(rs, r)
		effects = append(effects, inbox.Effect{ID: r.ev.ID, Apply: func(ctx context.Context, tx pgx.Tx) error {
			var err error
			r.created, err = h.Applier.Record(ctx, tx, r.n)
			if verr := (*notification.ValidationError)(nil); errors.As(err, &verr) {
				return stream.Permanent(fmt.Errorf("%s %s: %w", r.ev.Type, r.ev.ID, err))
			}
			if err != nil {
				return fmt.Errorf("%s %s: %w", r.ev.Type, r.ev.ID, err)
			}
			return nil
		}})
	}
	if _, err := inbox.ApplyBatch(ctx, h.Pool, group, effects); err != nil {
		return err
	}
	for _, r := range rs {
		if r.created {
			h.Applier.Created(r.n.Kind) // after the commit: a retried transaction counts once
		}
		h.Log.InfoContext(ctx, "order event handled", "event", r.ev.ID, "type", r.ev.Type, "order", r.n.OrderID,
			"kind", r.n.Kind, "created", r.created)
	}
	return nil
}

// decode reads the notification a delivery calls for, nil for an event
// that calls for none, or a Permanent error for poison.
func decode(d stream.Delivery) (*recorded, error) {
	ev, err := events.Unmarshal(d.Payload)
	if err != nil {
		return nil, stream.Permanent(fmt.Errorf("unreadable event: %w", err))
	}
	if err := events.Readable(ev, orderSchemas); err != nil {
		return nil, stream.Permanent(err)
	}
	kind, ok := notification.KindFor(ev.Type)
	if !ok {
		return nil, nil
	}
	n, err := fromEvent(ev, kind)
	if err != nil {
		return nil, stream.Permanent(fmt.Errorf("%s %s: %w", ev.Type, ev.ID, err))
	}
	return &recorded{ev: ev, n: n}, nil
}

// fromEvent reads the notification an event calls for (not yet
// validated: Record does that).
func fromEvent(ev events.Envelope, kind string) (notification.Notification, error) {
	n := notification.Notification{Kind: kind, EventID: ev.ID}
	if ev.Type == ordersapi.EventOrderPlaced {
		var op ordersapi.OrderPlaced
		if err := ev.DecodeData(&op); err != nil {
			return n, err
		}
		n.OrderID, n.CustomerID, n.Recipient, n.Currency, n.TotalMinor, n.OrderVersion = op.OrderID, op.CustomerID, op.CustomerEmail, op.Currency, op.TotalMinor, op.Version
		for _, l := range op.Items {
			n.Items = append(n.Items, notification.Line{SKU: l.SKU, Name: l.Name, Quantity: l.Quantity, UnitPriceMinor: l.UnitPriceMinor})
		}
	} else {
		var sc ordersapi.OrderStatusChanged
		if err := ev.DecodeData(&sc); err != nil {
			return n, err
		}
		n.OrderID, n.CustomerID, n.Recipient, n.Currency, n.TotalMinor, n.OrderVersion = sc.OrderID, sc.CustomerID, sc.CustomerEmail, sc.Currency, sc.TotalMinor, sc.Version
		n.Reason = sc.Reason
	}
	if n.OrderVersion == 0 {
		n.OrderVersion = ev.AggregateVersion
	}
	return n, nil
}
