package idempotency

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	kithttp "github.com/go-kit/kit/transport/http"
	"github.com/jackc/pgx/v5"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

// ReadRequest builds the Request of r for the given scope, for Do: the
// Idempotency-Key header (quoted RFC 8941 string or bare value, sent once),
// the method, the request target (r.URL.RequestURI(): path and query) and
// the body, read up to Config.MaxBodyBytes. r.Body is replaced by a reader
// of the bytes read, so a decoder (httpkit.DecodeJSON) can read it again.
//
// Errors: a missing key matches ErrKeyMissing and a malformed one
// ErrKeyInvalid (400 problems, checked before the body is read); a body
// over the limit wraps *http.MaxBytesError, which httpkit.ErrorEncoder
// answers with 413; an unreadable body is a 400 "unreadable-body" problem.
func (s *Store) ReadRequest(r *http.Request, scope string) (Request, error) {
	key, err := parseKey(r.Header.Values(HeaderKey))
	if err != nil {
		s.countKeyError(err)
		return Request{}, err
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		body, err = io.ReadAll(http.MaxBytesReader(nil, r.Body, s.maxBody))
		_ = r.Body.Close()
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return Request{}, fmt.Errorf("idempotency: read body: %w", err)
			}
			return Request{}, httpkit.NewProblem(http.StatusBadRequest, "unreadable-body",
				"the request body could not be read completely")
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return Request{Scope: scope, Key: key, Method: r.Method, Path: r.URL.RequestURI(), Body: body}, nil
}

// WriteResponse writes resp to w: every field of resp.Header, resp.Status
// (0 means 200), then resp.Body. For a go-kit server whose endpoint returns
// the Response of Do, this is the whole response encoder:
//
//	func(_ context.Context, w http.ResponseWriter, resp any) error {
//		idempotency.WriteResponse(w, resp.(idempotency.Response))
//		return nil
//	}
func WriteResponse(w http.ResponseWriter, resp Response) {
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = append([]string(nil), v...)
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(resp.Body) // the client may be gone; nothing to do
}

// Encode runs a go-kit response encoder (httpkit.EncodeJSON, say) on v
// and returns what it wrote as a Response, so that the business code inside
// Do's Func can keep the encoder its route already has:
//
//	return idempotency.Encode(ctx, httpkit.EncodeJSON, createOrderResponse{…})
//
// The encoder's error is returned as is.
func Encode(ctx context.Context, enc kithttp.EncodeResponseFunc, v any) (Response, error) {
	rec := &recorder{header: http.Header{}}
	if err := enc(ctx, rec, v); err != nil {
		return Response{}, err
	}
	return rec.response(), nil
}

type txKey struct{}

// TxFromContext returns the transaction Handler opened for the request, in
// which the wrapped handler must make its writes. ok is false outside
// Handler.
func TxFromContext(ctx context.Context) (tx pgx.Tx, ok bool) {
	tx, ok = ctx.Value(txKey{}).(pgx.Tx)
	return tx, ok
}

// Handler makes next, a handler of a route that creates things (POST),
// idempotent with Do: it reads the request (ReadRequest, with the scope
// returned by scope(r)), and runs next inside the transaction Do opens;
// next gets that transaction from TxFromContext(r.Context()) and must make
// all its writes in it.
//
// next writes its response as usual; Handler buffers it (so next cannot
// stream or flush) and then:
//
//   - status below 400: the writes commit together with the stored
//     response, and the response is sent (all header fields next set);
//     later requests with the key receive the replay: same status, body
//     byte for byte, the stored fields (Content-Type, Location by default)
//     and Idempotent-Replayed: true;
//   - status 400 or above (a validation problem, a failure): the
//     transaction rolls back, nothing is stored, next's response is sent
//     as it is, and a retry with the same key runs next again.
//
// A panic in next rolls back and is re-raised for httpkit.Recover. Key
// problems, 409 in flight and 422 reuse are answered as problem+json;
// database errors as 500 "internal", logged with Config.Logger.
func (s *Store) Handler(db DB, scope func(*http.Request) string, next http.Handler) http.Handler {
	writeErr := httpkit.ErrorEncoder(s.log)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := s.ReadRequest(r, scope(r))
		if err != nil {
			writeErr(r.Context(), err, w)
			return
		}
		resp, _, err := s.Do(r.Context(), db, req, func(ctx context.Context, tx pgx.Tx) (Response, error) {
			rec := &recorder{header: http.Header{}}
			next.ServeHTTP(rec, r.WithContext(context.WithValue(ctx, txKey{}, tx)))
			out := rec.response()
			if out.Status >= http.StatusBadRequest {
				return Response{}, &unstored{out}
			}
			return out, nil
		})
		var u *unstored
		switch {
		case errors.As(err, &u):
			WriteResponse(w, u.resp)
		case err != nil:
			writeErr(r.Context(), err, w)
		default:
			WriteResponse(w, resp)
		}
	})
}

// unstored carries an error response of the wrapped handler out of the
// rolled-back transaction.
type unstored struct{ resp Response }

func (u *unstored) Error() string {
	return fmt.Sprintf("idempotency: handler answered %d; not stored", u.resp.Status)
}

// recorder buffers the wrapped handler's response.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (rw *recorder) Header() http.Header { return rw.header }

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 {
		rw.status = code
	}
}

func (rw *recorder) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	return rw.body.Write(b)
}

func (rw *recorder) response() Response {
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	h := rw.header.Clone()
	h.Del("Content-Length") // WriteResponse sets it from the body
	return Response{Status: status, Header: h, Body: rw.body.Bytes()}
}
