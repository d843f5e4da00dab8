package smtpsink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

// delayBody is the body of GET and PUT /api/delay.
type delayBody struct {
	// Delay is a Go duration ("300ms", "0s"); a pointer so that a PUT
	// without the field is refused.
	Delay *string `json:"delay"`
}

// Handler returns the sink's HTTP API (see the package doc). Each call
// returns a new handler over the same sink.
func (s *Sink) Handler() http.Handler {
	mux := httpkit.NewMux(httpkit.NewHealth(), nil)
	mux.HandleFunc("GET /api/messages", func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, r, s.Messages(r.URL.Query().Get("to")))
	})
	mux.HandleFunc("GET /api/messages/{id}/raw", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		m, ok := s.Message(id)
		if err != nil || !ok {
			httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusNotFound, "not-found", "no message with that id (GET /api/messages lists them)"))
			return
		}
		w.Header().Set("Content-Type", "message/rfc822")
		_, _ = w.Write(m.Raw)
	})
	mux.HandleFunc("DELETE /api/messages", func(w http.ResponseWriter, _ *http.Request) {
		s.Clear()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, r, s.Stats())
	})
	s.modeSwitch(mux, "down", s.IsDown, s.SetDown)
	s.modeSwitch(mux, "reject", s.IsRejecting, s.SetReject)
	mux.HandleFunc("GET /api/delay", func(w http.ResponseWriter, r *http.Request) {
		d := s.Delay().String()
		s.reply(w, r, delayBody{Delay: &d})
	})
	mux.HandleFunc("PUT /api/delay", func(w http.ResponseWriter, r *http.Request) {
		var b delayBody
		if err := httpkit.DecodeJSON(r, &b, 1<<10); err != nil {
			httpkit.WriteProblem(w, problemOf(err))
			return
		}
		if p := s.putDelay(b); p != nil {
			httpkit.WriteProblem(w, p)
			return
		}
		d := s.Delay().String()
		s.reply(w, r, delayBody{Delay: &d})
	})
	return httpkit.Chain(mux, httpkit.Recover(s.log))
}

// modeSwitch mounts GET and PUT /api/{name}, whose body is {name: bool}.
func (s *Sink) modeSwitch(mux *http.ServeMux, name string, get func() bool, set func(bool)) {
	mux.HandleFunc("GET /api/"+name, func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, r, map[string]bool{name: get()})
	})
	mux.HandleFunc("PUT /api/"+name, func(w http.ResponseWriter, r *http.Request) {
		var b map[string]*bool
		if err := httpkit.DecodeJSON(r, &b, 1<<10); err != nil {
			httpkit.WriteProblem(w, problemOf(err))
			return
		}
		on, ok := b[name]
		if !ok || on == nil || len(b) != 1 {
			p := httpkit.NewProblem(http.StatusBadRequest, "invalid-body", fmt.Sprintf(`send {%q: true} or {%q: false}`, name, name))
			p.Errors = []httpkit.FieldError{{Field: name, Pointer: "#/" + name, Message: "is required, and is the only field"}}
			httpkit.WriteProblem(w, p)
			return
		}
		set(*on)
		s.reply(w, r, map[string]bool{name: *on})
	})
}

// putDelay applies a PUT /api/delay body, or says what is wrong with it.
func (s *Sink) putDelay(b delayBody) *httpkit.Problem {
	msg := "is required"
	if b.Delay != nil {
		d, err := time.ParseDuration(*b.Delay)
		if err == nil {
			err = s.SetDelay(d)
		}
		if err == nil {
			return nil
		}
		msg = "must be a duration between 0s and " + MaxDelay.String() + ", e.g. \"300ms\""
	}
	p := httpkit.NewProblem(http.StatusBadRequest, "invalid-body", `send {"delay": "300ms"}; "0s" answers at once`)
	p.Errors = []httpkit.FieldError{{Field: "delay", Pointer: "#/delay", Message: msg}}
	return p
}

func problemOf(err error) *httpkit.Problem {
	var p *httpkit.Problem
	if errors.As(err, &p) {
		return p
	}
	return httpkit.NewProblem(http.StatusBadRequest, "invalid-body", "the body must be a JSON object")
}

// reply writes v as JSON (200), never cached, with <, > and & as they
// are: Message-IDs stay readable.
func (s *Sink) reply(w http.ResponseWriter, r *http.Request, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		s.log.WarnContext(r.Context(), "smtp sink: encode response", "err", err)
		httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusInternalServerError, "internal", "internal error"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b.Bytes())
}
