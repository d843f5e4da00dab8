#!/usr/bin/env bash
# loadtests/river/bench.sh: the anchor for pkg/jobqueue's throughput
# benchmarks (docs/benchmarks.md, "Job queue burn-down"): River's own
# `river bench`, run against the same PostgreSQL server as
# `go test -bench . ./pkg/jobqueue`.
#
# It installs the pinned River CLI into a temporary directory (nothing of
# River lands in this repository or its go.mod), creates a scratch database,
# applies River's migrations, runs `river bench` in its two modes and prints
# jobs/s per run, then drops the database and the temporary directory.
#
#   burn-down:  river bench --num-total-jobs N   (N jobs inserted first,
#               worked down to zero; compare BenchmarkBurnDown)
#   continuous: river bench --duration D         (jobs inserted in batches of
#               5 000 while the backlog is under 75 000, worked at the same
#               time; compare BenchmarkConcurrentInserts)
#
# River's benchmark client runs 2 000 workers, fetches many jobs per query
# and completes them in batches of up to 5 000 (one UPDATE), so it is a
# batched pipeline; compare it with BenchmarkBurnDown/batch=10 first.
#
# Usage (from anywhere; needs go, createdb, dropdb, psql):
#   loadtests/river/bench.sh
# Environment:
#   PGURL          server URL without a database
#                  (default postgres://postgres@127.0.0.1:5432)
#   RIVER_VERSION  River CLI version (default v0.30.1: the newest
#                  cmd/river the Go module proxy and checksum database
#                  served when docs/benchmarks.md was measured)
#   RUNS           runs of each mode (default 3)
#   JOBS           jobs per burn-down run (default 20000, as -benchtime
#                  20000x)
#   DURATION       length of a continuous run (default 10s, as
#                  BenchmarkConcurrentInserts at -benchtime 20000x)
#   MODES          which modes to run (default "burn-down continuous")
#
# The database is truncated by river bench itself on every run, so it is a
# scratch database named riverbench_<pid>; never point this at real data.
set -euo pipefail

PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
RIVER_VERSION=${RIVER_VERSION:-v0.30.1}
RUNS=${RUNS:-3}
JOBS=${JOBS:-20000}
DURATION=${DURATION:-10s}
MODES=${MODES:-burn-down continuous}

db=riverbench_$$
dburl="$PGURL/$db?sslmode=disable"
tmp=$(mktemp -d)
cleanup() {
	dropdb --if-exists --force --maintenance-db="$PGURL/postgres?sslmode=disable" "$db" >/dev/null 2>&1 || true
	chmod -R u+w "$tmp" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "== installing River CLI $RIVER_VERSION into $tmp/bin"
# Through a throwaway module rather than `go install pkg@version`: the result
# is the same, and it also works behind module mirrors that serve the
# version but not the module's version list (which `pkg@version` consults
# for deprecations).
(
	cd "$tmp"
	export GOBIN=$tmp/bin GOFLAGS=-mod=mod
	go mod init riverbench >/dev/null 2>&1
	go get "github.com/riverqueue/river/cmd/river@$RIVER_VERSION" >get.log 2>&1 || { cat get.log; exit 1; }
	go install github.com/riverqueue/river/cmd/river
)
river=$tmp/bin/river
"$river" version | head -1

echo "== database $db"
createdb --maintenance-db="$PGURL/postgres?sslmode=disable" "$db"
"$river" migrate-up --database-url "$dburl" >/dev/null

psql -X -q -d "$dburl" -Atc "SELECT 'postgres ' || current_setting('server_version') || ', synchronous_commit=' || current_setting('synchronous_commit') || ', cores: $(nproc)'"

# Each run prints a final line
#   bench: total jobs worked [ N ], total jobs inserted [ M ], overall job/sec [ X ], running D
run() {
	local mode=$1 out
	shift
	if ! out=$("$river" bench --database-url "$dburl" "$@" 2>&1); then
		echo "$out" >&2
		exit 1
	fi
	if ! out=$(grep 'total jobs worked' <<<"$out"); then
		echo "$mode: river bench printed no summary line" >&2
		exit 1
	fi
	echo "$out" | sed -E "s/^bench: /$mode: /"
	echo "$out" | sed -E 's/.*overall job\/sec \[ *([0-9.]+) *\].*/\1/' >>"$tmp/$mode"
}

for mode in $MODES; do
	case $mode in
	burn-down)
		echo "== burn-down: river bench --num-total-jobs $JOBS, $RUNS runs"
		for _ in $(seq "$RUNS"); do run burn-down --num-total-jobs "$JOBS"; done
		;;
	continuous)
		echo "== continuous: river bench --duration $DURATION, $RUNS runs"
		for _ in $(seq "$RUNS"); do run continuous --duration "$DURATION"; done
		;;
	*)
		echo "unknown mode $mode (burn-down, continuous)" >&2
		exit 2
		;;
	esac
done

echo "== jobs/s (runs; median)"
for mode in $MODES; do
	printf '%-11s %s; median %s\n' "$mode" \
		"$(paste -sd' ' "$tmp/$mode")" \
		"$(sort -n "$tmp/$mode" | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.0f", m}')"
done
