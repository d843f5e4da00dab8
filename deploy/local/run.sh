#!/usr/bin/env bash
# make run: the system as local processes, for machines without a container
# engine. It uses the machine's PostgreSQL (127.0.0.1:5432, user postgres)
# and Redis (127.0.0.1:6379), starts a pinned nats-server with JetStream
# (make tools) on port 14222 and Varnish in front of catalog, keeping data in
# .run/. Ctrl-C stops everything, services before the broker.
#
# The services join this script as they land (the sandbox issue turns it
# into the full topology).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
run=$root/.run
mkdir -p "$run"

PG=${SHOPFLOOR_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
REDIS_URL=${SHOPFLOOR_REDIS_URL:-redis://127.0.0.1:6379/0}
NATS_PORT=${SHOPFLOOR_NATS_PORT:-14222}
CDN_PORT=${SHOPFLOOR_CDN_PORT:-8080}
CATALOG_PORT=${SHOPFLOOR_CATALOG_PORT:-8081}
EXAMPLE_PORT=${SHOPFLOOR_EXAMPLE_PORT:-8090}
ADMIN_TOKEN=${SHOPFLOOR_ADMIN_TOKEN:-local-admin-token-change-me}

need() { command -v "$1" >/dev/null || { echo "run: $1 not found: $2" >&2; exit 1; }; }
[[ -x bin/nats-server ]] || { echo "run: bin/nats-server missing: run 'make tools' first" >&2; exit 1; }
need psql "install the PostgreSQL client (apt-get install postgresql-client)"
need varnishd "run 'make tools' (installs varnish and varnish-modules)"
need redis-cli "install redis-tools"

if ! psql "$PG/postgres?sslmode=disable" -qtAc 'SELECT 1' >/dev/null 2>&1; then
	echo "run: PostgreSQL is not reachable at $PG." >&2
	echo "     Start it: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
	exit 1
fi
if ! redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
	echo "run: Redis is not reachable at $REDIS_URL (catalog works without it, slower): start it with" >&2
	echo "     redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no" >&2
fi
for db in shopfloor_example shopfloor_catalog; do
	psql "$PG/postgres?sslmode=disable" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 ||
		psql "$PG/postgres?sslmode=disable" -qc "CREATE DATABASE $db"
done

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

go build -o "$run/" ./pkg/exampleservice/cmd/exampleservice ./services/catalog/cmd/catalog
export NATS_URL="nats://127.0.0.1:$NATS_PORT" REDIS_URL

# catalog: migrate, seed on first run, serve (api, relay, invalidation).
export DATABASE_URL="$PG/shopfloor_catalog?sslmode=disable"
"$run/catalog" migrate
if [[ $(psql "$DATABASE_URL" -qtAc 'SELECT count(*) FROM products') == 0 ]]; then
	"$run/catalog" seed --products 1000
fi
HTTP_ADDR="127.0.0.1:$CATALOG_PORT" ADMIN_TOKEN="$ADMIN_TOKEN" CDN_PURGE_URLS="http://127.0.0.1:$CDN_PORT/" \
	"$run/catalog" serve >>"$run/catalog.log" 2>&1 &
pids+=($!)

# The CDN: Varnish with the compose VCL, pointed at the local catalog.
sed -e 's/.host = "catalog";/.host = "127.0.0.1";/' -e "s/.port = \"8081\";/.port = \"$CATALOG_PORT\";/" \
	deploy/compose/varnish/default.vcl >"$run/default.vcl"
varnishd -F -j none -a "127.0.0.1:$CDN_PORT" -f "$run/default.vcl" -n "$run/varnish" -s malloc,64m >>"$run/varnish.log" 2>&1 &
pids+=($!)

# The example service.
DATABASE_URL="$PG/shopfloor_example?sslmode=disable" "$run/exampleservice" migrate
DATABASE_URL="$PG/shopfloor_example?sslmode=disable" HTTP_ADDR="127.0.0.1:$EXAMPLE_PORT" \
	"$run/exampleservice" serve >>"$run/exampleservice.log" 2>&1 &
pids+=($!)

cat <<MSG

shopfloor is running; logs in .run/*.log. Try:
  curl -si 'localhost:$CDN_PORT/v1/products?limit=2'             # catalog through Varnish (X-Cache)
  curl -s  localhost:$CATALOG_PORT/readyz                         # catalog direct
  curl -s -XPUT localhost:$CATALOG_PORT/v1/admin/cache/bypass -H 'Authorization: Bearer $ADMIN_TOKEN' \\
       -H 'Content-Type: application/json' -d '{"enabled":true}'  # the cache's emergency switch
  curl -s -XPOST localhost:$EXAMPLE_PORT/v1/notes -H 'Content-Type: application/json' -d '{"text":"hello"}'
Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
