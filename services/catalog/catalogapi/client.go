package catalogapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/ratelimit"
	kithttp "github.com/go-kit/kit/transport/http"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker"
	"golang.org/x/time/rate"

	"github.com/shopfloor/shopfloor/pkg/backoff"
)

// ErrUnavailable means catalog did not give an answer the caller can use:
// the circuit breaker is open, every attempt failed (connection errors,
// timeouts, 5xx, 429), the caller's deadline ended first, or the client's
// own rate limit refused the call. The error wraps the cause (errors.As
// finds a *ProblemError for a 5xx or 429 answer; errors.Is finds
// context.DeadlineExceeded when a deadline ended the call, and
// ratelimit.ErrLimited from github.com/go-kit/kit/ratelimit when the rate
// limit refused it). A caller answers its own client 503 with
// Retry-After: RetryAfter(err).
var ErrUnavailable = errors.New("catalog unavailable")

// ProblemError is a non-2xx answer of catalog, decoded from its
// application/problem+json body (RFC 9457), or from its status alone when
// the body is not a problem. A 4xx answer other than 429 (400 bad query,
// 404 no such route, 422 …) is returned by Client.Batch as is: it is the
// caller's mistake, retrying cannot fix it, and it does not count against
// the circuit breaker. A 5xx or 429 answer is returned wrapped in
// ErrUnavailable.
type ProblemError struct {
	// Status is the HTTP status of the answer (the status line wins over
	// the body's "status").
	Status int `json:"status"`
	// Type is the problem type URI ("https://shopfloor.dev/problems/invalid-query").
	Type string `json:"type"`
	// Title is the short text of the status.
	Title string `json:"title"`
	// Detail says what was wrong with this request, for a person.
	Detail string `json:"detail,omitempty"`
	// Errors names the invalid query parameters, if catalog listed them.
	Errors []ProblemField `json:"errors,omitempty"`

	// retryAfter is the answer's Retry-After; hasRetryAfter says it was
	// sent (Retry-After: 0 means "now").
	retryAfter    time.Duration
	hasRetryAfter bool
}

