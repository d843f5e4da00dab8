package smtpsink

import (
	"bytes"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
)

// Config of a Sink. The zero value is a plain, open sink.
type Config struct {
	// Domain is announced in the greeting. Default "smtpsink.local".
	Domain string
	// TLSConfig, when set, offers STARTTLS; with ImplicitTLS the listener
	// speaks TLS from the first byte instead (TLSConfig is then required).
	TLSConfig   *tls.Config
	ImplicitTLS bool
	// Username and Password, when Username is set, require AUTH PLAIN
	// before MAIL (offered only over TLS).
	Username string
	Password string
	// MaxMessageBytes bounds one message. Default 10 MiB.
	MaxMessageBytes int64
	// MaxMessages bounds what is kept in memory; beyond it the oldest
	// messages are dropped (their Message-IDs still count in Stats).
	// Default 10000.
	MaxMessages int
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer receives the sink's counters; nil: none.
	Registerer prometheus.Registerer
	// Now defaults to time.Now.
	Now func() time.Time
}

// Message is one message the sink accepted.
type Message struct {
	// ID numbers messages from 1 in the order they were accepted.
	ID int64 `json:"id"`
	// From is the envelope sender (MAIL FROM).
	From string `json:"from"`
	// To are the envelope recipients (RCPT TO).
	To []string `json:"to"`
	// Subject is the decoded Subject header.
	Subject string `json:"subject"`
	// MessageID is the Message-ID header as sent, angle brackets
	// included; empty when the message had none.
	MessageID  string    `json:"message_id"`
	ReceivedAt time.Time `json:"received_at"`
	// Text and HTML are the decoded text/plain and text/html parts (the
	// first of each), or the body of a single-part message.
	Text string `json:"text,omitempty"`
	HTML string `json:"html,omitempty"`
	// Size of the raw message in bytes.
	Size int `json:"size"`
	// Raw is the message as received.
	Raw []byte `json:"-"`
}

// Stats counts what the sink received since New or the last Clear.
type Stats struct {
	// Messages accepted (dropped ones included).
	Messages int `json:"messages"`
	// DistinctMessageIDs among them (messages without one not counted).
	DistinctMessageIDs int `json:"distinct_message_ids"`
	// Duplicates maps each Message-ID received more than once to how many
	// times it was received.
	Duplicates map[string]int `json:"duplicates"`
	// WithoutMessageID counts messages that had no Message-ID header.
	WithoutMessageID int `json:"without_message_id"`
	// Rejected counts refusals: 421 while down, 550 for .invalid
	// recipients, failed authentications.
	Rejected int `json:"rejected"`
	// Down is the current mode.
	Down bool `json:"down"`
	// Reject is whether reject mode is on.
	Reject bool `json:"reject"`
}

// Sink is the SMTP server and its store. Its methods are safe for
// concurrent use.
type Sink struct {
	cfg  Config
	log  *slog.Logger
	srv  *smtp.Server
	m    *metrics
	down atomic.Bool
	// rejectAll answers every recipient 550 (SetReject).
	rejectAll atomic.Bool
	// delay holds each MAIL reply (nanoseconds); quit ends such waits at
	// Close.
	delay atomic.Int64
	quit  chan struct{}

	mu       sync.Mutex
	msgs     []Message
	nextID   int64
	seen     map[string]int
	total    int
	noID     int
	rejected int

	connMu    sync.Mutex
	listeners []net.Listener
	conns     map[net.Conn]struct{}
	closed    bool
	serving   sync.WaitGroup
	connWG    sync.WaitGroup
	addr      atomic.Pointer[string]
}

// New returns a sink; Serve or Start make it listen.
func New(cfg Config) (*Sink, error) {
	if cfg.Domain == "" {
		cfg.Domain = "smtpsink.local"
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 10 << 20
	}
	if cfg.MaxMessages <= 0 {
		cfg.MaxMessages = 10000
	}
	if cfg.ImplicitTLS && cfg.TLSConfig == nil {
		return nil, errors.New("smtpsink: ImplicitTLS needs a TLSConfig")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, log: cfg.Logger, m: m, seen: map[string]int{}, conns: map[net.Conn]struct{}{}, quit: make(chan struct{})}
	srv := smtp.NewServer(backend{s})
	srv.Domain = cfg.Domain
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = 100
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	srv.ErrorLog = logAdapter{cfg.Logger}
	if !cfg.ImplicitTLS {
		srv.TLSConfig = cfg.TLSConfig // offers STARTTLS
	}
	s.srv = srv
	return s, nil
}

