package shop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/chaos/drill"
	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/web/internal/console"
)

// consoleData is the console page's.
type consoleData struct {
	Snap          console.Snapshot
	Presets       []target.FaultPreset
	MailModes     []console.MailMode
	DeadLetters   []console.DeadLetterQueue
	StreamDLQs    []console.StreamDeadLetters
	Drills        []drill.Drill
	DrillsEnabled bool
	DrillRun      *console.DrillRun
	// CanStop: the console can stop and start processes.
	CanStop bool
}

// readConsole reads the system and, with the operator's token, the
// dead-letter queues, at once.
func (s *Server) readConsole(ctx context.Context, u *user) consoleData {
	d := consoleData{Presets: target.FaultPresets, MailModes: console.MailModes, Drills: s.cfg.Console.Drills(),
		DrillsEnabled: s.cfg.Console.DrillsEnabled(), DrillRun: s.cfg.Console.Drill(), CanStop: s.cfg.Console.CanControlProcesses()}
	var wg sync.WaitGroup
	wg.Go(func() { d.DeadLetters = s.cfg.Console.DeadLetters(ctx, u.Access) })
	wg.Go(func() { d.StreamDLQs = s.cfg.Console.StreamDeadLetterQueues(ctx) })
	d.Snap = s.cfg.Console.Read(ctx)
	wg.Wait()
	return d
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
	d := s.readConsole(r.Context(), u)
	s.render(w, r, http.StatusOK, "console", page{Title: "Plumbing console", User: u, Data: d, Flash: r.URL.Query().Get("done")})
}

// consoleEvents streams the console's live part every ConsolePoll as
// server-sent events (event "console"), while it changes.
func (s *Server) consoleEvents(w http.ResponseWriter, r *http.Request, u *user) {
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
		d := s.readConsole(ctx, u)
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
	case "cache":
		name := r.PathValue("name")
		if name != "bypass" && name != "use" {
			s.fail(w, r, http.StatusNotFound, "No such switch", "The cache's switches are bypass and use.")
			return
		}
		on := name == "bypass"
		err = s.cfg.Console.SetCacheBypass(ctx, u.Access, on)
		done = map[bool]string{true: "catalog's cache is bypassed: every read goes to PostgreSQL.", false: "catalog reads through its cache again."}[on]
	case "mail":
		name := r.PathValue("name")
		err = s.cfg.Console.SetMail(ctx, name)
		done = "The mail relay is " + name + "."
	case "drills":
		name := r.PostFormValue("drill")
		secs, perr := strconv.Atoi(r.PostFormValue("seconds"))
		if perr != nil {
			s.fail(w, r, http.StatusBadRequest, "That drill did not start", "The load's duration is a whole number of seconds, 10 to 120.")
			return
		}
		// The drill outlives this request (the page follows it live);
		// RunDrill bounds it.
		err = s.cfg.Console.RunDrill(context.WithoutCancel(ctx), name, time.Duration(secs)*time.Second, u.Sub)
		done = "Started the " + name + " drill: its timeline and verdicts appear below as it runs."
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
	anchor := ""
	if r.PathValue("kind") == "drills" {
		anchor = "#h-drill-run" // the drill's live section
	}
	http.Redirect(w, r, "/console?done="+url.QueryEscape(done)+anchor, http.StatusSeeOther)
}

// deadLetterData is the dead-letter page's.
type deadLetterData struct {
	Service string
	Letter  console.DeadLetter
}

// deadLetter shows one dead letter as the service's admin API gives it
// (body redacted by the service), with a button to redrive it.
func (s *Server) deadLetter(w http.ResponseWriter, r *http.Request, u *user) {
	service, queue := r.PathValue("service"), r.PathValue("queue")
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		s.fail(w, r, http.StatusNotFound, "No such dead letter", "Dead letters are numbered 1, 2, 3 …; the console lists them.")
		return
	}
	d, err := s.cfg.Console.DeadLetter(r.Context(), u.Access, service, queue, id)
	switch {
	case target.IsNotFound(err), errors.Is(err, console.ErrUnknown):
		s.fail(w, r, http.StatusNotFound, "No such dead letter", "It is not in that queue: it may have been redriven or purged meanwhile.")
		return
	case err != nil:
		s.cfg.Log.WarnContext(r.Context(), "read dead letter", "service", service, "queue", queue, "id", id, "err", err)
		s.fail(w, r, http.StatusBadGateway, "The dead letter cannot be read", err.Error())
		return
	}
	s.render(w, r, http.StatusOK, "deadletter", page{Title: "Dead letter " + strconv.FormatInt(id, 10), User: u, Data: deadLetterData{Service: service, Letter: d}})
}

