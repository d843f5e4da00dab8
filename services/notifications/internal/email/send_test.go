package email_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/notifications/internal/email"
	"github.com/shopfloor/shopfloor/services/notifications/notificationsapi"
	"github.com/shopfloor/shopfloor/services/notifications/smtpsink"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// selfSigned returns a server TLS config for 127.0.0.1 and a pool that
// trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtpsink test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, pool
}

func startSink(t *testing.T, cfg smtpsink.Config) *smtpsink.Sink {
	t.Helper()
	sink, err := smtpsink.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	return sink
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func message(t *testing.T) email.Message {
	t.Helper()
	c, err := email.NewComposer("shop@example.com")
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Compose(sample(notificationsapi.KindReceipt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSendDeliversOverEachTLSModeAndCallsAcceptedOnce delivers through each TLS mode (with AUTH where TLS
// allows it) and checks what the sink got; accepted runs once per
// delivery.
func TestSendDeliversOverEachTLSModeAndCallsAcceptedOnce(t *testing.T) {
	t.Parallel()
	serverTLS, roots := selfSigned(t)
	for name, tc := range map[string]struct {
		sink   smtpsink.Config
		sender email.Config
	}{
		"none":            {smtpsink.Config{}, email.Config{TLS: email.TLSNone}},
		"starttls + auth": {smtpsink.Config{TLSConfig: serverTLS, Username: "u", Password: "p"}, email.Config{TLS: email.TLSStartTLS, Username: "u", Password: "p", RootCAs: roots}},
		"tls + auth":      {smtpsink.Config{TLSConfig: serverTLS, ImplicitTLS: true, Username: "u", Password: "p"}, email.Config{TLS: email.TLSImplicit, Username: "u", Password: "p", RootCAs: roots}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sink := startSink(t, tc.sink)
			cfg := tc.sender
			cfg.Host, cfg.Port = "127.0.0.1", port(t, sink.Addr())
			s, err := email.NewSender(cfg)
			if err != nil {
				t.Fatal(err)
			}
			m := message(t)
			calls := 0
			if err := s.Send(context.Background(), m, func() error { calls++; return nil }); err != nil {
				t.Fatal(err)
			}
			got := sink.Messages("")
			if calls != 1 || len(got) != 1 || got[0].MessageID != m.MessageID || got[0].From != "shop@example.com" ||
				got[0].To[0] != "ada@example.com" || got[0].Subject != m.Subject || string(got[0].Raw) != string(m.Data) {
				t.Fatalf("accepted called %d times; sink: %+v", calls, got)
			}
		})
	}
}

// TestSendFailuresNameTheStageAndArePermanentOnlyFor5xx: each way a session fails is a *SendError at the right
// stage, Permanent only for the server's 5xx about this message, and
// accepted is never called.
func TestSendFailuresNameTheStageAndArePermanentOnlyFor5xx(t *testing.T) {
	t.Parallel()
	serverTLS, roots := selfSigned(t)
	plain := startSink(t, smtpsink.Config{})
	down := startSink(t, smtpsink.Config{})
	down.SetDown(true)
	authTLS := startSink(t, smtpsink.Config{TLSConfig: serverTLS, Username: "u", Password: "p"})
	for name, tc := range map[string]struct {
		sink      *smtpsink.Sink
		cfg       email.Config
		to        string
		stage     string
		permanent bool
	}{
		"down":                  {down, email.Config{TLS: email.TLSNone}, "", email.StageHello, false},
		"no such mailbox":       {plain, email.Config{TLS: email.TLSNone}, "ghost@example.invalid", email.StageRcpt, true},
		"starttls not offered":  {plain, email.Config{TLS: email.TLSStartTLS, RootCAs: roots}, "", email.StageTLS, false},
		"untrusted certificate": {authTLS, email.Config{TLS: email.TLSStartTLS, Username: "u", Password: "p"}, "", email.StageTLS, false},
		"wrong password":        {authTLS, email.Config{TLS: email.TLSStartTLS, Username: "u", Password: "x", RootCAs: roots}, "", email.StageAuth, false},
		"authentication needed": {authTLS, email.Config{TLS: email.TLSStartTLS, RootCAs: roots}, "", email.StageMail, false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			cfg.Host, cfg.Port = "127.0.0.1", port(t, tc.sink.Addr())
			s, err := email.NewSender(cfg)
			if err != nil {
				t.Fatal(err)
			}
			m := message(t)
			if tc.to != "" {
				m.To = tc.to
			}
			err = s.Send(context.Background(), m, func() error { t.Error("accepted called"); return nil })
			var se *email.SendError
			if !errors.As(err, &se) || se.Stage != tc.stage || se.Permanent() != tc.permanent || email.IsPermanent(err) != tc.permanent {
				t.Fatalf("err = %#v (%v); want stage %s, permanent %v", se, err, tc.stage, tc.permanent)
			}
		})
	}
	if st := plain.Stats(); st.Messages != 0 {
		t.Fatalf("plain sink stored %d messages", st.Messages)
	}
}

// TestAcceptedButNotRecorded: the server has the message when accepted
// fails; Send reports ErrAcceptedNotRecorded (the caller sends again
// later, with the same Message-ID).
func TestAcceptedButNotRecorded(t *testing.T) {
	t.Parallel()
	sink := startSink(t, smtpsink.Config{})
	s, err := email.NewSender(email.Config{Host: "127.0.0.1", Port: port(t, sink.Addr()), TLS: email.TLSNone})
	if err != nil {
		t.Fatal(err)
	}
	m := message(t)
	crash := errors.New("process died before the commit")
	err = s.Send(context.Background(), m, func() error { return crash })
	if !errors.Is(err, email.ErrAcceptedNotRecorded) || !errors.Is(err, crash) || email.IsPermanent(err) {
		t.Fatalf("err = %v", err)
	}
	if err := s.Send(context.Background(), m, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if st := sink.Stats(); st.Messages != 2 || st.DistinctMessageIDs != 1 || st.Duplicates[m.MessageID] != 2 {
		t.Fatalf("sink: %+v", st)
	}
}

// TestSendGivesUpWhenContextEnds: a server that accepts the connection and
// never answers does not hold Send past its context.
func TestSendGivesUpWhenContextEnds(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	s, err := email.NewSender(email.Config{Host: "127.0.0.1", Port: port(t, ln.Addr().String()), TLS: email.TLSNone})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = s.Send(ctx, message(t), func() error { return nil })
	var se *email.SendError
	if !errors.As(err, &se) || se.Stage != email.StageHello {
		t.Fatalf("err = %v, want a hello-stage SendError", err)
	}
	for c := range accepted {
		_ = c.Close()
	}
}

func TestNewSenderChecksConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]email.Config{
		"no host":           {TLS: email.TLSNone},
		"auth in clear":     {Host: "h", TLS: email.TLSNone, Username: "u"},
		"unknown mode":      {Host: "h", TLS: "ssl"},
		"port out of range": {Host: "h", Port: 70000},
	} {
		if _, err := email.NewSender(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for mode, want := range map[email.TLSMode]string{email.TLSNone: "h:25", email.TLSStartTLS: "h:587", email.TLSImplicit: "h:465", "": "h:587"} {
		s, err := email.NewSender(email.Config{Host: "h", TLS: mode})
		if err != nil || s.Addr() != want {
			t.Errorf("mode %q: addr %v, %v; want %s", mode, s, err, want)
		}
	}
}
