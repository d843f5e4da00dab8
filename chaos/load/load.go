// Package load places orders through orders' public API at a steady rate,
// the way a well-behaved client does, and remembers which ones were
// accepted: the set the invariants are checked against.
//
// A well-behaved client sends an Idempotency-Key with every checkout and
// retries with the same key when the answer is ambiguous or says "later":
// a network error or timeout (the order may exist), 503 (in-flight limit,
// catalog unavailable) and 429 after Retry-After, 409 (the same key still
// in flight). So a retry never creates a second order, and an order counts
// as accepted only once a 201 came back. Anything else is final: it is
// counted as refused with its status and never retried; so are 401 and 403
// (a token the API does not accept, or a customer it does not match: a
// retry with the same token gets the same answer).
//
// Every order is placed by a customer with a bearer token of its own
// (ADR 0022: the customer is the token's subject): the run's customers are
// synthetic users of the sandbox identity provider (Customer: "load-…",
// which make run lets sign in with the demo password). Their tokens are
// fetched before the first order, so a sign-in that fails stops the run
// before any load, with the provider's reason.
package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/pspsim"
)

// Order is one accepted order (a 201 came back).
type Order struct {
	ID         string
	Key        string // its Idempotency-Key
	CustomerID string
	Email      string
	// Declined is true when it paid with a declining test card, so it must
	// end payment_failed.
	Declined   bool
	AcceptedAt time.Time
}

// TokenSource gives a user's access token (*target.System caches one per
// user and refreshes it before it expires).
type TokenSource interface {
	Token(ctx context.Context, user string) (string, error)
}

// Config configures Run.
type Config struct {
	// OrdersURL is orders' base URL.
	OrdersURL string
	// Tokens signs the customers in. Required.
	Tokens TokenSource
	// Rate is orders started per second. Default 10.
	Rate float64
	// RunID tells this run's customers apart from other runs' (customer
	// ids and e-mail addresses carry it). Required.
	RunID string
	// Customers is how many customers place the orders (round robin).
	// Default 10.
	Customers int
	// DeclineEvery makes every n-th order pay with a declining test card
	// (it must end payment_failed). 0: default 20; negative: never.
	DeclineEvery int
	// RepeatEvery sends every n-th order twice with the same key (a
	// nervous client); the second answer must be the same order. 0:
	// default 25; negative: never.
	RepeatEvery int
	// Products to order from (at least 2); lines name them by id and by
	// SKU.
	Products []catalogapi.Product
	// MaxInFlight bounds orders in progress (retries included); when it is
	// reached, ticks are skipped and counted. Default 64.
	MaxInFlight int
	// GiveUpAfter bounds the retries of one order. Default 2m.
	GiveUpAfter time.Duration
	// HTTP is the client; default: 15s timeout.
	HTTP *http.Client
}

// Result is what a run did.
type Result struct {
	Accepted []Order
	// Started counts orders begun; Skipped ticks found MaxInFlight orders
	// in progress.
	Started, Skipped int
	// Retries counts answers that were retried, by status (0: network
	// error or timeout).
	Retries map[int]int
	// Refused counts orders answered with a final status other than 201.
	Refused map[int]int
	// RefusedSample is one refusal's body per status.
	RefusedSample map[int]string
	// GaveUp counts orders still without a final answer after GiveUpAfter
	// (or whose customer's token could not be renewed).
	GaveUp int
	// KeyMismatches lists repeated keys whose second answer was another
	// order (an idempotency violation): "key: first → second".
	KeyMismatches []string
	// Repeated counts orders sent twice with the same key.
	Repeated int
	// Answers are every answer the run got, retried ones and network
	// errors included, in the order they were recorded: when each came,
	// how long it took, its status and whether it carried a Retry-After.
	// Drills compare checkout latency before, during and after a fault
	// with them (Latencies).
	Answers []Answered
	// NoRetryAfter counts 503 and 429 answers that came without a
	// Retry-After header, by status: a server that says "later" must say
	// when.
	NoRetryAfter map[int]int
}

// Answered is one HTTP answer to a checkout (one attempt).
type Answered struct {
	// At is when the answer came (or the request failed).
	At time.Time
	// Took is the time from sending the request to reading the answer.
	Took time.Duration
	// Status is the HTTP status; 0 for a network error or timeout.
	Status int
	// RetryAfter says the answer carried a Retry-After header.
	RetryAfter bool
}

// Latencies returns the Took of the answers with the given status
// (0: network errors) that came in [from, to); a zero from or to leaves
// that side open.
func (r Result) Latencies(status int, from, to time.Time) []time.Duration {
	var out []time.Duration
	for _, a := range r.Answers {
		if a.Status != status || (!from.IsZero() && a.At.Before(from)) || (!to.IsZero() && !a.At.Before(to)) {
			continue
		}
		out = append(out, a.Took)
	}
	return out
}

