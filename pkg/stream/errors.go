package stream

import (
	"errors"
	"fmt"
)

// ErrInvalid is wrapped by every error about bad configuration or input.
var ErrInvalid = errors.New("stream: invalid")

// ErrPartitionsChanged is returned when a stream or a group is asked to use a
// partition count other than the one the stream was created with: that would
// remap keys to other partitions and break per-key order.
var ErrPartitionsChanged = errors.New("stream: partition count of an existing stream cannot change")

// ErrNotFound is returned by the DLQ tools for a sequence that holds no dead
// letter (never existed, already redriven or discarded).
var ErrNotFound = errors.New("stream: not found")

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that a retry cannot fix (a payload that does not
// parse, an event that violates an invariant): a handler returning it sends
// the message straight to the dead-letter stream, without spending the retry
// budget. Permanent(nil) is nil. The mark survives wrapping with %w.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked by
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
