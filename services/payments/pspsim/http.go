package pspsim

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

// Routes, as counted in Stats.Requests and pspsim_requests_total.
const (
	// RouteCreateCharge is POST /charges.
	RouteCreateCharge = "create_charge"
	// RouteFindCharge is GET /charges?idempotency_key=.
	RouteFindCharge = "find_charge"
	// RouteGetCharge is GET /charges/{id}.
	RouteGetCharge = "get_charge"
	// RouteCreateRefund is POST /refunds.
	RouteCreateRefund = "create_refund"
	// RouteListRefunds is GET /refunds?charge_id=.
	RouteListRefunds = "list_refunds"
)

// Outcomes of a request, as counted in Stats.Requests and
// pspsim_requests_total. Every counted request has exactly one.
const (
	// OutcomeCreated: a charge (201, succeeded) or refund (201) was created.
	OutcomeCreated = "created"
	// OutcomeDeclined: a declined charge was created (402).
	OutcomeDeclined = "declined"
	// OutcomeReplayed: the first response for the key was sent again.
	OutcomeReplayed = "replayed"
	// OutcomeFound: a lookup answered 200.
	OutcomeFound = "found"
	// OutcomeNotFound: 404, no such charge.
	OutcomeNotFound = "not_found"
	// OutcomeInvalid: 4xx for a malformed request (missing key, bad body);
	// nothing was stored.
	OutcomeInvalid = "invalid"
	// OutcomeKeyReused: 422, the key was first used with another body.
	OutcomeKeyReused = "key_reused"
	// OutcomeRefused: 422, a refund the charge does not allow (declined
	// charge, more than remains).
	OutcomeRefused = "refused"
	// OutcomeFaultError: simulated 500 or 503, nothing processed.
	OutcomeFaultError = "fault_error"
	// OutcomeFaultRateLimited: simulated 429, nothing processed.
	OutcomeFaultRateLimited = "fault_rate_limited"
	// OutcomeFaultTimeout: processed (the charge or refund may exist), then
	// no answer (TimeoutAfterChargeRate).
	OutcomeFaultTimeout = "fault_timeout_after_processing"
	// OutcomeFaultDown: connection closed without an answer (Down), nothing
	// processed.
	OutcomeFaultDown = "fault_down"
	// OutcomeError: 500, the simulator failed (a clock outside the years
	// 0–9999); nothing was stored.
	OutcomeError = "error"
	// OutcomeClientGone: the client gave up during the simulated latency;
	// nothing processed.
	OutcomeClientGone = "client_gone"
)

// HeaderReplayed is set to "true" on a response replayed for a known
// idempotency key.
const HeaderReplayed = "Idempotent-Replayed"

// MaxIdempotencyKeyLen is the longest Idempotency-Key accepted.
const MaxIdempotencyKeyLen = 255

// maxBodyBytes caps request bodies; the largest valid one is far smaller.
const maxBodyBytes = 64 << 10

// Handler returns the simulator's HTTP API:
//
//	POST /charges                         create a charge (Idempotency-Key required)
//	GET  /charges?idempotency_key=K       the charge created with key K, or 404
//	GET  /charges/{id}                    a charge by id, or 404
//	POST /refunds                         refund a charge (Idempotency-Key required)
//	GET  /refunds?charge_id=ID            {"refunds":[...]} of a charge, oldest first
//	GET  /admin/faults                    the faults injected now
//	PUT  /admin/faults                    replace the faults (all fields; 400 when invalid)
//	GET  /admin/stats                     Stats
//	POST /admin/reset                     Reset; 204
//	GET  /healthz, GET /readyz            probes (never faulted)
//
// Errors are application/problem+json (RFC 9457). A panic in a handler
// answers 500. Each call returns a new handler over the same simulator.
func (s *Sim) Handler() http.Handler {
	mux := httpkit.NewMux(httpkit.NewHealth(), nil)
	mux.HandleFunc("POST /charges", s.createCharge)
	mux.HandleFunc("GET /charges", s.findCharge)
	mux.HandleFunc("GET /charges/{id}", s.getCharge)
	mux.HandleFunc("POST /refunds", s.createRefund)
	mux.HandleFunc("GET /refunds", s.listRefunds)
	mux.HandleFunc("GET /admin/faults", s.getFaults)
	mux.HandleFunc("PUT /admin/faults", s.putFaults)
	mux.HandleFunc("GET /admin/stats", s.getStats)
	mux.HandleFunc("POST /admin/reset", s.postReset)
	return httpkit.Chain(mux, httpkit.Recover(s.log))
}

