// Package shop is the web storefront: server-rendered pages over the
// public APIs of catalog (through the CDN), orders, payments,
// notifications and search, called with the signed-in person's own token.
// It works without JavaScript; with it, the order page's timeline updates
// live over server-sent events.
//
// Routes and who may call them (ADR 0022 lists every service's):
//
//	GET  /                      anyone: products (through the CDN) or search results (?q=)
//	GET  /products/{id}         anyone: a product, with the CDN's X-Cache and the version read
//	GET  /cart                  anyone: the cart (a sealed cookie)
//	POST /cart/add, /cart/remove anyone
//	GET  /checkout              a signed-in customer (others are sent to sign in)
//	POST /checkout              a signed-in customer; Idempotency-Key from the form
//	GET  /orders                signed in: the person's orders (orders decides which)
//	GET  /orders/{id}           signed in: the order page and its timeline
//	GET  /orders/{id}/events    signed in: the timeline as server-sent events
//	POST /orders/{id}/cancel    signed in: cancel (orders decides whether it may)
//	GET  /mail/{notification}   signed in: an e-mail of one of the person's orders
//	GET  /signin, /auth/callback, POST /signout  anyone
//	GET  /static/               anyone
//	GET  /console               an operator: the plumbing console (when configured)
//	GET  /console/events        an operator: its live part as server-sent events
//	POST /console/{kind}/{name} an operator: cut/restore a link, provider faults, mail relay mode, stop/start a process
//	GET  /console/dead-letters/{service}/{queue}/{id}  an operator: one dead letter (body redacted by its service)
//	POST /console/dead-letters/{service}/{queue}/redrive  an operator: redrive one (form id) or all
//	GET  /console/stream-dead-letters/{stream}/{seq}     an operator: one stream dead letter (personal fields redacted)
//	POST /console/stream-dead-letters/{stream}/redrive   an operator: redrive a group's (form group; seq for one)
//
// Every POST is refused when it comes from another origin
// (http.CrossOriginProtection); cookies are HttpOnly and SameSite=Lax.
package shop

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/services/web/internal/console"
	"github.com/shopfloor/shopfloor/services/web/internal/session"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Cookie names.
const (
	cookieSession = "sf_session"
	cookieSignIn  = "sf_signin"
	cookieCart    = "sf_cart"
)

// Config wires a Server.
type Config struct {
	Backends *Backends
	// Flow signs people in (authorization code + PKCE); Verifier checks
	// their access tokens (audience "web") for roles.
	Flow     *auth.CodeFlow
	Verifier *auth.Verifier
	Sealer   *session.Sealer
	// Currency is the shop's currency (catalog prices and orders).
	Currency string
	// SessionTTL bounds a session cookie (its tokens are refreshed inside
	// it). Default 12h.
	SessionTTL time.Duration
	// TimelinePoll is how often the order page's events re-read the
	// backends (default 1s); TimelineMax ends an event stream (default
	// 10m; the browser reconnects).
	TimelinePoll time.Duration
	TimelineMax  time.Duration
	// PublicURL is the site's origin as browsers reach it (the sign-in's
	// redirect URI is under it): a page asked for under another host name
	// (localhost for 127.0.0.1) is redirected there, or the cookies set
	// under one name would be missing under the other.
	PublicURL string
	// Console, when set, is the operators' plumbing console (GET
	// /console): the sandbox's processes, links, streams and queues.
	Console *console.Console
	Log     *slog.Logger
}

// Server serves the storefront.
type Server struct {
	cfg   Config
	pages map[string]*template.Template
}

