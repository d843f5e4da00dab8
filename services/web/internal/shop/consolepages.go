package shop

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/services/web/internal/console"
)

// consoleData is the console page's.
type consoleData struct {
	Snap    console.Snapshot
	Presets []target.FaultPreset
}

// operator runs h for a signed-in operator with the console configured.
func (s *Server) operator(h func(http.ResponseWriter, *http.Request, *user)) http.HandlerFunc {
	return s.signedIn(func(w http.ResponseWriter, r *http.Request, u *user) {
		if !u.IsOperator() {
			s.fail(w, r, http.StatusForbidden, "Operators only", "The plumbing console is for operators. Sign in as oscar to use it.")
			return
		}
		if s.cfg.Console == nil {
			s.fail(w, r, http.StatusNotFound, "The console is not configured",
				"This web service has no sandbox to watch: it needs WEB_CONSOLE_PORT_BASE (make run sets it).")
			return
		}
		h(w, r, u)
	})
}

func (s *Server) consolePage(w http.ResponseWriter, r *http.Request, u *user) {
	d := consoleData{Snap: s.cfg.Console.Read(r.Context()), Presets: target.FaultPresets}
	s.render(w, r, http.StatusOK, "console", page{Title: "Plumbing console", User: u, Data: d, Flash: r.URL.Query().Get("done")})
}

// consoleEvents streams the console's live part every ConsolePoll as
// server-sent events (event "console"), while it changes.
func (s *Server) consoleEvents(w http.ResponseWriter, r *http.Request, _ *user) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	_ = rc.SetWriteDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.TimelineMax)
	defer cancel()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var last []byte
	for {
		var buf bytes.Buffer
		d := consoleData{Snap: s.cfg.Console.Read(ctx), Presets: target.FaultPresets}
		if err := s.pages["console"].ExecuteTemplate(&buf, "console-live", d); err != nil {
			s.cfg.Log.ErrorContext(ctx, "render console", "err", err)
			return
		}
		if !bytes.Equal(buf.Bytes(), last) {
			last = buf.Bytes()
			if writeEvent(w, "console", buf.Bytes()) != nil || rc.Flush() != nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// consoleAction runs one switch and returns to the console with what was
// done (or a readable error).
func (s *Server) consoleAction(w http.ResponseWriter, r *http.Request, u *user) {
	var err error
	var done string
	ctx := r.Context()
	switch r.PathValue("kind") {
	case "links":
		name, on := r.PathValue("name"), r.PostFormValue("enabled") == "true"
		err = s.cfg.Console.SetLink(ctx, name, on)
		done = map[bool]string{true: "Restored the " + name + " link.", false: "Cut the " + name + " link."}[on]
	case "provider":
		name := r.PathValue("name")
		err = s.cfg.Console.SetProvider(ctx, name)
		done = "Provider faults: " + name + "."
	case "processes":
		name, on := r.PathValue("name"), r.PostFormValue("running") == "true"
		err = s.cfg.Console.SetProcess(ctx, name, on)
		done = map[bool]string{true: "Started " + name + ".", false: "Stopped " + name + " (SIGKILL: a crash, not a shutdown)."}[on]
	default:
		s.fail(w, r, http.StatusNotFound, "No such switch", "The console has no such switch.")
		return
	}
	if err != nil {
		s.cfg.Log.WarnContext(ctx, "console action failed", "operator", u.Sub, "path", r.URL.Path, "err", err)
		s.fail(w, r, http.StatusBadRequest, "That switch did not work", err.Error())
		return
	}
	s.cfg.Log.InfoContext(ctx, "console action", "operator", u.Sub, "path", r.URL.Path, "done", done)
	http.Redirect(w, r, "/console?done="+url.QueryEscape(done), http.StatusSeeOther)
}