// --- charges ---

// chargeRequest is the body of POST /charges.
type chargeRequest struct {
	AmountMinor   int64  `json:"amount_minor"`
	Currency      string `json:"currency"`
	PaymentMethod string `json:"payment_method"`
	Reference     string `json:"reference"`
}

func (req chargeRequest) validate() *httpkit.Problem {
	var fe []httpkit.FieldError
	if req.AmountMinor <= 0 {
		fe = append(fe, httpkit.FieldError{Field: "amount_minor", Message: "must be a positive whole number of minor units (cents)"})
	}
	if !isCurrency(req.Currency) {
		fe = append(fe, httpkit.FieldError{Field: "currency", Message: "must be an ISO 4217 code of three upper-case letters, such as EUR"})
	}
	if _, ok := tokens[req.PaymentMethod]; !ok {
		fe = append(fe, httpkit.FieldError{Field: "payment_method", Message: "unknown payment method; use a test token: " +
			strings.Join([]string{TokenVisa, TokenMastercard, TokenChargeDeclined, TokenInsufficientFunds, TokenExpiredCard}, ", ")})
	}
	if req.Reference == "" || len(req.Reference) > 255 {
		fe = append(fe, httpkit.FieldError{Field: "reference", Message: "is required (the order id), at most 255 bytes"})
	}
	return invalidFields(fe)
}

// fingerprint identifies the request's parameters: equal fingerprints
// are "the same request" for a replay. %q makes it unambiguous.
func (req chargeRequest) fingerprint() string {
	return fmt.Sprintf("%d %q %q %q", req.AmountMinor, req.Currency, req.PaymentMethod, req.Reference)
}

func isCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for _, c := range []byte(s) {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

func (s *Sim) createCharge(w http.ResponseWriter, r *http.Request) {
	serveCreate(s, w, r, RouteCreateCharge, s.chargeLocked)
}

// createRequest is the body of a POST that creates something under an
// Idempotency-Key (a charge, a refund).
type createRequest interface {
	validate() *httpkit.Problem
	fingerprint() string
}

// serveCreate answers a POST that creates under an Idempotency-Key: it
// checks the key and the body (a 4xx problem changes nothing), then runs
// create under the simulator's lock, which creates, replays or refuses.
func serveCreate[R createRequest](s *Sim, w http.ResponseWriter, r *http.Request, route string,
	create func(key string, req R, fingerprint string) result) {
	if !s.enter(w, r, route, true) {
		return
	}
	key, p := idempotencyKey(r)
	var req R
	if p == nil {
		p = decode(r, &req)
	}
	if p == nil {
		p = req.validate()
	}
	if p != nil {
		s.count(route, OutcomeInvalid)
		httpkit.WriteProblem(w, p)
		return
	}
	s.mu.Lock()
	res := create(key, req, req.fingerprint())
	s.finishLocked(route, &res)
	s.mu.Unlock()
	s.answer(w, r, res)
}

// chargeLocked creates the charge for key, or replays or refuses it.
func (s *Sim) chargeLocked(key string, req chargeRequest, fp string) result {
	if sc, ok := s.chargesByKey[key]; ok {
		if sc.fingerprint != fp {
			return refused(keyReused(key), OutcomeKeyReused)
		}
		return result{status: sc.status, body: sc.body, replayed: true, outcome: OutcomeReplayed}
	}
	c := Charge{
		ID:             newID("ch_"),
		Status:         StatusSucceeded,
		AmountMinor:    req.AmountMinor,
		Currency:       req.Currency,
		PaymentMethod:  req.PaymentMethod,
		Reference:      req.Reference,
		IdempotencyKey: key,
		CreatedAt:      s.now().UTC(),
	}
	status, outcome := http.StatusCreated, OutcomeCreated
	if code := tokens[req.PaymentMethod]; code != "" {
		c.Status, c.DeclineCode = StatusDeclined, code
		status, outcome = http.StatusPaymentRequired, OutcomeDeclined
	}
	body, err := json.Marshal(c)
	if err != nil {
		return refused(internalProblem(), OutcomeError) // only for a clock outside years 0–9999
	}
	sc := &storedCharge{charge: c, fingerprint: fp, status: status, body: body}
	s.charges[c.ID] = sc
	s.chargesByKey[key] = sc
	s.stats.created++
	s.stats.byKey[key]++
	if c.Status == StatusSucceeded {
		s.stats.succeeded++
		s.stats.succeededByRef[c.Reference]++
	} else {
		s.stats.declined++
	}
	s.m.charge(c.Status)
	return result{status: status, body: body, outcome: outcome}
}

func (s *Sim) findCharge(w http.ResponseWriter, r *http.Request) {
	const route = RouteFindCharge
	if !s.enter(w, r, route, false) {
		return
	}
	key := r.URL.Query().Get("idempotency_key")
	if key == "" {
		s.count(route, OutcomeInvalid)
		httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusBadRequest, "missing-parameter",
			"the query parameter idempotency_key is required: GET /charges?idempotency_key=<key>"))
		return
	}
	s.mu.Lock()
	sc, ok := s.chargesByKey[key]
	s.lookedUpLocked(route, ok)
	s.mu.Unlock()
	if !ok {
		httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusNotFound, "charge-not-found",
			fmt.Sprintf("no charge was created with the idempotency key %q", key)))
		return
	}
	writeJSON(w, http.StatusOK, sc.body)
}

func (s *Sim) getCharge(w http.ResponseWriter, r *http.Request) {
	const route = RouteGetCharge
	if !s.enter(w, r, route, false) {
		return
	}
	id := r.PathValue("id")
	s.mu.Lock()
	sc, ok := s.charges[id]
	s.lookedUpLocked(route, ok)
	s.mu.Unlock()
	if !ok {
		httpkit.WriteProblem(w, chargeNotFound(id))
		return
	}
	writeJSON(w, http.StatusOK, sc.body)
}

// --- refunds ---

// refundRequest is the body of POST /refunds.
type refundRequest struct {
	ChargeID string `json:"charge_id"`
	// AmountMinor nil: the amount that remains refundable.
	AmountMinor *int64 `json:"amount_minor,omitempty"`
}

func (req refundRequest) validate() *httpkit.Problem {
	var fe []httpkit.FieldError
	if req.ChargeID == "" {
		fe = append(fe, httpkit.FieldError{Field: "charge_id", Message: "is required"})
	}
	if req.AmountMinor != nil && *req.AmountMinor <= 0 {
		fe = append(fe, httpkit.FieldError{Field: "amount_minor", Message: "must be positive; leave it out to refund what remains"})
	}
	return invalidFields(fe)
}

// fingerprint identifies the request's parameters; an absent amount
// differs from any explicit one.
func (req refundRequest) fingerprint() string {
	if req.AmountMinor == nil {
		return fmt.Sprintf("%q remaining", req.ChargeID)
	}
	return fmt.Sprintf("%q %d", req.ChargeID, *req.AmountMinor)
}

func (s *Sim) createRefund(w http.ResponseWriter, r *http.Request) {
	serveCreate(s, w, r, RouteCreateRefund, s.refundLocked)
}

