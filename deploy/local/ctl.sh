#!/usr/bin/env bash
# Controls a local run (deploy/local/run.sh):
#   ctl.sh up          start it in the background; returns when every process is ready
#   ctl.sh down        stop it (services first, then their dependencies)
#   ctl.sh status      each supervised process: pid and state
#   ctl.sh stop NAME   stop one process and keep it stopped (a chaos drill's fault)
#   ctl.sh kill NAME   like stop, with SIGKILL at once: a crash (chaos drills)
#   ctl.sh start NAME  let its supervisor start it again; returns when it runs
#   ctl.sh exec NAME ARGS...  run NAME's binary with NAME's environment and ARGS,
#                      as the NATS operator and its database's owner
#                      (an operator command: ctl.sh exec search dlq --stream ORDERS list)
# NAME is a process name from `status` (orders-relay, payments-worker, nats …).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
run=${SHOPFLOOR_RUN_DIR:-$root/.run}

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }
pid_of() { cat "$run/pids/$1.pid" 2>/dev/null || true; }

case ${1:-} in
up)
	if alive "$(cat "$run/run.pid" 2>/dev/null || true)"; then
		echo "ctl: already running (pid $(cat "$run/run.pid"))"
		exit 0
	fi
	mkdir -p "$run/logs"
	rm -f "$run/ready"
	# A copy of run.sh runs, so that editing the script never changes a
	# run in progress (bash reads a script as it goes).
	cp "$root/deploy/local/run.sh" "$run/run.sh"
	SHOPFLOOR_ROOT=$root setsid nohup "$run/run.sh" >>"$run/logs/run.log" 2>&1 </dev/null &
	pid=$!
	for _ in $(seq 1 900); do
		[[ -e $run/ready ]] && { echo "ctl: up (pid $pid); logs in $run/logs"; exit 0; }
		alive "$pid" || break
		sleep 0.2
	done
	echo "ctl: the run did not become ready; last lines of $run/logs/run.log:" >&2
	tail -20 "$run/logs/run.log" >&2
	kill "$pid" 2>/dev/null || true
	exit 1
	;;
down)
	pid=$(cat "$run/run.pid" 2>/dev/null || true)
	if ! alive "$pid"; then
		echo "ctl: not running"
		exit 0
	fi
	kill -TERM "$pid"
	for _ in $(seq 1 300); do
		alive "$pid" || { echo "ctl: stopped"; exit 0; }
		sleep 0.2
	done
	echo "ctl: run.sh (pid $pid) did not stop in 60 s" >&2
	exit 1
	;;
status)
	for f in "$run"/pids/*.pid; do
		[[ -e $f ]] || { echo "ctl: not running"; exit 0; }
		name=$(basename "$f" .pid)
		pid=$(cat "$f")
		state=running
		[[ -e $run/stopped/$name ]] && state=stopped
		alive "$pid" || state="$state (process gone)"
		printf '%-26s %-8s %s\n' "$name" "$pid" "$state"
	done
	;;
stop)
	name=${2:?usage: ctl.sh stop NAME}
	[[ -e $run/pids/$name.pid ]] || { echo "ctl: no process $name" >&2; exit 1; }
	touch "$run/stopped/$name"
	pid=$(pid_of "$name")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 150); do
		alive "$pid" || { echo "ctl: $name stopped"; exit 0; }
		sleep 0.2
	done
	kill -KILL "$pid" 2>/dev/null || true
	echo "ctl: $name killed (did not stop in 30 s)"
	;;
kill)
	# Like stop, but SIGKILL at once: a crash, not a shutdown.
	name=${2:?usage: ctl.sh kill NAME}
	[[ -e $run/pids/$name.pid ]] || { echo "ctl: no process $name" >&2; exit 1; }
	# Its children too, at once (PostgreSQL's backends): a crash of the
	# whole server, not of its postmaster alone.
	touch "$run/stopped/$name"
	pid=$(pid_of "$name")
	# shellcheck disable=SC2046 # one pid per word
	kill -KILL "$pid" $(pgrep -P "$pid" 2>/dev/null) 2>/dev/null || true
	echo "ctl: $name killed"
	;;
start)
	name=${2:?usage: ctl.sh start NAME}
	old=$(pid_of "$name")
	rm -f "$run/stopped/$name"
	for _ in $(seq 1 100); do
		new=$(pid_of "$name")
		if [[ $new != "$old" ]] && alive "$new"; then
			echo "ctl: $name started (pid $new)"
			exit 0
		fi
		sleep 0.2
	done
	echo "ctl: $name did not start" >&2
	exit 1
	;;
exec)
	# run.sh records each supervised command line (NUL-separated) in
	# $run/cmd/NAME: `env VAR=... BINARY serve` for a service. The last
	# word (the command, serve) is replaced by ARGS.
	name=${2:?usage: ctl.sh exec NAME ARGS...}
	[[ -e $run/cmd/$name ]] || { echo "ctl: no process $name (no $run/cmd/$name)" >&2; exit 1; }
	mapfile -d '' argv <"$run/cmd/$name"
	unset 'argv[-1]'
	# An operator command connects to NATS as the operator (ADR 0039):
	# the service's own user may not read dead letters, republish them
	# into another service's stream or replay with a group of its own.
	if [[ -s $run/nats.env ]]; then
		own=()
		for a in "${argv[@]}"; do
			[[ $a == NATS_USER=* || $a == NATS_PASSWORD=* ]] || own+=("$a")
		done
		argv=("${own[@]}")
		NATS_PASSWORD=$(sed -n 's/^NATS_OPERATOR_PASSWORD=//p' "$run/nats.env")
		export NATS_USER=operator NATS_PASSWORD
	fi
	# ... and to PostgreSQL as its database's owner (ADR 0040): the app
	# role the service runs as may not change the schema, which search's
	# rebuild and check do (they build a projection's tables beside the
	# live ones and swap them in).
	svc=$(basename "${argv[-1]}")
	owner_url=$(sed -n "s/^$svc=//p" "$run/postgres-owners.env" 2>/dev/null || true)
	if [[ -n $owner_url ]]; then
		own=()
		for a in "${argv[@]}"; do
			[[ $a == DATABASE_URL=* ]] || own+=("$a")
		done
		argv=("${own[@]}")
		export DATABASE_URL=$owner_url
	fi
	cd "$root"
	exec "${argv[@]}" "${@:3}"
	;;
*)
	sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
