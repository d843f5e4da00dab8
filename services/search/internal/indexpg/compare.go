package indexpg

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// MaxSamples bounds the documents a Diff lists by name.
const MaxSamples = 20

// Difference classes of a document.
const (
	// DiffMismatch: both projections hold the document, with another
	// version or status.
	DiffMismatch = "mismatch"
	// DiffMissing: the live projection holds it, the rebuilt one does not.
	DiffMissing = "missing"
	// DiffExtra: the rebuilt projection holds it, the live one does not.
	DiffExtra = "extra"
)

// DocDiff is one document on which two projections disagree.
type DocDiff struct {
	ID        string `json:"id"`
	Partition int    `json:"partition"`
	Class     string `json:"class"`
	// Live and rebuilt versions and statuses; 0 and "" where absent.
	LiveVersion    int64  `json:"live_version"`
	LiveStatus     string `json:"live_status"`
	RebuiltVersion int64  `json:"rebuilt_version"`
	RebuiltStatus  string `json:"rebuilt_status"`
}

// Diff is what Compare found.
type Diff struct {
	LiveDocuments    int64 `json:"live_documents"`
	RebuiltDocuments int64 `json:"rebuilt_documents"`
	Mismatched       int   `json:"mismatched"`
	Missing          int   `json:"missing"`
	Extra            int   `json:"extra"`
	// InFlight counts disagreements explained by events one projection
	// has finished and the other has not yet (the document's source
	// sequence is past the other's position in its partition): not
	// differences, the two will agree once both have finished them.
	InFlight int `json:"in_flight"`
	// Samples names up to MaxSamples differing documents.
	Samples []DocDiff `json:"samples,omitempty"`
}

// Differences is the number of documents on which the projections
// disagree (in-flight ones excluded).
func (d Diff) Differences() int { return d.Mismatched + d.Missing + d.Extra }

// Compare compares two projections of one stream document by document
// (version and status) while both may still be consuming: a disagreement
// is counted as a difference only when both projections have finished
// the event that explains it, that is when the differing documents'
// source sequences are at or below both projections' positions in their
// partition; otherwise it is in flight.
func Compare(ctx context.Context, db DB, live, rebuilt Projection) (Diff, error) {
	var d Diff
	livePos, err := Positions(ctx, db, live)
	if err != nil {
		return d, err
	}
	newPos, err := Positions(ctx, db, rebuilt)
	if err != nil {
		return d, err
	}
	cut := func(part int) uint64 { return min(livePos[part], newPos[part]) }
	fill := strings.NewReplacer("{key}", live.key(),
		"{live}", pgx.Identifier{live.Docs}.Sanitize(), "{rebuilt}", pgx.Identifier{rebuilt.Docs}.Sanitize()).Replace
	if err := db.QueryRow(ctx, fill(`SELECT (SELECT count(*) FROM {live}), (SELECT count(*) FROM {rebuilt})`)).Scan(&d.LiveDocuments, &d.RebuiltDocuments); err != nil {
		return d, fmt.Errorf("compare %s with %s: count: %w", live.Docs, rebuilt.Docs, err)
	}
	rows, err := db.Query(ctx, fill(`
		SELECT coalesce(l.{key}, r.{key}), coalesce(l.source_partition, r.source_partition),
			coalesce(l.version, 0), coalesce(l.status, ''), coalesce(l.source_sequence, 0), l.{key} IS NOT NULL,
			coalesce(r.version, 0), coalesce(r.status, ''), coalesce(r.source_sequence, 0), r.{key} IS NOT NULL
		FROM {live} l FULL JOIN {rebuilt} r ON r.{key} = l.{key}
		WHERE l.version IS DISTINCT FROM r.version OR l.status IS DISTINCT FROM r.status
		ORDER BY 1`))
	if err != nil {
		return d, fmt.Errorf("compare %s with %s: %w", live.Docs, rebuilt.Docs, err)
	}
	var dd DocDiff
	var liveSeq, newSeq int64
	var inLive, inNew bool
	_, err = pgx.ForEachRow(rows, []any{&dd.ID, &dd.Partition, &dd.LiveVersion, &dd.LiveStatus, &liveSeq, &inLive,
		&dd.RebuiltVersion, &dd.RebuiltStatus, &newSeq, &inNew}, func() error {
		c := cut(dd.Partition)
		if (inLive && uint64(liveSeq) > c) || (inNew && uint64(newSeq) > c) {
			d.InFlight++
			return nil
		}
		switch {
		case inLive && inNew:
			dd.Class = DiffMismatch
			d.Mismatched++
		case inLive:
			dd.Class = DiffMissing
			d.Missing++
		default:
			dd.Class = DiffExtra
			d.Extra++
		}
		if len(d.Samples) < MaxSamples {
			d.Samples = append(d.Samples, dd)
		}
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("compare %s with %s: %w", live.Docs, rebuilt.Docs, err)
	}
	return d, nil
}