// refundLocked creates the refund for key, or replays or refuses it.
func (s *Sim) refundLocked(key string, req refundRequest, fp string) result {
	if sr, ok := s.refundsByKey[key]; ok {
		if sr.fingerprint != fp {
			return refused(keyReused(key), OutcomeKeyReused)
		}
		return result{status: sr.status, body: sr.body, replayed: true, outcome: OutcomeReplayed}
	}
	sc, ok := s.charges[req.ChargeID]
	if !ok {
		return refused(chargeNotFound(req.ChargeID), OutcomeNotFound)
	}
	if sc.charge.Status != StatusSucceeded {
		return refused(httpkit.NewProblem(http.StatusUnprocessableEntity, "charge-not-refundable",
			fmt.Sprintf("charge %s was %s; only a succeeded charge can be refunded", sc.charge.ID, sc.charge.Status)), OutcomeRefused)
	}
	refunded := s.stats.refundedByCharge[sc.charge.ID]
	remaining := sc.charge.AmountMinor - refunded
	amount := remaining
	if req.AmountMinor != nil {
		amount = *req.AmountMinor
	}
	if remaining == 0 || amount > remaining {
		return refused(httpkit.NewProblem(http.StatusUnprocessableEntity, "refund-exceeds-charge",
			fmt.Sprintf("refund exceeds charge: %d requested, %d of %d %s remain refundable",
				amount, remaining, sc.charge.AmountMinor, sc.charge.Currency)), OutcomeRefused)
	}
	rf := Refund{
		ID:             newID("re_"),
		ChargeID:       sc.charge.ID,
		AmountMinor:    amount,
		Status:         RefundSucceeded,
		IdempotencyKey: key,
		CreatedAt:      s.now().UTC(),
	}
	body, err := json.Marshal(rf)
	if err != nil {
		return refused(internalProblem(), OutcomeError) // only for a clock outside years 0–9999
	}
	sr := &storedRefund{refund: rf, fingerprint: fp, status: http.StatusCreated, body: body}
	s.refundsByKey[key] = sr
	s.refundsByCharge[rf.ChargeID] = append(s.refundsByCharge[rf.ChargeID], sr)
	s.stats.refunds++
	s.stats.refundedByCharge[rf.ChargeID] = refunded + amount
	return result{status: http.StatusCreated, body: body, outcome: OutcomeCreated}
}

// refundList is the body of GET /refunds.
type refundList struct {
	Refunds []Refund `json:"refunds"`
}

func (s *Sim) listRefunds(w http.ResponseWriter, r *http.Request) {
	const route = RouteListRefunds
	if !s.enter(w, r, route, false) {
		return
	}
	id := r.URL.Query().Get("charge_id")
	if id == "" {
		s.count(route, OutcomeInvalid)
		httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusBadRequest, "missing-parameter",
			"the query parameter charge_id is required: GET /refunds?charge_id=<id>"))
		return
	}
	s.mu.Lock()
	_, ok := s.charges[id]
	list := refundList{Refunds: []Refund{}}
	for _, sr := range s.refundsByCharge[id] {
		list.Refunds = append(list.Refunds, sr.refund)
	}
	s.lookedUpLocked(route, ok)
	s.mu.Unlock()
	if !ok {
		httpkit.WriteProblem(w, chargeNotFound(id))
		return
	}
	writeValue(w, http.StatusOK, list)
}

// --- admin ---

func (s *Sim) getFaults(w http.ResponseWriter, _ *http.Request) {
	writeValue(w, http.StatusOK, s.Faults())
}