// Serve accepts SMTP connections on ln until Close, then returns nil. ln
// is closed when Serve returns.
func (s *Sink) Serve(ln net.Listener) error {
	if err := s.begin(ln); err != nil {
		return err
	}
	defer s.serving.Done()
	return s.serve(ln)
}

// Start listens on addr (host:port; port 0 picks a free one) and serves in
// the background until Close. Addr tells where it listens.
func (s *Sink) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("smtpsink: listen on %s: %w", addr, err)
	}
	if err := s.begin(ln); err != nil {
		return err
	}
	go func() {
		defer s.serving.Done()
		if err := s.serve(ln); err != nil {
			s.log.Warn("smtp sink stopped", "err", err)
		}
	}()
	return nil
}

// begin registers ln so that Close closes it, even before go-smtp has
// seen it.
func (s *Sink) begin(ln net.Listener) error {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.closed {
		_ = ln.Close()
		return errors.New("smtpsink: closed")
	}
	s.listeners = append(s.listeners, ln)
	s.serving.Add(1)
	a := ln.Addr().String()
	s.addr.Store(&a)
	return nil
}

func (s *Sink) serve(ln net.Listener) error {
	var l net.Listener = &gateListener{Listener: ln, s: s}
	if s.cfg.ImplicitTLS {
		l = tls.NewListener(l, s.cfg.TLSConfig)
	}
	s.log.Info("smtp sink listening", "addr", ln.Addr().String(), "implicit_tls", s.cfg.ImplicitTLS,
		"starttls", !s.cfg.ImplicitTLS && s.cfg.TLSConfig != nil)
	err := s.srv.Serve(l)
	if errors.Is(err, net.ErrClosed) || errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Addr is the SMTP listener's address once Serve or Start has run, or "".
func (s *Sink) Addr() string {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Close stops listening, closes every connection and waits until Serve
// has returned and every connection is closed. It is idempotent.
func (s *Sink) Close() error {
	s.connMu.Lock()
	if s.closed {
		s.connMu.Unlock()
		s.serving.Wait()
		return nil
	}
	s.closed = true
	close(s.quit)
	s.connMu.Unlock()
	err := s.srv.Close()
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	s.connMu.Lock()
	listeners := append([]net.Listener(nil), s.listeners...)
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.connMu.Unlock()
	for _, ln := range listeners { // including one go-smtp has not seen yet
		_ = ln.Close()
	}
	for _, c := range conns { // including those go-smtp had not registered yet
		_ = c.Close()
	}
	s.serving.Wait()
	s.connWG.Wait()
	return err
}

// SetDown switches down mode on or off (see the package doc).
func (s *Sink) SetDown(down bool) {
	if s.down.Swap(down) != down {
		s.log.Info("smtp sink mode changed", "down", down)
	}
}

// IsDown reports whether the sink is in down mode.
func (s *Sink) IsDown() bool { return s.down.Load() }

// SetReject switches reject mode on or off: while on, every recipient is
// refused with 550 5.7.1, a permanent answer, as a relay does whose
// policy refuses the sender. A client must not retry it: its job goes to
// a dead-letter queue at once, and an operator redrives it once the
// cause is fixed (switched off). Nothing is stored while on.
func (s *Sink) SetReject(on bool) {
	if s.rejectAll.Swap(on) != on {
		s.log.Info("smtp sink mode changed", "reject", on)
	}
}

// IsRejecting reports whether reject mode is on.
func (s *Sink) IsRejecting() bool { return s.rejectAll.Load() }

// MaxDelay bounds SetDelay.
const MaxDelay = time.Minute

// ErrDelayRange is returned by SetDelay for a delay outside 0..MaxDelay.
var ErrDelayRange = errors.New("smtpsink: delay must be between 0 and " + MaxDelay.String())

// SetDelay makes the sink hold its answer to each MAIL FROM for d, as a
// slow relay does; 0 answers at once. The wait comes before the message
// is sent, so a client that dies during it leaves nothing stored (and
// its retry is no duplicate); a session waiting when Close is called gets
// 421. Slowing the sink itself, rather than a proxy in front of it, keeps
// a drill's SIGKILLed client from leaving a stuck proxy link behind.
func (s *Sink) SetDelay(d time.Duration) error {
	if d < 0 || d > MaxDelay {
		return fmt.Errorf("%w (got %s)", ErrDelayRange, d)
	}
	if time.Duration(s.delay.Swap(int64(d))) != d {
		s.log.Info("smtp sink delay changed", "delay", d)
	}
	return nil
}

// Delay is the current DATA delay (SetDelay).
func (s *Sink) Delay() time.Duration { return time.Duration(s.delay.Load()) }

// Messages returns the kept messages, oldest first; with to non-empty,
// only those with to among their recipients (case-insensitive).
func (s *Sink) Messages(to string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, 0, len(s.msgs))
	for _, m := range s.msgs {
		if to == "" || hasRecipient(m, to) {
			m.To = append([]string(nil), m.To...)
			out = append(out, m)
		}
	}
	return out
}

func hasRecipient(m Message, to string) bool {
	for _, r := range m.To {
		if strings.EqualFold(r, to) {
			return true
		}
	}
	return false
}

// Message returns the kept message with id.
func (s *Sink) Message(id int64) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs {
		if m.ID == id {
			return m, true
		}
	}
	return Message{}, false
}

