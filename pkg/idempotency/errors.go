package idempotency

import (
	"errors"
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

// Problem classes (the part of the problem type after httpkit.ProblemBase)
// a client switches on.
const (
	// ClassKeyMissing (400): a request that must carry an Idempotency-Key
	// came without one.
	ClassKeyMissing = "idempotency-key-missing"
	// ClassKeyInvalid (400): the key is empty, longer than MaxKeyLength,
	// not printable ASCII, a malformed quoted string, or sent twice.
	ClassKeyInvalid = "idempotency-key-invalid"
	// ClassKeyInUse (409, Retry-After: 1): the first request with this key
	// is still being processed.
	ClassKeyInUse = "idempotency-key-in-use"
	// ClassKeyReused (422): the key was used before for a different
	// request (method, path or body differ).
	ClassKeyReused = "idempotency-key-reused"
)

// Sentinel errors, matched with errors.Is. Every error Do and ReadRequest
// return for them also implements httpkit.ProblemProvider, so
// httpkit.ErrorEncoder answers it with the problem of the matching class.
var (
	ErrKeyMissing = errors.New("idempotency: key missing")
	ErrKeyInvalid = errors.New("idempotency: key invalid")
	ErrKeyInUse   = errors.New("idempotency: key in use by a request in flight")
	ErrKeyReused  = errors.New("idempotency: key reused for a different request")
)

// problemError is a sentinel together with the problem a client is shown.
type problemError struct {
	kind    error
	problem *httpkit.Problem
}

func (e *problemError) Error() string             { return e.kind.Error() + ": " + e.problem.Detail }
func (e *problemError) Unwrap() error             { return e.kind }
func (e *problemError) Problem() *httpkit.Problem { return e.problem }

var _ httpkit.ProblemProvider = (*problemError)(nil)

func errKeyMissing(detail string) error {
	if detail == "" {
		detail = "this request needs an Idempotency-Key header: send a new unique value (a UUID) for each operation, and the same value only when you retry that operation"
	}
	return &problemError{ErrKeyMissing, httpkit.NewProblem(http.StatusBadRequest, ClassKeyMissing, detail)}
}

func errKeyInvalid(detail string) error {
	return &problemError{ErrKeyInvalid, httpkit.NewProblem(http.StatusBadRequest, ClassKeyInvalid, detail)}
}

func errKeyInUse() error {
	p := httpkit.NewProblem(http.StatusConflict, ClassKeyInUse,
		"a request with this Idempotency-Key is still being processed; retry after it has finished to receive its response")
	p.RetryAfter = time.Second
	return &problemError{ErrKeyInUse, p}
}

func errKeyReused() error {
	return &problemError{ErrKeyReused, httpkit.NewProblem(http.StatusUnprocessableEntity, ClassKeyReused,
		"this Idempotency-Key was already used for a different request (method, path or body differ); use a new key for a new request")}
}
