#!/usr/bin/env bash
# profile.sh: where the work of a checkout run goes, across the whole local
# topology (make start; issue 21). It measures, over a k6 checkout run
# (loadtests/k6/checkout.js) and the wait until every order is final:
#   - commits per settled order in every database (pg_stat_database
#     xact_commit deltas), less what the idle system commits meanwhile
#     (pollers, leases, samplers: measured for IDLE seconds first);
#   - CPU seconds per supervised process, its children included
#     (PostgreSQL's backends), from ps;
#   - a CPU profile of every service process (pprof on its admin listener,
#     ADMIN_PPROF=true in make run), summarised with go tool pprof -top;
#   - the statements that took the most time (pg_stat_statements; make
#     run's own PostgreSQL cluster preloads it).
# Writes OUT/report.md, with the raw files beside it.
#
#   make start && loadtests/profile.sh                # 50 checkouts/s for 30 s
#   RATE=80 DURATION=60 loadtests/profile.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
run=${SHOPFLOOR_RUN_DIR:-$root/.run}
[[ -e $run/ready ]] || { echo "profile: no ready system in $run: make start first" >&2; exit 1; }
[[ -x bin/k6 ]] || { echo "profile: bin/k6 missing: make k6" >&2; exit 1; }
PG_URL=$(sed -n 's/^PG_URL=//p' "$run/postgres.env")
DBP=${SHOPFLOOR_DB_PREFIX:-shopfloor_}
RATE=${RATE:-50}
DURATION=${DURATION:-30}
IDLE=${IDLE:-10}
out=${OUT:-loadtests/results/profile-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"

q() { psql "$PG_URL/$1?sslmode=disable" -qtAX -F ' ' -c "$2"; }
commits() { q postgres "SELECT datname, xact_commit FROM pg_stat_database WHERE datname LIKE '${DBP}%' ORDER BY 1"; }
settled() { q "${DBP}orders" "SELECT count(*) FROM orders WHERE status <> 'pending_payment'"; }
pending() { q "${DBP}orders" "SELECT count(*) FROM orders WHERE status = 'pending_payment'"; }
# wal: the cluster's WAL flushes to disk (fsyncs) and records (pg_stat_wal).
wal() { q postgres "SELECT wal_sync, wal_records FROM pg_stat_wal"; }
# latency SINCE: created→final p50, p99 and max in ms of the orders placed
# since SINCE (epoch seconds) that a payment settled.
latency() {
	q "${DBP}orders" "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)), round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)), round(max(ms))
		FROM (SELECT extract(epoch FROM updated_at - created_at) * 1000 AS ms FROM orders
		      WHERE created_at >= to_timestamp($1) AND status IN ('paid', 'payment_failed')) t"
}
# cpu: "name seconds" for every supervised process, its descendants
# included (user + system time of live processes from /proc: a backend
# that exited meanwhile is missed; the services' pools keep theirs).
tick=$(getconf CLK_TCK)
cpu() {
	local f name pid
	# (cat fails on a process that exits meanwhile: that is fine)
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v tick="$tick" '{ pid = $1; sub(/^.*\) /, ""); print pid, $2, ($12 + $13) / tick }' >"$out/.ps"
	for f in "$run"/pids/*.pid; do
		name=$(basename "$f" .pid)
		pid=$(cat "$f")
		awk -v root="$pid" -v name="$name" '
			{ parent[$1] = $2; t[$1] = $3 }
			END {
				for (p in t) {
					for (x = p; x != "" && x != 0 && x != root; x = parent[x]) {}
					if (x == root) sum += t[p]
				}
				print name, sum + 0
			}' "$out/.ps"
	done
}

# batches: "group/stream sum count" of stream_handler_batch_size_messages
# over every service process (ADR 0045: batches grow with the load).
batches() {
	local f admin
	for f in "$run"/cmd/*; do
		[[ -e $run/pids/$(basename "$f").pid ]] || continue
		admin=$(tr '\0' '\n' <"$f" | sed -n 's/^ADMIN_ADDR=//p' | head -1)
		[[ -n $admin ]] || continue
		curl -sf "http://$admin/metrics" 2>/dev/null | grep '^stream_handler_batch_size_messages_\(sum\|count\)' || true
	done | sed -E 's/^stream_handler_batch_size_messages_(sum|count)\{group="([^"]*)",stream="([^"]*)"\} (.*)$/\2\/\3 \1 \4/' |
		awk '{ v[$1 " " $2] += $3; g[$1] = 1 } END { for (k in g) print k, v[k " sum"] + 0, v[k " count"] + 0 }' | sort
}

echo "profile: idle for ${IDLE}s (what the system commits with no load)"
commits >"$out/commits-idle-0.txt"
sleep "$IDLE"
commits >"$out/commits-idle-1.txt"

pgss=false
if [[ $(q postgres "SHOW shared_preload_libraries") == *pg_stat_statements* ]]; then
	pgss=true
	q postgres "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
	q postgres "SELECT pg_stat_statements_reset()" >/dev/null
fi

echo "profile: signing in 10 customers"
TOKENS=$(loadtests/k6/tokens.sh 10)
export TOKENS
settled0=$(settled)
commits >"$out/commits-0.txt"
batches >"$out/batches-0.txt"
wal >"$out/wal-0.txt"
cpu >"$out/cpu-0.txt"
start=$(date +%s.%N)

# A CPU profile of every service process over the load.
profiled=()
for f in "$run"/cmd/*; do
	name=$(basename "$f")
	[[ -e $run/pids/$name.pid ]] || continue
	admin=$(tr '\0' '\n' <"$f" | sed -n 's/^ADMIN_ADDR=//p' | head -1)
	[[ -n $admin ]] || continue
	curl -sf -o "$out/$name.pprof" "http://$admin/debug/pprof/profile?seconds=$DURATION" &
	profiled+=("$name")
done

echo "profile: k6 checkout.js at $RATE/s for ${DURATION}s"
bin/k6 run -q -e RATE="$RATE" -e DURATION="${DURATION}s" loadtests/k6/checkout.js >"$out/k6.txt" 2>&1 || true
wait
loaded=$(date +%s.%N)
echo "profile: waiting for every order to be final"
for _ in $(seq 1 600); do
	[[ $(pending) == 0 ]] && break
	sleep 0.2
done
end=$(date +%s.%N)
commits >"$out/commits-1.txt"
batches >"$out/batches-1.txt"
wal >"$out/wal-1.txt"
cpu >"$out/cpu-1.txt"
settled1=$(settled)
read -r lat50 lat99 latmax < <(latency "$start")
if $pgss; then
	q postgres "SELECT round(total_exec_time::numeric, 0), calls, round((total_exec_time / calls)::numeric, 3), d.datname, regexp_replace(left(query, 110), '\s+', ' ', 'g')
		FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname LIKE '${DBP}%'
		ORDER BY total_exec_time DESC LIMIT 25" >"$out/statements.txt"
fi

orders=$((settled1 - settled0))
# Arithmetic on fractions: awk (bc is not on every machine).
calc() { awk "BEGIN { printf \"%.1f\", $1 }"; }
secs=$(calc "$end - $start")
{
	echo "# Where a checkout run's work goes"
	echo
	echo "$(date -u +%FT%TZ); $(nproc) cores; $RATE checkouts/s offered for ${DURATION}s (k6 on the same machine); SHOPFLOOR_REPLICAS=${SHOPFLOOR_REPLICAS:-1}."
	echo "$orders orders became final in $secs s (the load plus $(calc "$end - $loaded") s until none was pending): $(calc "$orders / $secs") settled/s."
	echo "Created→paid or failed: p50 ${lat50:-?} ms, p99 ${lat99:-?} ms, max ${latmax:-?} ms."
	read -r s0 r0 <"$out/wal-0.txt"
	read -r s1 r1 <"$out/wal-1.txt"
	echo "WAL flushes (fsyncs, pg_stat_wal.wal_sync, idle included): $((s1 - s0)), $(calc "($s1 - $s0) / ($orders ? $orders : 1)") per order; WAL records per order: $(calc "($r1 - $r0) / ($orders ? $orders : 1)")."
	echo
	echo "## Commits per settled order"
	echo
	echo "| database | commits | idle commits/s | commits per order (idle subtracted) |"
	echo "|---|---|---|---|"
	join "$out/commits-0.txt" "$out/commits-1.txt" | join - "$out/commits-idle-0.txt" | join - "$out/commits-idle-1.txt" |
		awk -v orders="$orders" -v secs="$secs" -v idle="$IDLE" '
			{ d = $3 - $2; i = ($5 - $4) / idle; net = d - i * secs; tot += d; totnet += net; toti += i
			  printf "| %s | %d | %.1f | %.2f |\n", $1, d, i, (orders ? net / orders : 0) }
			END { printf "| **all** | %d | %.1f | **%.2f** |\n", tot, toti, (orders ? totnet / orders : 0) }'
	echo
	echo "## Consumer batches (stream_handler_batch_size_messages)"
	echo
	echo "| group/stream | messages | handler calls | messages per call |"
	echo "|---|---|---|---|"
	# (a group with no batch yet has no series: it counts from 0)
	awk 'FILENAME == ARGV[1] { m0[$1] = $2; c0[$1] = $3; next } { m = $2 - m0[$1]; c = $3 - c0[$1]; if (c > 0) printf "| %s | %d | %d | %.2f |\n", $1, m, c, m / c }' \
		"$out/batches-0.txt" "$out/batches-1.txt"
	echo
	echo "## CPU seconds per process"
	echo
	echo "Of $(calc "$secs * $(nproc)") core-seconds in the window (children included: PostgreSQL's backends are in postgres)."
	echo
	echo "| process | CPU s | per order (ms) |"
	echo "|---|---|---|"
	join <(sort "$out/cpu-0.txt") <(sort "$out/cpu-1.txt") | awk -v orders="$orders" '{ d = $3 - $2; printf "%s %.2f %.2f\n", $1, d, (orders ? d * 1000 / orders : 0) }' |
		sort -k2 -nr | awk '{ printf "| %s | %s | %s |\n", $1, $2, $3 }'
	echo
	echo "k6's own CPU is not in the table; see k6.txt for its summary."
	if $pgss; then
		echo
		echo "## Statements by total time (pg_stat_statements)"
		echo
		echo "| total ms | calls | ms per call | database | statement |"
		echo "|---|---|---|---|---|"
		sed 's/|/\\|/g' "$out/statements.txt" | awk '{ db = $4; $1 = $1; s = ""; for (i = 5; i <= NF; i++) s = s " " $i; printf "| %s | %s | %s | %s | `%s` |\n", $1, $2, $3, db, substr(s, 2) }'
	fi
	echo
	echo "## Hottest functions per process (pprof, flat CPU)"
	for name in "${profiled[@]}"; do
		[[ -s $out/$name.pprof ]] || continue
		echo
		echo "### $name"
		echo
		echo '```'
		go tool pprof -top -nodecount=8 "$out/$name.pprof" 2>/dev/null | sed -n '/flat%/,$p'
		echo '```'
	done
} >"$out/report.md"
rm -f "$out/.ps"
echo "profile: $out/report.md"