// Clear forgets every message and resets every count (not the mode).
func (s *Sink) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs, s.seen, s.total, s.noID, s.rejected = nil, map[string]int{}, 0, 0, 0
}

// Stats returns the counts.
func (s *Sink) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Messages: s.total, DistinctMessageIDs: len(s.seen), Duplicates: map[string]int{},
		WithoutMessageID: s.noID, Rejected: s.rejected, Down: s.down.Load(), Reject: s.rejectAll.Load()}
	for id, n := range s.seen {
		if n > 1 {
			st.Duplicates[id] = n
		}
	}
	return st
}

func (s *Sink) reject(reason string) {
	s.mu.Lock()
	s.rejected++
	s.mu.Unlock()
	s.m.rejected(reason)
}

// store keeps an accepted message.
func (s *Sink) store(from string, to []string, raw []byte) Message {
	m := parse(raw)
	m.From, m.To, m.Raw, m.Size = from, to, raw, len(raw)
	m.ReceivedAt = s.cfg.Now().UTC()
	s.mu.Lock()
	s.nextID++
	m.ID = s.nextID
	s.total++
	dup := false
	if m.MessageID == "" {
		s.noID++
	} else {
		s.seen[m.MessageID]++
		dup = s.seen[m.MessageID] > 1
	}
	s.msgs = append(s.msgs, m)
	if over := len(s.msgs) - s.cfg.MaxMessages; over > 0 {
		s.msgs = append([]Message(nil), s.msgs[over:]...)
	}
	s.mu.Unlock()
	s.m.received(dup)
	s.log.Info("message received", "id", m.ID, "from", from, "to", to, "subject", m.Subject, "message_id", m.MessageID, "duplicate", dup)
	return m
}

var errDown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "smtpsink is down (switched off for a test or drill); try again later"}

var errRejectAll = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "relaying refused by policy (smtpsink is in reject mode for a test or drill)"}

// errAuthRequired is RFC 4954's answer to MAIL before AUTH.
var errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}

// downGreeting is what a new connection gets in down mode.
const downGreeting = "421 4.3.2 smtpsink is down (switched off for a test or drill); try again later\r\n"

// gateListener answers new connections with 421 in down mode, and tracks
// connections so that Close can end them all.
type gateListener struct {
	net.Listener
	s *Sink
}

