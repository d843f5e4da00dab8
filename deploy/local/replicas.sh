# Several instances of every service role (sourced by run.sh; issue 21,
# ADR 0043). SHOPFLOOR_REPLICAS=N (1, the default, to 3) runs N instances
# of each api, relay, worker and consumer process:
#   - the first keeps its name and admin port; instance k (2..N) is
#     NAME-rK, with its admin listener on the admin port + 2000(k-1) and
#     its public listener on the process's port + 2000k;
#   - the api processes (catalog, orders, payments, notifications, search)
#     sit behind HAProxy, which takes their public ports (instance 1 moves
#     to the port + 2000): clients, Varnish and Toxiproxy keep their
#     addresses;
#   - relays elect one leader among their instances (the outbox lease,
#     ADR 0027), workers share the job queue, consumers share their
#     groups' partitions (pkg/stream): none of them needs a balancer.
# identity and web stay single (web's sessions are cookies signed with one
# secret, so a second web would work, but it is the people's door, not a
# throughput limit), and so do the processes of generated services.
replicas=${SHOPFLOOR_REPLICAS:-1}
[[ $replicas =~ ^[1-3]$ ]] || { echo "run: SHOPFLOOR_REPLICAS=$replicas: 1, 2 or 3 instances of each role (two cores: more only queue for the CPU)" >&2; exit 1; }
# The api processes behind the balancer: name and public port.
lb_apis=("catalog:$CATALOG_PORT" "orders:$ORDERS_PORT" "payments:$PAYMENTS_PORT" "notifications:$NOTIFICATIONS_PORT" "search:$SEARCH_PORT")
# NAME:ADMIN_PORT of every further instance, for wait_ready.
ready=()

# instance_port PORT K: the public port of instance K (2..N) of a
# process on PORT; instance_admin ADMIN K its admin port.
instance_port() { echo $(($1 + 2000 * $2)); }
instance_admin() { echo $(($1 + 2000 * ($2 - 1))); }

# instances NAME FIRST_PORT PORT ADMIN_PORT CMD...: supervises CMD as
# NAME on FIRST_PORT and ADMIN_PORT, and its further instances NAME-r2..
# on instance_port PORT k and instance_admin ADMIN_PORT k.
instances() {
	local name=$1 first=$2 port=$3 admin=$4 k
	shift 4
	supervise "$name" env HTTP_ADDR="127.0.0.1:$first" ADMIN_ADDR="127.0.0.1:$admin" "$@"
	for ((k = 2; k <= replicas; k++)); do
		supervise "$name-r$k" env HTTP_ADDR="127.0.0.1:$(instance_port "$port" "$k")" ADMIN_ADDR="127.0.0.1:$(instance_admin "$admin" "$k")" "$@"
		ready+=("$name-r$k:$(instance_admin "$admin" "$k")")
	done
}

# role NAME PORT ADMIN_PORT CMD...: a relay, worker or consumer process
# and its further instances.
role() { instances "$1" "$2" "$2" "$3" "${@:4}"; }

# api NAME PORT ADMIN_PORT CMD...: a process with the api role and its
# further instances; with more than one, HAProxy has PORT and instance 1
# listens on PORT + 2000.
api() {
	local first=$2
	((replicas == 1)) || first=$(($2 + 2000))
	instances "$1" "$first" "$2" "$3" "${@:4}"
}

# problem STATUS TITLE DETAIL: an HTTP response file for HAProxy's
# errorfile: problem+json (RFC 9457) like the services' own errors, with
# Retry-After, so a client cannot tell the balancer's 503 from a service's.
problem() {
	local body
	body=$(printf '{"type":"about:blank","title":"%s","status":%s,"detail":"%s"}' "$2" "$1" "$3")
	printf 'HTTP/1.1 %s %s\r\nContent-Type: application/problem+json\r\nCache-Control: no-store\r\nRetry-After: 1\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
		"$1" "$2" "${#body}" "$body"
}

# haproxy_config: the balancer in front of the api instances. Health is
# each instance's /healthz (liveness: a process that answers), not
# /readyz: when a shared dependency is down every instance is unready,
# and the instances answer that themselves (problem+json, Retry-After)
# better than an empty backend would. A request whose connection was
# refused goes to another instance (retry-on conn-failure, redispatch);
# one that reached an instance is never sent twice (a checkout is not
# retried behind the client's back: the client retries with its
# Idempotency-Key). /metrics on HAPROXY_METRICS_PORT is HAProxy's
# Prometheus exporter; /stats its page.
haproxy_config() {
	local pair name port k
	mkdir -p "$run/haproxy"
	problem 502 "Bad Gateway" "an instance of this service failed while answering; try again" >"$run/haproxy/502.http"
	problem 503 "Service Unavailable" "no instance of this service is up; try again shortly" >"$run/haproxy/503.http"
	problem 504 "Gateway Timeout" "the instance of this service did not answer in time; try again" >"$run/haproxy/504.http"
	cat <<CFG
# Written by deploy/local/replicas.sh for SHOPFLOOR_REPLICAS=$replicas; do not edit.
global
	log stdout format raw local0 err
	maxconn 8192

defaults
	mode http
	log global
	option httplog
	option dontlog-normal
	option log-separate-errors
	timeout connect 2s
	timeout client 60s
	timeout server 60s
	timeout http-keep-alive 10s
	retries 2
	retry-on conn-failure
	option redispatch
	option httpchk GET /healthz
	default-server check inter 1s fall 2 rise 1
	errorfile 502 $run/haproxy/502.http
	errorfile 503 $run/haproxy/503.http
	errorfile 504 $run/haproxy/504.http

frontend metrics
	bind 127.0.0.1:$HAPROXY_METRICS_PORT
	http-request use-service prometheus-exporter if { path /metrics }
	stats enable
	stats uri /stats
	stats refresh 5s
CFG
	for pair in "${lb_apis[@]}"; do
		name=${pair%%:*} port=${pair##*:}
		printf '\nfrontend %s\n\tbind 127.0.0.1:%s\n\tdefault_backend %s\n\nbackend %s\n\tbalance leastconn\n' "$name" "$port" "$name" "$name"
		printf '\tserver %s 127.0.0.1:%s\n' "$name" "$((port + 2000))"
		for ((k = 2; k <= replicas; k++)); do
			printf '\tserver %s-r%s 127.0.0.1:%s\n' "$name" "$k" "$(instance_port "$port" "$k")"
		done
	done
}
