package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TLSMode says how the connection to the SMTP server is protected.
type TLSMode string

// TLS modes.
const (
	// TLSNone: plain TCP (a relay on a private network, Mailpit, the
	// sink). AUTH is refused in this mode: the password would cross the
	// network in clear.
	TLSNone TLSMode = "none"
	// TLSStartTLS: plain TCP upgraded with STARTTLS before anything else
	// is said; a server that does not offer STARTTLS is an error, never a
	// silent downgrade. Default port 587.
	TLSStartTLS TLSMode = "starttls"
	// TLSImplicit: TLS from the first byte ("SMTPS"). Default port 465.
	TLSImplicit TLSMode = "tls"
)

// ParseTLSMode reads none, starttls or tls.
func ParseTLSMode(s string) (TLSMode, error) {
	switch m := TLSMode(s); m {
	case TLSNone, TLSStartTLS, TLSImplicit:
		return m, nil
	}
	return "", fmt.Errorf("email: TLS mode %q is not none, starttls or tls", s)
}

// Config of a Sender.
type Config struct {
	// Host of the SMTP server (required); also the name its TLS
	// certificate must carry.
	Host string
	// Port; 0 picks the mode's usual port: 25 (none), 587 (starttls), 465
	// (tls).
	Port int
	// TLS mode; empty is TLSStartTLS.
	TLS TLSMode
	// Username and Password, when Username is set, authenticate with AUTH
	// PLAIN (which needs TLS).
	Username string
	Password string
	// Timeout bounds one whole SMTP session, connect to QUIT. Default 30s.
	Timeout time.Duration
	// RootCAs verifies the server's certificate; nil: the system's roots.
	RootCAs *x509.CertPool
}

// Sender delivers messages to one SMTP server. It is safe for concurrent
// use: each Send is its own session.
type Sender struct {
	cfg  Config
	addr string
}

// NewSender checks cfg and returns a Sender. It does not connect.
func NewSender(cfg Config) (*Sender, error) {
	if cfg.Host == "" {
		return nil, errors.New("email: SMTP host is required")
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSStartTLS
	}
	if _, err := ParseTLSMode(string(cfg.TLS)); err != nil {
		return nil, err
	}
	if cfg.Username != "" && cfg.TLS == TLSNone {
		return nil, errors.New("email: SMTP authentication needs TLS (starttls or tls); the password would cross the network in clear")
	}
	if cfg.Port == 0 {
		cfg.Port = map[TLSMode]int{TLSNone: 25, TLSStartTLS: 587, TLSImplicit: 465}[cfg.TLS]
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("email: SMTP port %d out of range", cfg.Port)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &Sender{cfg: cfg, addr: net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))}, nil
}

// Addr is the server's host:port.
func (s *Sender) Addr() string { return s.addr }

// Stages of an SMTP session, as SendError reports them.
const (
	StageConnect = "connect"
	StageTLS     = "tls"
	StageHello   = "hello"
	StageAuth    = "auth"
	StageMail    = "mail"
	StageRcpt    = "rcpt"
	StageData    = "data"
)

// SendError is a session that ended before the server accepted the
// message: nothing was delivered.
type SendError struct {
	// Stage is where the session failed (StageConnect … StageData).
	Stage string
	Err   error
}

// Error says the stage and the cause.
func (e *SendError) Error() string { return "smtp " + e.Stage + ": " + e.Err.Error() }

// Unwrap returns the cause (an *smtp.SMTPError for a server reply).
func (e *SendError) Unwrap() error { return e.Err }

// Permanent reports whether the server refused this message for good: a
// 5xx reply to MAIL, RCPT or DATA (a rejected recipient, a message it will
// not take). Everything else is worth retrying: connection failures, 4xx
// replies, failures while setting the session up (greeting, TLS, AUTH),
// and 530 "authentication required" — those are the relay's or our
// configuration's fault, not the message's, and a redrive after the fix
// sends it.
func (e *SendError) Permanent() bool {
	var se *smtp.SMTPError
	switch e.Stage {
	case StageMail, StageRcpt, StageData:
		return errors.As(e.Err, &se) && se.Code >= 500 && se.Code <= 599 && se.Code != 530
	}
	return false
}