func (s *Sim) putFaults(w http.ResponseWriter, r *http.Request) {
	var wire faultsJSON
	if p := decode(r, &wire); p != nil {
		httpkit.WriteProblem(w, p)
		return
	}
	f, issues := wire.faults()
	issues = sortIssues(append(issues, f.issues()...))
	if len(issues) > 0 {
		fe := make([]httpkit.FieldError, len(issues))
		names := make([]string, len(issues))
		for i, is := range issues {
			fe[i] = httpkit.FieldError{Field: is.json, Message: is.message}
			names[i] = is.json
		}
		p := httpkit.NewProblem(http.StatusBadRequest, "invalid-faults",
			"invalid faults ("+strings.Join(names, ", ")+"); nothing was changed")
		p.Errors = fe
		httpkit.WriteProblem(w, p)
		return
	}
	if err := s.SetFaults(f); err != nil { // validated above; kept for safety
		httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusBadRequest, "invalid-faults", err.Error()))
		return
	}
	writeValue(w, http.StatusOK, f)
}

func (s *Sim) getStats(w http.ResponseWriter, _ *http.Request) {
	writeValue(w, http.StatusOK, s.Stats())
}

func (s *Sim) postReset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}

// --- faults ---

// enter applies the faults that come before processing (Down, Latency,
// ErrorRate and, for writes, RateLimitRate). It reports whether the
// request may go on; when it may not, the request has been answered (or
// dropped) and counted.
func (s *Sim) enter(w http.ResponseWriter, r *http.Request, route string, write bool) bool {
	f := s.Faults()
	if f.Down {
		s.count(route, OutcomeFaultDown)
		s.log.DebugContext(r.Context(), "pspsim: simulated outage", "route", route)
		if !dropConnection(w) {
			httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusServiceUnavailable, "simulated-outage",
				"the payment provider is down (simulated); nothing was processed"))
		}
		return false
	}
	if f.Latency > 0 {
		bufferBody(r)
		t := time.NewTimer(f.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			s.count(route, OutcomeClientGone)
			return false
		}
	}
	s.mu.Lock()
	f = s.faults // they may have changed during the delay
	var p *httpkit.Problem
	switch {
	case s.hitLocked(f.ErrorRate):
		status := http.StatusInternalServerError
		if s.rng.IntN(2) == 1 {
			status = http.StatusServiceUnavailable
		}
		p = httpkit.NewProblem(status, "simulated-error",
			"simulated provider error; nothing was processed, the request may be retried with the same idempotency key")
		s.countLocked(route, OutcomeFaultError)
	case write && s.hitLocked(f.RateLimitRate):
		p = httpkit.NewProblem(http.StatusTooManyRequests, "rate-limited",
			"too many requests (simulated); nothing was processed, retry after the Retry-After delay")
		p.RetryAfter = f.retryAfter()
		s.countLocked(route, OutcomeFaultRateLimited)
	}
	s.mu.Unlock()
	if p != nil {
		s.log.DebugContext(r.Context(), "pspsim: simulated fault", "route", route, "status", p.Status)
		httpkit.WriteProblem(w, p)
		return false
	}
	return true
}

// result is the answer to a processed write.
type result struct {
	status   int
	body     []byte
	replayed bool
	problem  *httpkit.Problem // answered instead of status and body
	outcome  string
	hang     time.Duration // > 0: withhold the answer this long (TimeoutAfterChargeRate)
}

func refused(p *httpkit.Problem, outcome string) result {
	return result{problem: p, outcome: outcome}
}

// finishLocked draws TimeoutAfterChargeRate for a processed write and
// counts its outcome.
func (s *Sim) finishLocked(route string, res *result) {
	if s.hitLocked(s.faults.TimeoutAfterChargeRate) {
		res.hang = s.faults.hang()
		s.countLocked(route, OutcomeFaultTimeout)
		return
	}
	s.countLocked(route, res.outcome)
}

// answer writes res, or withholds it and drops the connection.
func (s *Sim) answer(w http.ResponseWriter, r *http.Request, res result) {
	if res.hang > 0 {
		s.log.DebugContext(r.Context(), "pspsim: processed, withholding the answer", "hang", res.hang)
		t := time.NewTimer(res.hang)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		if !dropConnection(w) {
			panic(http.ErrAbortHandler) // net/http resets the stream without logging
		}
		return
	}
	if res.problem != nil {
		httpkit.WriteProblem(w, res.problem)
		return
	}
	if res.replayed {
		w.Header().Set(HeaderReplayed, "true")
	}
	writeJSON(w, res.status, res.body)
}

