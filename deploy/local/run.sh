#!/usr/bin/env bash
# make run: the compose topology as supervised local processes, for machines
# without a container engine (deploy/compose is the container version; the
# ports, roles and variables are the same).
#
#   deploy/local/run.sh      # foreground (make run); Ctrl-C stops everything
#   deploy/local/ctl.sh up   # in the background, returns when ready (make start)
#   deploy/local/ctl.sh down # stops a background run (make stop)
#   deploy/local/ctl.sh status | stop NAME | start NAME
#
# PostgreSQL is the run's own cluster (initdb + postgres with the installed
# binaries, data in the run directory, its own port, fsync and
# synchronous_commit on), so a chaos drill may SIGKILL it; with
# SHOPFLOOR_POSTGRES_URL set, or without the server binaries, it uses that
# (or the machine's) server instead. It uses the machine's Redis (starting
# it when installed but stopped), and starts the pinned nats-server and toxiproxy-server from
# ./bin (make tools), Varnish in front of catalog, an SMTP sink (the
# Mailpit of compose), the payment-provider simulator, and every service
# role as its own process. Every process is supervised: if it exits it is
# started again a second later, unless ctl.sh stopped it (chaos drills stop
# and start single processes this way). Services reach PostgreSQL, Redis,
# NATS, catalog, the provider and SMTP through Toxiproxy, so a drill can cut
# any link. Logs: .run/logs/<name>.log.
#
# SHOPFLOOR_PORT_BASE (default 8000) shifts every port, SHOPFLOOR_RUN_DIR
# (default .run), SHOPFLOOR_DB_PREFIX (default shopfloor_) and
# SHOPFLOOR_REDIS_DB (default 0) separate a second copy (the end-to-end
# test runs one beside a developer's).
set -euo pipefail
root=${SHOPFLOOR_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$root"
run=${SHOPFLOOR_RUN_DIR:-$root/.run}
mkdir -p "$run/logs" "$run/pids" "$run/stopped"
rm -f "$run/stopped/"* "$run/ready"
DBP=${SHOPFLOOR_DB_PREFIX:-shopfloor_}
REDIS_DB=${SHOPFLOOR_REDIS_DB:-0}
# shellcheck source=ports.sh
source "$root/deploy/local/ports.sh"
# shellcheck source=replicas.sh
source "$root/deploy/local/replicas.sh"
# Services made by make new-service (tools/newservice): each gets its
# database, its PostgreSQL link, its migrations and its processes below.
generated=(
	# new-service: generated services above this line
)

need() { command -v "$1" >/dev/null || { echo "run: $1 not found: $2" >&2; exit 1; }; }
for t in nats-server toxiproxy-server; do
	[[ -x bin/$t ]] || { echo "run: bin/$t missing: run 'make tools' first" >&2; exit 1; }
done
need psql "install the PostgreSQL client (apt-get install postgresql-client)"
need varnishd "run 'make tools' (installs varnish and varnish-modules)"
need redis-cli "install redis-tools"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! port_open 6379 && command -v redis-server >/dev/null; then
	echo "run: starting Redis"
	redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no
fi

# Secrets of this run directory, made once and kept (mode 0600), never a
# default: the demo users' password, one client secret per service
# client of the identity provider, catalog's Redis password, the CDN's
# purge secret, and one NATS password per NATS user
# (NATS_<USER>_PASSWORD; the users are those of the broker's
# authorization, deploy/compose/nats/auth.conf, ADR 0039). identity.env
# is what `make token` and the chaos drills read to sign in; nats.env
# what nats-server reads its users' passwords from, and drills and
# `ctl.sh exec` the operator's.
secret() { head -c 33 /dev/urandom | base64 | tr -d '/+=' | head -c 40; }
mapfile -t nats_users < <(sed -n 's/^ *user: "\([a-z0-9-]*\)"$/\1/p' deploy/compose/nats/auth.conf)
nats_vars=()
for u in "${nats_users[@]}"; do
	v=${u^^}
	nats_vars+=("NATS_${v//-/_}_PASSWORD")
done
# PostgreSQL (ADR 0040): the run's own cluster's superuser password
# (POSTGRES_PASSWORD), and two roles per service's database, its owner
# (migrations) and its app role (the running service): <SVC>_DB_OWNER_PASSWORD
# and <SVC>_DB_APP_PASSWORD.
services=(catalog orders payments notifications search ${generated[@]+"${generated[@]}"})
pg_vars=(POSTGRES_PASSWORD)
for svc in "${services[@]}"; do
	v=${svc^^}
	pg_vars+=("${v//-/_}_DB_OWNER_PASSWORD" "${v//-/_}_DB_APP_PASSWORD")
done
# A run directory made before a secret existed gets the missing ones.
(
	umask 077
	touch "$run/secrets.env"
	for v in DEMO_PASSWORD ORDERS_CLIENT_SECRET PAYMENTS_CLIENT_SECRET NOTIFICATIONS_CLIENT_SECRET SEARCH_CLIENT_SECRET \
		WEB_CLIENT_SECRET WEB_SESSION_SECRET REDIS_CATALOG_PASSWORD CDN_PURGE_SECRET NATS_ROUTE_PASSWORD "${nats_vars[@]}" "${pg_vars[@]}"; do
		grep -q "^$v=" "$run/secrets.env" || echo "$v=$(secret)" >>"$run/secrets.env"
	done
	grep -E "^($(IFS='|'; echo "${nats_vars[*]}"))=" "$run/secrets.env" >"$run/nats.env"
)
# shellcheck disable=SC1091
source "$run/secrets.env"

ISSUER="http://127.0.0.1:$IDENTITY_PORT"
(
	umask 077
	printf 'IDENTITY_ISSUER=%s\nIDENTITY_DEMO_PASSWORD=%s\n' "$ISSUER" "$DEMO_PASSWORD" >"$run/identity.env"
)
# This run's Redis database (the cache's, without Toxiproxy): the one the
# redis-flush drill may FLUSHDB, never another copy's. The drills use the
# machine's default user (an operator's); catalog does not.
printf 'REDIS_URL=redis://127.0.0.1:6379/%s\n' "$REDIS_DB" >"$run/redis.env"
# catalog's Redis user (ADR 0036): only the cache's commands on the cache's
# keys and channels (pkg/cache ACLRules("shopfloor"); a test keeps the two
# equal), with this run directory's REDIS_CATALOG_PASSWORD. One user per
# Redis database, so two runs side by side (the end-to-end test's beside a
# developer's) each keep their own password; it is deleted when the run
# stops. redis-cli (needed above anyway) sets it up: no Go program for one
# command. The password goes through stdin (-x), never a command line.
# Redis ACLs cannot confine a user to a database: the run's database is
# kept apart by convention, not by the ACL.
REDIS_CATALOG_USER=shopfloor-catalog-$REDIS_DB
redis_catalog_acl=(resetkeys resetchannels '~shopfloor:*' '&shopfloor:*' -@all +evalsha +eval +get +set +exists +del +publish +subscribe +unsubscribe +ping +hello +auth +select)
printf '>%s' "$REDIS_CATALOG_PASSWORD" | redis-cli -h 127.0.0.1 -p 6379 -x ACL SETUSER "$REDIS_CATALOG_USER" reset on "${redis_catalog_acl[@]}" | grep -qx OK ||
	{ echo "run: could not create the Redis user $REDIS_CATALOG_USER (ACL SETUSER on 127.0.0.1:6379; Redis 6.2 or later is needed)" >&2; exit 1; }

echo "run: building"
builds=(./services/identity/cmd/identity ./services/catalog/cmd/catalog ./services/orders/cmd/orders ./services/payments/cmd/payments
	./services/notifications/cmd/notifications ./services/search/cmd/search ./services/web/cmd/web ./deploy/probe ./deploy/varnishexporter ./deploy/pgroles)
for svc in ${generated[@]+"${generated[@]}"}; do builds+=("./services/$svc/cmd/$svc"); done
# SHOPFLOOR_STREAM_ENGINE=kafka (default nats) runs the streams on Kafka
# (ADR 0046): deploy/kfake, franz-go's in-process Kafka, as one broker with
# its log in the run directory. NATS still runs (the console's dead-letter
# view and the dlq tools are JetStream's), but no service streams on it.
stream_engine=${SHOPFLOOR_STREAM_ENGINE:-nats}
case $stream_engine in
nats) ;;
kafka) builds+=(./deploy/kfake) ;;
*) echo "run: SHOPFLOOR_STREAM_ENGINE=$stream_engine: nats or kafka" >&2; exit 1 ;;
esac
go build -o "$run/" "${builds[@]}"