// New parses the templates.
func New(cfg Config) (*Server, error) {
	if cfg.Backends == nil || cfg.Flow == nil || cfg.Verifier == nil || cfg.Sealer == nil || cfg.Log == nil {
		return nil, errors.New("shop: Backends, Flow, Verifier, Sealer and Log are required")
	}
	if cfg.Currency == "" {
		cfg.Currency = "EUR"
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.TimelinePoll <= 0 {
		cfg.TimelinePoll = time.Second
	}
	if cfg.TimelineMax <= 0 {
		cfg.TimelineMax = 10 * time.Minute
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, pages: pages}, nil
}

// Routes mounts the storefront on mux (a service's public mux: its
// /healthz and /readyz stay), each route with the storefront's protections:
// cross-origin POSTs refused, security headers on every answer. Any other
// GET is a readable "not found" page.
func (s *Server) Routes(mux *http.ServeMux) {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusForbidden, "This form was sent from another site", "The shop accepts forms from its own pages only. Go back to the shop and send it again.")
	}))
	handle := func(pattern string, h http.Handler) {
		mux.Handle(pattern, s.canonicalHost(securityHeaders(cop.Handler(h))))
	}
	static, _ := fs.Sub(staticFS, "static")
	handle("GET /static/", http.StripPrefix("/static/", cacheStatic(http.FileServerFS(static))))
	handle("GET /{$}", http.HandlerFunc(s.home))
	handle("GET /", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "Not found", "There is no such page. The shop starts at its front page.")
	}))
	handle("GET /products/{id}", http.HandlerFunc(s.product))
	handle("GET /cart", http.HandlerFunc(s.cart))
	handle("POST /cart/add", http.HandlerFunc(s.cartAdd))
	handle("POST /cart/remove", http.HandlerFunc(s.cartRemove))
	handle("GET /checkout", s.signedIn(s.checkoutForm))
	handle("POST /checkout", s.signedIn(s.checkout))
	handle("GET /orders", s.signedIn(s.orders))
	handle("GET /orders/{id}", s.signedIn(s.order))
	handle("GET /orders/{id}/events", s.signedIn(s.timelineEvents))
	handle("POST /orders/{id}/cancel", s.signedIn(s.cancel))
	handle("GET /mail/{id}", s.signedIn(s.mail))
	handle("GET /signin", http.HandlerFunc(s.signIn))
	handle("GET /auth/callback", http.HandlerFunc(s.callback))
	handle("POST /signout", http.HandlerFunc(s.signOut))
	handle("GET /console", s.operator(s.consolePage))
	handle("GET /console/events", s.operator(s.consoleEvents))
	handle("POST /console/{kind}/{name}", s.operator(s.consoleAction))
	handle("GET /console/dead-letters/{service}/{queue}/{id}", s.operator(s.deadLetter))
	handle("POST /console/dead-letters/{service}/{queue}/redrive", s.operator(s.redrive))
	handle("GET /console/stream-dead-letters/{stream}/{seq}", s.operator(s.streamDeadLetter))
	handle("POST /console/stream-dead-letters/{stream}/redrive", s.operator(s.redriveStream))
}

// canonicalHost sends a page request that arrived under another host
// name than PublicURL's (localhost for 127.0.0.1) to the same path there:
// cookies belong to one host name, and a cart filled under one would be
// gone after the sign-in returns under the other.
func (s *Server) canonicalHost(h http.Handler) http.Handler {
	pu, err := url.Parse(s.cfg.PublicURL)
	if err != nil || pu.Host == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && !strings.EqualFold(r.Host, pu.Host) {
			// The host is the configured one; the request's path and query
			// only follow it (a path of "//x" stays on that host).
			http.Redirect(w, r, strings.TrimSuffix(s.cfg.PublicURL, "/")+r.URL.RequestURI(), http.StatusPermanentRedirect) //nolint:gosec // G710: see above
			return
		}
		h.ServeHTTP(w, r)
	})
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

// --- sessions ----------------------------------------------------------------

// user is the signed-in person, in the session cookie.
type user struct {
	Sub     string    `json:"sub"`
	Name    string    `json:"name"`
	Email   string    `json:"email"`
	Roles   []string  `json:"roles"`
	Access  string    `json:"at"`
	Refresh string    `json:"rt,omitempty"`
	Expiry  time.Time `json:"exp"`
}

func (u *user) IsOperator() bool { return u != nil && slices.Contains(u.Roles, auth.RoleOperator) }
func (u *user) IsCustomer() bool { return u != nil && slices.Contains(u.Roles, auth.RoleCustomer) }