// ProblemField names one invalid part of a request and why.
type ProblemField struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error returns "catalog answered <status> <title>: <detail>".
func (e *ProblemError) Error() string {
	msg := fmt.Sprintf("catalog answered %d %s", e.Status, e.Title)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// ClientConfig configures a Client. Zero values take the defaults given
// with each field; NewClient rejects values that make no sense.
type ClientConfig struct {
	// BaseURL is catalog's address, e.g. "http://catalog:8080" (a path
	// prefix is kept: "http://gw/catalog" calls
	// "http://gw/catalog/v1/products:batch"). Required; http or https, no
	// query or fragment.
	BaseURL string
	// HTTPClient sends the requests. Default: an http.Client on
	// http.DefaultTransport. Pass one with an instrumented Transport
	// (otelhttp) to propagate traces. Its own Timeout, if any, applies on
	// top of the per-attempt Timeout.
	HTTPClient *http.Client
	// Timeout bounds each attempt, from sending the request to reading the
	// whole answer. Default 2s. An attempt never outlives the caller's
	// context.
	Timeout time.Duration
	// Attempts is the number of tries of one call (batch reads are
	// idempotent), the first included. Default 3; 1 disables retries.
	Attempts int
	// Backoff spaces the attempts (full jitter). Default Initial 50ms,
	// Max 1s (a zero field takes its default). Max also caps how long a
	// Retry-After is honoured.
	Backoff backoff.Policy
	// BreakerFailures is the number of consecutive failed attempts
	// (transport errors, timeouts, 5xx) that opens the circuit breaker.
	// Default 5.
	BreakerFailures int
	// BreakerOpenFor is how long the open breaker refuses calls before it
	// lets one probe through (half-open). Default 5s.
	BreakerOpenFor time.Duration
	// MaxRequestsPerSecond caps the requests this client sends to catalog,
	// retries included, with a token bucket whose burst is one second's
	// worth (at least 1). A call over the limit fails at once with
	// ErrUnavailable (wrapping ratelimit.ErrLimited); it does not wait.
	// Default 0: no limit.
	MaxRequestsPerSecond float64
	// Registerer, when set, receives the client's metrics:
	// catalog_client_requests_total{outcome} counts calls of Batch by
	// outcome (ok, problem: a 4xx answer, unavailable, breaker_open,
	// rate_limited, canceled: the caller's context was canceled), and
	// catalog_client_breaker_state is 0 closed, 1 half-open, 2 open. Both
	// carry the constant label client=Name.
	Registerer prometheus.Registerer
	// Name tells this client apart in metrics and names its breaker
	// (usually the calling service, "orders"). Default "catalog".
	Name string
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Attempts == 0 {
		c.Attempts = 3
	}
	if c.Backoff.Initial == 0 {
		c.Backoff.Initial = 50 * time.Millisecond
	}
	if c.Backoff.Max == 0 {
		c.Backoff.Max = time.Second
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = 5
	}
	if c.BreakerOpenFor == 0 {
		c.BreakerOpenFor = 5 * time.Second
	}
	if c.Name == "" {
		c.Name = "catalog"
	}
	return c
}

func (c ClientConfig) validate() (*url.URL, error) {
	var errs []error
	base, err := url.Parse(c.BaseURL)
	switch {
	case c.BaseURL == "":
		errs = append(errs, errors.New("base URL is required"))
	case err != nil:
		errs = append(errs, fmt.Errorf("BaseURL: %w", err))
	case base.Scheme != "http" && base.Scheme != "https", base.Host == "":
		errs = append(errs, fmt.Errorf("BaseURL %q: want http(s)://host[:port][/prefix]", c.BaseURL))
	case base.RawQuery != "" || base.Fragment != "":
		errs = append(errs, fmt.Errorf("BaseURL %q: no query or fragment", c.BaseURL))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("negative Timeout"))
	}
	if c.Attempts < 0 {
		errs = append(errs, errors.New("negative Attempts"))
	}
	if c.Backoff.Initial < 0 || c.Backoff.Max < 0 || (c.Backoff.Max > 0 && c.Backoff.Initial > c.Backoff.Max) {
		errs = append(errs, errors.New("backoff: want 0 <= Initial <= Max"))
	}
	if c.BreakerFailures < 0 || int64(c.BreakerFailures) > math.MaxUint32 {
		errs = append(errs, errors.New("breaker failures: want 0 to 2^32-1"))
	}
	if c.BreakerOpenFor < 0 {
		errs = append(errs, errors.New("negative BreakerOpenFor"))
	}
	if c.MaxRequestsPerSecond < 0 || math.IsNaN(c.MaxRequestsPerSecond) || math.IsInf(c.MaxRequestsPerSecond, 0) {
		errs = append(errs, errors.New("max requests per second: want a finite number >= 0"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("catalogapi: client config: %w", err)
	}
	return base, nil
}

// BatchQuery is one GET /v1/products:batch: IDs, SKUs or both, 1–100
// entries in all (catalog answers 400, a *ProblemError, otherwise, or when
// an id is not a product id or a sku not 3–40 upper-case letters, digits
// or '-'). The answer lists the products named by id first, then those
// named by sku.
type BatchQuery struct {
	// IDs are product ids; Missing lists those not returned.
	IDs []string
	// SKUs are product skus; Missing lists those not returned (after the
	// ids).
	SKUs []string
	// Currency of the prices ("EUR"); empty: catalog's default.
	Currency string
	// Locale of the texts ("en-US"); empty: catalog's default.
	Locale string
}

// Client calls catalog's HTTP API for other services. It is safe for
// concurrent use; make one per process and share it (the circuit breaker
// and the rate limit are per Client).
//
// A call is a go-kit endpoint (a go-kit HTTP client) inside middleware,
// outermost first:
//
//   - retry: a call makes up to Attempts attempts. Only transient failures
//     are retried: connection errors, attempt timeouts, 502, 503, 504 and
//     429. The wait before the next attempt is Backoff's full-jitter delay,
//     or the answer's Retry-After (capped at Backoff.Max) when a 429 or
//     5xx sent one. A wait that would end at or after the caller's
//     deadline is not begun: the call returns the last error at once.
//     Not retried: 4xx answers (400, 404, 422 …), a 500, a 200 whose body
//     is not a ProductBatch, and refusals of the breaker or the rate limit.
//   - rate limit (only with MaxRequestsPerSecond): refuses an attempt over
//     the limit.
//   - circuit breaker (sony/gobreaker as an endpoint middleware): BreakerFailures
//     consecutive failed attempts open it. A failure is a transport error,
//     an attempt timeout, an attempt the caller's deadline ended (catalog
//     was slow), a 5xx answer or a 200 that cannot be read. A 4xx answer
//     (429 included) proves catalog is up and counts as a success, and so
//     does an attempt the caller canceled (it says nothing about catalog).
//     While open, calls fail at once with ErrUnavailable and send nothing;
//     after BreakerOpenFor one probe goes through (half-open; concurrent
//     calls still fail at once), and its success closes the breaker, its
//     failure opens it again.
//   - attempt timeout: each attempt gets Timeout, or what is left of the
//     caller's deadline when that is less.
//
// Batch returns nil, a *ProblemError (4xx), an error wrapping
// ErrUnavailable, or, when the caller canceled ctx, an error wrapping
// context.Canceled.
type Client struct {
	batch    endpoint.Endpoint
	openFor  time.Duration
	openedAt atomic.Int64 // unix nanoseconds of the breaker's last opening
	requests *prometheus.CounterVec
}

// Outcomes counted by catalog_client_requests_total.
const (
	outcomeOK          = "ok"
	outcomeProblem     = "problem"
	outcomeUnavailable = "unavailable"
	outcomeBreakerOpen = "breaker_open"
	outcomeRateLimited = "rate_limited"
	outcomeCanceled    = "canceled"
)

// maxBatchBody bounds the JSON of a batch answer read into memory: 100
// products with long descriptions in every script stay well below it.
const maxBatchBody = 8 << 20

// maxProblemBody bounds the body of a non-200 answer read into memory.
const maxProblemBody = 64 << 10

// NewClient validates cfg, fills in its defaults and returns a client. It
// fails when cfg is invalid or the metrics cannot be registered (another
// collector with the same name and client label is registered already).
func NewClient(cfg ClientConfig) (*Client, error) {
	base, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Client{openFor: cfg.BreakerOpenFor}
	breaker := gobreaker.NewCircuitBreaker(gobreaker.Settings{
		Name:        cfg.Name,
		MaxRequests: 1,
		Timeout:     cfg.BreakerOpenFor,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			return n.ConsecutiveFailures >= uint32(cfg.BreakerFailures)
		},
		IsSuccessful: breakerSuccess,
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				c.openedAt.Store(time.Now().UnixNano())
			}
		},
	})
	if err := c.registerMetrics(cfg, breaker); err != nil {
		return nil, err
	}

	e := kithttp.NewClient(http.MethodGet, base.JoinPath("v1", "products:batch"), encodeBatch, decodeBatch,
		kithttp.SetClient(cfg.HTTPClient)).Endpoint()
	e = attemptTimeout(cfg.Timeout)(e)
	e = withBreaker(breaker)(e)
	if cfg.MaxRequestsPerSecond > 0 {
		burst := max(1, int(math.Ceil(cfg.MaxRequestsPerSecond)))
		e = ratelimit.NewErroringLimiter(rate.NewLimiter(rate.Limit(cfg.MaxRequestsPerSecond), burst))(e)
	}
	c.batch = retry(cfg.Attempts, cfg.Backoff)(e)
	return c, nil
}

