package httpkit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"

	kithttp "github.com/go-kit/kit/transport/http"
)

// DefaultMaxBodyBytes (1 MiB) is the request body limit used when a limit
// of zero or less is given to DecodeJSON or LimitBody.
const DefaultMaxBodyBytes = 1 << 20

// jsonSpace is the whitespace JSON allows between values (RFC 8259).
const jsonSpace = " \t\r\n"

// DecodeJSON strictly decodes the JSON body of r into dst, which must be a
// non-nil pointer. At most maxBytes are read (DefaultMaxBodyBytes when
// maxBytes <= 0); a stricter limit set earlier with LimitBody still
// applies.
//
// Every client mistake is returned as a *Problem that ErrorEncoder writes
// unchanged:
//
//   - 415 "unsupported-media-type": Content-Type is missing or not
//     application/json (parameters are allowed; a charset other than
//     UTF-8 is not, JSON is UTF-8);
//   - 413 "body-too-large": the body is longer than the limit;
//   - 400 "empty-body": the body is empty or only whitespace;
//   - 400 "malformed-json": a syntax error (the detail gives the line and
//     column) or a body that ends inside a value;
//   - 400 "unknown-field": a field dst does not have (the detail and
//     Errors name it);
//   - 400 "invalid-field": a value of the wrong JSON type for its field
//     (Errors names the field);
//   - 400 "trailing-data": anything but whitespace after the first value;
//   - 400 "unreadable-body": the body could not be read (client gone).
//
// A dst that is not a non-nil pointer is a programming error, returned as
// a plain error (so ErrorEncoder answers 500).
//
// On error *dst is left as it was: decoding happens into a copy that is
// stored in *dst only on success. (Values that *dst reaches through maps,
// slices or pointers may be shared with that copy; request types are
// plain structs, where this never matters.) Fields absent from the body
// keep the values *dst had, so defaults can be set before the call.
func DecodeJSON(r *http.Request, dst any, maxBytes int64) error {
	target := reflect.ValueOf(dst)
	if target.Kind() != reflect.Pointer || target.IsNil() {
		return fmt.Errorf("httpkit.DecodeJSON: dst must be a non-nil pointer, got %T", dst)
	}
	if p := checkJSONContentType(r.Header.Get("Content-Type")); p != nil {
		return p
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBodyBytes
	}
	if r.Body == nil || r.Body == http.NoBody {
		return NewProblem(http.StatusBadRequest, "empty-body", "the request body is empty; send a JSON object")
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(mbe.Limit)
		}
		return NewProblem(http.StatusBadRequest, "unreadable-body", "the request body could not be read completely")
	}
	if len(bytes.TrimLeft(body, jsonSpace)) == 0 {
		return NewProblem(http.StatusBadRequest, "empty-body", "the request body is empty; send a JSON object")
	}

	tmp := reflect.New(target.Type().Elem())
	tmp.Elem().Set(target.Elem())
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(tmp.Interface()); err != nil {
		return decodeProblem(body, err)
	}
	// Exactly one value: the rest must be whitespace.
	rest := body[dec.InputOffset():]
	if trimmed := bytes.TrimLeft(rest, jsonSpace); len(trimmed) != 0 {
		line, col := position(body, int64(len(body)-len(trimmed)))
		return NewProblem(http.StatusBadRequest, "trailing-data",
			fmt.Sprintf("unexpected data after the JSON value at line %d, column %d; send exactly one JSON value", line, col))
	}
	target.Elem().Set(tmp.Elem())
	return nil
}

// checkJSONContentType returns a 415 problem unless ct is application/json
// with at most a UTF-8 charset.
func checkJSONContentType(ct string) *Problem {
	const want = "the Content-Type must be application/json"
	if ct == "" {
		return NewProblem(http.StatusUnsupportedMediaType, "unsupported-media-type", want+"; the request has none")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return NewProblem(http.StatusUnsupportedMediaType, "unsupported-media-type",
			fmt.Sprintf("%s, not %q", want, ct))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return NewProblem(http.StatusUnsupportedMediaType, "unsupported-media-type",
			fmt.Sprintf("JSON must be UTF-8, not charset %q", cs))
	}
	return nil
}

// decodeProblem maps an encoding/json error to a 400 problem. Errors that
// are not the client's fault are returned wrapped, for a 500.
func decodeProblem(body []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var inv *json.InvalidUnmarshalError
	switch {
	case errors.As(err, &syn):
		// Offset counts the bytes read, the offending one included.
		line, col := position(body, syn.Offset-1)
		return NewProblem(http.StatusBadRequest, "malformed-json",
			fmt.Sprintf("malformed JSON at line %d, column %d: %s", line, col, syn.Error()))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return NewProblem(http.StatusBadRequest, "malformed-json", "malformed JSON: the body ends in the middle of a value")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(body)"
		}
		p := NewProblem(http.StatusBadRequest, "invalid-field",
			fmt.Sprintf("field %q must be a JSON %s, not %s", field, jsonKind(typ.Type), typ.Value))
		p.Errors = []FieldError{{Field: field, Message: fmt.Sprintf("must be a JSON %s, not %s", jsonKind(typ.Type), typ.Value)}}
		return p
	case errors.As(err, &inv):
		return fmt.Errorf("httpkit.DecodeJSON: %w", err)
	}
	// encoding/json reports unknown fields only as text: `json: unknown field "x"`.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		p := NewProblem(http.StatusBadRequest, "unknown-field",
			fmt.Sprintf("unknown field %q; remove it or check its spelling", name))
		p.Errors = []FieldError{{Field: name, Message: "unknown field"}}
		return p
	}
	return NewProblem(http.StatusBadRequest, "malformed-json", "the body is not valid JSON for this request")
}

// jsonKind names the JSON type a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "value"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	default:
		return "value"
	}
}

// position returns the 1-based line and column of the byte at offset.
func position(body []byte, offset int64) (line, col int) {
	if offset > int64(len(body)) {
		offset = int64(len(body))
	}
	if offset < 0 {
		offset = 0
	}
	before := body[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = len(before) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// EncodeJSON is the go-kit EncodeResponseFunc for JSON responses. The
// status is 200, or response.StatusCode() when response implements
// kithttp.StatusCoder; headers from kithttp.Headerer are added. The body
// is marshalled before anything is written, so a value that cannot be
// marshalled yields an error (and, through ErrorEncoder, a clean 500)
// instead of a half-written 200. A nil response, or a status of 204 or
// 304, writes no body (nil means 204 unless it is a StatusCoder).
func EncodeJSON(_ context.Context, w http.ResponseWriter, response any) error {
	status := http.StatusOK
	if sc, ok := response.(kithttp.StatusCoder); ok {
		status = sc.StatusCode()
	} else if response == nil {
		status = http.StatusNoContent
	}
	var body []byte
	if status != http.StatusNoContent && status != http.StatusNotModified {
		b, err := json.Marshal(response)
		if err != nil {
			return fmt.Errorf("encode %T response: %w", response, err)
		}
		body = append(b, '\n')
	}
	if hd, ok := response.(kithttp.Headerer); ok {
		for k, vs := range hd.Headers() {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
	}
	if body != nil {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	w.WriteHeader(status)
	if body == nil {
		return nil
	}
	// A failed write means the client has gone after the status was sent:
	// there is nobody left to tell, and the access log has the status.
	_, _ = w.Write(body)
	return nil
}
