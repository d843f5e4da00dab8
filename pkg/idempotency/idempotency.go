package idempotency

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/pgdb"
)

// Defaults of Config.
const (
	// DefaultRetention is how long a key and its response are kept: 24h,
	// Stripe's window, long enough for any client's retries.
	DefaultRetention = 24 * time.Hour
	// DefaultPruneBatch is the batch size of Prune when given 0 or less.
	DefaultPruneBatch = 1000
)

// DefaultStoredHeaders are the response header fields stored and replayed
// when Config.StoredHeaders is empty: the media type of the body and the
// address of the created resource.
func DefaultStoredHeaders() []string { return []string{"Content-Type", "Location"} }

// lockClass is the first key of the transaction advisory lock that marks a
// key in flight ("IDMP"), so it never collides with other advisory locks.
const lockClass = 0x49444d50

// Config configures a Store. The zero value of every field picks its default.
type Config struct {
	// Retention is how long a completed key is remembered: a request with
	// the key within Retention of its first success is a replay (or a 422),
	// later it is a new request. Default DefaultRetention (24h). This is the
	// expiration policy the IETF draft asks a server to publish; put it in
	// the API's documentation.
	Retention time.Duration
	// MaxBodyBytes caps the request body ReadRequest and Handler read.
	// Default httpkit.DefaultMaxBodyBytes (1 MiB); a larger body is 413.
	MaxBodyBytes int64
	// StoredHeaders are the response header fields stored with the response
	// and sent again on a replay; other fields are sent only with the first
	// response. Default DefaultStoredHeaders (Content-Type, Location).
	StoredHeaders []string
	// Registerer receives the idempotency_requests_total counter; nil: none.
	// Stores sharing a Registerer share the counter.
	Registerer prometheus.Registerer
	// Logger logs what Handler does not tell the client (database errors).
	// Default: discard.
	Logger *slog.Logger
	// Now is the clock that stamps created_at and expires_at and decides
	// expiry. Default time.Now. Replicas' clocks need only agree to well
	// within Retention.
	Now func() time.Time
}

// Store remembers idempotency keys and their responses in the
// idempotency_keys table (Schema) of the database it is handed. It holds no
// connection; every method takes the DB to use. It is safe for concurrent
// use.
type Store struct {
	retention time.Duration
	maxBody   int64
	headers   []string
	now       func() time.Time
	log       *slog.Logger
	m         *metrics
}

