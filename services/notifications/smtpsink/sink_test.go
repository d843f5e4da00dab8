package smtpsink_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
	"github.com/shopfloor/shopfloor/services/notifications/smtpsink"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// start runs a sink on a free port until the test ends, with its HTTP API.
func start(t *testing.T, cfg smtpsink.Config) (*smtpsink.Sink, *httptest.Server) {
	t.Helper()
	sink, err := smtpsink.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sink.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	api := httptest.NewServer(sink.Handler())
	t.Cleanup(api.Close)
	return sink, api
}

// send delivers one message in its own session.
func send(addr, from string, to []string, data string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(from, to, strings.NewReader(data)); err != nil {
		return err
	}
	return c.Quit()
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

const multipartMsg = "From: shop@example.com\r\nTo: ada@example.com\r\nSubject: =?utf-8?q?Quittung_f=C3=BCr_42?=\r\n" +
	"Message-ID: <one@test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n" +
	"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nTotal: 42=2E00 EUR, a long=\r\n line\r\n" +
	"--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>Total: <b>42.00 EUR</b></p>\r\n--b1--\r\n"

const base64Msg = "From: shop@example.com\r\nTo: bob@example.com\r\nSubject: plain\r\nMessage-ID: <two@test>\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8g\r\nYm9i\r\n"

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s = %d %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestStoresAndCounts: accepted messages are stored with envelope, decoded
// subject and parts; a second message with a known Message-ID is a
// duplicate; the HTTP API lists, filters, shows raw bytes and clears.
func TestStoresAndCounts(t *testing.T) {
	t.Parallel()
	sink, api := start(t, smtpsink.Config{})
	for _, m := range []struct {
		to   string
		data string
	}{{"ada@example.com", multipartMsg}, {"bob@example.com", base64Msg}, {"ada@example.com", multipartMsg}} {
		if err := send(sink.Addr(), "shop@example.com", []string{m.to}, m.data); err != nil {
			t.Fatal(err)
		}
	}
	var all []smtpsink.Message
	getJSON(t, api.URL+"/api/messages", &all)
	if len(all) != 3 {
		t.Fatalf("%d messages, want 3: %+v", len(all), all)
	}
	first := all[0]
	if first.ID != 1 || first.From != "shop@example.com" || len(first.To) != 1 || first.To[0] != "ada@example.com" ||
		first.Subject != "Quittung für 42" || first.MessageID != "<one@test>" || first.ReceivedAt.IsZero() ||
		first.Text != "Total: 42.00 EUR, a long line" || first.HTML != "<p>Total: <b>42.00 EUR</b></p>" {
		t.Fatalf("first message: %+v", first)
	}
	if all[1].Text != "hello bob" || all[1].HTML != "" || all[1].Subject != "plain" {
		t.Fatalf("base64 message: %+v", all[1])
	}
	var ada []smtpsink.Message
	getJSON(t, api.URL+"/api/messages?to=ADA@example.com", &ada)
	if len(ada) != 2 || ada[0].ID != 1 || ada[1].ID != 3 {
		t.Fatalf("to=ada: %+v", ada)
	}
	var st smtpsink.Stats
	getJSON(t, api.URL+"/api/stats", &st)
	if st.Messages != 3 || st.DistinctMessageIDs != 2 || len(st.Duplicates) != 1 || st.Duplicates["<one@test>"] != 2 {
		t.Fatalf("stats: %+v", st)
	}
	resp, err := http.Get(api.URL + "/api/messages/2/raw")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(raw) != base64Msg || resp.Header.Get("Content-Type") != "message/rfc822" {
		t.Fatalf("raw = %d %q", resp.StatusCode, raw)
	}
	req, _ := http.NewRequest(http.MethodDelete, api.URL+"/api/messages", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE = %d", resp.StatusCode)
	}
	if n := len(sink.Messages("")); n != 0 {
		t.Fatalf("%d messages after DELETE", n)
	}
	if st := sink.Stats(); st.Messages != 0 || st.DistinctMessageIDs != 0 || len(st.Duplicates) != 0 {
		t.Fatalf("stats after DELETE: %+v", st)
	}
}

// TestDownRefusesMail: in down mode a new connection gets 421 and a
// session already open gets 421 on MAIL; nothing is stored; switched up
// over HTTP, mail flows again.
func TestDownRefusesMail(t *testing.T) {
	t.Parallel()
	sink, api := start(t, smtpsink.Config{})
	open, err := smtp.Dial(sink.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := open.Hello("test"); err != nil {
		t.Fatal(err)
	}

	put := func(body string) (int, string) {
		t.Helper()
		return putJSON(t, api.URL+"/api/down", body)
	}
	if st, b := put(`{"down":true}`); st != http.StatusOK || !strings.Contains(b, `"down":true`) {
		t.Fatalf("PUT down = %d %s", st, b)
	}
	if !sink.IsDown() {
		t.Fatal("not down after PUT")
	}
	if err := send(sink.Addr(), "shop@example.com", []string{"ada@example.com"}, base64Msg); code(err) != 421 {
		t.Fatalf("new connection while down: %v, want 421", err)
	}
	if err := open.Mail("shop@example.com", nil); code(err) != 421 {
		t.Fatalf("MAIL in an open session while down: %v, want 421", err)
	}
	if st, b := put(`{"up":true}`); st != http.StatusBadRequest || !strings.Contains(b, "application/problem+json") {
		t.Fatalf("PUT with a wrong field = %d %s", st, b)
	}
	if st, b := put(`{}`); st != http.StatusBadRequest || !strings.Contains(b, `"field":"down"`) {
		t.Fatalf("PUT without down = %d %s", st, b)
	}
	if st, _ := put(`{"down":false}`); st != http.StatusOK || sink.IsDown() {
		t.Fatalf("PUT up = %d, down=%v", st, sink.IsDown())
	}
	var state struct{ Down bool }
	getJSON(t, api.URL+"/api/down", &state)
	if state.Down {
		t.Fatal("GET /api/down says down")
	}
	if err := send(sink.Addr(), "shop@example.com", []string{"ada@example.com"}, base64Msg); err != nil {
		t.Fatalf("after up: %v", err)
	}
	if st := sink.Stats(); st.Messages != 1 || st.Rejected < 2 {
		t.Fatalf("stats: %+v", st)
	}
	// The Go switch works the same.
	sink.SetDown(true)
	if err := send(sink.Addr(), "shop@example.com", []string{"ada@example.com"}, base64Msg); code(err) != 421 {
		t.Fatalf("SetDown(true): %v, want 421", err)
	}
	if st := sink.Stats(); st.Messages != 1 {
		t.Fatalf("stored while down: %+v", st)
	}
}

// putJSON PUTs body to url and returns the status and "Content-Type body".
func putJSON(t *testing.T, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type") + " " + string(b)
}

// TestDelayHoldsTheMailReply: with a delay MAIL FROM is answered, and so
// the message stored, only after it; bad delays are 400 and change
// nothing; Close ends a wait at once with nothing stored.
func TestDelayHoldsTheMailReply(t *testing.T) {
	t.Parallel()
	sink, api := start(t, smtpsink.Config{})
	for _, body := range []string{`{}`, `{"delay":"soon"}`, `{"delay":"-1s"}`, `{"delay":"2m"}`, `{"delay":300}`} {
		if st, b := putJSON(t, api.URL+"/api/delay", body); st != http.StatusBadRequest || !strings.Contains(b, "application/problem+json") {
			t.Errorf("PUT %s = %d %s, want 400 problem+json", body, st, b)
		}
	}
	if d := sink.Delay(); d != 0 {
		t.Fatalf("delay after bad PUTs = %s, want 0", d)
	}
	const delay = 300 * time.Millisecond
	if st, b := putJSON(t, api.URL+"/api/delay", `{"delay":"300ms"}`); st != http.StatusOK || !strings.Contains(b, `"delay":"300ms"`) {
		t.Fatalf("PUT 300ms = %d %s", st, b)
	}
	began := time.Now()
	sent := make(chan error, 1)
	go func() { sent <- send(sink.Addr(), "shop@example.com", []string{"ada@example.com"}, base64Msg) }()
	time.Sleep(delay / 3)
	if st := sink.Stats(); st.Messages != 0 {
		t.Fatalf("stored %d messages before the delay ran out", st.Messages)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < delay {
		t.Fatalf("send took %s, want at least the delay %s", took, delay)
	}
	if st := sink.Stats(); st.Messages != 1 {
		t.Fatalf("stats after the delayed send: %+v", st)
	}

	if err := sink.SetDelay(smtpsink.MaxDelay); err != nil {
		t.Fatal(err)
	}
	go func() { sent <- send(sink.Addr(), "shop@example.com", []string{"ada@example.com"}, base64Msg) }()
	time.Sleep(200 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- sink.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close waited for a delayed DATA")
	}
	if err := <-sent; err == nil {
		t.Fatal("a send cut by Close succeeded")
	}
	if st := sink.Stats(); st.Messages != 1 {
		t.Fatalf("stats after Close: %+v, want the one earlier message", st)
	}
}

// TestInvalidDomainIsRejected: RCPT to the .invalid TLD is a permanent
// 550, so clients can test their handling of a bounce at submission.
func TestInvalidDomainIsRejected(t *testing.T) {
	t.Parallel()
	sink, _ := start(t, smtpsink.Config{})
	if err := send(sink.Addr(), "shop@example.com", []string{"ghost@example.invalid"}, base64Msg); code(err) != 550 {
		t.Fatalf("err = %v, want 550", err)
	}
	if st := sink.Stats(); st.Messages != 0 || st.Rejected != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestCloseEndsOpenSessions: Close returns with a client still connected,
// and the client sees the connection end (goleak checks nothing is left).
func TestCloseEndsOpenSessions(t *testing.T) {
	t.Parallel()
	sink, err := smtpsink.New(smtpsink.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	c, err := smtp.Dial(sink.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("test"); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(); err == nil {
		t.Fatal("session still answers after Close")
	}
	if err := sink.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := sink.Start("127.0.0.1:0"); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

func TestImplicitTLSNeedsConfig(t *testing.T) {
	t.Parallel()
	if _, err := smtpsink.New(smtpsink.Config{ImplicitTLS: true}); err == nil {
		t.Fatal("ImplicitTLS without TLSConfig accepted")
	}
}

// TestRejectModeRefusesForGood: in reject mode every recipient gets 550
// (permanent, unlike down's 421), nothing is stored, and switched off over
// HTTP, mail is taken again.
func TestRejectModeRefusesForGood(t *testing.T) {
	t.Parallel()
	sink, api := start(t, smtpsink.Config{})
	put := func(body string) (int, string) {
		t.Helper()
		return putJSON(t, api.URL+"/api/reject", body)
	}
	if st, b := put(`{"reject":true}`); st != http.StatusOK || !strings.Contains(b, `"reject":true`) {
		t.Fatalf("PUT reject = %d %s", st, b)
	}
	if err := send(sink.Addr(), "shop@example.com", []string{"ada@example.com"}, base64Msg); code(err) != 550 {
		t.Fatalf("send in reject mode: %v, want 550", err)
	}
	var state struct{ Reject bool }
	getJSON(t, api.URL+"/api/reject", &state)
	if st := sink.Stats(); !state.Reject || !st.Reject || st.Messages != 0 || st.Rejected != 1 {
		t.Fatalf("in reject mode: GET says %v, stats %+v", state.Reject, st)
	}
	if st, b := put(`{}`); st != http.StatusBadRequest || !strings.Contains(b, `"field":"reject"`) {
		t.Fatalf("PUT without reject = %d %s", st, b)
	}
	if st, _ := put(`{"reject":false}`); st != http.StatusOK || sink.IsRejecting() {
		t.Fatalf("PUT reject false = %d, rejecting=%v", st, sink.IsRejecting())
	}
	if err := send(sink.Addr(), "shop@example.com", []string{"ada@example.com"}, base64Msg); err != nil {
		t.Fatalf("after reject mode: %v", err)
	}
	if st := sink.Stats(); st.Messages != 1 {
		t.Fatalf("stats after reject mode: %+v", st)
	}
}
