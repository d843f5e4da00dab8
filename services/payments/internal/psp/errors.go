package psp

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Class tells the caller what an error of this package means for retries.
// Get it with Classify; switch on it, not on error text.
type Class int

const (
	// ClassNone is the class of a nil error.
	ClassNone Class = iota
	// ClassDeclined (*DeclinedError): the provider refused the payment
	// method. Final: record the payment as failed and do not retry. The
	// same key would replay the decline; a new key would be a new charge
	// attempt, which is the customer's decision, not the job queue's.
	ClassDeclined
	// ClassRateLimited (*RateLimitedError): the provider refused to
	// process the request now (429); nothing was processed. Retry with the
	// same key after RetryAfter plus jitter, or after the caller's own
	// backoff when RetryAfter is zero.
	ClassRateLimited
	// ClassTransient: the request was certainly not processed (the
	// connection could not be made: refused, DNS, dial timeout) or the
	// provider answered that it failed and may be retried (500, 503 and
	// other 5xx it produced itself, 409 "same key in flight"). Retry with
	// the same key after capped exponential backoff with jitter. Errors of
	// FindCharge are transient rather than ambiguous: a lookup changes
	// nothing, so it can always be repeated.
	ClassTransient
	// ClassAmbiguous: the request may have been processed and the answer
	// was lost: a timeout, a connection reset or EOF after a connection to
	// the provider was made, a 2xx response whose body could not be read
	// or decoded, 502/504 from a gateway that may have forwarded the
	// request, or a redirect (3xx, never followed). For a charge, call FindCharge with the same key before any
	// retry: if it finds the charge, that charge (succeeded or declined)
	// is the result; if it answers ErrNotFound, retry Charge with the SAME
	// key (the provider deduplicates a first request that is still in
	// flight); if it fails, try again later. For a refund, retry with the
	// same key: the provider replays it. Never switch to a new key: that
	// is how an order gets charged twice. Errors this package does not
	// know are classified here too, because assuming "maybe processed" is
	// the only safe default.
	ClassAmbiguous
	// ClassInvalid: the provider rejected the request as wrong (400
	// validation, 404 unknown charge, 422 key reused with a different
	// body, 422 refund exceeding the charge, any other 4xx) or the
	// arguments were rejected before sending (ErrInvalidArgument).
	// Retrying cannot help: it is a bug or bad data; dead-letter the job.
	ClassInvalid
)

// String returns the class as a lower-case word ("ambiguous"), suitable
// for logs, metrics labels and a dead-letter record's error class.
func (c Class) String() string {
	switch c {
	case ClassNone:
		return "none"
	case ClassDeclined:
		return "declined"
	case ClassRateLimited:
		return "rate_limited"
	case ClassTransient:
		return "transient"
	case ClassAmbiguous:
		return "ambiguous"
	case ClassInvalid:
		return "invalid"
	default:
		return fmt.Sprintf("class(%d)", int(c))
	}
}

// ErrNotFound is matched (errors.Is) by the error of FindCharge when the
// provider has no charge for the key, and by a 404 from any call (Refund
// of an unknown charge). After an ambiguous Charge, ErrNotFound does not
// prove that the first request will never be processed: retry with the
// same key, never a new one.
var ErrNotFound = errors.New("psp: not found")

// ErrInvalidArgument is matched (errors.Is) by the error of a call whose
// arguments were rejected before anything was sent (an empty or too long
// idempotency key, an empty charge id). Its class is ClassInvalid.
var ErrInvalidArgument = errors.New("psp: invalid argument")

// Classify returns the class of an error returned by this package (found
// anywhere in err's chain, so wrapping is fine): what the caller must do
// next is documented on each Class. A nil error is ClassNone; an error of
// unknown origin is ClassAmbiguous, the only safe assumption.
func Classify(err error) Class {
	if err == nil {
		return ClassNone
	}
	var (
		declined *DeclinedError
		limited  *RateLimitedError
		status   *StatusError
		trans    *TransportError
	)
	switch {
	case errors.As(err, &declined):
		return ClassDeclined
	case errors.As(err, &limited):
		return ClassRateLimited
	case errors.As(err, &status):
		return status.class()
	case errors.As(err, &trans):
		if trans.MaybeProcessed {
			return ClassAmbiguous
		}
		return ClassTransient
	case errors.Is(err, ErrInvalidArgument):
		return ClassInvalid
	default:
		return ClassAmbiguous
	}
}

// DeclinedError is returned by Charge when the provider declined the
// payment method (402). The declined charge exists at the provider and is
// final. Class: ClassDeclined.
type DeclinedError struct {
	// Code is the provider's decline code ("card_declined",
	// "insufficient_funds", "expired_card", ...); empty when the provider
	// sent none.
	Code string
	// Charge is the declined charge as the provider answered it.
	Charge Charge
}

