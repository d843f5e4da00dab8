package httpkit_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

type item struct {
	Name string `json:"name"`
	Qty  int    `json:"qty"`
}

func TestDecodeJSONAnswersEachBadBodyWithAProblem(t *testing.T) {
	t.Parallel()
	untouched := item{Name: "untouched", Qty: -1}
	tests := []struct {
		name        string
		contentType string
		body        string
		maxBytes    int64
		want        item   // on success
		wantStatus  int    // 0: success
		wantClass   string // problem class
		wantDetail  string // substring of the detail
		wantField   string // Errors[0].Field, when set
	}{
		{name: "ok", contentType: "application/json", body: `{"name":"bolt","qty":3}`, want: item{Name: "bolt", Qty: 3}},
		{name: "charset param ok", contentType: "application/json; charset=utf-8", body: `{"name":"bolt","qty":3}`, want: item{Name: "bolt", Qty: 3}},
		{name: "absent field keeps value", contentType: "application/json", body: "{\"name\":\"nut\"}\n\t ", want: item{Name: "nut", Qty: -1}},
		{name: "default limit", contentType: "application/json", body: `{"name":"x"}`, maxBytes: 0, want: item{Name: "x", Qty: -1}},
		{name: "no content type", body: `{}`, wantStatus: 415, wantClass: "unsupported-media-type", wantDetail: "application/json"},
		{name: "text/plain", contentType: "text/plain", body: `{}`, wantStatus: 415, wantClass: "unsupported-media-type", wantDetail: "text/plain"},
		{name: "not utf-8", contentType: "application/json; charset=latin1", body: `{}`, wantStatus: 415, wantClass: "unsupported-media-type", wantDetail: "latin1"},
		{name: "too large", contentType: "application/json", body: `{"name":"0123456789"}`, maxBytes: 10, wantStatus: 413, wantClass: "body-too-large", wantDetail: "10 bytes"},
		{name: "empty", contentType: "application/json", body: ``, wantStatus: 400, wantClass: "empty-body"},
		{name: "whitespace only", contentType: "application/json", body: " \n\t", wantStatus: 400, wantClass: "empty-body"},
		{name: "syntax error", contentType: "application/json", body: `{"name": }`, wantStatus: 400, wantClass: "malformed-json", wantDetail: "line 1, column 10"},
		{name: "syntax error line 2", contentType: "application/json", body: "{\"name\": \"a\",\n  \"qty\": x}", wantStatus: 400, wantClass: "malformed-json", wantDetail: "line 2, column 10"},
		{name: "truncated", contentType: "application/json", body: `{"name":"a"`, wantStatus: 400, wantClass: "malformed-json", wantDetail: "ends in the middle"},
		{name: "unknown field", contentType: "application/json", body: `{"name":"new","colour":"red"}`, wantStatus: 400, wantClass: "unknown-field", wantDetail: `"colour"`, wantField: "colour"},
		{name: "wrong type", contentType: "application/json", body: `{"name":"new","qty":"three"}`, wantStatus: 400, wantClass: "invalid-field", wantDetail: "number", wantField: "qty"},
		{name: "two values", contentType: "application/json", body: `{"name":"a"} {"name":"b"}`, wantStatus: 400, wantClass: "trailing-data", wantDetail: "exactly one"},
		{name: "trailing garbage", contentType: "application/json", body: `{"name":"a"}]`, wantStatus: 400, wantClass: "trailing-data", wantDetail: "column 13"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/items", strings.NewReader(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			dst := untouched
			err := httpkit.DecodeJSON(r, &dst, tt.maxBytes)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("DecodeJSON: %v", err)
				}
				if dst != tt.want {
					t.Fatalf("dst = %+v, want %+v", dst, tt.want)
				}
				return
			}
			var p *httpkit.Problem
			if !errors.As(err, &p) {
				t.Fatalf("error %v (%T) is not a *Problem", err, err)
			}
			if p.Status != tt.wantStatus || p.Type != httpkit.ProblemBase+tt.wantClass {
				t.Fatalf("problem %d %s, want %d %s (%s)", p.Status, p.Type, tt.wantStatus, tt.wantClass, p.Detail)
			}
			if p.Title != http.StatusText(tt.wantStatus) {
				t.Errorf("title %q", p.Title)
			}
			if !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("detail %q does not contain %q", p.Detail, tt.wantDetail)
			}
			if tt.wantField != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tt.wantField) {
				t.Errorf("errors = %+v, want field %q", p.Errors, tt.wantField)
			}
			if dst != untouched {
				t.Errorf("dst changed on error: %+v", dst)
			}
		})
	}
}

func TestDecodeJSONProgrammingErrors(t *testing.T) {
	t.Parallel()
	var nilPtr *item
	tests := []struct {
		name string
		dst  any
	}{
		{"not a pointer", item{}},
		{"nil pointer", nilPtr},
		{"nil", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", strings.NewReader(`{}`))
			r.Header.Set("Content-Type", "application/json")
			err := httpkit.DecodeJSON(r, tt.dst, 0)
			var p *httpkit.Problem
			if err == nil || errors.As(err, &p) {
				t.Fatalf("err = %v, want a plain (500) error", err)
			}
		})
	}
}

