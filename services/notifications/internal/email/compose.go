// Package email turns a notification into an e-mail and hands it to an
// SMTP server.
//
// Composing is deterministic: the message (headers, boundary, both parts)
// is a function of the stored notification and the sender address alone,
// so every attempt to send a notification — a retry, a resend after a
// crash, a redrive — produces the same bytes and the same Message-ID.
// Templates (text and HTML, one pair per kind) are embedded files under
// templates/; the message is multipart/alternative, UTF-8,
// quoted-printable.
//
// Sending (Sender) is one SMTP session per message, over plain TCP,
// STARTTLS or implicit TLS, with optional AUTH PLAIN (never over an
// unencrypted connection). The SMTP hop is at least once: Send calls its
// accepted callback as soon as the server has accepted the message, before
// QUIT, so the caller records the fact in the shortest possible window; a
// crash inside that window sends the message again later, with the same
// Message-ID, by which receivers recognise the copy.
package email

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/shopfloor/shopfloor/services/notifications/internal/notification"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

//go:embed templates
var templateFS embed.FS

// Message is one composed e-mail, ready for SMTP.
type Message struct {
	// EnvelopeFrom is the bare sender address (MAIL FROM).
	EnvelopeFrom string
	// To is the one recipient (RCPT TO and the To header).
	To        string
	Subject   string
	MessageID string
	// Data is the RFC 5322 message, CRLF line endings.
	Data []byte
}

// Composer renders notifications into messages from one sender address.
// It is safe for concurrent use.
type Composer struct {
	from mail.Address
	text map[string]*texttemplate.Template
	html map[string]*htmltemplate.Template
}

// NewComposer parses the embedded templates (every kind must have a text
// and an HTML template) and the sender address from, such as
// "shopfloor <shop@example.com>" or "shop@example.com".
func NewComposer(from string) (*Composer, error) {
	addr, err := mail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("email: sender %q is not an address: %w", from, err)
	}
	c := &Composer{from: *addr, text: map[string]*texttemplate.Template{}, html: map[string]*htmltemplate.Template{}}
	for _, kind := range notificationsapi.Kinds() {
		t, err := texttemplate.New(kind).Option("missingkey=error").ParseFS(templateFS, "templates/"+kind+".txt")
		if err != nil {
			return nil, fmt.Errorf("email: text template of %s: %w", kind, err)
		}
		if t.Lookup("subject") == nil {
			return nil, fmt.Errorf("email: text template of %s defines no \"subject\"", kind)
		}
		h, err := htmltemplate.New(kind).Option("missingkey=error").ParseFS(templateFS, "templates/layout.html", "templates/"+kind+".html")
		if err != nil {
			return nil, fmt.Errorf("email: HTML template of %s: %w", kind, err)
		}
		c.text[kind], c.html[kind] = t, h
	}
	return c, nil
}

// From is the sender's bare address.
func (c *Composer) From() string { return c.from.Address }

// item is an order line as the templates see it.
type item struct {
	SKU, Name, UnitPrice string
	Quantity             int
}

// view is what the templates see.
type view struct {
	OrderID, Amount, Reason, Recipient, Subject string
	Items                                       []item
	// Charged: a payment failure whose charge was taken and is being
	// refunded (an amount or currency mismatch). Every other reason of
	// order.payment_failed is definite: payments settles an unknown
	// outcome with the provider before it reports a failure, so "nothing
	// was charged" is only said when it is true.
	Charged bool
}

// Compose renders n. The same n always gives the same Message.
func (c *Composer) Compose(n notification.Notification) (Message, error) {
	tt, ht := c.text[n.Kind], c.html[n.Kind]
	if tt == nil || ht == nil {
		return Message{}, fmt.Errorf("email: no template for kind %q", n.Kind)
	}
	v := view{OrderID: n.OrderID, Amount: notification.FormatAmount(n.TotalMinor, n.Currency), Reason: n.Reason, Recipient: n.Recipient,
		Charged: n.Reason == ordersapi.ReasonAmountMismatch || n.Reason == ordersapi.ReasonCurrencyMismatch}
	for _, l := range n.Items {
		v.Items = append(v.Items, item{SKU: l.SKU, Name: l.Name, Quantity: l.Quantity, UnitPrice: notification.FormatAmount(l.UnitPriceMinor, n.Currency)})
	}
	var subject, text, html bytes.Buffer
	if err := tt.ExecuteTemplate(&subject, "subject", v); err != nil {
		return Message{}, fmt.Errorf("email: subject of %s: %w", n.Kind, err)
	}
	v.Subject = strings.Join(strings.Fields(subject.String()), " ") // one line, whatever the template did
	if err := tt.ExecuteTemplate(&text, n.Kind+".txt", v); err != nil {
		return Message{}, fmt.Errorf("email: text of %s: %w", n.Kind, err)
	}
	if err := ht.ExecuteTemplate(&html, "layout", v); err != nil {
		return Message{}, fmt.Errorf("email: HTML of %s: %w", n.Kind, err)
	}
	data, err := c.build(n, v.Subject, text.String(), html.String())
	if err != nil {
		return Message{}, err
	}
	return Message{EnvelopeFrom: c.from.Address, To: n.Recipient, Subject: v.Subject, MessageID: n.MessageID(), Data: data}, nil
}

// build writes the headers and the multipart/alternative body (plain text
// first, HTML last: the last part is the preferred one).
func (c *Composer) build(n notification.Notification, subject, text, html string) ([]byte, error) {
	var b bytes.Buffer
	boundary := "=_sf_" + strings.ReplaceAll(n.ID, "-", "")
	for _, h := range [][2]string{
		{"From", c.from.String()},
		{"To", n.Recipient},
		{"Subject", mime.QEncoding.Encode("utf-8", subject)},
		{"Date", n.CreatedAt.UTC().Format(time.RFC1123Z)},
		{"Message-ID", n.MessageID()},
		{"MIME-Version", "1.0"},
		{"Auto-Submitted", "auto-generated"},
		{"X-Shopfloor-Order-Id", n.OrderID},
		{"X-Shopfloor-Notification", n.Kind},
		{"Content-Type", `multipart/alternative; boundary="` + boundary + `"`},
	} {
		if strings.ContainsAny(h[1], "\r\n") {
			return nil, fmt.Errorf("email: header %s of notification %s spans lines", h[0], n.ID)
		}
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	b.WriteString("\r\n")
	mw := multipart.NewWriter(&b)
	if err := mw.SetBoundary(boundary); err != nil {
		return nil, fmt.Errorf("email: boundary: %w", err)
	}
	for _, p := range []struct{ typ, body string }{{"text/plain; charset=utf-8", text}, {"text/html; charset=utf-8", html}} {
		w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {p.typ}, "Content-Transfer-Encoding": {"quoted-printable"}})
		if err != nil {
			return nil, fmt.Errorf("email: part: %w", err)
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write([]byte(p.body)); err != nil {
			return nil, fmt.Errorf("email: part: %w", err)
		}
		if err := qp.Close(); err != nil {
			return nil, fmt.Errorf("email: part: %w", err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("email: multipart: %w", err)
	}
	return b.Bytes(), nil
}
