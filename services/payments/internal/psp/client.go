package psp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// opFindCharge is FindCharge's Op: a lookup, whose failures are never
// ClassAmbiguous.
const opFindCharge = "find charge"

// DefaultTimeout bounds each call when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// MaxIdempotencyKeyLen is the longest idempotency key the client sends.
const MaxIdempotencyKeyLen = 255

// maxResponseBytes caps how much of a response body is read.
const maxResponseBytes = 1 << 20

// Charge statuses.
const (
	// StatusSucceeded: the money was taken.
	StatusSucceeded = "succeeded"
	// StatusDeclined: the payment method was refused; DeclineCode says why.
	StatusDeclined = "declined"
)

// Config configures a Client.
type Config struct {
	// BaseURL is the provider's API root, http or https, for example
	// "http://pspsim:8080"; a path prefix is kept ("https://psp/v1" calls
	// "https://psp/v1/charges"). Required.
	BaseURL string
	// HTTPClient sends the requests. Default: http.DefaultTransport. New
	// uses a copy whose CheckRedirect refuses every redirect, whatever
	// this one's says: a redirect is never followed (a 3xx is a
	// *StatusError, see StatusError). Its own Timeout, if set, also
	// applies; prefer Config.Timeout, which is classified precisely.
	HTTPClient *http.Client
	// Timeout bounds each call, from sending to reading the whole
	// response, on top of the caller's context. Default DefaultTimeout
	// (5s); negative is an error.
	Timeout time.Duration
	// Now turns an HTTP-date Retry-After into a delay. Default time.Now.
	Now func() time.Time
}

// Client calls a payment provider speaking the pspsim API. Each method is
// exactly one attempt; see the package documentation. It is safe for
// concurrent use.
type Client struct {
	base    *url.URL
	hc      *http.Client
	timeout time.Duration
	now     func() time.Time
}

// New returns a Client for cfg, with defaults filled in. It fails when
// BaseURL is not an absolute http(s) URL or Timeout is negative.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("psp: base URL %q: %w", cfg.BaseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("psp: base URL %q: must be an absolute http or https URL", cfg.BaseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("psp: base URL %q: must not have a query or fragment", cfg.BaseURL)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("psp: timeout %s is negative", cfg.Timeout)
	}
	c := &Client{base: u, hc: noRedirects(cfg.HTTPClient), timeout: cfg.Timeout, now: cfg.Now}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// noRedirects returns a copy of hc (a zero client when nil) that never
