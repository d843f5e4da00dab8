package jobqueue

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

// AdminRoutes mounts the operator's endpoints on mux under prefix (e.g.
// "/v1/admin/queues"); wrap mux with the service's admin authentication.
//
//	GET  {prefix}                          stats of every queue
//	GET  {prefix}/{dlq}/messages?limit=    dead letters (bodies redacted)
//	GET  {prefix}/{queue}/messages/{id}    one message of that queue (body redacted)
//	POST {prefix}/{dlq}/redrive            {"ids":[..], "dry_run":bool, "rate_per_second":n}
//	POST {prefix}/{queue}/purge            {"ids":[..], "reason":"..."}
//	GET  {prefix}/{queue}/pause            the queue's pause state
//	PUT  {prefix}/{queue}/pause            {"reason":"..."}: pause (Client.Pause)
//	DELETE {prefix}/{queue}/pause          resume (Client.Resume)
//
// An unknown queue answers 404, bad input 400, both problem+json. Pause
// and resume record the caller's token subject (pkg/auth) as who did it.
func (c *Client) AdminRoutes(mux *http.ServeMux, prefix string) {
	prefix = strings.TrimSuffix(prefix, "/")
	mux.HandleFunc("GET "+prefix, c.adminStats)
	mux.HandleFunc("GET "+prefix+"/{queue}/messages", c.adminListDeadLetters)
	mux.HandleFunc("GET "+prefix+"/{queue}/messages/{id}", c.adminInspect)
	mux.HandleFunc("POST "+prefix+"/{queue}/redrive", c.adminRedrive)
	mux.HandleFunc("POST "+prefix+"/{queue}/purge", c.adminPurge)
	mux.HandleFunc("GET "+prefix+"/{queue}/pause", c.adminPauseState)
	mux.HandleFunc("PUT "+prefix+"/{queue}/pause", c.adminPause)
	mux.HandleFunc("DELETE "+prefix+"/{queue}/pause", c.adminResume)
}

// adminStats answers the stats of every queue.
func (c *Client) adminStats(w http.ResponseWriter, r *http.Request) {
	stats, err := c.Stats(r.Context())
	views := make([]map[string]any, len(stats))
	for i, st := range stats {
		views[i] = map[string]any{"queue": st.Queue, "visible": st.Visible, "in_flight": st.InFlight, "delayed": st.Delayed,
			"oldest_age_seconds": st.OldestAge.Seconds(), "dead_letter_queue": st.IsDeadLetter, "paused": st.Pause.Paused}
	}
	c.reply(r.Context(), w, views, err)
}

// adminListDeadLetters answers up to ?limit= (1–1000, default 50) dead
// letters of {queue}, bodies redacted.
func (c *Client) adminListDeadLetters(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusBadRequest, "invalid-query", "limit must be 1–1000"))
			return
		}
		limit = n
	}
	msgs, err := c.ListDeadLetters(r.Context(), r.PathValue("queue"), limit)
	views := make([]map[string]any, len(msgs))
	for i, m := range msgs {
		views[i] = view(m)
	}
	c.reply(r.Context(), w, views, err)
}

// adminInspect answers one message of {queue}, body redacted; 404 when
// {queue} does not hold it.
func (c *Client) adminInspect(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusNotFound, "not-found", "no such message"))
		return
	}
	m, err := c.Inspect(r.Context(), id)
	if errors.Is(err, ErrMessageNotFound) || (err == nil && m.Queue != r.PathValue("queue")) {
		httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusNotFound, "not-found", "no such message in this queue"))
		return
	}
	c.reply(r.Context(), w, view(m), err)
}