// IsPermanent reports whether err is a SendError that is Permanent.
func IsPermanent(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Permanent()
}

// ErrAcceptedNotRecorded wraps the error of Send's accepted callback: the
// server has the message, the caller could not record it, and a later
// attempt will send it again (same Message-ID).
var ErrAcceptedNotRecorded = errors.New("email: accepted by the SMTP server but not recorded")

// Send delivers m in one session: connect (TLS as configured), EHLO,
// AUTH, MAIL, RCPT, DATA. Once the server has answered the end of DATA
// with 2xx — the message is its responsibility now — Send calls accepted
// and only then says QUIT, so the caller's record of "sent" follows the
// acceptance as closely as it can; accepted's error is returned wrapped in
// ErrAcceptedNotRecorded. A failure before the acceptance is a *SendError
// and accepted is not called. A failing QUIT after the acceptance is
// ignored. The session is cut when ctx ends or Config.Timeout passes.
func (s *Sender) Send(ctx context.Context, m Message, accepted func() error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	d := net.Dialer{Timeout: s.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return &SendError{Stage: StageConnect, Err: err}
	}
	// Closing the connection is what interrupts a blocked read or write
	// when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	c, err := s.open(ctx, conn)
	if err != nil {
		_ = conn.Close()
		return err
	}
	defer func() { _ = c.Close() }()
	c.CommandTimeout, c.SubmissionTimeout = s.cfg.Timeout, s.cfg.Timeout
	if s.cfg.Username != "" {
		if err := c.Auth(sasl.NewPlainClient("", s.cfg.Username, s.cfg.Password)); err != nil {
			return &SendError{Stage: StageAuth, Err: err}
		}
	}
	if err := c.Mail(m.EnvelopeFrom, nil); err != nil {
		return &SendError{Stage: StageMail, Err: err}
	}
	if err := c.Rcpt(m.To, nil); err != nil {
		return &SendError{Stage: StageRcpt, Err: err}
	}
	w, err := c.Data()
	if err != nil {
		return &SendError{Stage: StageData, Err: err}
	}
	if _, err := w.Write(m.Data); err != nil {
		return &SendError{Stage: StageData, Err: err}
	}
	if err := w.Close(); err != nil {
		return &SendError{Stage: StageData, Err: err}
	}
	if err := accepted(); err != nil {
		return fmt.Errorf("%w: %w", ErrAcceptedNotRecorded, err)
	}
	_ = c.Quit()
	return nil
}

// open starts the session on conn: TLS as configured, then EHLO.
func (s *Sender) open(ctx context.Context, conn net.Conn) (*smtp.Client, error) {
	tlsCfg := &tls.Config{ServerName: s.cfg.Host, RootCAs: s.cfg.RootCAs, MinVersion: tls.VersionTLS12}
	switch s.cfg.TLS {
	case TLSImplicit:
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, &SendError{Stage: StageTLS, Err: err}
		}
		c := smtp.NewClient(tc)
		if err := c.Hello("localhost"); err != nil {
			return nil, &SendError{Stage: StageHello, Err: err}
		}
		return c, nil
	case TLSStartTLS:
		c, err := smtp.NewClientStartTLS(conn, tlsCfg) // greeting, EHLO, STARTTLS
		if err != nil {
			return nil, &SendError{Stage: StageTLS, Err: err}
		}
		// The second EHLO runs the TLS handshake: its failure (an untrusted
		// certificate) is a TLS failure.
		if err := c.Hello("localhost"); err != nil {
			_ = c.Close()
			return nil, &SendError{Stage: StageTLS, Err: err}
		}
		return c, nil
	default:
		c := smtp.NewClient(conn)
		if err := c.Hello("localhost"); err != nil {
			return nil, &SendError{Stage: StageHello, Err: err}
		}
		return c, nil
	}
}
