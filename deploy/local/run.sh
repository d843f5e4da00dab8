#!/usr/bin/env bash
# make run: the system as local processes, for machines without a container
# engine. It uses the machine's PostgreSQL (127.0.0.1:5432, user postgres)
# and starts a pinned nats-server with JetStream (make tools) on port 14222,
# keeping its data in .run/. Ctrl-C stops everything.
#
# Today the system is the example service (pkg/exampleservice); each service
# joins this script as it lands (issue 8 turns it into the full topology).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
run=$root/.run
mkdir -p "$run"

PGHOST_URL=${SHOPFLOOR_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
NATS_PORT=${SHOPFLOOR_NATS_PORT:-14222}
HTTP_PORT=${SHOPFLOOR_HTTP_PORT:-8080}

need() { command -v "$1" >/dev/null || { echo "run: $1 not found: $2" >&2; exit 1; }; }
[[ -x bin/nats-server ]] || { echo "run: bin/nats-server missing: run 'make tools' first" >&2; exit 1; }
need psql "install PostgreSQL client (apt-get install postgresql-client)"

if ! psql "$PGHOST_URL/postgres?sslmode=disable" -qtAc 'SELECT 1' >/dev/null 2>&1; then
	echo "run: PostgreSQL is not reachable at $PGHOST_URL." >&2
	echo "     Start it: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
	exit 1
fi
db=shopfloor_example
psql "$PGHOST_URL/postgres?sslmode=disable" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 ||
	psql "$PGHOST_URL/postgres?sslmode=disable" -qc "CREATE DATABASE $db"

pids=()
cleanup() {
	trap - EXIT INT TERM
	# Stop in reverse start order: services drain before the broker goes.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM

# sync_interval: always: an acknowledged message is on disk (ADR 0007).
cat >"$run/nats.conf" <<CONF
listen: 127.0.0.1:$NATS_PORT
jetstream { store_dir: "$run/nats", sync_interval: always }
CONF
bin/nats-server -c "$run/nats.conf" -l "$run/nats.log" &
pids+=($!)

go build -o "$run/exampleservice" ./pkg/exampleservice/cmd/exampleservice
export DATABASE_URL="$PGHOST_URL/$db?sslmode=disable"
export NATS_URL="nats://127.0.0.1:$NATS_PORT"
export HTTP_ADDR="127.0.0.1:$HTTP_PORT"
"$run/exampleservice" migrate
"$run/exampleservice" serve &
pids+=($!)

cat <<MSG

shopfloor is running (logs below, JSON). Try:
  curl -s -XPOST localhost:$HTTP_PORT/v1/notes -H 'Content-Type: application/json' -d '{"text":"hello"}'
  curl -s localhost:$HTTP_PORT/readyz
  curl -s localhost:$HTTP_PORT/metrics | head
Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
