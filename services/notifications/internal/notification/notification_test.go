package notification_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/services/notifications/internal/notification"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

func TestKindForMapsOrderEventsToEmailsAndIgnoresTheRest(t *testing.T) {
	t.Parallel()
	for typ, want := range map[string]string{
		ordersapi.EventOrderPlaced:         notificationsapi.KindOrderReceived,
		ordersapi.EventOrderPaid:           notificationsapi.KindReceipt,
		ordersapi.EventOrderPaymentFailed:  notificationsapi.KindPaymentFailed,
		ordersapi.EventOrderCancelled:      notificationsapi.KindCancelled,
		ordersapi.EventOrderRefundRequired: "",
		"order.shipped":                    "",
	} {
		got, ok := notification.KindFor(typ)
		if got != want || ok != (want != "") {
			t.Errorf("KindFor(%s) = %q, %v; want %q", typ, got, ok, want)
		}
	}
}

func TestValidateNamesTheOneBadField(t *testing.T) {
	t.Parallel()
	ok := notification.Notification{OrderID: uuid.NewString(), Kind: notificationsapi.KindReceipt, Recipient: "ada@example.com", Currency: "EUR", TotalMinor: 1}
	if err := notification.Validate(ok); err != nil {
		t.Fatalf("valid notification refused: %v", err)
	}
	for name, tc := range map[string]struct {
		edit  func(*notification.Notification)
		field string
	}{
		"missing email":    {func(n *notification.Notification) { n.Recipient = "" }, "customer_email"},
		"display name":     {func(n *notification.Notification) { n.Recipient = "Ada <ada@example.com>" }, "customer_email"},
		"two lines":        {func(n *notification.Notification) { n.Recipient = "ada@example.com\r\nBcc: x@y.z" }, "customer_email"},
		"not an address":   {func(n *notification.Notification) { n.Recipient = "ada" }, "customer_email"},
		"too long":         {func(n *notification.Notification) { n.Recipient = strings.Repeat("a", 250) + "@example.com" }, "customer_email"},
		"upper-case order": {func(n *notification.Notification) { n.OrderID = strings.ToUpper(n.OrderID) }, "order_id"},
		"order not a uuid": {func(n *notification.Notification) { n.OrderID = "o-1" }, "order_id"},
		"unknown kind":     {func(n *notification.Notification) { n.Kind = "newsletter" }, "kind"},
		"lower-case money": {func(n *notification.Notification) { n.Currency = "eur" }, "currency"},
		"negative total":   {func(n *notification.Notification) { n.TotalMinor = -1 }, "total_minor"},
	} {
		n := ok
		tc.edit(&n)
		var verr *notification.ValidationError
		if err := notification.Validate(n); !errors.As(err, &verr) || len(verr.Fields) != 1 || verr.Fields[0].Field != tc.field {
			t.Errorf("%s: %v; want one error on %s", name, err, tc.field)
		}
	}
}

func TestMessageIDIsStable(t *testing.T) {
	t.Parallel()
	id := uuid.NewString()
	n := notification.Notification{ID: id}
	if n.MessageID() != notification.MessageID(id) || n.MessageID() != "<"+id+"@notifications.shopfloor>" || n.API().MessageID != n.MessageID() {
		t.Fatalf("Message-ID %q", n.MessageID())
	}
}

func TestFormatAmountUsesTheCurrencysMinorUnits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		minor    int64
		currency string
		want     string
	}{{4200, "EUR", "42.00 EUR"}, {5, "USD", "0.05 USD"}, {123456, "GBP", "1234.56 GBP"}, {1500, "JPY", "1500 JPY"}, {-250, "EUR", "-2.50 EUR"}} {
		if got := notification.FormatAmount(tc.minor, tc.currency); got != tc.want {
			t.Errorf("FormatAmount(%d, %s) = %q, want %q", tc.minor, tc.currency, got, tc.want)
		}
	}
}