func (c *Client) registerMetrics(cfg ClientConfig, breaker *gobreaker.CircuitBreaker) error {
	if cfg.Registerer == nil {
		return nil
	}
	labels := prometheus.Labels{"client": cfg.Name}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "catalog_client_requests_total",
		Help:        "Calls to catalog by outcome (ok, problem, unavailable, breaker_open, rate_limited, canceled).",
		ConstLabels: labels,
	}, []string{"outcome"})
	state := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "catalog_client_breaker_state",
		Help:        "State of the circuit breaker in front of catalog: 0 closed, 1 half-open, 2 open.",
		ConstLabels: labels,
	}, func() float64 { return float64(breaker.State()) })
	if err := cfg.Registerer.Register(requests); err != nil {
		return fmt.Errorf("catalogapi: register client metrics: %w", err)
	}
	if err := cfg.Registerer.Register(state); err != nil {
		cfg.Registerer.Unregister(requests)
		return fmt.Errorf("catalogapi: register client metrics: %w", err)
	}
	for _, o := range []string{outcomeOK, outcomeProblem, outcomeUnavailable, outcomeBreakerOpen, outcomeRateLimited, outcomeCanceled} {
		requests.WithLabelValues(o) // export zeros, so rates work from the first scrape
	}
	c.requests = requests
	return nil
}