// redrive moves one dead letter (form field id) or every one of the queue
// (no id) back to its queue, as the CLI's redrive does (rate-bounded).
func (s *Server) redrive(w http.ResponseWriter, r *http.Request, u *user) {
	service, queue := r.PathValue("service"), r.PathValue("queue")
	var ids []int64
	if v := r.PostFormValue("id"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id < 1 {
			s.fail(w, r, http.StatusBadRequest, "That redrive did not work", "The message id must be a whole number, as the console lists it.")
			return
		}
		ids = []int64{id}
	}
	n, err := s.cfg.Console.Redrive(r.Context(), u.Access, service, queue, ids, false)
	if err != nil {
		s.cfg.Log.WarnContext(r.Context(), "redrive failed", "operator", u.Sub, "service", service, "queue", queue, "ids", ids, "err", err)
		s.fail(w, r, http.StatusBadRequest, "That redrive did not work", err.Error())
		return
	}
	done := fmt.Sprintf("Redrove %d message(s) from %s (%s): they are back in their queue, visible now.", n, queue, service)
	if n == 0 {
		done = fmt.Sprintf("Nothing to redrive in %s (%s): it was redriven or purged meanwhile.", queue, service)
	}
	s.cfg.Log.InfoContext(r.Context(), "console redrive", "operator", u.Sub, "service", service, "queue", queue, "ids", ids, "moved", n)
	http.Redirect(w, r, "/console?done="+url.QueryEscape(done)+"#h-dlq", http.StatusSeeOther)
}

// streamDeadLetterData is the stream dead-letter page's.
type streamDeadLetterData struct {
	Stream     string
	Letter     console.StreamDeadLetter
	Redrivable bool // false on Kafka (read only)
}

// streamDeadLetter shows one dead letter of a stream, its payload with
// personal fields redacted, with a button to redrive it for its group.
func (s *Server) streamDeadLetter(w http.ResponseWriter, r *http.Request, u *user) {
	name := r.PathValue("stream")
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq < 1 {
		s.fail(w, r, http.StatusNotFound, "No such dead letter", "Stream dead letters are numbered 1, 2, 3 …; the console lists them.")
		return
	}
	d, err := s.cfg.Console.StreamDeadLetter(r.Context(), name, seq)
	switch {
	case errors.Is(err, stream.ErrNotFound), errors.Is(err, console.ErrUnknown):
		s.fail(w, r, http.StatusNotFound, "No such dead letter", "It is not in that stream's dead letters: it may have been redriven or discarded meanwhile.")
		return
	case err != nil:
		s.cfg.Log.WarnContext(r.Context(), "read stream dead letter", "stream", name, "seq", seq, "err", err)
		s.fail(w, r, http.StatusBadRequest, "The dead letter cannot be read", err.Error())
		return
	}
	s.render(w, r, http.StatusOK, "streamdeadletter", page{Title: "Dead letter " + strconv.FormatUint(seq, 10) + " of " + name, User: u,
		Data: streamDeadLetterData{Stream: name, Letter: d, Redrivable: s.cfg.Console.StreamDLQsRedrivable()}})
}

// redriveStream redrives a group's dead letters of a stream (form: group,
// and seq for one), as the services' dlq redrive does.
func (s *Server) redriveStream(w http.ResponseWriter, r *http.Request, u *user) {
	name, group := r.PathValue("stream"), r.PostFormValue("group")
	var seqs []uint64
	if v := r.PostFormValue("seq"); v != "" {
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil || seq < 1 {
			s.fail(w, r, http.StatusBadRequest, "That redrive did not work", "The dead letter's number must be a whole number, as the console lists it.")
			return
		}
		seqs = []uint64{seq}
	}
	if group == "" {
		s.fail(w, r, http.StatusBadRequest, "That redrive did not work", "A redrive names the consumer group whose failures it sends again (fix that consumer first).")
		return
	}
	rep, err := s.cfg.Console.RedriveStream(r.Context(), name, group, seqs)
	if err != nil {
		s.cfg.Log.WarnContext(r.Context(), "stream redrive failed", "operator", u.Sub, "stream", name, "group", group, "seqs", seqs, "err", err)
		s.fail(w, r, http.StatusBadRequest, "That redrive did not work", err.Error())
		return
	}
	s.cfg.Log.InfoContext(r.Context(), "console stream redrive", "operator", u.Sub, "stream", name, "group", group, "seqs", seqs, "redriven", rep.Redriven)
	done := fmt.Sprintf("Redrove %d of %s's dead letters of %s: published again to their partitions (every group sees them again and drops what it has applied).", rep.Redriven, group, name)
	if rep.Matched == 0 {
		done = fmt.Sprintf("Nothing to redrive for %s in %s: redriven or discarded meanwhile.", group, name)
	}
	http.Redirect(w, r, "/console?done="+url.QueryEscape(done)+"#h-dlq", http.StatusSeeOther)
}