// adminRedrive sends dead letters of {queue} back to their queues.
func (c *Client) adminRedrive(w http.ResponseWriter, r *http.Request) {
	var body struct {
		IDs           []int64 `json:"ids"`
		DryRun        bool    `json:"dry_run"`
		RatePerSecond int     `json:"rate_per_second"`
	}
	if err := httpkit.DecodeJSON(r, &body, 64<<10); err != nil {
		c.reply(r.Context(), w, nil, err)
		return
	}
	n, err := c.Redrive(r.Context(), RedriveInput{DLQ: r.PathValue("queue"), IDs: body.IDs, DryRun: body.DryRun, RatePerSecond: body.RatePerSecond})
	c.reply(r.Context(), w, map[string]any{"redriven": n, "dry_run": body.DryRun}, err)
}

// adminPurge deletes messages of {queue}, recording the caller and the reason.
func (c *Client) adminPurge(w http.ResponseWriter, r *http.Request) {
	var body struct {
		IDs    []int64 `json:"ids"`
		Reason string  `json:"reason"`
	}
	if err := httpkit.DecodeJSON(r, &body, 64<<10); err != nil {
		c.reply(r.Context(), w, nil, err)
		return
	}
	n, err := c.Purge(r.Context(), r.PathValue("queue"), body.IDs, caller(r), body.Reason)
	c.reply(r.Context(), w, map[string]any{"purged": n}, err)
}

// adminPauseState answers whether {queue} is paused.
func (c *Client) adminPauseState(w http.ResponseWriter, r *http.Request) {
	st, err := c.PauseStateOf(r.Context(), r.PathValue("queue"))
	c.reply(r.Context(), w, pauseView(r.PathValue("queue"), st), err)
}

// adminPause pauses {queue} (Client.Pause) in the caller's name.
func (c *Client) adminPause(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := httpkit.DecodeJSON(r, &body, 8<<10); err != nil {
		c.reply(r.Context(), w, nil, err)
		return
	}
	st, err := c.Pause(r.Context(), r.PathValue("queue"), caller(r), body.Reason)
	c.reply(r.Context(), w, pauseView(r.PathValue("queue"), st), err)
}

// adminResume resumes {queue} (Client.Resume) in the caller's name.
func (c *Client) adminResume(w http.ResponseWriter, r *http.Request) {
	_, err := c.Resume(r.Context(), r.PathValue("queue"), caller(r))
	c.reply(r.Context(), w, pauseView(r.PathValue("queue"), PauseState{}), err)
}

// caller names who called an admin route: the token's subject, or
// "admin" where the routes are mounted without authentication (tests).
func caller(r *http.Request) string {
	if p, ok := auth.FromContext(r.Context()); ok && p.Subject != "" {
		return p.Subject
	}
	return "admin"
}

func pauseView(queue string, s PauseState) map[string]any {
	v := map[string]any{"queue": queue, "paused": s.Paused}
	if s.Paused {
		v["paused_at"], v["paused_by"], v["reason"] = s.PausedAt, s.PausedBy, s.Reason
	}
	return v
}

// view is a message as the admin API shows it: the (redacted) body as JSON
// when it is JSON, else as text.
func view(m Message) map[string]any {
	body := any(string(m.Body))
	if json.Valid(m.Body) {
		body = json.RawMessage(m.Body)
	}
	return map[string]any{"id": m.ID, "queue": m.Queue, "source_queue": m.SourceQueue, "reason": m.DeadLetterReason,
		"sent_at": m.SentAt, "receive_count": m.ReceiveCount, "attributes": m.Attributes, "body": body}
}

func (c *Client) reply(ctx context.Context, w http.ResponseWriter, v any, err error) {
	var p *httpkit.Problem
	switch {
	case errors.As(err, &p):
		httpkit.WriteProblem(w, p)
	case errors.Is(err, ErrQueueNotFound):
		httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusNotFound, "not-found", "no such queue"))
	case errors.Is(err, ErrInvalid):
		httpkit.WriteProblem(w, httpkit.NewProblem(http.StatusBadRequest, "invalid-request", err.Error()))
	case err != nil:
		httpkit.ErrorEncoder(c.log)(ctx, err, w) // logged, never shown
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "private, no-store")
		_ = json.NewEncoder(w).Encode(v)
	}
}