// Batch returns the products q names, priced in q.Currency and rendered
// for q.Locale, and the ids or skus that are missing (see ProductBatch).
// Errors: a *ProblemError for a 4xx answer, ErrUnavailable (wrapping the
// cause) when catalog could not answer, an error wrapping context.Canceled
// when the caller canceled ctx.
func (c *Client) Batch(ctx context.Context, q BatchQuery) (ProductBatch, error) {
	resp, err := c.batch(ctx, q)
	if err != nil {
		outcome, err := c.classify(ctx, err)
		c.count(outcome)
		return ProductBatch{}, err
	}
	b, ok := resp.(ProductBatch)
	if !ok {
		return ProductBatch{}, fmt.Errorf("catalogapi: batch decoded to %T", resp)
	}
	c.count(outcomeOK)
	return b, nil
}

// classify turns the last attempt's error into what Batch returns.
func (c *Client) classify(ctx context.Context, err error) (string, error) {
	var pe *ProblemError
	if errors.As(err, &pe) && pe.Status < 500 && pe.Status != http.StatusTooManyRequests {
		return outcomeProblem, err
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		if !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w (last attempt: %w)", ctxErr, err)
		}
		if errors.Is(ctxErr, context.Canceled) {
			return outcomeCanceled, fmt.Errorf("catalogapi: batch: %w", err)
		}
	}
	outcome := outcomeUnavailable
	switch {
	case errors.Is(err, gobreaker.ErrOpenState):
		outcome = outcomeBreakerOpen
		opened := time.Unix(0, c.openedAt.Load())
		err = &breakerOpenError{retryIn: time.Until(opened.Add(c.openFor)), err: err}
	case errors.Is(err, gobreaker.ErrTooManyRequests):
		outcome = outcomeBreakerOpen
		err = &breakerOpenError{err: err}
	case errors.Is(err, ratelimit.ErrLimited):
		outcome = outcomeRateLimited
	}
	return outcome, fmt.Errorf("%w: %w", ErrUnavailable, err)
}

func (c *Client) count(outcome string) {
	if c.requests != nil {
		c.requests.WithLabelValues(outcome).Inc()
	}
}

// RetryAfter is the Retry-After a caller should send with the 503 it
// answers when Batch returned err: the time until the open breaker lets a
// probe through, rounded up to whole seconds, when the breaker refused the
// call; 1s for every other error; 0 for a nil err.
func RetryAfter(err error) time.Duration {
	if err == nil {
		return 0
	}
	var bo *breakerOpenError
	if errors.As(err, &bo) && bo.retryIn > 0 {
		return (bo.retryIn + time.Second - 1) / time.Second * time.Second
	}
	return time.Second
}

// breakerOpenError is a call the breaker refused; retryIn is the time
// until it half-opens (0: unknown, or half-open with a probe in flight).
type breakerOpenError struct {
	retryIn time.Duration
	err     error
}

func (e *breakerOpenError) Error() string {
	if e.retryIn > 0 {
		return fmt.Sprintf("%v: next probe in %s", e.err, e.retryIn.Round(time.Millisecond))
	}
	return e.err.Error()
}

func (e *breakerOpenError) Unwrap() error { return e.err }

// breakerSuccess decides what the breaker counts as a failure: transport
// errors, timeouts, 5xx answers and unreadable bodies. A 4xx answer means
// catalog is up; a canceled attempt says nothing about catalog.
func breakerSuccess(err error) bool {
	var pe *ProblemError
	switch {
	case err == nil:
		return true
	case errors.As(err, &pe):
		return pe.Status < 500
	case errors.Is(err, context.Canceled):
		return true
	default:
		return false
	}
}

// --- transport ---

func encodeBatch(_ context.Context, r *http.Request, request any) error {
	q, ok := request.(BatchQuery)
	if !ok {
		return fmt.Errorf("catalogapi: batch request is %T, want BatchQuery", request)
	}
	v := url.Values{}
	if len(q.IDs) > 0 {
		v.Set("ids", strings.Join(q.IDs, ","))
	}
	if len(q.SKUs) > 0 {
		v.Set("skus", strings.Join(q.SKUs, ","))
	}
	if q.Currency != "" {
		v.Set("currency", q.Currency)
	}
	if q.Locale != "" {
		v.Set("locale", q.Locale)
	}
	r.URL.RawQuery = v.Encode()
	r.Header.Set("Accept", "application/json, application/problem+json")
	return nil
}

