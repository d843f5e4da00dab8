// Package openapitest holds a service's HTTP API to its OpenAPI 3.1
// document (the <svc>api package's openapi.yaml) in the service's own
// tests, with getkin/kin-openapi as the validator:
//
//   - Load parses the document and fails the test unless it is a valid
//     OpenAPI document (kin-openapi's loader and Validate).
//   - Doc.CheckRoutes compares the routes a transport package mounts
//     (Patterns reads them from its http.ServeMux) with the document's
//     operations, both ways: no undocumented route, no documented route
//     that is not mounted.
//   - Doc.Handler is middleware for a test server: every request whose
//     route the document has, and its response, is validated against the
//     document, and a mismatch fails the test (t.Errorf). A request the
//     document refuses must be answered 4xx; every response, problem+json
//     included, must have a documented status, the documented headers
//     and a body that fits the documented schema.
//
// Requests for routes the document does not have (/healthz, an unknown
// path a test probes) pass unchecked: CheckRoutes is what finds a route
// missing from the document. Authentication is checked only as far as the
// document can say it: a bearer route's request needs "Authorization:
// Bearer …"; whether the token is good is the service's business (401).
package openapitest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/auth/authtest"
)

// Doc is a loaded, valid OpenAPI document and a router for its
// operations (a ServeMux, so that paths match as the service's own mux
// matches them: "/v1/products:batch" before "/v1/products/{id}").
type Doc struct {
	// T is the parsed document.
	T      *openapi3.T
	router *http.ServeMux
	ops    []string
}

// Load parses spec (YAML or JSON) and fails tb unless it is a valid
// OpenAPI document whose every path can be routed by an http.ServeMux.
func Load(tb testing.TB, spec []byte) *Doc {
	tb.Helper()
	loader := openapi3.NewLoader()
	t, err := loader.LoadFromData(spec)
	if err != nil {
		tb.Fatalf("openapitest: load the document: %v", err)
	}
	if err := t.Validate(loader.Context, openapi3.EnableMultiError()); err != nil {
		tb.Fatalf("openapitest: the document is not valid: %v", err)
	}
	d := &Doc{T: t, router: http.NewServeMux()}
	for path, item := range t.Paths.Map() {
		for method, op := range item.Operations() {
			pattern := method + " " + path
			route := &routers.Route{Spec: t, Path: path, PathItem: item, Method: method, Operation: op}
			if err := register(d.router, pattern, route); err != nil {
				tb.Fatalf("openapitest: path %s cannot be routed: %v", path, err)
			}
			d.ops = append(d.ops, pattern)
		}
	}
	slices.Sort(d.ops)
	return d
}

// register mounts a handler for pattern that reports route and its path
// parameters to the match in the request's context; ServeMux panics on a
// pattern it cannot parse or that conflicts with another.
func register(mux *http.ServeMux, pattern string, route *routers.Route) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	mux.HandleFunc(pattern, func(_ http.ResponseWriter, r *http.Request) {
		m, _ := r.Context().Value(matchKey{}).(*match)
		if m == nil {
			return
		}
		m.route, m.params = route, map[string]string{}
		for _, p := range route.Operation.Parameters {
			if p.Value != nil && p.Value.In == openapi3.ParameterInPath {
				m.params[p.Value.Name] = r.PathValue(p.Value.Name)
			}
		}
		for _, p := range route.PathItem.Parameters {
			if p.Value != nil && p.Value.In == openapi3.ParameterInPath {
				m.params[p.Value.Name] = r.PathValue(p.Value.Name)
			}
		}
	})
	return nil
}

type matchKey struct{}

type match struct {
	route  *routers.Route
	params map[string]string
}

// find returns the document's route for r and its path parameters, or
// nil.
func (d *Doc) find(r *http.Request) *match {
	m := &match{}
	probe := r.Clone(context.WithValue(r.Context(), matchKey{}, m))
	probe.Body = http.NoBody
	d.router.ServeHTTP(discard{}, probe)
	if m.route == nil {
		return nil
	}
	return m
}

// Operations are the document's operations as ServeMux patterns
// ("GET /v1/products/{id}"), sorted.
func (d *Doc) Operations() []string { return slices.Clone(d.ops) }

// CheckRoutes fails tb for every pattern in mounted that the document
// does not have and every operation of the document that mounted lacks.
// mounted holds method patterns ("GET /v1/products/{id}"), as Patterns
// returns them.
func (d *Doc) CheckRoutes(tb testing.TB, mounted []string) {
	tb.Helper()
	for _, p := range mounted {
		if !slices.Contains(d.ops, p) {
			tb.Errorf("route %q is mounted but not in the OpenAPI document", p)
		}
	}
	for _, op := range d.ops {
		if !slices.Contains(mounted, op) {
			tb.Errorf("operation %q is in the OpenAPI document but not mounted", op)
		}
	}
}

// Expand returns patterns with pattern (a prefix route such as
// "/v1/admin/" that hands requests to a second mux) replaced by that
// mux's patterns, sub. Without pattern, patterns is returned as is, so a
// route check then finds sub's routes unmounted.
func Expand(patterns []string, pattern string, sub []string) []string {
	i := slices.Index(patterns, pattern)
	if i < 0 {
		return patterns
	}
	out := slices.Concat(patterns[:i], patterns[i+1:], sub)
	slices.Sort(out)
	return out
}

