package shop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/ratelimit"
)

// Backends are the public APIs the web service calls, each with the
// signed-in person's own access token (the APIs decide what that person
// may see; the web service holds no data and no second copy of the rules).
type Backends struct {
	// Catalog is the CDN in front of catalog (Varnish), so that the shop
	// shows what a cached read looks like (X-Cache, Age).
	Catalog       string
	Orders        string
	Payments      string
	Notifications string
	Search        string
	// Mail is the SMTP sink's HTTP API (the sandbox's Mailpit); empty: the
	// timeline shows the e-mails without a link to read them.
	Mail string
	// TraceURL links a trace id to the trace viewer ("{trace_id}" is
	// replaced); empty: the page shows trace ids without a link.
	TraceURL string
	HC       *http.Client
}

// APIError is a backend's answer other than 2xx, from its problem+json.
type APIError struct {
	Service string
	Status  int
	Type    string
	Title   string
	Detail  string
	Fields  []httpkit.FieldError
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s answered %d %s: %s", e.Service, e.Status, e.Title, e.Detail)
}

// Unavailable is a backend that could not be reached or answered 5xx.
type Unavailable struct {
	Service string
	Err     error
}

func (e *Unavailable) Error() string { return e.Service + " is unavailable: " + e.Err.Error() }
func (e *Unavailable) Unwrap() error { return e.Err }

// call sends a JSON request to base+path and decodes a 2xx answer into
// out (when not nil). It returns the answer's headers.
func (b *Backends) call(ctx context.Context, service, method, base, path, token string, hdr http.Header, in, out any) (http.Header, error) {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(raw)
	}
	// base is configuration (one of Backends' URLs) and path is built
	// from validated ids, escaped: nothing from a request picks the host.
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, body) //nolint:gosec // G704: see above

	if err != nil {
		return nil, err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// The visitor's address, as the page's rate limit saw it: a service
	// that trusts web (RATE_LIMIT_TRUSTED_PROXIES) limits an anonymous
	// call by the visitor, not by web, which every visitor would share.
	if xff := ratelimit.ForwardedFor(ctx); xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := b.HC.Do(req) //nolint:gosec // G704: see above
	if err != nil {
		return nil, &Unavailable{Service: service, Err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, &Unavailable{Service: service, Err: err}
	}
	if resp.StatusCode >= 300 {
		var p httpkit.Problem
		_ = json.Unmarshal(raw, &p)
		e := &APIError{Service: service, Status: resp.StatusCode, Type: p.Type, Title: p.Title, Detail: p.Detail, Fields: p.Errors}
		if resp.StatusCode >= 500 {
			return resp.Header, &Unavailable{Service: service, Err: e}
		}
		return resp.Header, e
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.Header, &Unavailable{Service: service, Err: fmt.Errorf("undecodable answer: %w", err)}
		}
	}
	return resp.Header, nil
}

func (b *Backends) get(ctx context.Context, service, base, path string, q url.Values, token string, out any) (http.Header, error) {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return b.call(ctx, service, http.MethodGet, base, path, token, nil, nil, out)
}

// isStatus reports whether err is a backend's answer with that status.
func isStatus(err error, status int) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == status
}
