package jobqueue

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ackDB returns the DB an acknowledgement statement (receive, delete,
// change visibility, dead-letter) runs on. With Options.AsyncAcks and db
// the client's own pool, each statement commits without waiting for its
// WAL flush (synchronous_commit = off for that transaction only; ADR
// 0018); in the caller's transaction, the caller's commit decides.
func (c *Client) ackDB(db DB) DB {
	if p, ok := db.(*pgxpool.Pool); ok && c.asyncAcks {
		return asyncDB{p}
	}
	return db
}

// asyncDB runs each statement in one round trip as a pipeline of two, in
// one implicit transaction: set_config('synchronous_commit', 'off', true)
// (local to that transaction, so the connection keeps its setting) and
// the statement.
type asyncDB struct{ pool *pgxpool.Pool }

const asyncCommit = `SELECT set_config('synchronous_commit', 'off', true)`

func (a asyncDB) send(ctx context.Context, sql string, args []any) pgx.BatchResults {
	b := &pgx.Batch{}
	b.Queue(asyncCommit)
	b.Queue(sql, args...)
	return a.pool.SendBatch(ctx, b)
}

func (a asyncDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	br := a.send(ctx, sql, args)
	if _, err := br.Exec(); err != nil {
		return pgconn.CommandTag{}, errors.Join(err, br.Close())
	}
	tag, err := br.Exec()
	return tag, errors.Join(err, br.Close())
}

func (a asyncDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	br := a.send(ctx, sql, args)
	if _, err := br.Exec(); err != nil {
		return nil, errors.Join(err, br.Close())
	}
	rows, err := br.Query()
	if err != nil {
		rows.Close()
		return nil, errors.Join(err, br.Close())
	}
	return &batchRows{Rows: rows, br: br}, nil
}

func (a asyncDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	rows, err := a.Query(ctx, sql, args...)
	return batchRow{rows: rows, err: err}
}

// batchRows closes the batch when the rows are closed; a failure to close
// it is reported by Err.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.br.Close()
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

// batchRow is QueryRow over batchRows: pgx.ErrNoRows when there is none.
type batchRow struct {
	rows pgx.Rows
	err  error
}

func (r batchRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}