// New returns a Store for cfg, with defaults filled in.
func New(cfg Config) (*Store, error) {
	if cfg.Retention < 0 {
		return nil, fmt.Errorf("idempotency: retention %s is negative", cfg.Retention)
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("idempotency: max body bytes %d is negative", cfg.MaxBodyBytes)
	}
	s := &Store{
		retention: cfg.Retention,
		maxBody:   cfg.MaxBodyBytes,
		now:       cfg.Now,
		log:       cfg.Logger,
	}
	if s.retention == 0 {
		s.retention = DefaultRetention
	}
	if s.maxBody == 0 {
		s.maxBody = httpkit.DefaultMaxBodyBytes
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	names := cfg.StoredHeaders
	if len(names) == 0 {
		names = DefaultStoredHeaders()
	}
	for _, n := range names {
		if n == "" {
			return nil, errors.New("idempotency: a stored header name is empty")
		}
		s.headers = append(s.headers, http.CanonicalHeaderKey(n))
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

// DB is what Do and Prune need of the database: *pgxpool.Pool (the usual
// argument) and *pgx.Conn satisfy it. A pgx.Tx does not, on purpose: Do
// opens and commits the transaction itself, because committing the key is
// what makes the key and the business writes one atomic step.
type DB interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Request identifies one client request for Do.
type Request struct {
	// Scope is the identity of the client the key belongs to (customer id,
	// API client id), derived by the server from authentication, never from
	// the request body. Keys of different scopes are independent. Required:
	// an empty Scope is a programming error, because one scope for every
	// client would replay one client's response to another. A service
	// without client identity passes a constant and accepts that risk.
	Scope string
	// Key is the client's idempotency key, unquoted (ReadRequest parses the
	// header): 1 to MaxKeyLength bytes of printable ASCII.
	Key string
	// Method, Path and Body make the request's fingerprint (SHA-256): the
	// same key with a different fingerprint is ErrKeyReused. Path is the
	// request target as sent, path and query (ReadRequest uses
	// r.URL.RequestURI()); Body is the raw body, byte for byte.
	Method string
	Path   string
	Body   []byte
}

// Response is what Do stores and replays.
type Response struct {
	// Status is the HTTP status; 0 means 200. Do rejects a status outside
	// 200–599 (1xx responses cannot be replayed).
	Status int
	// Header: the fields named in Config.StoredHeaders are stored. A
	// replayed Response carries only those, plus Idempotent-Replayed: true.
	Header http.Header
	// Body is stored and replayed byte for byte.
	Body []byte
}

// Func does the business work of a request inside tx, the transaction Do
// opened after claiming the key, and returns the response to store. It
// must write through tx only (not through the pool): only writes made in tx
// are atomic with the key. Returning an error (a validation *httpkit.Problem
// or anything else) or panicking rolls back tx: neither the business writes
// nor the key are stored, so the client may retry with the same key.
//
// tx is READ COMMITTED; where the business rules need more, take row locks
// (SELECT … FOR UPDATE) or compare-and-set on a version, as usual. Work that
// is not a write in tx (a call to another service) is not undone by a
// rollback and needs its own idempotency.
type Func func(ctx context.Context, tx pgx.Tx) (Response, error)

// storedRow is a committed key row.
type storedRow struct {
	fingerprint []byte
	status      int
	headers     http.Header
	body        []byte
}

// Do runs fn at most once per (Scope, Key) within Retention, and answers
// every request with that key with fn's response. It returns:
//
//   - a new or expired key: fn's response (replayed false) after fn's
//     writes and the stored response committed in one transaction;
//   - a key whose request completed, with the same fingerprint: the stored
//     response (status, stored header fields, body byte for byte), with
//     Idempotent-Replayed: true in its Header, and replayed true; fn does
//     not run;
//   - the same key with a different fingerprint: an error matching
//     ErrKeyReused (problem 422 "idempotency-key-reused");
//   - a key whose first request is still in flight: an error matching
//     ErrKeyInUse (problem 409 "idempotency-key-in-use", Retry-After: 1),
//     at once, without waiting for the first request, whatever the
//     fingerprint (the first request's is not committed yet; a retry after
//     it completes gets the replay or the 422);
//   - an empty Key: ErrKeyMissing (400); a malformed one: ErrKeyInvalid
//     (400). fn does not run;
//   - fn's error, unchanged (so errors.As finds a *httpkit.Problem), after
//     rolling back; a panic in fn is re-raised after rolling back.
//
// Mechanism, in one READ COMMITTED transaction per new key:
//
//  1. Outside any transaction, read the key's row. A live row is final
//     (a committed row always holds its response), so a replay or a 422 is
//     answered from it without locks, and concurrent replays never queue.
//  2. Begin; pg_try_advisory_xact_lock on the key. If another transaction
//     holds it, that request is in flight: roll back, 409. Not waiting is
//     the point: a blocked duplicate would hold a connection and then
//     replay, a 409 tells the client to come back.
//  3. Claim: INSERT the row (status 0) ON CONFLICT replace it only if it
//     has expired. No row inserted means the first request committed
//     between steps 1 and 2 (the lock is released only after its commit is
//     visible): read the row again and replay it, or 422.
//  4. Run fn in the same transaction, UPDATE the row with the response,
//     commit.
//
// The key row and the business rows are written by one transaction, so
// there is no moment at which one exists without the other: if the commit
// succeeds both exist, if anything fails neither does. The primary key, not
// the advisory lock, is what makes a second execution impossible: the lock
// only turns what would be a wait on the uncommitted row into an immediate
// 409. If the commit's outcome is unknown (connection lost), the error is
// returned, and the client's retry with the same key either replays (it
// committed) or runs fn again (it did not): fn's writes commit at most
// once, and the retry tells the client which way it went.
//
// ctx is used for the whole transaction: a client that goes away cancels
// the work, which is then rolled back and can be retried.
//
// The phases, in order: checkRequest; replayStored when lookup finds a
// live row (step 1); then, in the transaction, claimKey (steps 2 and 3),
// runHandler (fn) and storeAnswer (step 4).
func (s *Store) Do(ctx context.Context, db DB, req Request, fn Func) (resp Response, replayed bool, err error) {
	if err := s.checkRequest(req); err != nil {
		return Response{}, false, err
	}
	fp := fingerprint(req.Method, req.Path, req.Body)
	now := s.now()

	// A panic in fn leaves outcome at rolled_back.
	outcome := OutcomeRolledBack
	defer func() { s.m.count(outcome) }()

	row, found, err := s.lookup(ctx, db, req, now)
	if err != nil {
		outcome = OutcomeError
		return Response{}, false, err
	}
	if found {
		resp, outcome, err = s.replayStored(row, fp)
		return resp, err == nil, err
	}

	var (
		fnErr  error
		stored *storedRow
	)
	err = pgdb.InTx(ctx, readCommitted{db}, func(tx pgx.Tx) error {
		var claimErr error
		if stored, claimErr = s.claimKey(ctx, tx, req, fp, now); claimErr != nil || stored != nil {
			return claimErr // a stored row: read only, the commit just releases the lock
		}
		if resp, fnErr = runHandler(ctx, tx, fn); fnErr != nil {
			return fnErr
		}
		return s.storeAnswer(ctx, tx, req, resp)
	})
	switch {
	case fnErr != nil:
		return Response{}, false, fnErr
	case errors.Is(err, ErrKeyInUse):
		outcome = OutcomeInFlightConflict
		return Response{}, false, err
	case err != nil:
		outcome = OutcomeError
		return Response{}, false, err
	case stored != nil:
		resp, outcome, err = s.replayStored(*stored, fp)
		return resp, err == nil, err
	}
	outcome = OutcomeCreated
	return resp, false, nil
}

// checkRequest refuses a request Do cannot key (a missing or malformed
// key, an empty scope) and counts the refusal.
func (s *Store) checkRequest(req Request) error {
	if err := checkKey(req.Key); err != nil {
		s.countKeyError(err)
		return err
	}
	if req.Scope == "" {
		s.m.count(OutcomeError)
		return errors.New("idempotency: request has an empty scope; derive one from the client's identity")
	}
	return nil
}

// claimKey is steps 2 and 3 of Do, in tx: the advisory lock on the key,
// then the key's row. It returns nil when the key is this request's (fn
// may run), the committed row when the first request committed in
// between (to replay), and ErrKeyInUse when another request holds the key.
func (s *Store) claimKey(ctx context.Context, tx pgx.Tx, req Request, fp []byte, now time.Time) (*storedRow, error) {
	var locked bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1, $2)`,
		int32(lockClass), lockID(req.Scope, req.Key)).Scan(&locked); err != nil {
		return nil, fmt.Errorf("idempotency: lock key: %w", err)
	}
	if !locked {
		return nil, errKeyInUse()
	}
	claimed, err := s.claim(ctx, tx, req, fp, now)
	if err != nil || claimed {
		return nil, err
	}
	row, found, err := s.lookup(ctx, tx, req, now)
	if err != nil {
		return nil, err
	}
	if !found {
		// Not possible while we hold the lock, unless something other
		// than Do writes the table; the client retries.
		return nil, errKeyInUse()
	}
	return &row, nil
}

// runHandler runs fn in tx and checks the response it returns; fn's error
// is returned unchanged.
func runHandler(ctx context.Context, tx pgx.Tx, fn Func) (Response, error) {
	resp, err := fn(ctx, tx)
	if err != nil {
		return Response{}, err
	}
	return normalise(resp)
}

// storeAnswer writes resp into the claimed key's row, in tx (step 4).
func (s *Store) storeAnswer(ctx context.Context, tx pgx.Tx, req Request, resp Response) error {
	if _, err := tx.Exec(ctx, `
		UPDATE idempotency_keys SET status = $3, headers = $4, body = $5
		WHERE scope = $1 AND key = $2`,
		req.Scope, req.Key, resp.Status, s.storedHeader(resp.Header), resp.Body); err != nil {
		return fmt.Errorf("idempotency: store response: %w", err)
	}
	return nil
}

// readCommitted begins READ COMMITTED transactions: every statement sees
// what committed before it started, which step 3 of Do relies on.
type readCommitted struct{ db DB }

func (b readCommitted) Begin(ctx context.Context) (pgx.Tx, error) {
	return b.db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
}

type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// lookup reads the key's committed row if it has not expired at now.
func (s *Store) lookup(ctx context.Context, q queryRower, req Request, now time.Time) (storedRow, bool, error) {
	var r storedRow
	err := q.QueryRow(ctx, `
		SELECT fingerprint, status, headers, body FROM idempotency_keys
		WHERE scope = $1 AND key = $2 AND expires_at > $3`,
		req.Scope, req.Key, now).Scan(&r.fingerprint, &r.status, &r.headers, &r.body)
	if errors.Is(err, pgx.ErrNoRows) {
		return storedRow{}, false, nil
	}
	if err != nil {
		return storedRow{}, false, fmt.Errorf("idempotency: look up key: %w", err)
	}
	return r, true, nil
}

// Known reports whether scope's key has a live row: committed (a retry
// of it is answered from the store) or in flight (answered 409). It reads
// one row and writes nothing: a caller that must refuse new work (load
// shedding) can still let the retries of accepted requests through.
func (s *Store) Known(ctx context.Context, db queryRower, scope, key string) (bool, error) {
	if checkKey(key) != nil || scope == "" {
		return false, nil
	}
	var one int
	err := db.QueryRow(ctx, `SELECT 1 FROM idempotency_keys WHERE scope = $1 AND key = $2 AND expires_at > $3`,
		scope, key, s.now()).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("idempotency: look up key: %w", err)
	}
	return true, nil
}

// claim inserts the key's row, or takes over an expired one, and reports
// whether it did; false means a live row exists.
func (s *Store) claim(ctx context.Context, tx pgx.Tx, req Request, fp []byte, now time.Time) (bool, error) {
	tag, err := tx.Exec(ctx, `
		INSERT INTO idempotency_keys AS k (scope, key, fingerprint, status, headers, body, created_at, expires_at)
		VALUES ($1, $2, $3, 0, '{}', '', $4, $5)
		ON CONFLICT (scope, key) DO UPDATE
			SET fingerprint = excluded.fingerprint, status = 0, headers = '{}', body = '',
			    created_at = excluded.created_at, expires_at = excluded.expires_at
			WHERE k.expires_at <= excluded.created_at`,
		req.Scope, req.Key, fp, now, now.Add(s.retention))
	if err != nil {
		return false, fmt.Errorf("idempotency: claim key: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// replayStored turns a committed row into the reply to a request with
// fingerprint fp: the stored response with Idempotent-Replayed, or the 422
// of a different fingerprint; and names the outcome.
func (s *Store) replayStored(r storedRow, fp []byte) (Response, string, error) {
	if !bytes.Equal(r.fingerprint, fp) {
		return Response{}, OutcomeMismatch, errKeyReused()
	}
	if r.status == 0 {
		// A claimed row is never committed with status 0; treat one as in
		// flight rather than replay an empty response.
		return Response{}, OutcomeInFlightConflict, errKeyInUse()
	}
	h := make(http.Header, len(r.headers)+1)
	for k, v := range r.headers {
		h[k] = v
	}
	h.Set(HeaderReplayed, "true")
	return Response{Status: r.status, Header: h, Body: r.body}, OutcomeReplayed, nil
}

// storedHeader returns the fields of h that are stored.
func (s *Store) storedHeader(h http.Header) http.Header {
	out := http.Header{}
	for _, name := range s.headers {
		if v := h.Values(name); len(v) > 0 {
			out[name] = append([]string(nil), v...)
		}
	}
	return out
}

func normalise(r Response) (Response, error) {
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	if r.Status < 200 || r.Status > 599 {
		return Response{}, fmt.Errorf("idempotency: response status %d cannot be stored (want 200-599)", r.Status)
	}
	if r.Body == nil {
		r.Body = []byte{}
	}
	return r, nil
}

func (s *Store) countKeyError(err error) {
	if errors.Is(err, ErrKeyMissing) {
		s.m.count(OutcomeMissingKey)
	} else {
		s.m.count(OutcomeInvalidKey)
	}
}

// Prune deletes keys that expired (expires_at at or before the Store's
// clock), batch rows per statement (DefaultPruneBatch when batch <= 0), each
// statement its own short transaction, until fewer than batch expired rows
// remain. Rows locked by a Do that is taking over an expired key are
// skipped, so Prune never waits for business transactions. It returns how
// many rows it deleted; after an error, the count deleted so far. Live keys
// are never deleted. Run it periodically (hourly is plenty): an expired
// row left in place is harmless, Do treats it as absent.
func (s *Store) Prune(ctx context.Context, db DB, batch int) (int64, error) {
	if batch <= 0 {
		batch = DefaultPruneBatch
	}
	var total int64
	now := s.now()
	for {
		tag, err := db.Exec(ctx, `
			DELETE FROM idempotency_keys WHERE (scope, key) IN (
				SELECT scope, key FROM idempotency_keys WHERE expires_at <= $1
				ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)`, now, batch)
		if err != nil {
			return total, fmt.Errorf("idempotency: prune: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return total, nil
		}
	}
}
