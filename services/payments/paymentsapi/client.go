package paymentsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ErrNoPayment: payments has no payment attempt for the order.
var ErrNoPayment = errors.New("payments has no payment for the order")

// Client reads payments' API for another service (orders' repair of
// stuck orders). Its HTTP client must add a service token for audience
// "payments" (auth.ClientCredentials): service clients may read an
// order's payment, nothing else (ADR 0022).
type Client struct {
	base *url.URL
	hc   *http.Client
}

// NewClient returns a client of payments at baseURL.
func NewClient(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("paymentsapi: base URL %q: want http(s)://host[:port]", baseURL)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: u, hc: hc}, nil
}

// OrderPayment returns the payment of an order: GET /v1/payments?order_id=.
// ErrNoPayment when payments has none; any other answer but 200 is an
// error naming the status.
func (c *Client) OrderPayment(ctx context.Context, orderID string) (Payment, error) {
	u := c.base.JoinPath("v1", "payments")
	u.RawQuery = url.Values{"order_id": {orderID}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Payment{}, fmt.Errorf("paymentsapi: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	res, err := c.hc.Do(req)
	if err != nil {
		return Payment{}, fmt.Errorf("paymentsapi: payment of order %s: %w", orderID, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return Payment{}, fmt.Errorf("paymentsapi: payment of order %s: read: %w", orderID, err)
	}
	switch res.StatusCode {
	case http.StatusOK:
		var p Payment
		if err := json.Unmarshal(body, &p); err != nil {
			return Payment{}, fmt.Errorf("paymentsapi: payment of order %s: %w", orderID, err)
		}
		return p, nil
	case http.StatusNotFound:
		return Payment{}, fmt.Errorf("order %s: %w", orderID, ErrNoPayment)
	}
	return Payment{}, fmt.Errorf("paymentsapi: payment of order %s: payments answered %d: %s", orderID, res.StatusCode,
		strings.TrimSpace(string(body[:min(len(body), 300)])))
}