// currentUser returns the session's person, refreshing the access token
// when it is about to expire (and resealing the cookie); nil when nobody
// is signed in or the session cannot be refreshed.
func (s *Server) currentUser(w http.ResponseWriter, r *http.Request) *user {
	var u user
	if err := s.cfg.Sealer.Open(r, cookieSession, &u); err != nil {
		return nil
	}
	tok := &oauth2.Token{AccessToken: u.Access, RefreshToken: u.Refresh, Expiry: u.Expiry}
	nt, err := s.cfg.Flow.Refresh(r.Context(), tok)
	if err != nil {
		s.cfg.Log.InfoContext(r.Context(), "session ends", "sub", u.Sub, "reason", err.Error())
		s.cfg.Sealer.Clear(w, cookieSession)
		return nil
	}
	if nt.AccessToken != u.Access {
		u.Access, u.Expiry = nt.AccessToken, nt.Expiry
		if nt.RefreshToken != "" {
			u.Refresh = nt.RefreshToken
		}
		if err := s.cfg.Sealer.Set(w, cookieSession, u, s.cfg.SessionTTL); err != nil {
			s.cfg.Log.ErrorContext(r.Context(), "reseal session", "err", err)
		}
	}
	return &u
}

// signedIn runs h with the signed-in person, or sends a page request to
// sign in and back.
func (s *Server) signedIn(h func(http.ResponseWriter, *http.Request, *user)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u := s.currentUser(w, r)
		if u == nil {
			if r.Method != http.MethodGet || strings.HasSuffix(r.URL.Path, "/events") {
				s.fail(w, r, http.StatusUnauthorized, "Please sign in", "Your session has ended. Sign in again and repeat what you were doing.")
				return
			}
			http.Redirect(w, r, "/signin?"+url.Values{"return": {r.URL.RequestURI()}}.Encode(), http.StatusSeeOther)
			return
		}
		h(w, r, u)
	}
}