// A 2 MiB body through LimitBody (1 MiB) and a DecodeJSON allowing more
// is refused with 413 by a real server.
func TestLimitBodyDecodeJSONTooLarge(t *testing.T) {
	t.Parallel()
	h := httpkit.Chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var dst item
		if err := httpkit.DecodeJSON(r, &dst, 4<<20); err != nil {
			httpkit.ErrorEncoder(nil)(r.Context(), err, w)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}), httpkit.LimitBody(httpkit.DefaultMaxBodyBytes))
	ts := newServer(t, h)

	body := `{"name":"` + strings.Repeat("a", 2<<20) + `"}`
	resp := do(t, ts, http.MethodPost, "/", "application/json", strings.NewReader(body))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413; body %s", resp.StatusCode, resp.Body)
	}
	p := parseProblem(t, resp.Header, resp.Body)
	if p.Class() != "body-too-large" || !strings.Contains(p.Detail, "1048576") {
		t.Fatalf("problem %+v", p)
	}

	// A body under the limit still passes.
	resp = do(t, ts, http.MethodPost, "/", "application/json", strings.NewReader(`{"name":"a"}`))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("small body: status %d; body %s", resp.StatusCode, resp.Body)
	}
}

type createdItem struct{ item }

func (createdItem) StatusCode() int { return http.StatusCreated }
func (c createdItem) Headers() http.Header {
	return http.Header{"Location": {"/v1/items/" + c.Name}}
}

func TestEncodeJSONHonoursStatusCodersHeaderersAndNil(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		response   any
		wantErr    bool
		wantStatus int
		wantBody   string
		wantHeader http.Header
	}{
		{name: "plain value", response: item{Name: "a", Qty: 1}, wantStatus: 200, wantBody: `{"name":"a","qty":1}` + "\n",
			wantHeader: http.Header{"Content-Type": {"application/json; charset=utf-8"}}},
		{name: "status coder and headerer", response: createdItem{item{Name: "b"}}, wantStatus: 201, wantBody: `{"name":"b","qty":0}` + "\n",
			wantHeader: http.Header{"Location": {"/v1/items/b"}}},
		{name: "nil", response: nil, wantStatus: 204, wantBody: ""},
		{name: "cannot marshal", response: map[string]any{"c": make(chan int)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			err := httpkit.EncodeJSON(context.Background(), rec, tt.response)
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				if rec.Code != http.StatusOK || rec.Body.Len() != 0 || len(rec.Header()) != 0 {
					t.Fatalf("something was written: %d %v %q", rec.Code, rec.Header(), rec.Body)
				}
				return
			}
			if err != nil {
				t.Fatalf("EncodeJSON: %v", err)
			}
			if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody {
				t.Fatalf("got %d %q, want %d %q", rec.Code, rec.Body, tt.wantStatus, tt.wantBody)
			}
			for k := range tt.wantHeader {
				if got := rec.Header().Get(k); got != tt.wantHeader.Get(k) {
					t.Errorf("header %s = %q, want %q", k, got, tt.wantHeader.Get(k))
				}
			}
		})
	}
}

func TestEncodeJSONThroughKitServer(t *testing.T) {
	t.Parallel()
	logger, logs := newLogger()
	mux := httpkit.NewMux(httpkit.NewHealth(), nil)
	mux.Handle("POST /v1/items", httpkit.NewKitServer(
		func(_ context.Context, req any) (any, error) {
			it := req.(item)
			if it.Name == "explode" {
				return nil, errors.New("pq: password authentication failed for user shop")
			}
			return createdItem{it}, nil
		},
		func(_ context.Context, r *http.Request) (any, error) {
			var it item
			if err := httpkit.DecodeJSON(r, &it, 1<<10); err != nil {
				return nil, err
			}
			return it, nil
		},
		httpkit.EncodeJSON, logger))
	ts := newServer(t, mux)

	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantClass  string
	}{
		{"created", `{"name":"bolt","qty":2}`, 201, ""},
		{"decode error", `{"name":"bolt","size":2}`, 400, "unknown-field"},
		{"endpoint error", `{"name":"explode"}`, 500, "internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := do(t, ts, http.MethodPost, "/v1/items", "application/json", bytes.NewReader([]byte(tt.body)))
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.wantStatus, resp.Body)
			}
			if tt.wantClass == "" {
				if loc := resp.Header.Get("Location"); loc != "/v1/items/bolt" {
					t.Errorf("Location %q", loc)
				}
				return
			}
			if p := parseProblem(t, resp.Header, resp.Body); p.Class() != tt.wantClass {
				t.Fatalf("class %q, want %q", p.Class(), tt.wantClass)
			}
			if strings.Contains(string(resp.Body), "password") {
				t.Fatalf("error text leaked: %s", resp.Body)
			}
		})
	}
	t.Cleanup(func() {
		if !strings.Contains(logs.String(), "password authentication failed") {
			t.Errorf("the 500's cause was not logged: %s", logs)
		}
	})
}