// Error returns "psp: charge <id> declined: <code>".
func (e *DeclinedError) Error() string {
	code := e.Code
	if code == "" {
		code = "no decline code"
	}
	return fmt.Sprintf("psp: charge %s declined: %s", e.Charge.ID, code)
}

// RateLimitedError is returned when the provider answered 429: nothing was
// processed. Class: ClassRateLimited.
type RateLimitedError struct {
	// Op is the call that was refused ("charge", "find charge", "refund").
	Op string
	// RetryAfter is the provider's Retry-After (seconds or an HTTP date,
	// turned into a delay); zero when it sent none or an unreadable one.
	RetryAfter time.Duration
}

// Error returns "psp: <op>: rate limited, retry after <d>".
func (e *RateLimitedError) Error() string {
	if e.RetryAfter <= 0 {
		return fmt.Sprintf("psp: %s: rate limited (no Retry-After)", e.Op)
	}
	return fmt.Sprintf("psp: %s: rate limited, retry after %s", e.Op, e.RetryAfter)
}

// StatusError is an HTTP answer of the provider that is neither success,
// a decline nor a rate limit. Its class follows StatusCode: 409 and 5xx are
// ClassTransient, except 502 and 504 (a gateway that may have forwarded
// the request), which are ClassAmbiguous; a 3xx (never followed) is
// ClassAmbiguous too: the request reached something that may have
// processed it (a 303 after a POST is how some APIs say "created, see
// there"), so a charge answered by a redirect is looked up by key, never
// recorded as failed. For FindCharge, 3xx and every 5xx are
// ClassTransient (a lookup can always be repeated). Other statuses are
// ClassInvalid. A 404 matches ErrNotFound.
type StatusError struct {
	// Op is the call ("charge", "find charge", "refund").
	Op string
	// StatusCode is the HTTP status.
	StatusCode int
	// Type is the problem type URI of an application/problem+json answer
	// (RFC 9457), empty otherwise.
	Type string
	// Detail is the problem's detail, or the start of a non-problem body.
	Detail string
}

// Error returns "psp: <op>: <status> <text>: <detail>".
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("psp: %s: %d %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// redirect reports a 3xx: the answer of something between the client and
// the provider (a proxy, a moved endpoint), or a provider saying "see
// the charge there" after processing the request. Not followed (Config).
func (e *StatusError) redirect() bool { return e.StatusCode >= 300 && e.StatusCode < 400 }

// Is reports whether target is ErrNotFound and the status is 404.
func (e *StatusError) Is(target error) bool {
	return target == ErrNotFound && e.StatusCode == http.StatusNotFound
}

func (e *StatusError) class() Class {
	switch {
	case e.Op == opFindCharge && (e.StatusCode >= 500 || e.redirect()):
		// A lookup changes nothing: whatever may have forwarded it, it
		// can be repeated.
		return ClassTransient
	case e.StatusCode == http.StatusBadGateway || e.StatusCode == http.StatusGatewayTimeout || e.redirect():
		return ClassAmbiguous
	case e.StatusCode >= 500 || e.StatusCode == http.StatusConflict:
		return ClassTransient
	case e.StatusCode >= 200 && e.StatusCode < 300:
		// Never built by this package (a 2xx is a success or a
		// TransportError); a success with an error is not a safe thing to
		// retry blindly.
		return ClassAmbiguous
	default:
		return ClassInvalid
	}
}

// TransportError means no usable answer arrived: the connection failed or
// timed out, or a response body could not be read or decoded. Err is the
// cause (errors.Is(err, context.DeadlineExceeded) works through it).
//
// MaybeProcessed is true when the provider may have processed the request:
// a connection to it was made (the request may have been written), or a
// response status arrived. It is false when no connection was ever made
// (connection refused, DNS failure, dial timeout, the context ended before
// dialling) and for lookups, which change nothing. Class: ClassAmbiguous
// when MaybeProcessed, ClassTransient otherwise.
type TransportError struct {
	// Op is the call ("charge", "find charge", "refund").
	Op string
	// StatusCode is the HTTP status when a response arrived but its body
	// was unusable; 0 when no response arrived.
	StatusCode int
	// MaybeProcessed: see the type's documentation.
	MaybeProcessed bool
	// Err is the cause.
	Err error
}

// Error returns "psp: <op>: <cause>", noting whether the request may have
// been processed.
func (e *TransportError) Error() string {
	if e.MaybeProcessed {
		return fmt.Sprintf("psp: %s: no usable answer, the request may have been processed: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("psp: %s: %v", e.Op, e.Err)
}

// Unwrap returns Err.
func (e *TransportError) Unwrap() error { return e.Err }