// Accept returns the next connection while up; in down mode it answers
// (or, with implicit TLS, just closes) each new connection and waits for
// the next.
func (l *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.s.down.Load() {
			l.s.reject("down")
			if !l.s.cfg.ImplicitTLS {
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = io.WriteString(c, downGreeting)
			}
			_ = c.Close()
			continue
		}
		tc := &trackedConn{Conn: c, s: l.s}
		l.s.connMu.Lock()
		if l.s.closed {
			l.s.connMu.Unlock()
			_ = c.Close()
			return nil, net.ErrClosed
		}
		l.s.conns[tc] = struct{}{}
		l.s.connWG.Add(1)
		l.s.connMu.Unlock()
		return tc, nil
	}
}

type trackedConn struct {
	net.Conn
	s    *Sink
	once sync.Once
}

// Close closes the connection and forgets it (once).
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.s.connMu.Lock()
		delete(c.s.conns, c)
		c.s.connMu.Unlock()
		c.s.connWG.Done()
	})
	return err
}

type backend struct{ s *Sink }

// NewSession starts a session at EHLO; 421 in down mode.
func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	if b.s.down.Load() {
		b.s.reject("down")
		return nil, errDown
	}
	return &session{s: b.s, conn: c}, nil
}

// session is one SMTP session (go-smtp calls it from one goroutine).
type session struct {
	s      *Sink
	conn   *smtp.Conn
	authed bool
	from   string
	to     []string
}

var _ smtp.AuthSession = (*session)(nil)

// AuthMechanisms offers PLAIN when the sink has a user (go-smtp offers
// AUTH only over TLS).
func (ss *session) AuthMechanisms() []string {
	if ss.s.cfg.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

// Auth checks the PLAIN credentials in constant time.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.s.cfg.Username == "" || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, username, password string) error {
		u := subtle.ConstantTimeCompare([]byte(username), []byte(ss.s.cfg.Username))
		p := subtle.ConstantTimeCompare([]byte(password), []byte(ss.s.cfg.Password))
		if u&p != 1 {
			ss.s.reject("auth")
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

// Mail starts a transaction after the sink's delay: 421 while down (or
// when the sink closes during the delay), 530 before AUTH when required.
func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if d := ss.s.Delay(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ss.s.quit:
			t.Stop()
			return errDown
		}
	}
	if ss.s.down.Load() {
		ss.s.reject("down")
		return errDown
	}
	if ss.s.cfg.Username != "" && !ss.authed {
		return errAuthRequired
	}
	ss.from, ss.to = from, nil
	return nil
}

// Rcpt adds a recipient: 421 while down, 550 in reject mode and for the
// .invalid TLD.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.s.down.Load() {
		ss.s.reject("down")
		return errDown
	}
	if ss.s.rejectAll.Load() {
		ss.s.reject("policy")
		return errRejectAll
	}
	if strings.HasSuffix(strings.ToLower(to), ".invalid") {
		ss.s.reject("recipient")
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox: " + to + " (the .invalid domain never receives mail)"}
	}
	ss.to = append(ss.to, to)
	return nil
}

// Data reads the message and stores it, unless the sink went down
// meanwhile (421, nothing stored).
func (ss *session) Data(r io.Reader) error {
	var b bytes.Buffer
	if _, err := b.ReadFrom(r); err != nil {
		return err
	}
	if ss.s.down.Load() {
		ss.s.reject("down")
		return errDown
	}
	ss.s.store(ss.from, append([]string(nil), ss.to...), b.Bytes())
	return nil
}

// Reset forgets the transaction in progress (RSET).
func (ss *session) Reset() { ss.from, ss.to = "", nil }

// Logout ends the session; nothing to release.
func (ss *session) Logout() error { return nil }

// logAdapter sends go-smtp's error log to slog.
type logAdapter struct{ log *slog.Logger }

// Printf logs at warning level.
func (l logAdapter) Printf(format string, v ...any) { l.log.Warn(fmt.Sprintf(format, v...)) }

// Println logs at warning level.
func (l logAdapter) Println(v ...any) { l.log.Warn(strings.TrimSpace(fmt.Sprintln(v...))) }