// bufferBody reads the request body (up to just past the limit) before a
// simulated delay and puts it back for decoding. net/http notices that a
// client went away, and ends the request's context, only once the body
// has been read; without this a client that gives up during the delay
// would hold the handler for the whole delay.
func bufferBody(r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	rest := r.Body
	if err != nil {
		rest = io.NopCloser(errReader{err})
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), rest), r.Body}
}

// errReader fails every read with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// dropConnection closes the client's connection without a response. It
// reports false when the connection cannot be hijacked (HTTP/2).
func dropConnection(w http.ResponseWriter) bool {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	_ = conn.Close() // the point is to leave the client without an answer
	return true
}

// lookedUpLocked counts a lookup.
func (s *Sim) lookedUpLocked(route string, found bool) {
	if found {
		s.countLocked(route, OutcomeFound)
	} else {
		s.countLocked(route, OutcomeNotFound)
	}
}

// --- helpers ---

// idempotencyKey returns the request's Idempotency-Key, or a 400 problem.
func idempotencyKey(r *http.Request) (string, *httpkit.Problem) {
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return "", httpkit.NewProblem(http.StatusBadRequest, "missing-idempotency-key",
			"the Idempotency-Key header is required; send a unique key per payment attempt and reuse it on every retry")
	}
	if len(key) > MaxIdempotencyKeyLen {
		return "", httpkit.NewProblem(http.StatusBadRequest, "invalid-idempotency-key",
			fmt.Sprintf("the Idempotency-Key must be at most %d characters", MaxIdempotencyKeyLen))
	}
	for _, c := range []byte(key) {
		if c < 0x21 || c > 0x7e {
			return "", httpkit.NewProblem(http.StatusBadRequest, "invalid-idempotency-key",
				"the Idempotency-Key must be printable ASCII without spaces")
		}
	}
	return key, nil
}

// decode decodes the JSON body strictly (httpkit.DecodeJSON).
func decode(r *http.Request, dst any) *httpkit.Problem {
	err := httpkit.DecodeJSON(r, dst, maxBodyBytes)
	if err == nil {
		return nil
	}
	var p *httpkit.Problem
	if errors.As(err, &p) {
		return p
	}
	return internalProblem()
}

func internalProblem() *httpkit.Problem {
	return httpkit.NewProblem(http.StatusInternalServerError, "internal", "internal error")
}

func invalidFields(fe []httpkit.FieldError) *httpkit.Problem {
	if len(fe) == 0 {
		return nil
	}
	msgs := make([]string, len(fe))
	for i, e := range fe {
		msgs[i] = e.Field + " " + e.Message
	}
	p := httpkit.NewProblem(http.StatusBadRequest, "invalid-field", "invalid request: "+strings.Join(msgs, "; "))
	p.Errors = fe
	return p
}

func keyReused(key string) *httpkit.Problem {
	return httpkit.NewProblem(http.StatusUnprocessableEntity, "idempotency-key-reused",
		fmt.Sprintf("the Idempotency-Key %q was first used with a different request; use a new key for a new request", key))
}

func chargeNotFound(id string) *httpkit.Problem {
	return httpkit.NewProblem(http.StatusNotFound, "charge-not-found", fmt.Sprintf("no charge with id %q", id))
}

func newID(prefix string) string {
	u := uuid.New()
	return prefix + hex.EncodeToString(u[:])
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body) // the client may be gone; nothing to do
	_, _ = w.Write([]byte("\n"))
}

func writeValue(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		httpkit.WriteProblem(w, nil)
		return
	}
	writeJSON(w, status, body)
}