func (c *Config) defaults() error {
	if c.Rate <= 0 {
		c.Rate = 10
	}
	if c.Customers <= 0 {
		c.Customers = 10
	}
	if c.DeclineEvery == 0 {
		c.DeclineEvery = 20
	}
	if c.RepeatEvery == 0 {
		c.RepeatEvery = 25
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 64
	}
	if c.GiveUpAfter <= 0 {
		c.GiveUpAfter = 2 * time.Minute
	}
	if c.HTTP == nil {
		c.HTTP = &http.Client{Timeout: 15 * time.Second}
	}
	if c.RunID == "" || c.OrdersURL == "" || c.Tokens == nil || len(c.Products) < 2 {
		return errors.New("load: OrdersURL, RunID, Tokens and at least 2 products are required")
	}
	return nil
}

// CustomerPrefix is the user-name prefix of the identity provider's
// synthetic customers (IDENTITY_SYNTHETIC_CUSTOMER_PREFIX, which make run
// sets): any such name signs in as a customer with the demo password.
const CustomerPrefix = "load-"

// Customer returns the id and e-mail address of customer k of a run:
// "load-chaos-<runID>-c<k>", a synthetic customer of the sandbox identity
// provider, so the id is also the subject of its token. runID should be
// short (the provider takes names of at most 64 letters, digits, '-', '_'
// and '.'); the e-mail is the one the provider gives that user.
func Customer(runID string, k int) (id, email string) {
	id = fmt.Sprintf("%schaos-%s-c%d", CustomerPrefix, runID, k)
	return id, id + "@example.com"
}

// SignIn fetches the token of each of a run's customers (Customer(runID,
// 0 … customers-1)) once, 8 at a time, so that they are cached before the
// load starts. Run calls it; a caller that wants to know before starting
// its clock calls it first (the tokens are then cached).
func SignIn(ctx context.Context, tokens TokenSource, runID string, customers int) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 8)
	)
	for k := range customers {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			id, _ := Customer(runID, k)
			if _, err := tokens.Token(ctx, id); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("load: %d of %d customers could not sign in (is IDENTITY_SYNTHETIC_CUSTOMER_PREFIX=%s set at the provider?): %w",
			len(errs), customers, CustomerPrefix, errs[0])
	}
	return nil
}

// Run signs the customers in, then places orders at cfg.Rate until ctx
// is done, then waits for the orders in progress (they finish on their
// own deadline, GiveUpAfter, so that none is left ambiguous) and returns
// what happened. It returns an error, and places no order, when a
// customer cannot sign in. onAccept, when not nil, is called for every
// accepted order as it is accepted.
func Run(ctx context.Context, cfg Config, onAccept func(Order)) (Result, error) {
	if err := cfg.defaults(); err != nil {
		return Result{}, err
	}
	if err := SignIn(ctx, cfg.Tokens, cfg.RunID, cfg.Customers); err != nil {
		return Result{}, err
	}
	var (
		mu  sync.Mutex
		res = Result{Retries: map[int]int{}, Refused: map[int]int{}, RefusedSample: map[int]string{}, NoRetryAfter: map[int]int{}}
		wg  sync.WaitGroup
		sem = make(chan struct{}, cfg.MaxInFlight)
	)
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			return res, nil
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			mu.Lock()
			res.Skipped++
			mu.Unlock()
			continue
		}
		res.Started++ // only this goroutine writes Started
		wg.Go(func() {
			defer func() { <-sem }()
			// The order outlives the run's context: an order cut off
			// mid-request would be neither accepted nor known absent.
			octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.GiveUpAfter)
			defer cancel()
			placeOne(octx, cfg, i, &mu, &res, onAccept)
		})
	}
}

