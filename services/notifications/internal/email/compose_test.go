package email_test

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/services/notifications/internal/email"
	"github.com/shopfloor/shopfloor/services/notifications/internal/notification"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

func sample(kind string) notification.Notification {
	return notification.Notification{
		ID: uuid.Must(uuid.NewV7()).String(), OrderID: uuid.Must(uuid.NewV7()).String(), Kind: kind,
		Recipient: "ada@example.com", Currency: "EUR", TotalMinor: 4200, Reason: "card_declined <b>",
		Items:     []notification.Line{{SKU: "MUG-1", Name: "Mug & Saucer", Quantity: 2, UnitPriceMinor: 2100}},
		CreatedAt: time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC),
	}
}

// parts parses a composed message: headers, and the decoded text/plain
// and text/html parts of its multipart/alternative body.
func parts(t *testing.T, data []byte) (mail.Header, string, string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	var text, html string
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		ct := p.Header.Get("Content-Type")
		types = append(types, ct)
		switch ct {
		case "text/plain; charset=utf-8":
			text = string(b)
		case "text/html; charset=utf-8":
			html = string(b)
		}
	}
	if strings.Join(types, ",") != "text/plain; charset=utf-8,text/html; charset=utf-8" {
		t.Fatalf("parts %v, want text then HTML", types)
	}
	return msg.Header, text, html
}

// TestComposeEveryKind: each kind renders a subject and both parts that
// name the order and the amount; headers carry the stable Message-ID; the
// same notification always gives the same bytes; HTML is escaped.
func TestComposeEveryKind(t *testing.T) {
	t.Parallel()
	c, err := email.NewComposer("Shopfloor Läden <shop@example.com>")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		notificationsapi.KindOrderReceived: {"received", "Mug & Saucer", "21.00 EUR"},
		notificationsapi.KindReceipt:       {"payment of 42.00 EUR", "receipt"},
		notificationsapi.KindPaymentFailed: {"could not take the payment", "card_declined"},
		notificationsapi.KindCancelled:     {"cancelled", "refunded"},
	}
	for _, kind := range notificationsapi.Kinds() {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			n := sample(kind)
			m, err := c.Compose(n)
			if err != nil {
				t.Fatal(err)
			}
			h, text, html := parts(t, m.Data)
			subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
			if err != nil || subject != m.Subject || !strings.Contains(subject, n.OrderID) || strings.ContainsAny(subject, "\r\n") {
				t.Fatalf("subject %q (Message.Subject %q): %v", subject, m.Subject, err)
			}
			if h.Get("Message-Id") != "<"+n.ID+"@"+notification.MessageIDDomain+">" || m.MessageID != h.Get("Message-Id") {
				t.Fatalf("Message-ID %q / %q", h.Get("Message-Id"), m.MessageID)
			}
			from, err := h.AddressList("From")
			if err != nil || len(from) != 1 || from[0].Name != "Shopfloor Läden" || from[0].Address != "shop@example.com" {
				t.Fatalf("From %q: %v", h.Get("From"), err)
			}
			if h.Get("To") != "ada@example.com" || m.To != "ada@example.com" || m.EnvelopeFrom != "shop@example.com" ||
				h.Get("Auto-Submitted") != "auto-generated" || h.Get("Date") != "Sun, 01 Mar 2026 09:30:00 +0000" ||
				h.Get("X-Shopfloor-Notification") != kind || h.Get("X-Shopfloor-Order-Id") != n.OrderID {
				t.Fatalf("headers %v", h)
			}
			for _, body := range []string{text, html} {
				for _, s := range []string{n.OrderID, "42.00 EUR"} {
					if !strings.Contains(body, s) {
						t.Errorf("body lacks %q:\n%s", s, body)
					}
				}
			}
			for _, s := range want[kind] {
				if !strings.Contains(text, s) {
					t.Errorf("text lacks %q:\n%s", s, text)
				}
			}
			if strings.Contains(html, "<b>") || strings.Contains(html, "Mug & Saucer") {
				t.Errorf("HTML not escaped:\n%s", html)
			}
			again, err := c.Compose(n)
			if err != nil || !bytes.Equal(again.Data, m.Data) {
				t.Fatalf("second compose differs (%v)", err)
			}
		})
	}
}

func TestComposerRefusesBadInput(t *testing.T) {
	t.Parallel()
	if _, err := email.NewComposer("not an address"); err == nil {
		t.Fatal("bad sender accepted")
	}
	c, err := email.NewComposer("shop@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compose(sample("newsletter")); err == nil {
		t.Fatal("unknown kind composed")
	}
	n := sample(notificationsapi.KindReceipt)
	n.Recipient = "ada@example.com\r\nBcc: all@example.com"
	if _, err := c.Compose(n); err == nil {
		t.Fatal("header injection composed")
	}
}

// TestPaymentFailedSaysNothingWasChargedOnlyWhenTrue: a declined or
// never-charged payment says "Nothing was charged"; a failure whose charge
// was taken (amount or currency mismatch: orders requires a refund) says
// the charge is being refunded, never "nothing was charged".
func TestPaymentFailedSaysNothingWasChargedOnlyWhenTrue(t *testing.T) {
	t.Parallel()
	c, err := email.NewComposer("shop@example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		reason  string
		charged bool
	}{
		{"card_declined", false}, {"retries_exhausted", false}, {"invalid_request", false},
		{ordersapi.ReasonAmountMismatch, true}, {ordersapi.ReasonCurrencyMismatch, true},
	} {
		n := sample(notificationsapi.KindPaymentFailed)
		n.Reason = tc.reason
		msg, err := c.Compose(n)
		if err != nil {
			t.Fatal(err)
		}
		_, text, html := parts(t, msg.Data)
		for name, body := range map[string]string{"text": text, "html": html} {
			body = strings.Join(strings.Fields(body), " ")
			if says := strings.Contains(body, "Nothing was charged"); says == tc.charged {
				t.Errorf("%s, %s part: says nothing was charged = %v:\n%s", tc.reason, name, says, body)
			}
			if refunds := strings.Contains(body, "being refunded in full"); refunds != tc.charged {
				t.Errorf("%s, %s part: says it is refunded = %v:\n%s", tc.reason, name, refunds, body)
			}
		}
	}
}