// signInState lives in a sealed cookie between /signin and the callback.
type signInState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Return   string `json:"r"`
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// localPath accepts a return path on this site only ("/orders/…", never
// "//evil" or "https://…"): an open redirect would hand a signed-in
// browser to anyone's page.
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") || strings.ContainsAny(p, "\r\n") {
		return "/"
	}
	return p
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	st := signInState{State: randomID(), Nonce: randomID(), Verifier: oauth2.GenerateVerifier(), Return: localPath(r.URL.Query().Get("return"))}
	to, err := s.cfg.Flow.AuthCodeURL(r.Context(), st.State, st.Nonce, st.Verifier)
	if err != nil {
		s.cfg.Log.WarnContext(r.Context(), "sign-in: provider unavailable", "err", err)
		s.fail(w, r, http.StatusServiceUnavailable, "Sign-in is unavailable", "The identity provider cannot be reached just now. Try again in a few seconds.")
		return
	}
	if err := s.cfg.Sealer.Set(w, cookieSignIn, st, 10*time.Minute); err != nil {
		s.serverError(w, r, err)
		return
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var st signInState
	if err := s.cfg.Sealer.Open(r, cookieSignIn, &st); err != nil || q.Get("state") == "" || q.Get("state") != st.State {
		s.fail(w, r, http.StatusBadRequest, "This sign-in has expired", "The sign-in was started too long ago, in another browser, or not by this shop. Sign in again.")
		return
	}
	s.cfg.Sealer.Clear(w, cookieSignIn)
	if e := q.Get("error"); e != "" {
		s.fail(w, r, http.StatusBadRequest, "Sign-in was not completed", "The identity provider answered: "+e+" "+q.Get("error_description"))
		return
	}
	tok, id, err := s.cfg.Flow.Exchange(r.Context(), q.Get("code"), st.Nonce, st.Verifier)
	if err != nil {
		s.cfg.Log.WarnContext(r.Context(), "sign-in: exchange failed", "err", err)
		if errors.Is(err, auth.ErrUnavailable) {
			s.fail(w, r, http.StatusServiceUnavailable, "Sign-in is unavailable", "The identity provider cannot be reached just now. Try again in a few seconds.")
			return
		}
		s.fail(w, r, http.StatusBadRequest, "Sign-in failed", "The identity provider did not confirm the sign-in. Sign in again.")
		return
	}
	p, err := s.cfg.Verifier.Verify(r.Context(), tok.AccessToken)
	if err != nil || p.Subject != id.Subject {
		s.cfg.Log.WarnContext(r.Context(), "sign-in: access token refused", "err", err)
		s.fail(w, r, http.StatusBadRequest, "Sign-in failed", "The identity provider's token was not accepted. Sign in again.")
		return
	}
	u := user{Sub: id.Subject, Name: id.Name, Email: id.Email, Roles: p.Roles, Access: tok.AccessToken, Refresh: tok.RefreshToken, Expiry: tok.Expiry}
	if err := s.cfg.Sealer.Set(w, cookieSession, u, s.cfg.SessionTTL); err != nil {
		s.serverError(w, r, err)
		return
	}
	s.cfg.Log.InfoContext(r.Context(), "signed in", "sub", u.Sub, "roles", u.Roles)
	http.Redirect(w, r, st.Return, http.StatusSeeOther)
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	s.cfg.Sealer.Clear(w, cookieSession)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// --- rendering -----------------------------------------------------------------

// page is what every template gets.
type page struct {
	Title string
	User  *user
	Cart  int
	Data  any
	// Flash is a one-line notice at the top of the page.
	Flash string
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	t, ok := s.pages[name]
	if !ok {
		s.serverError(w, r, fmt.Errorf("no template %q", name))
		return
	}
	if p.Cart == 0 {
		p.Cart = s.readCart(r).count()
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := t.ExecuteTemplate(w, "layout", p); err != nil {
		s.cfg.Log.ErrorContext(r.Context(), "render", "template", name, "err", err)
	}
}

// problemPage is the error page's data.
type problemPage struct {
	Status  int
	Heading string
	Detail  string
}

// fail renders a readable error page (never an internal error's text).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, heading, detail string) {
	var u *user
	var su user
	if s.cfg.Sealer.Open(r, cookieSession, &su) == nil {
		u = &su
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "2")
	}
	s.render(w, r, status, "error", page{Title: heading, User: u, Data: problemPage{Status: status, Heading: heading, Detail: detail}})
}

func (s *Server) serverError(w http.ResponseWriter, r *http.Request, err error) {
	s.cfg.Log.ErrorContext(r.Context(), "web: internal error", "path", r.URL.Path, "err", err)
	s.fail(w, r, http.StatusInternalServerError, "Something went wrong on our side", "The error was logged. Try again; if it keeps happening, the operator console shows which part is down.")
}

// backendFailed turns a backend error into a page: unavailable → 503,
// the backend's own 4xx → its words.
func (s *Server) backendFailed(w http.ResponseWriter, r *http.Request, err error) {
	var ua *Unavailable
	var ae *APIError
	switch {
	case errors.As(err, &ua):
		s.cfg.Log.WarnContext(r.Context(), "backend unavailable", "service", ua.Service, "err", ua.Err)
		s.fail(w, r, http.StatusServiceUnavailable, ua.Service+" is unavailable", "That part of the shop cannot answer just now. Nothing was lost; try again in a few seconds.")
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		s.fail(w, r, http.StatusNotFound, "Not found", "There is no such page, or it is not yours to see.")
	case errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden):
		s.fail(w, r, ae.Status, "Not allowed", firstNonEmpty(ae.Detail, "Your account may not do that."))
	case errors.As(err, &ae):
		s.fail(w, r, http.StatusBadRequest, firstNonEmpty(ae.Title, "That did not work"), firstNonEmpty(ae.Detail, "The request was refused."))
	case errors.Is(err, context.Canceled):
		return
	default:
		s.serverError(w, r, err)
	}
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