func placeOne(ctx context.Context, cfg Config, i int, mu *sync.Mutex, res *Result, onAccept func(Order)) {
	k := i % cfg.Customers
	cust, email := Customer(cfg.RunID, k)
	p := cfg.Products[i%len(cfg.Products)]
	q := cfg.Products[(i+7)%len(cfg.Products)]
	declined := cfg.DeclineEvery > 0 && i%cfg.DeclineEvery == cfg.DeclineEvery-1
	method := pspsim.TokenVisa
	if declined {
		method = pspsim.TokenChargeDeclined
	}
	// CustomerID is the token's subject (the customer signs in as cust);
	// orders would refuse any other with 403.
	in := ordersapi.CreateOrder{CustomerID: cust, CustomerEmail: email, Currency: "EUR", PaymentMethod: method,
		Items:    []ordersapi.LineInput{{ProductID: p.ID, Quantity: 1 + i%3}, {SKU: q.SKU, Quantity: 1}},
		Shipping: ordersapi.Address{Name: "Chaos Drill", Line1: "1 Test St", City: "Berlin", PostalCode: "10115", Country: "DE"}}
	key := fmt.Sprintf("chaos-%s-%d", cfg.RunID, i)
	tries := 1
	if cfg.RepeatEvery > 0 && i%cfg.RepeatEvery == 0 {
		tries = 2
	}
	var first string
	for try := range tries {
		// From the cache, renewed when it nears its expiry.
		token, err := cfg.Tokens.Token(ctx, cust)
		if err != nil {
			mu.Lock()
			res.GaveUp++
			mu.Unlock()
			return
		}
		a, err := Place(ctx, cfg.HTTP, cfg.OrdersURL, token, in, key)
		mu.Lock()
		for st, n := range a.Retries {
			res.Retries[st] += n
		}
		res.Answers = append(res.Answers, a.Answers...)
		for _, x := range a.Answers {
			if (x.Status == http.StatusServiceUnavailable || x.Status == http.StatusTooManyRequests) && !x.RetryAfter {
				res.NoRetryAfter[x.Status]++
			}
		}
		switch {
		case err != nil:
			res.GaveUp++
		case a.Status != http.StatusCreated:
			res.Refused[a.Status]++
			res.RefusedSample[a.Status] = a.Body
		case try == 0:
			first = a.Order.ID
		default:
			res.Repeated++
			if a.Order.ID != first {
				res.KeyMismatches = append(res.KeyMismatches, fmt.Sprintf("%s: %s → %s", key, first, a.Order.ID))
			}
		}
		mu.Unlock()
		if err != nil || a.Status != http.StatusCreated {
			return
		}
		if try == 0 {
			o := Order{ID: first, Key: key, CustomerID: cust, Email: email, Declined: declined, AcceptedAt: time.Now()}
			mu.Lock()
			res.Accepted = append(res.Accepted, o)
			mu.Unlock()
			if onAccept != nil {
				onAccept(o)
			}
		}
	}
}

// Answer is the final answer to one checkout.
type Answer struct {
	// Status is the last status (201 for an accepted order).
	Status int
	// Order is the decoded body of a 201.
	Order ordersapi.Order
	// Body is the start of any other final answer.
	Body string
	// Retries counts the answers retried, by status (0: network error).
	Retries map[int]int
	// Answers are every attempt's answer, the final one included.
	Answers []Answered
}

// Place POSTs one checkout with key and the customer's bearer token and
// retries it with the same key on network errors, 503, 429 and 409 (after
// Retry-After, default 1s) until a final answer comes or ctx ends; then
// it returns ctx's error. Every other status is final, 401 and 403
// included.
func Place(ctx context.Context, c *http.Client, ordersURL, token string, in ordersapi.CreateOrder, key string) (Answer, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return Answer{}, fmt.Errorf("encode order: %w", err)
	}
	a := Answer{Retries: map[int]int{}}
	for {
		status, wait, err := postOnce(ctx, c, ordersURL, token, body, key, &a)
		if err == nil {
			switch status {
			case http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusConflict:
			default:
				return a, nil
			}
		}
		a.Retries[status]++
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return a, fmt.Errorf("order %s: no final answer: %w", key, ctx.Err())
		case <-t.C:
		}
	}
}

func postOnce(ctx context.Context, c *http.Client, ordersURL, token string, body []byte, key string, a *Answer) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ordersURL+"/v1/orders", bytes.NewReader(body))
	if err != nil {
		return 0, time.Second, fmt.Errorf("order request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Authorization", "Bearer "+token)
	sent := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		a.Answers = append(a.Answers, Answered{At: time.Now(), Took: time.Since(sent), Status: 0})
		return 0, time.Second, fmt.Errorf("post order: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		a.Answers = append(a.Answers, Answered{At: time.Now(), Took: time.Since(sent), Status: 0})
		return 0, time.Second, fmt.Errorf("read order answer: %w", err)
	}
	a.Answers = append(a.Answers, Answered{At: time.Now(), Took: time.Since(sent), Status: resp.StatusCode,
		RetryAfter: resp.Header.Get("Retry-After") != ""})
	a.Status = resp.StatusCode
	wait := time.Second
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		wait = time.Duration(s) * time.Second
	}
	if resp.StatusCode == http.StatusCreated {
		a.Order = ordersapi.Order{}
		if err := json.Unmarshal(b, &a.Order); err != nil || a.Order.ID == "" {
			return 0, time.Second, fmt.Errorf("201 without an order: %q", b)
		}
		return resp.StatusCode, 0, nil
	}
	if len(b) > 300 {
		b = b[:300]
	}
	a.Body = string(b)
	return resp.StatusCode, wait, nil
}