// Patterns returns the patterns registered on mux, sorted. The standard
// library does not list them, so they are read from the mux's routing
// index by reflection (net/http's ServeMux.index, Go 1.22 on); a Go
// release that changes that layout makes Patterns panic, never return a
// short list silently. A pattern that forwards to another handler (such
// as "/v1/admin/" to a second mux) is listed as it is: the caller expands
// it.
func Patterns(mux *http.ServeMux) []string {
	idx := reflect.ValueOf(mux).Elem().FieldByName("index")
	segments, multis := idx.FieldByName("segments"), idx.FieldByName("multis")
	if !idx.IsValid() || segments.Kind() != reflect.Map || multis.Kind() != reflect.Slice {
		panic("openapitest: net/http.ServeMux has no routing index this package can read")
	}
	seen := map[string]bool{}
	add := func(pats reflect.Value) {
		for i := range pats.Len() {
			s := pats.Index(i).Elem().FieldByName("str")
			if s.Kind() != reflect.String {
				panic("openapitest: a net/http pattern has no str field")
			}
			seen[s.String()] = true
		}
	}
	for it := segments.MapRange(); it.Next(); {
		add(it.Value())
	}
	add(multis)
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Handler returns next wrapped in the document's checks (see the package
// doc); mismatches are reported with tb.Errorf, so a test that passes
// through it fails on them. It is safe for concurrent requests. Put it
// outermost, where the client is: it reads the whole request body and
// hands the bytes on. In a benchmark (a *testing.B) it returns next
// unchanged: benchmarks measure the service, not the validator.
func (d *Doc) Handler(tb testing.TB, next http.Handler) http.Handler {
	if _, bench := tb.(*testing.B); bench {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := d.find(r)
		if m == nil {
			next.ServeHTTP(w, r)
			return
		}
		var body []byte
		if r.Body != nil && r.Body != http.NoBody {
			var err error
			if body, err = io.ReadAll(r.Body); err != nil {
				tb.Errorf("openapitest: read the body of %s %s: %v", r.Method, r.URL.Path, err)
			}
			_ = r.Body.Close()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		in := &openapi3filter.RequestValidationInput{
			Request:    r.Clone(r.Context()),
			PathParams: m.params,
			Route:      m.route,
			Options: &openapi3filter.Options{MultiError: true, SkipSettingDefaults: true, IncludeResponseStatus: true,
				AuthenticationFunc: bearerPresent},
		}
		in.Request.Body = io.NopCloser(bytes.NewReader(body))
		reqErr := openapi3filter.ValidateRequest(r.Context(), in)

		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)

		what := fmt.Sprintf("%s %s", r.Method, r.URL.RequestURI())
		status := rec.status
		if reqErr != nil && (status < 400 || status > 499) {
			tb.Errorf("openapitest: %s: the document refuses the request, yet the answer is %d (want 4xx): %v", what, status, reqErr)
		}
		out := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in,
			Status:                 status,
			Header:                 rec.header(),
			Body:                   io.NopCloser(bytes.NewReader(rec.body())),
			Options:                in.Options,
		}
		if err := openapi3filter.ValidateResponse(r.Context(), out); err != nil {
			tb.Errorf("openapitest: %s: the %d answer does not fit the document: %v\nbody: %s", what, status, err, clip(rec.body()))
		}
	})
}

// bearerPresent accepts a request for a bearer (http) scheme when it
// carries "Authorization: Bearer <token>"; whether the token is good is
// for the service to say.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s == nil || s.Type != "http" || !strings.EqualFold(s.Scheme, "bearer") {
		return fmt.Errorf("openapitest: security scheme %q is not a bearer scheme this package knows", in.SecuritySchemeName)
	}
	scheme, tok, ok := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return fmt.Errorf("no bearer token")
	}
	return nil
}

// recorder passes the response through to the client and keeps a copy of
// its status, header and body.
type recorder struct {
	http.ResponseWriter
	mu     sync.Mutex
	status int
	wrote  bool
	hdr    http.Header
	buf    bytes.Buffer
}

func (r *recorder) WriteHeader(status int) {
	r.mu.Lock()
	if !r.wrote {
		r.status, r.wrote, r.hdr = status, true, r.ResponseWriter.Header().Clone()
	}
	r.mu.Unlock()
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	if !r.wrote {
		r.wrote, r.hdr = true, r.ResponseWriter.Header().Clone()
	}
	r.buf.Write(p)
	r.mu.Unlock()
	return r.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the real writer (Flush,
// deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) header() http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hdr == nil {
		return r.ResponseWriter.Header().Clone()
	}
	return r.hdr
}

func (r *recorder) body() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) WriteHeader(int)             {}

func clip(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

// Verifier is a token verifier for audience, trusting a test issuer: what
// a transport's Routes takes to mount its routes for CheckRoutes (no
// token is verified there).
func Verifier(tb testing.TB, audience string) *auth.Verifier {
	tb.Helper()
	v, err := auth.NewVerifier(authtest.NewIssuer(tb).Config(audience), audience, auth.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return v
}
