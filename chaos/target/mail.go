package target

import (
	"context"
	"errors"
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

// Mail relay modes (MailSwitch): what the mail server answers.
const (
	// MailAccepting takes every message.
	MailAccepting = "accepting"
	// MailDown answers 421 (try again later): senders retry.
	MailDown = "down"
	// MailRejecting answers 550 (refused for good): senders give up and
	// dead-letter the message.
	MailRejecting = "rejecting"
)

// MailSwitch is a Mailbox whose server can be switched down or to
// rejecting (the SMTP sink's /api/down and /api/reject).
type MailSwitch interface {
	MailMode(ctx context.Context) (string, error)
	SetMailMode(ctx context.Context, mode string) error
}

var _ MailSwitch = (*SMTPSink)(nil)

// ErrNoMailSwitch is returned when the system's mailbox cannot be
// switched (Mailpit).
var ErrNoMailSwitch = errors.New("this mail server cannot be switched down or to rejecting")

// MailMode returns the mail server's mode (MailAccepting, MailDown,
// MailRejecting), or ErrNoMailSwitch.
func (s *System) MailMode(ctx context.Context) (string, error) {
	if ms, ok := s.Mail.(MailSwitch); ok {
		return ms.MailMode(ctx)
	}
	return "", ErrNoMailSwitch
}

// SetMailMode switches the mail server to mode, or returns
// ErrNoMailSwitch.
func (s *System) SetMailMode(ctx context.Context, mode string) error {
	if ms, ok := s.Mail.(MailSwitch); ok {
		return ms.SetMailMode(ctx, mode)
	}
	return ErrNoMailSwitch
}

// MailMode implements MailSwitch.
func (s *SMTPSink) MailMode(ctx context.Context) (string, error) {
	var st smtpsink.Stats
	if err := GetJSON(ctx, s.HTTP, s.URL+"/api/stats", &st); err != nil {
		return "", fmt.Errorf("smtp sink: %w", err)
	}
	switch {
	case st.Down:
		return MailDown, nil
	case st.Reject:
		return MailRejecting, nil
	}
	return MailAccepting, nil
}

// SetMailMode implements MailSwitch.
func (s *SMTPSink) SetMailMode(ctx context.Context, mode string) error {
	if mode != MailAccepting && mode != MailDown && mode != MailRejecting {
		return fmt.Errorf("smtp sink: no mode %q (%s, %s or %s)", mode, MailAccepting, MailDown, MailRejecting)
	}
	for _, sw := range []struct{ path, field, mode string }{{"/api/down", "down", MailDown}, {"/api/reject", "reject", MailRejecting}} {
		if err := DoJSON(ctx, s.HTTP, http.MethodPut, s.URL+sw.path, nil, map[string]bool{sw.field: mode == sw.mode}, nil); err != nil {
			return fmt.Errorf("smtp sink: switch to %s: %w", mode, err)
		}
	}
	return nil
}
