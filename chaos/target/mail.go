package target

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/shopfloor/shopfloor/services/notifications/smtpsink"
)

// Mail is one message as received by the mail catcher.
type Mail struct {
	// MessageID is the Message-ID header; a resend of the same e-mail
	// (the at-least-once SMTP hop) carries the same one.
	MessageID string
	Subject   string
	To        []string
}

// Mailbox lists the e-mails the system sent.
type Mailbox interface {
	// Messages returns the messages with to among their recipients, or
	// every message when to is empty.
	Messages(ctx context.Context, to string) ([]Mail, error)
}

// MailDelayer is a Mailbox that can slow its own SMTP answers (the SMTP
// sink's PUT /api/delay).
type MailDelayer interface {
	SetDelay(ctx context.Context, d time.Duration) error
}

// SetSMTPDelay makes the mail server answer each message d late; 0 heals.
// The SMTP sink is slowed itself; another mailbox (Mailpit) through a
// latency toxic on Toxiproxy's smtp proxy. The sink is preferred because
// Toxiproxy 2.x can hang removing a toxic while a link of a SIGKILLed
// client is stuck (Shopify/toxiproxy#558); RemoveToxicCutting bounds that
// case.
func (s *System) SetSMTPDelay(ctx context.Context, d time.Duration) error {
	if md, ok := s.Mail.(MailDelayer); ok {
		return md.SetDelay(ctx, d)
	}
	tp := s.ToxiproxyClient()
	if d == 0 {
		return tp.RemoveToxicCutting(ctx, "smtp", slowSMTPToxic)
	}
	return tp.AddToxic(ctx, "smtp", Latency(slowSMTPToxic, "downstream", int(d/time.Millisecond)))
}

const slowSMTPToxic = "chaos-slow-smtp"

// SMTPSink reads the SMTP sink of deploy/local (notifications smtp-sink,
// GET /api/messages).
type SMTPSink struct {
	URL  string
	HTTP *http.Client
}

var (
	_ Mailbox     = (*SMTPSink)(nil)
	_ MailDelayer = (*SMTPSink)(nil)
)

// SetDelay implements MailDelayer.
func (s *SMTPSink) SetDelay(ctx context.Context, d time.Duration) error {
	body := map[string]string{"delay": d.String()}
	if err := DoJSON(ctx, s.HTTP, http.MethodPut, s.URL+"/api/delay", nil, body, nil); err != nil {
		return fmt.Errorf("smtp sink: set delay %s: %w", d, err)
	}
	return nil
}

// Messages implements Mailbox.
func (s *SMTPSink) Messages(ctx context.Context, to string) ([]Mail, error) {
	u := s.URL + "/api/messages"
	if to != "" {
		u += "?to=" + url.QueryEscape(to)
	}
	var msgs []smtpsink.Message
	if err := GetJSON(ctx, s.HTTP, u, &msgs); err != nil {
		return nil, fmt.Errorf("smtp sink: %w", err)
	}
	out := make([]Mail, len(msgs))
	for i, m := range msgs {
		out[i] = Mail{MessageID: m.MessageID, Subject: m.Subject, To: m.To}
	}
	return out, nil
}

// Mailpit reads Mailpit's API (compose). Written against Mailpit's
// documented /api/v1/search and /api/v1/messages; not run here (no
// container engine on the machines this repository is tested on).
type Mailpit struct {
	URL  string
	HTTP *http.Client
}

var _ Mailbox = (*Mailpit)(nil)

type mailpitPage struct {
	MessagesCount int `json:"messages_count"`
	Messages      []struct {
		MessageID string `json:"MessageID"`
		Subject   string `json:"Subject"`
		To        []struct {
			Address string `json:"Address"`
		} `json:"To"`
	} `json:"messages"`
}

// Messages implements Mailbox.
func (m *Mailpit) Messages(ctx context.Context, to string) ([]Mail, error) {
	const limit = 500
	var out []Mail
	for start := 0; ; start += limit {
		q := url.Values{"start": {strconv.Itoa(start)}, "limit": {strconv.Itoa(limit)}}
		u := m.URL + "/api/v1/messages?" + q.Encode()
		if to != "" {
			q.Set("query", "to:"+strconv.Quote(to))
			u = m.URL + "/api/v1/search?" + q.Encode()
		}
		var page mailpitPage
		if err := GetJSON(ctx, m.HTTP, u, &page); err != nil {
			return nil, fmt.Errorf("mailpit: %w", err)
		}
		for _, msg := range page.Messages {
			mail := Mail{MessageID: msg.MessageID, Subject: msg.Subject}
			for _, a := range msg.To {
				mail.To = append(mail.To, a.Address)
			}
			out = append(out, mail)
		}
		if len(page.Messages) < limit || start+limit >= page.MessagesCount {
			return out, nil
		}
	}
}