// follows a redirect: the 3xx itself is the answer. Following one would
// send a charge, with its idempotency key, to wherever the Location
// points, and a 303 after a POST would turn the charge into a GET.
func noRedirects(hc *http.Client) *http.Client {
	c := &http.Client{}
	if hc != nil {
		*c = *hc
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// ChargeRequest is what to charge.
type ChargeRequest struct {
	// AmountMinor is the amount in minor units (cents); must be positive.
	AmountMinor int64 `json:"amount_minor"`
	// Currency is the ISO 4217 code ("EUR").
	Currency string `json:"currency"`
	// PaymentMethod is the provider's token for the payment method; card
	// data never passes through this client.
	PaymentMethod string `json:"payment_method"`
	// Reference is the caller's reference, the order id. The provider
	// counts succeeded charges per reference.
	Reference string `json:"reference"`
}

// Charge is a charge as the provider answered it.
type Charge struct {
	// ID is the provider's charge id ("ch_…").
	ID string `json:"id"`
	// Status is StatusSucceeded or StatusDeclined.
	Status string `json:"status"`
	// AmountMinor is the amount in minor units.
	AmountMinor int64 `json:"amount_minor"`
	// Currency is the ISO 4217 code.
	Currency string `json:"currency"`
	// PaymentMethod is the token charged.
	PaymentMethod string `json:"payment_method"`
	// Reference is the caller's reference.
	Reference string `json:"reference"`
	// IdempotencyKey is the key the charge was created with.
	IdempotencyKey string `json:"idempotency_key"`
	// DeclineCode is set when Status is StatusDeclined.
	DeclineCode string `json:"decline_code,omitempty"`
	// CreatedAt is when the provider created the charge.
	CreatedAt time.Time `json:"created_at"`
	// Replayed is true when the provider answered with the stored result
	// of an earlier request with the same key (Idempotent-Replayed: true).
	// Not part of the provider's JSON.
	Replayed bool `json:"-"`
}

// RefundRequest is what to refund.
type RefundRequest struct {
	// ChargeID is the charge to refund. Required.
	ChargeID string `json:"charge_id"`
	// AmountMinor is the amount to refund in minor units; zero refunds
	// whatever remains of the charge.
	AmountMinor int64 `json:"amount_minor,omitempty"`
}

// Refund is a refund as the provider answered it.
type Refund struct {
	// ID is the provider's refund id ("re_…").
	ID string `json:"id"`
	// ChargeID is the refunded charge.
	ChargeID string `json:"charge_id"`
	// AmountMinor is the refunded amount in minor units.
	AmountMinor int64 `json:"amount_minor"`
	// Status is "succeeded".
	Status string `json:"status"`
	// IdempotencyKey is the key the refund was created with.
	IdempotencyKey string `json:"idempotency_key"`
	// CreatedAt is when the provider created the refund.
	CreatedAt time.Time `json:"created_at"`
	// Replayed: see Charge.Replayed.
	Replayed bool `json:"-"`
}

// Charge asks the provider to charge req, once, with idempotencyKey as the
// Idempotency-Key header. Use one stable key per payment attempt and send
// it again, unchanged, on every retry of that attempt.
//
// It returns the succeeded charge (Replayed when the provider had it
// already), or a zero Charge and an error: *DeclinedError (the declined
// charge is in it), *RateLimitedError, *StatusError, *TransportError, or
// one matching ErrInvalidArgument. Classify says what to do next.
func (c *Client) Charge(ctx context.Context, idempotencyKey string, req ChargeRequest) (Charge, error) {
	const op = "charge"
	if err := checkKey(op, idempotencyKey); err != nil {
		return Charge{}, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Charge{}, fmt.Errorf("psp: %s: %w: %w", op, ErrInvalidArgument, err)
	}
	res, err := c.send(ctx, op, http.MethodPost, c.base.JoinPath("charges"), idempotencyKey, body)
	if err != nil {
		return Charge{}, err
	}
	switch res.status {
	case http.StatusOK, http.StatusCreated:
		ch, err := decodeCharge(op, res)
		if err != nil {
			return Charge{}, err
		}
		switch ch.Status {
		case StatusSucceeded:
			return ch, nil
		case StatusDeclined:
			return Charge{}, &DeclinedError{Code: ch.DeclineCode, Charge: ch}
		default:
			// Processed, in a state this client does not know: the caller
			// must not assume either outcome.
			return Charge{}, malformed(op, res, fmt.Errorf("unknown charge status %q", ch.Status))
		}
	case http.StatusPaymentRequired:
		var ch Charge
		_ = json.Unmarshal(res.body, &ch) // a 402 is a decline even with a body we cannot read
		ch.Replayed = res.replayed()
		return Charge{}, &DeclinedError{Code: ch.DeclineCode, Charge: ch}
	default:
		return Charge{}, c.failure(op, res)
	}
}

// FindCharge asks the provider for the charge it created with
// idempotencyKey: GET /charges?idempotency_key=. It returns the charge
// whatever its status (a declined charge is found, with a nil error), or
// an error matching ErrNotFound when the provider has none. Use it to
// resolve a ClassAmbiguous Charge before retrying. Its errors are never
// ClassAmbiguous: a lookup changes nothing.
func (c *Client) FindCharge(ctx context.Context, idempotencyKey string) (Charge, error) {
	const op = opFindCharge
	if err := checkKey(op, idempotencyKey); err != nil {
		return Charge{}, err
	}
	u := c.base.JoinPath("charges")
	u.RawQuery = url.Values{"idempotency_key": {idempotencyKey}}.Encode()
	res, err := c.send(ctx, op, http.MethodGet, u, "", nil)
	if err != nil {
		return Charge{}, err
	}
	if res.status != http.StatusOK {
		return Charge{}, c.failure(op, res)
	}
	return decodeCharge(op, res)
}

// Refund asks the provider to refund req, once, with idempotencyKey as the
// Idempotency-Key header (one stable key per refund, sent again on every
// retry). It returns the refund, or a zero Refund and an error: a
// *StatusError (404 matching ErrNotFound for an unknown charge, 422 for a
// declined charge or an amount beyond what remains refundable, both
// ClassInvalid), *RateLimitedError, *TransportError, or one matching
// ErrInvalidArgument. A ClassAmbiguous refund is resolved by retrying with
// the same key.
func (c *Client) Refund(ctx context.Context, idempotencyKey string, req RefundRequest) (Refund, error) {
	const op = "refund"
	if err := checkKey(op, idempotencyKey); err != nil {
		return Refund{}, err
	}
	if req.ChargeID == "" {
		return Refund{}, fmt.Errorf("psp: %s: %w: the charge id is empty", op, ErrInvalidArgument)
	}
	if req.AmountMinor < 0 {
		return Refund{}, fmt.Errorf("psp: %s: %w: amount %d is negative", op, ErrInvalidArgument, req.AmountMinor)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Refund{}, fmt.Errorf("psp: %s: %w: %w", op, ErrInvalidArgument, err)
	}
	res, err := c.send(ctx, op, http.MethodPost, c.base.JoinPath("refunds"), idempotencyKey, body)
	if err != nil {
		return Refund{}, err
	}
	if res.status != http.StatusOK && res.status != http.StatusCreated {
		return Refund{}, c.failure(op, res)
	}
	var rf Refund
	if err := json.Unmarshal(res.body, &rf); err != nil || rf.ID == "" {
		return Refund{}, malformed(op, res, err)
	}
	rf.Replayed = res.replayed()
	return rf, nil
}

// checkKey rejects keys the provider would refuse, before sending.
func checkKey(op, key string) error {
	if key == "" {
		return fmt.Errorf("psp: %s: %w: the idempotency key is empty", op, ErrInvalidArgument)
	}
	if len(key) > MaxIdempotencyKeyLen {
		return fmt.Errorf("psp: %s: %w: the idempotency key is longer than %d bytes", op, ErrInvalidArgument, MaxIdempotencyKeyLen)
	}
	return nil
}

// response is a complete HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) replayed() bool {
	return strings.EqualFold(r.header.Get("Idempotent-Replayed"), "true")
}

// send makes one HTTP exchange within the call timeout and reads the whole
// (bounded) response. A failure without a usable answer is a
// *TransportError.
func (c *Client) send(ctx context.Context, op, method string, u *url.URL, key string, body []byte) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// Whether a connection to the provider was ever handed to this
	// request: from then on the request may have reached it. GotConn runs
	// before Do returns and never after (for this request).
	var connected atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { connected.Store(true) },
	})
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return response{}, fmt.Errorf("psp: %s: %w: %w", op, ErrInvalidArgument, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	// A write (POST) may have been processed once a connection was made;
	// a lookup never changes anything.
	write := method != http.MethodGet
	resp, err := c.hc.Do(req)
	if err != nil {
		return response{}, &TransportError{Op: op, MaybeProcessed: write && connected.Load(), Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err == nil && len(data) > maxResponseBytes {
		err = fmt.Errorf("the response body exceeds %d bytes", maxResponseBytes)
	}
	if err != nil {
		return response{}, &TransportError{Op: op, StatusCode: resp.StatusCode, MaybeProcessed: write,
			Err: fmt.Errorf("read %d response: %w", resp.StatusCode, err)}
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// decodeCharge decodes a 2xx charge answer.
func decodeCharge(op string, res response) (Charge, error) {
	var ch Charge
	if err := json.Unmarshal(res.body, &ch); err != nil || ch.ID == "" {
		return Charge{}, malformed(op, res, err)
	}
	ch.Replayed = res.replayed()
	return ch, nil
}

// malformed is the error for a 2xx answer whose body is unusable: the
// request was processed, its result is unknown.
func malformed(op string, res response, err error) error {
	if err == nil {
		err = errors.New("the response has no id")
	}
	return &TransportError{Op: op, StatusCode: res.status, MaybeProcessed: op != opFindCharge,
		Err: fmt.Errorf("decode %d response: %w", res.status, err)}
}

// failure turns a non-success answer into its error.
func (c *Client) failure(op string, res response) error {
	if res.status == http.StatusTooManyRequests {
		return &RateLimitedError{Op: op, RetryAfter: parseRetryAfter(res.header.Get("Retry-After"), c.now())}
	}
	se := &StatusError{Op: op, StatusCode: res.status}
	if mt, _, err := mime.ParseMediaType(res.header.Get("Content-Type")); err == nil && mt == "application/problem+json" {
		var p struct {
			Type   string `json:"type"`
			Detail string `json:"detail"`
		}
		if json.Unmarshal(res.body, &p) == nil {
			se.Type, se.Detail = p.Type, p.Detail
		}
	}
	if se.Detail == "" && se.Type == "" {
		se.Detail = snippet(res.body)
	}
	return se
}

// snippet returns the start of a body for an error message.
func snippet(b []byte) string {
	const limit = 200
	s := strings.TrimSpace(string(b))
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return strings.ToValidUTF8(s, "")
}

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date
// (RFC 9110). Unreadable or past values give zero; values above a day are
// capped at a day.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		d = time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// maxRetryAfter caps a Retry-After, so that a broken provider cannot park
// a job for years.
const maxRetryAfter = 24 * time.Hour