func decodeBatch(_ context.Context, resp *http.Response) (any, error) {
	if resp.StatusCode != http.StatusOK {
		return nil, decodeProblem(resp)
	}
	var b ProductBatch
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBatchBody)).Decode(&b); err != nil {
		var (
			syntax *json.SyntaxError
			typ    *json.UnmarshalTypeError
		)
		if errors.As(err, &syntax) || errors.As(err, &typ) {
			return nil, &malformedError{err: err}
		}
		return nil, fmt.Errorf("read catalog batch: %w", err) // the connection broke mid-body
	}
	return b, nil
}

// decodeProblem reads a non-200 answer: its problem+json body when it has
// one (best effort), its status and its Retry-After.
func decodeProblem(resp *http.Response) *ProblemError {
	pe := &ProblemError{}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProblemBody)) // a short or broken body still has its status
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err == nil && (mt == "application/problem+json" || mt == "application/json") {
		if err := json.Unmarshal(body, pe); err != nil {
			pe = &ProblemError{}
		}
	}
	pe.Status = resp.StatusCode
	if pe.Title == "" {
		pe.Title = http.StatusText(resp.StatusCode)
	}
	pe.retryAfter, pe.hasRetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return pe
}

// parseRetryAfter reads delay-seconds or an HTTP date (RFC 9110 10.2.3).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, math.MaxInt64/int64(time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now)), true
	}
	return 0, false
}

// malformedError is a 200 answer whose body is not a ProductBatch: a
// catalog bug, not retried, counted by the breaker.
type malformedError struct{ err error }

func (e *malformedError) Error() string { return "catalog answered malformed JSON: " + e.err.Error() }
func (e *malformedError) Unwrap() error { return e.err }

// --- middleware ---

// timeoutError is an attempt that did not finish within the attempt
// timeout while the caller's context was still live.
type timeoutError struct {
	after time.Duration
	err   error
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("no answer within %s: %v", e.after, e.err)
}
func (e *timeoutError) Unwrap() error { return e.err }

// withBreaker runs each attempt through cb: refused at once (gobreaker's
// ErrOpenState, ErrTooManyRequests) while it is open or probing, counted
// by its IsSuccessful otherwise. It is what go-kit's
// circuitbreaker.Gobreaker does; that package is not imported because it
// also compiles in the abandoned hystrix-go and handy (its other
// adapters) into every binary that imports this one.
func withBreaker(cb *gobreaker.CircuitBreaker) endpoint.Middleware {
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, request any) (any, error) {
			return cb.Execute(func() (any, error) { return next(ctx, request) })
		}
	}
}

// attemptTimeout bounds each attempt by d (and by ctx).
func attemptTimeout(d time.Duration) endpoint.Middleware {
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, request any) (any, error) {
			actx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			resp, err := next(actx, request)
			var pe *ProblemError
			if err != nil && ctx.Err() == nil && actx.Err() != nil && !errors.As(err, &pe) {
				err = &timeoutError{after: d, err: err}
			}
			return resp, err
		}
	}
}

// retry makes up to attempts attempts while the failure is transient,
// waiting between them, never past ctx's deadline (see Client).
func retry(attempts int, policy backoff.Policy) endpoint.Middleware {
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, request any) (any, error) {
			for attempt := 1; ; attempt++ {
				resp, err := next(ctx, request)
				if err == nil || attempt >= attempts || ctx.Err() != nil {
					return resp, err
				}
				wait, ok := retryDelay(err, attempt, policy)
				if !ok {
					return nil, err
				}
				if deadline, has := ctx.Deadline(); has && time.Until(deadline) <= wait {
					return nil, err // the next attempt would start at or after the deadline
				}
				timer := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					timer.Stop()
					return nil, err
				case <-timer.C:
				}
			}
		}
	}
}

// retryDelay says whether err is transient and how long to wait before
// attempt+1.
func retryDelay(err error, attempt int, policy backoff.Policy) (time.Duration, bool) {
	var (
		pe *ProblemError
		te *timeoutError
		ue *url.Error
		ne net.Error
	)
	switch {
	case errors.As(err, &pe):
		switch pe.Status {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			if pe.hasRetryAfter {
				return min(pe.retryAfter, policy.Max), true
			}
			return policy.Delay(attempt), true
		}
		return 0, false
	case errors.As(err, &te), errors.As(err, &ue), errors.As(err, &ne),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		// Connection refused or reset, an answer cut short, a slow catalog.
		return policy.Delay(attempt), true
	default:
		// Breaker or rate limit refusals, malformed answers, request
		// building errors.
		return 0, false
	}
}