supervisors=()
cleanup() {
	trap - EXIT INT TERM
	echo "run: stopping"
	touch "$run/stopped/ALL"
	# Reverse start order: services drain before their dependencies go.
	for ((i = ${#supervisors[@]} - 1; i >= 0; i--)); do
		name=${supervisors[i]}
		pid=$(cat "$run/pids/$name.pid" 2>/dev/null || true)
		# PostgreSQL: a fast shutdown (SIGINT), which does not wait for
		# sessions a person left open.
		sig=TERM
		[[ $name == postgres ]] && sig=INT
		[[ -n $pid ]] && kill -s "$sig" "$pid" 2>/dev/null && while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	done
	wait 2>/dev/null || true
	redis-cli -h 127.0.0.1 -p 6379 ACL DELUSER "$REDIS_CATALOG_USER" >/dev/null 2>&1 || true
	rm -f "$run/run.pid" "$run/ready" "$run/pids/"*
}
trap cleanup EXIT
trap 'exit 0' INT TERM
echo $$ >"$run/run.pid"

# supervise NAME CMD...: runs CMD, restarts it a second after it exits
# unless $run/stopped/NAME (or ALL) exists; the current pid is in
# $run/pids/NAME.pid.
supervise() {
	local name=$1
	shift
	supervisors+=("$name")
	# The command line, NUL-separated, for `ctl.sh exec NAME ARGS...`
	# (an operator command with the process's binary and environment).
	mkdir -p "$run/cmd"
	printf '%s\0' "$@" >"$run/cmd/$name"
	(
		trap 'kill "$(cat "$run/pids/$name.pid" 2>/dev/null)" 2>/dev/null; exit 0' TERM
		while [[ ! -e $run/stopped/ALL ]]; do
			if [[ -e $run/stopped/$name ]]; then
				sleep 0.3
				continue
			fi
			"$@" >>"$run/logs/$name.log" 2>&1 &
			echo $! >"$run/pids/$name.pid"
			wait $! || true
			[[ -e $run/stopped/ALL ]] || sleep 1
		done
	) &
}

# wait_ready NAME URL: until URL answers 2xx (60 s). For a service, URL
# is its admin listener's /readyz, whose last answer (naming the failing
# checks) is shown when it does not become ready.
wait_ready() {
	local last=""
	for _ in $(seq 1 300); do
		last=$("$run/probe" "$2" 2>&1) && return 0
		sleep 0.2
	done
	echo "run: $1 did not become ready: $last; see $run/logs/$1.log" >&2
	exit 1
}

# --- PostgreSQL ---------------------------------------------------------------
# pgsql: psql as the superuser, its password (if any) in the environment of
# that one command, never on a command line or in the services' environment.
pgsql() { PGPASSWORD=$pg_password psql "$@"; }
# own: the run's own cluster, supervised like every process (ctl.sh kill
# postgres is a crash: the postmaster and its backends get SIGKILL, the
# supervisor starts it again a second later and it recovers from its WAL).
# server: SHOPFLOOR_POSTGRES_URL, or the machine's server on 5432 when the
# server binaries are not installed.
pg_bin=${SHOPFLOOR_PG_BIN:-$(dirname "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1 || true)")}
if [[ -z ${SHOPFLOOR_POSTGRES_URL:-} && -x $pg_bin/initdb && -x $pg_bin/postgres ]]; then
	PG_MODE=own
	PG="postgres://postgres@127.0.0.1:$PG_PORT"
	PG_ADMIN="postgres://postgres:$POSTGRES_PASSWORD@127.0.0.1:$PG_PORT"
	pg_password=$POSTGRES_PASSWORD
	PG_UPSTREAM="127.0.0.1:$PG_PORT"
	pgdata=$run/pg
	as_pg=()
	if [[ $(id -u) == 0 ]]; then
		# PostgreSQL refuses to run as root: the cluster belongs to the
		# postgres user. When that user cannot reach the run directory
		# (a test's 0700 temporary directory), the data lives in
		# /var/tmp and $run/pg links to it.
		id postgres >/dev/null 2>&1 || { echo "run: running as root and there is no postgres user for the cluster" >&2; exit 1; }
		as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
		if [[ ! -e $pgdata ]]; then
			mkdir -p "$pgdata" && chown postgres: "$pgdata" && chmod 0700 "$pgdata"
			if ! "${as_pg[@]}" test -w "$pgdata"; then
				rmdir "$pgdata"
				far=/var/tmp/shopfloor-pg/$(echo "$run" | cksum | cut -d' ' -f1)
				mkdir -p "$far" && chown postgres: "$far" && chmod 0700 "$far"
				ln -s "$far" "$pgdata"
			fi
		fi
	fi
	# The real directory: the postgres user may not pass through $run.
	pgdata=$(readlink -f "$pgdata")
	if [[ ! -s $pgdata/PG_VERSION ]]; then
		echo "run: creating the PostgreSQL cluster in $pgdata"
		mkdir -p "$pgdata"
		# Every TCP connection proves its password (SCRAM): the superuser's
		# is POSTGRES_PASSWORD, each service role's its own (ADR 0040). The
		# password file is readable by the cluster's user only, and gone
		# once initdb has read it; it sits beside the data directory, which
		# that user can reach (the run directory it may not: see above).
		pwfile=$(mktemp "$(dirname "$pgdata")/pgpass.XXXXXX")
		printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
		[[ ${#as_pg[@]} == 0 ]] || chown postgres: "$pwfile"
		"${as_pg[@]}" "$pg_bin/initdb" -D "$pgdata" -U postgres --auth-local=peer --auth-host=scram-sha-256 --pwfile="$pwfile" \
			-E UTF8 --locale=C.UTF-8 >"$run/logs/initdb.log" 2>&1 ||
			{ rm -f "$pwfile"; echo "run: initdb failed; see $run/logs/initdb.log" >&2; exit 1; }
		rm -f "$pwfile"
	fi
	# Listens on 127.0.0.1 only, no Unix socket (a run directory's path can
	# be longer than a socket's); durable commits as in production. A
	# cluster made before ADR 0040 keeps its trust authentication (every
	# password is accepted): stop the run and delete $run/pg for a new one.
	supervise postgres "${as_pg[@]}" "$pg_bin/postgres" -D "$pgdata" -c listen_addresses=127.0.0.1 -c port="$PG_PORT" \
		-c unix_socket_directories= -c fsync=on -c synchronous_commit=on -c full_page_writes=on \
		-c max_connections="${SHOPFLOOR_PG_MAX_CONNECTIONS:-300}" -c shared_buffers=128MB -c log_min_messages=warning \
		-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=top
	for _ in $(seq 1 300); do
		pgsql "$PG/postgres?sslmode=disable" -qtAc 'SELECT 1' >/dev/null 2>&1 && break
		sleep 0.2
	done
else
	PG_MODE=server
	PG=${SHOPFLOOR_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
	PG=${PG%/}
	PG_ADMIN=$PG
	pg_password=${PGPASSWORD:-}
	hostport=${PG#*://}
	hostport=${hostport#*@}
	PG_UPSTREAM=${hostport%%/*}
	if [[ -z ${SHOPFLOOR_POSTGRES_URL:-} ]] && ! port_open 5432 && command -v pg_ctlcluster >/dev/null; then
		echo "run: starting PostgreSQL"
		pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
	fi
fi
if ! pgsql "$PG/postgres?sslmode=disable" -qtAc 'SELECT 1' >/dev/null 2>&1; then
	echo "run: PostgreSQL is not reachable at $PG ($PG_MODE); see $run/logs/postgres.log." >&2
	[[ $PG_MODE == own ]] || echo "     Start it: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
	exit 1
fi
# What tests and tools need to find this run's PostgreSQL again (the
# superuser's URL, with its password: mode 0600).
(
	umask 077
	printf 'PG_MODE=%s\nPG_URL=%s\nPG_DATA=%s\n' "$PG_MODE" "$PG_ADMIN" "$(readlink -f "${pgdata:-}" 2>/dev/null || true)" >"$run/postgres.env"
)
# Each service's database with its two roles, <db>_owner and <db>_app
# (deploy/pgroles, ADR 0040), at every start: idempotent, and a database
# from before the roles is handed to its owner. No service runs as the
# superuser.
# The passwords reach it through its environment (exported in a subshell),
# not a command line.
(
	for v in "${pg_vars[@]}"; do export "${v?}"; done
	PGROLES_ADMIN_URL="$PG_ADMIN/postgres?sslmode=disable" exec "$run/pgroles" -prefix "$DBP" "${services[@]}"
) >"$run/logs/pgroles.log" 2>&1 ||
	{ echo "run: could not set up the databases and their roles; see $run/logs/pgroles.log" >&2; exit 1; }

# --- infrastructure ---------------------------------------------------------
# sync_interval: always: an acknowledged message is on disk (ADR 0007).
# The users and their permissions are compose's (auth.conf, ADR 0039);
# their passwords come from nats-server's environment (nats.env).
#
# SHOPFLOOR_NATS_NODES=3 runs a JetStream cluster instead (ADR 0041):
# nodes nats, nats-2 and nats-3, each with its own store, routed to each
# other on loopback (the routes log in with NATS_ROUTE_PASSWORD); every
# service gets all three addresses and makes its streams with three
# replicas (STREAM_REPLICAS=3). A cluster keeps its streams apart from a
# single node's (nats-cluster/ against nats/): switching between the two
# starts the streams empty, so switch on a fresh run directory.
cp deploy/compose/nats/auth.conf "$run/nats-auth.conf"
nats_nodes=${SHOPFLOOR_NATS_NODES:-1}
[[ $nats_nodes == 1 || $nats_nodes == 3 ]] || { echo "run: SHOPFLOOR_NATS_NODES=$nats_nodes: 1 or 3" >&2; exit 1; }
mapfile -t nats_env <"$run/nats.env"
nats_names=(nats nats-2 nats-3)
nats_ports=("$NATS_PORT" "$NATS2_PORT" "$NATS3_PORT")
nats_mon=("$NATS_MON_PORT" "$NATS2_MON_PORT" "$NATS3_MON_PORT")
nats_routes=("$NATS_ROUTE_PORT" "$NATS2_ROUTE_PORT" "$NATS3_ROUTE_PORT")
# SHOPFLOOR_TOXIPROXY=off (default on) leaves Toxiproxy out: every service
# reaches PostgreSQL, Redis, NATS, catalog, the PSP and SMTP directly, as a
# deployment does. For throughput runs (loadtests/profile.sh,
# docs/capacity.md): here the proxy costs about a sixth of the CPU a settled
# order takes. The drills need it: chaos refuses such a topology.
toxiproxy=${SHOPFLOOR_TOXIPROXY:-on}
case $toxiproxy in
on) ;;
off)
	for svc in "${services[@]}"; do
		printf -v "TOXI_PG_${svc^^}" '%s' "${PG_UPSTREAM##*:}"
	done
	TOXI_REDIS=6379 TOXI_NATS=$NATS_PORT TOXI_NATS2=$NATS2_PORT TOXI_NATS3=$NATS3_PORT
	TOXI_CATALOG=$CATALOG_PORT TOXI_PSP=$PSP_PORT TOXI_SMTP=$SMTP_PORT
	;;
*) echo "run: SHOPFLOOR_TOXIPROXY=$toxiproxy: on or off" >&2; exit 1 ;;
esac
nats_toxi=("$TOXI_NATS" "$TOXI_NATS2" "$TOXI_NATS3")
for ((n = 0; n < nats_nodes; n++)); do
	conf=$run/${nats_names[n]}.conf
	[[ $n == 0 ]] && conf=$run/nats.conf
	(
		umask 077
		exec >"$conf"
		if ((nats_nodes == 1)); then
			printf 'listen: 127.0.0.1:%s\nhttp: 127.0.0.1:%s\njetstream { store_dir: "%s", sync_interval: always }\ninclude ./nats-auth.conf\n' \
				"${nats_ports[n]}" "${nats_mon[n]}" "$run/nats"
		else
			routes=""
			for ((m = 0; m < nats_nodes; m++)); do
				routes+="nats-route://route:$NATS_ROUTE_PASSWORD@127.0.0.1:${nats_routes[m]}, "
			done
			printf 'server_name: %s\nlisten: 127.0.0.1:%s\nhttp: 127.0.0.1:%s\njetstream { store_dir: "%s", sync_interval: always }\n' \
				"${nats_names[n]}" "${nats_ports[n]}" "${nats_mon[n]}" "$run/nats-cluster/${nats_names[n]}"
			printf 'cluster {\n  name: shopfloor\n  listen: 127.0.0.1:%s\n  authorization { user: route, password: "%s" }\n  routes: [%s]\n}\ninclude ./nats-auth.conf\n' \
				"${nats_routes[n]}" "$NATS_ROUTE_PASSWORD" "${routes%, }"
		fi
	)
	supervise "${nats_names[n]}" env "${nats_env[@]}" bin/nats-server -c "$conf"
done
if [[ $toxiproxy == on ]]; then
cat >"$run/toxiproxy.json" <<JSON
[
$(for svc in ${generated[@]+"${generated[@]}"}; do
	port=TOXI_PG_${svc^^}
	printf '  {"name": "postgres-%s", "listen": "127.0.0.1:%s", "upstream": "%s", "enabled": true},\n' "$svc" "${!port}" "$PG_UPSTREAM"
done)
  {"name": "postgres-catalog", "listen": "127.0.0.1:$TOXI_PG_CATALOG", "upstream": "$PG_UPSTREAM", "enabled": true},
  {"name": "postgres-orders", "listen": "127.0.0.1:$TOXI_PG_ORDERS", "upstream": "$PG_UPSTREAM", "enabled": true},
  {"name": "postgres-payments", "listen": "127.0.0.1:$TOXI_PG_PAYMENTS", "upstream": "$PG_UPSTREAM", "enabled": true},
  {"name": "postgres-notifications", "listen": "127.0.0.1:$TOXI_PG_NOTIFICATIONS", "upstream": "$PG_UPSTREAM", "enabled": true},
  {"name": "postgres-search", "listen": "127.0.0.1:$TOXI_PG_SEARCH", "upstream": "$PG_UPSTREAM", "enabled": true},
  {"name": "redis", "listen": "127.0.0.1:$TOXI_REDIS", "upstream": "127.0.0.1:6379", "enabled": true},
  {"name": "nats", "listen": "127.0.0.1:$TOXI_NATS", "upstream": "127.0.0.1:$NATS_PORT", "enabled": true},
$(for ((n = 1; n < nats_nodes; n++)); do
	printf '  {"name": "%s", "listen": "127.0.0.1:%s", "upstream": "127.0.0.1:%s", "enabled": true},\n' "${nats_names[n]}" "${nats_toxi[n]}" "${nats_ports[n]}"
done)
  {"name": "catalog", "listen": "127.0.0.1:$TOXI_CATALOG", "upstream": "127.0.0.1:$CATALOG_PORT", "enabled": true},
  {"name": "psp", "listen": "127.0.0.1:$TOXI_PSP", "upstream": "127.0.0.1:$PSP_PORT", "enabled": true},
  {"name": "smtp", "listen": "127.0.0.1:$TOXI_SMTP", "upstream": "127.0.0.1:$SMTP_PORT", "enabled": true}
]
JSON
supervise toxiproxy bin/toxiproxy-server -host 127.0.0.1 -port "$TOXI_API" -config "$run/toxiproxy.json"
fi
for ((n = 0; n < nats_nodes; n++)); do
	wait_ready "${nats_names[n]}" "http://127.0.0.1:${nats_mon[n]}/healthz?js-enabled-only=true"
done
[[ $toxiproxy == off ]] || wait_ready toxiproxy "http://127.0.0.1:$TOXI_API/proxies"
# Kafka is reached directly, not through Toxiproxy: a Kafka client connects
# to the brokers the cluster's metadata names after the first contact, so a
# proxy on the seed address alone would not carry its traffic.
if [[ $stream_engine == kafka ]]; then
	supervise kafka env KFAKE_PORT="$KAFKA_PORT" KFAKE_DATA_DIR="$run/kafka" KFAKE_HEALTH_ADDR="127.0.0.1:$KFAKE_HEALTH_PORT" "$run/kfake"
	wait_ready kafka "http://127.0.0.1:$KFAKE_HEALTH_PORT/healthz"
fi

supervise smtp-sink env SMTP_SINK_ADDR="127.0.0.1:$SMTP_PORT" SMTP_SINK_HTTP_ADDR="127.0.0.1:$SMTP_HTTP_PORT" "$run/notifications" smtp-sink
supervise psp-sim env PSP_SIM_ADDR="127.0.0.1:$PSP_PORT" "$run/payments" psp-sim

# --- migrations and seed (one-shot, like compose's jobs) ----------------------
# Each service reaches its database through its own link (postgres-<svc>):
# dburl SVC as its app role (what it runs as), dburl SVC owner as its
# owner (the migrations; operator commands through `ctl.sh exec`, which
# reads postgres-owners.env).
dburl() {
	local port v role=app
	[[ ${2:-} == owner ]] && role=owner
	port=TOXI_PG_${1^^}
	v=${1^^}_DB_${role^^}_PASSWORD
	echo "postgres://$DBP${1}_$role:${!v}@127.0.0.1:${!port}/$DBP$1?sslmode=disable"
}
(
	umask 077
	for svc in "${services[@]}"; do echo "$svc=$(dburl "$svc" owner)"; done >"$run/postgres-owners.env"
)
for svc in "${services[@]}"; do
	DATABASE_URL=$(dburl "$svc" owner) "$run/$svc" migrate >>"$run/logs/$svc-migrate.log" 2>&1 ||
		{ echo "run: $svc migrate failed; see $run/logs/$svc-migrate.log" >&2; exit 1; }
done
if [[ $(pgsql "$PG/${DBP}catalog?sslmode=disable" -qtAc 'SELECT count(*) FROM products') == 0 ]]; then
	DATABASE_URL=$(dburl catalog) "$run/catalog" seed --products "${SEED_PRODUCTS:-1000}" >>"$run/logs/catalog-seed.log" 2>&1
fi

# --- identity -----------------------------------------------------------------
# Rate limits (ADR 0038; identity and every service), sized for the load tests and drills: every
# anonymous client here is 127.0.0.1 (k6 reads up to 2 000/s), and drills
# and k6 checkouts go through ten customers (up to ~20 requests/s each).
# The services' own defaults are where a public deployment starts.
limits=(RATE_LIMIT_ANONYMOUS=5000 RATE_LIMIT_ANONYMOUS_BURST=10000 RATE_LIMIT_PRINCIPAL=500 RATE_LIMIT_PRINCIPAL_BURST=1000
	RATE_LIMIT_SERVICE=5000 RATE_LIMIT_SERVICE_BURST=10000)
# The sandbox OpenID Connect provider (services/identity): demo users ada,
# grace (customers) and oscar (operator) with the run's demo password;
# "load-*" users are synthetic customers for drills and load tests. Keys
# persist in the run directory, so a restart logs nobody out.
supervise identity env LOG_LEVEL="${LOG_LEVEL:-INFO}" "${limits[@]}" HTTP_ADDR="127.0.0.1:$IDENTITY_PORT" ADMIN_ADDR="127.0.0.1:$IDENTITY_ADMIN_PORT" \
	IDENTITY_ISSUER="$ISSUER" IDENTITY_DEMO_PASSWORD="$DEMO_PASSWORD" IDENTITY_KEY_DIR="$run/identity-keys" \
	IDENTITY_SYNTHETIC_CUSTOMER_PREFIX=load- \
	IDENTITY_CLIENT_SECRETS="orders=$ORDERS_CLIENT_SECRET,payments=$PAYMENTS_CLIENT_SECRET,notifications=$NOTIFICATIONS_CLIENT_SECRET,search=$SEARCH_CLIENT_SECRET,web=$WEB_CLIENT_SECRET" \
	IDENTITY_WEB_REDIRECT_URIS="http://127.0.0.1:$WEB_PORT/auth/callback" \
	"$run/identity" serve
wait_ready identity "http://127.0.0.1:$IDENTITY_ADMIN_PORT/readyz"

# --- services ---------------------------------------------------------------
# More than one instance of each role (SHOPFLOOR_REPLICAS, replicas.sh):
# HAProxy takes the api processes' public ports first, so Varnish,
# Toxiproxy and clients reach whichever instance is up.
if ((replicas > 1)); then
	need haproxy "run 'make tools' (installs haproxy)"
	haproxy_config >"$run/haproxy.cfg"
	haproxy -c -q -f "$run/haproxy.cfg" || { echo "run: $run/haproxy.cfg is not valid (haproxy -c)" >&2; exit 1; }
	supervise haproxy haproxy -db -f "$run/haproxy.cfg"
fi
# Every API verifies bearer tokens of the issuer (AUTH_ISSUER, pkg/auth).
# Every NATS node, each through its own link, and as many replicas of
# each stream as there are nodes (ADR 0041).
nats_url=""
for ((n = 0; n < nats_nodes; n++)); do nats_url+="nats://127.0.0.1:${nats_toxi[n]},"; done
engine_env=() kafka_console=()
if [[ $stream_engine == kafka ]]; then
	engine_env=(STREAM_ENGINE=kafka KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT")
	kafka_console=(WEB_CONSOLE_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT") # the console's stream dead letters
fi
common=(NATS_URL="${nats_url%,}" STREAM_REPLICAS="$nats_nodes" "${engine_env[@]}" ADMIN_PPROF=true LOG_LEVEL="${LOG_LEVEL:-INFO}" OTEL_EXPORTER_OTLP_ENDPOINT="${OTEL_EXPORTER_OTLP_ENDPOINT:-}" AUTH_ISSUER="$ISSUER" "${limits[@]}")
# Each service connects to NATS as its own user (ADR 0039).
catalog_env=("${common[@]}" NATS_USER=catalog NATS_PASSWORD="$NATS_CATALOG_PASSWORD" DATABASE_URL="$(dburl catalog)" REDIS_URL="redis://$REDIS_CATALOG_USER:$REDIS_CATALOG_PASSWORD@127.0.0.1:$TOXI_REDIS/$REDIS_DB")
# catalog's api reads are short and wait on the network, not the CPU: twice
# the default pool (8), so a slow link to PostgreSQL (the latency drill:
# 200ms a round trip, 2 queries a price lookup) does not queue lookups
# behind the pool past orders' 2s catalog timeout.
api catalog "$CATALOG_PORT" "$CATALOG_ADMIN_PORT" env "${catalog_env[@]}" DATABASE_MAX_CONNS=16 ROLES=api "$run/catalog" serve
wait_ready catalog "http://127.0.0.1:$CATALOG_ADMIN_PORT/readyz"

# The CDN: Varnish with the compose VCL, pointed at the local catalog's
# public port (it answers 404 for /v1/admin and /metrics itself). It
# accepts a PURGE only with CDN_PURGE_SECRET (this run's) in X-Purge-Secret.
sed -e 's/.host = "catalog";/.host = "127.0.0.1";/' -e "s/.port = \"8081\";/.port = \"$CATALOG_PORT\";/" \
	deploy/compose/varnish/default.vcl >"$run/default.vcl"
supervise varnish env CDN_PURGE_SECRET="$CDN_PURGE_SECRET" varnishd -F -j none -a "127.0.0.1:$CDN_PORT" -f "$run/default.vcl" -n "$run/varnish" -s malloc,64m
supervise varnish-exporter "$run/varnishexporter" -addr "127.0.0.1:$VARNISH_EXPORTER_PORT" -n "$run/varnish"
# The consumer role (cache invalidation) purges Varnish: start it once Varnish answers, or
# the seed's events meet refused purges and burn their retries.
wait_ready varnish "http://127.0.0.1:$CDN_PORT/v1/products?limit=1"
role catalog-worker "$CATALOG_WORKER_PORT" "$CATALOG_WORKER_ADMIN_PORT" env "${catalog_env[@]}" ROLES=relay,consumer \
	CDN_PURGE_URLS="http://127.0.0.1:$CDN_PORT/" CDN_PURGE_SECRET="$CDN_PURGE_SECRET" "$run/catalog" serve

# Checkouts per customer: drills send up to 80/s through ten customers.
orders_env=("${common[@]}" NATS_USER=orders NATS_PASSWORD="$NATS_ORDERS_PASSWORD" DATABASE_URL="$(dburl orders)" CATALOG_URL="http://127.0.0.1:$TOXI_CATALOG" CHECKOUT_RATE_LIMIT=200 CHECKOUT_RATE_LIMIT_BURST=400)
# The api role calls catalog and the consumer role payments (stuck-order
# repair), so they hold orders' client secret; the relay does not.
api orders "$ORDERS_PORT" "$ORDERS_ADMIN_PORT" env "${orders_env[@]}" AUTH_CLIENT_ID=orders AUTH_CLIENT_SECRET="$ORDERS_CLIENT_SECRET" ROLES=api "$run/orders" serve
role orders-relay "$ORDERS_RELAY_PORT" "$ORDERS_RELAY_ADMIN_PORT" env "${orders_env[@]}" ROLES=relay "$run/orders" serve
role orders-consumer "$ORDERS_CONSUMER_PORT" "$ORDERS_CONSUMER_ADMIN_PORT" env "${orders_env[@]}" AUTH_CLIENT_ID=orders AUTH_CLIENT_SECRET="$ORDERS_CLIENT_SECRET" \
	PAYMENTS_URL="http://127.0.0.1:$PAYMENTS_PORT" ROLES=consumer "$run/orders" serve

payments_env=("${common[@]}" NATS_USER=payments NATS_PASSWORD="$NATS_PAYMENTS_PASSWORD" DATABASE_URL="$(dburl payments)" PSP_URL="http://127.0.0.1:$TOXI_PSP")
api payments "$PAYMENTS_PORT" "$PAYMENTS_ADMIN_PORT" env "${payments_env[@]}" ROLES=api "$run/payments" serve
role payments-worker "$PAYMENTS_WORKER_PORT" "$PAYMENTS_WORKER_ADMIN_PORT" env "${payments_env[@]}" ROLES=worker "$run/payments" serve
role payments-relay "$PAYMENTS_RELAY_PORT" "$PAYMENTS_RELAY_ADMIN_PORT" env "${payments_env[@]}" ROLES=relay,consumer "$run/payments" serve

notifications_env=("${common[@]}" NATS_USER=notifications NATS_PASSWORD="$NATS_NOTIFICATIONS_PASSWORD" DATABASE_URL="$(dburl notifications)" SMTP_HOST=127.0.0.1 SMTP_PORT="$TOXI_SMTP" SMTP_TLS=none SMTP_FROM=shop@shopfloor.local)
api notifications "$NOTIFICATIONS_PORT" "$NOTIFICATIONS_ADMIN_PORT" env "${notifications_env[@]}" ROLES=api,consumer "$run/notifications" serve
role notifications-worker "$NOTIFICATIONS_WORKER_PORT" "$NOTIFICATIONS_WORKER_ADMIN_PORT" env "${notifications_env[@]}" ROLES=worker "$run/notifications" serve

search_env=("${common[@]}" NATS_USER=search NATS_PASSWORD="$NATS_SEARCH_PASSWORD" DATABASE_URL="$(dburl search)")
api search "$SEARCH_PORT" "$SEARCH_ADMIN_PORT" env "${search_env[@]}" ROLES=api,consumer "$run/search" serve

# Services made by make new-service: their processes, and the admin ports
# whose /readyz the run waits for (ready, replicas.sh).
# new-service: processes above this line

# A second instance of every consumer group (SHOPFLOOR_CONSUMER_INSTANCES,
# default 2; 1 turns them off), consumer roles only: the instances of a
# group share its partitions, and when one dies the other takes them over
# (pkg/stream; the partition-handover drill).
consumers2=()
if ((${SHOPFLOOR_CONSUMER_INSTANCES:-2} >= 2)); then
	supervise orders-consumer-2 env "${orders_env[@]}" AUTH_CLIENT_ID=orders AUTH_CLIENT_SECRET="$ORDERS_CLIENT_SECRET" \
		PAYMENTS_URL="http://127.0.0.1:$PAYMENTS_PORT" ROLES=consumer HTTP_ADDR="127.0.0.1:$ORDERS_CONSUMER2_PORT" ADMIN_ADDR="127.0.0.1:$ORDERS_CONSUMER2_ADMIN_PORT" "$run/orders" serve
	supervise payments-consumer-2 env "${payments_env[@]}" ROLES=consumer HTTP_ADDR="127.0.0.1:$PAYMENTS_CONSUMER2_PORT" ADMIN_ADDR="127.0.0.1:$PAYMENTS_CONSUMER2_ADMIN_PORT" "$run/payments" serve
	supervise notifications-consumer-2 env "${notifications_env[@]}" ROLES=consumer HTTP_ADDR="127.0.0.1:$NOTIFICATIONS_CONSUMER2_PORT" ADMIN_ADDR="127.0.0.1:$NOTIFICATIONS_CONSUMER2_ADMIN_PORT" "$run/notifications" serve
	supervise search-consumer-2 env "${search_env[@]}" ROLES=consumer HTTP_ADDR="127.0.0.1:$SEARCH_CONSUMER2_PORT" ADMIN_ADDR="127.0.0.1:$SEARCH_CONSUMER2_ADMIN_PORT" "$run/search" serve
	supervise catalog-invalidation-2 env "${catalog_env[@]}" ROLES=consumer HTTP_ADDR="127.0.0.1:$CATALOG_INVALIDATION2_PORT" ADMIN_ADDR="127.0.0.1:$CATALOG_INVALIDATION2_ADMIN_PORT" \
		CDN_PURGE_URLS="http://127.0.0.1:$CDN_PORT/" CDN_PURGE_SECRET="$CDN_PURGE_SECRET" "$run/catalog" serve
	consumers2=("orders-consumer-2:$ORDERS_CONSUMER2_ADMIN_PORT" "payments-consumer-2:$PAYMENTS_CONSUMER2_ADMIN_PORT" "notifications-consumer-2:$NOTIFICATIONS_CONSUMER2_ADMIN_PORT"
		"search-consumer-2:$SEARCH_CONSUMER2_ADMIN_PORT" "catalog-invalidation-2:$CATALOG_INVALIDATION2_ADMIN_PORT")
fi

# The storefront: signs people in through identity (the "web" client),
# reads catalog through the CDN and every other service's public API with
# the signed-in person's token; e-mails are read from the SMTP sink.
supervise web env LOG_LEVEL="${LOG_LEVEL:-INFO}" OTEL_EXPORTER_OTLP_ENDPOINT="${OTEL_EXPORTER_OTLP_ENDPOINT:-}" AUTH_ISSUER="$ISSUER" "${limits[@]}" \
	HTTP_ADDR="127.0.0.1:$WEB_PORT" ADMIN_ADDR="127.0.0.1:$WEB_ADMIN_PORT" WEB_PUBLIC_URL="http://127.0.0.1:$WEB_PORT" \
	WEB_SESSION_SECRET="$WEB_SESSION_SECRET" AUTH_CLIENT_SECRET="$WEB_CLIENT_SECRET" \
	CATALOG_URL="http://127.0.0.1:$CDN_PORT" ORDERS_URL="http://127.0.0.1:$ORDERS_PORT" PAYMENTS_URL="http://127.0.0.1:$PAYMENTS_PORT" \
	NOTIFICATIONS_URL="http://127.0.0.1:$NOTIFICATIONS_PORT" SEARCH_URL="http://127.0.0.1:$SEARCH_PORT" MAIL_URL="http://127.0.0.1:$SMTP_HTTP_PORT" \
	WEB_CONSOLE_PORT_BASE="$B" WEB_CONSOLE_CTL="$root/deploy/local/ctl.sh" WEB_CONSOLE_RUN_DIR="$run" WEB_CONSOLE_NATS_PASSWORD="$NATS_OPERATOR_PASSWORD" \
	${kafka_console[@]+"${kafka_console[@]}"} \
	"$run/web" serve

for pair in "web:$WEB_ADMIN_PORT" "orders:$ORDERS_ADMIN_PORT" "orders-relay:$ORDERS_RELAY_ADMIN_PORT" "orders-consumer:$ORDERS_CONSUMER_ADMIN_PORT" \
	"payments:$PAYMENTS_ADMIN_PORT" "payments-worker:$PAYMENTS_WORKER_ADMIN_PORT" "payments-relay:$PAYMENTS_RELAY_ADMIN_PORT" \
	"notifications:$NOTIFICATIONS_ADMIN_PORT" "notifications-worker:$NOTIFICATIONS_WORKER_ADMIN_PORT" "search:$SEARCH_ADMIN_PORT" \
	"catalog-worker:$CATALOG_WORKER_ADMIN_PORT" "psp-sim:$PSP_PORT" "varnish-exporter:$VARNISH_EXPORTER_PORT" ${consumers2[@]+"${consumers2[@]}"} ${ready[@]+"${ready[@]}"}; do
	wait_ready "${pair%%:*}" "http://127.0.0.1:${pair##*:}/readyz"
done
# Through the balancer: every api answers on its public port.
if ((replicas > 1)); then
	for pair in "${lb_apis[@]}"; do wait_ready "haproxy ${pair%%:*}" "http://127.0.0.1:${pair##*:}/readyz"; done
fi
wait_ready varnish "http://127.0.0.1:$CDN_PORT/v1/products?limit=1"
touch "$run/ready"

# Services made by make new-service: their line in the banner.
generated=""
# new-service: banner above this line

cat <<MSG

shopfloor is running (logs: $run/logs/). The five-minute tour is in README.md.
  the shop         http://127.0.0.1:$WEB_PORT   <- start here (sign in as ada, grace or oscar)
  sign in          http://localhost:$IDENTITY_PORT (demo users ada, grace, oscar; password in $run/identity.env)
  a token          make -s token USER=ada   # curl -H "Authorization: Bearer \$(make -s token USER=ada)" ...
  CDN (catalog)    http://localhost:$CDN_PORT/v1/products
  orders           http://localhost:$ORDERS_PORT/v1/orders
  payments         http://localhost:$PAYMENTS_PORT/v1/payments?order_id=
  notifications    http://localhost:$NOTIFICATIONS_PORT/v1/notifications?order_id=
  search           http://localhost:$SEARCH_PORT/v1/search/products?q=chair$generated
  e-mails (sink)   http://localhost:$SMTP_HTTP_PORT/api/messages
  provider (sim)   http://localhost:$PSP_PORT/admin/stats
  streams          $([[ $stream_engine == kafka ]] && echo "Kafka (kfake) at 127.0.0.1:$KAFKA_PORT (SHOPFLOOR_STREAM_ENGINE=kafka)" || echo "NATS JetStream at 127.0.0.1:$NATS_PORT")
  toxiproxy API    $([[ $toxiproxy == on ]] && echo "http://localhost:$TOXI_API/proxies" || echo "off (SHOPFLOOR_TOXIPROXY=off): drills cannot run")
  admin listeners  http://127.0.0.1:$CATALOG_ADMIN_PORT/metrics (each service process: its port + $ADMIN_OFFSET; /metrics, /readyz, /v1/admin)
deploy/local/ctl.sh status | stop NAME | start NAME | down
MSG

echo "Ctrl-C stops everything."
while sleep 1; do :; done
