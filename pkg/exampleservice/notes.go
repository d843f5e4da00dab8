package exampleservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	kithttp "github.com/go-kit/kit/transport/http"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopfloor/shopfloor/pkg/events"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
	"github.com/shopfloor/shopfloor/pkg/telemetry"
)

// Note is the API representation of a note.
type Note struct {
	ID        string     `json:"id"`
	Text      string     `json:"text"`
	CreatedAt time.Time  `json:"created_at"`
	SeenAt    *time.Time `json:"seen_at,omitempty"`
	// SeenTrace is the trace id the consumer's span had when it processed
	// note.created: the same as the creating request's trace.
	SeenTrace string `json:"seen_trace,omitempty"`
}

// NoteCreated is the payload of note.created, schema version 1.
type NoteCreated struct {
	ID   string `json:"id"`
	Text string `json:"text"`
}

type createNoteRequest struct {
	Text string `json:"text"`
}

// created wraps a response with status 201 and a Location header
// (go-kit's StatusCoder and Headerer).
type created struct{ Note }

func (created) StatusCode() int { return http.StatusCreated }
func (c created) Headers() http.Header {
	return http.Header{"Location": {"/v1/notes/" + c.ID}}
}

var errNoteNotFound = httpkit.NewProblem(http.StatusNotFound, "not-found", "no note with this id")

type noteService struct {
	deps   func() *deps
	tel    *telemetry.Telemetry
	stream string
	now    func() time.Time
}

func (s *noteService) ready() (*deps, error) {
	d := s.deps()
	if d == nil {
		p := httpkit.NewProblem(http.StatusServiceUnavailable, "not-ready", errNotReady.Error())
		p.RetryAfter = time.Second
		return nil, p
	}
	return d, nil
}

func (s *noteService) create(ctx context.Context, text string) (Note, error) {
	d, err := s.ready()
	if err != nil {
		return Note{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Note{}, fmt.Errorf("note id: %w", err)
	}
	n := Note{ID: id.String(), Text: text}
	err = pgdb.InTx(ctx, d.pool, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO notes (id, text) VALUES ($1, $2) RETURNING created_at`, n.ID, n.Text).Scan(&n.CreatedAt)
	})
	if err != nil {
		return Note{}, fmt.Errorf("insert note: %w", err)
	}
	ev, err := events.New(ServiceName, "note.created", n.ID, 1, 1, NoteCreated{ID: n.ID, Text: n.Text}, s.now())
	if err != nil {
		return Note{}, fmt.Errorf("note.created: %w", err)
	}
	body, err := events.Marshal(ev)
	if err != nil {
		return Note{}, fmt.Errorf("note.created: %w", err)
	}
	msg := message.NewMessage(ev.ID, body)
	for k, v := range ev.Metadata() {
		msg.Metadata.Set(k, v)
	}
	// The context carries the request's span; the telemetry publisher
	// decorator injects it into the message metadata. Forgetting this line
	// is how traces get lost between services.
	msg.SetContext(ctx)
	// Example only: real services write ev into pkg/outbox inside the
	// transaction above instead of publishing after commit.
	if err := d.pub.Publish(s.stream, msg); err != nil {
		return Note{}, fmt.Errorf("publish note.created: %w", err)
	}
	return n, nil
}

func (s *noteService) get(ctx context.Context, id string) (Note, error) {
	d, err := s.ready()
	if err != nil {
		return Note{}, err
	}
	if _, err := uuid.Parse(id); err != nil {
		return Note{}, errNoteNotFound
	}
	var n Note
	var seenTrace *string
	err = d.pool.QueryRow(ctx, `SELECT id, text, created_at, seen_at, seen_trace FROM notes WHERE id = $1`, id).
		Scan(&n.ID, &n.Text, &n.CreatedAt, &n.SeenAt, &seenTrace)
	if errors.Is(err, pgx.ErrNoRows) {
		return Note{}, errNoteNotFound
	}
	if err != nil {
		return Note{}, fmt.Errorf("select note: %w", err)
	}
	if seenTrace != nil {
		n.SeenTrace = *seenTrace
	}
	return n, nil
}

// validateText is the one place the rules of a note's text live.
func validateText(text string) error {
	t := strings.TrimSpace(text)
	var msg string
	switch {
	case t == "":
		msg = "must not be empty"
	case utf8.RuneCountInString(t) > 500:
		msg = "must be at most 500 characters"
	default:
		return nil
	}
	p := httpkit.NewProblem(http.StatusBadRequest, "invalid-field", "the note is not valid")
	p.Errors = []httpkit.FieldError{{Field: "text", Message: msg}}
	return p
}

// routes mounts the API: go-kit endpoints with the shared decoder, encoder
// and error encoder.
func routes(mux *http.ServeMux, s *noteService, log *slog.Logger) {
	mux.Handle("POST /v1/notes", httpkit.NewKitServer(
		func(ctx context.Context, req any) (any, error) {
			r := req.(createNoteRequest)
			n, err := s.create(ctx, strings.TrimSpace(r.Text))
			if err != nil {
				return nil, err
			}
			return created{n}, nil
		},
		func(_ context.Context, r *http.Request) (any, error) {
			var req createNoteRequest
			if err := httpkit.DecodeJSON(r, &req, 16<<10); err != nil {
				return nil, err
			}
			if err := validateText(req.Text); err != nil {
				return nil, err
			}
			return req, nil
		},
		httpkit.EncodeJSON, log))
	mux.Handle("GET /v1/notes/{id}", httpkit.NewKitServer(
		func(ctx context.Context, req any) (any, error) { return s.get(ctx, req.(string)) },
		func(_ context.Context, r *http.Request) (any, error) { return r.PathValue("id"), nil },
		httpkit.EncodeJSON, log))
}

var _ kithttp.StatusCoder = created{}

// noteSeen handles note.created: it marks the note seen, once.
type noteSeen struct {
	pool *pgxpool.Pool
	log  *slog.Logger
}

func (h *noteSeen) handle(msg *message.Message) error {
	ctx := msg.Context()
	ev, err := events.Unmarshal(msg.Payload)
	if err != nil {
		// A message that can never be parsed is acknowledged and logged;
		// real consumers send it to a poison queue (pkg/stream).
		h.log.ErrorContext(ctx, "unreadable note.created dropped", "message_id", msg.UUID, "err", err)
		return nil
	}
	var p NoteCreated
	if err := ev.DecodeData(&p); err != nil {
		h.log.ErrorContext(ctx, "unreadable note.created payload dropped", "event_id", ev.ID, "err", err)
		return nil
	}
	traceID := trace.SpanContextFromContext(ctx).TraceID().String()
	// Idempotent: a redelivery finds seen_at set and changes nothing.
	tag, err := h.pool.Exec(ctx, `UPDATE notes SET seen_at = now(), seen_trace = $2 WHERE id = $1 AND seen_at IS NULL`, p.ID, traceID)
	if err != nil {
		return fmt.Errorf("mark note %s seen: %w", p.ID, err)
	}
	h.log.InfoContext(ctx, "note seen", "note_id", p.ID, "updated", tag.RowsAffected())
	return nil
}
