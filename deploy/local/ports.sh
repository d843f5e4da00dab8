# Ports of the local topology (sourced by run.sh and ctl.sh). B is
# SHOPFLOOR_PORT_BASE (default 8000): the entry points keep compose's ports
# at the default; processes that compose runs as separate containers on the
# same port (role splits) get their own here.
B=${SHOPFLOOR_PORT_BASE:-8000}
# The web storefront, the system's front page (compose publishes it on the
# same port).
WEB_PORT=$B
CDN_PORT=$((B + 80))
CATALOG_PORT=$((B + 81))
ORDERS_PORT=$((B + 82))
PAYMENTS_PORT=$((B + 83))
NOTIFICATIONS_PORT=$((B + 84))
SEARCH_PORT=$((B + 85))
PSP_PORT=$((B + 99))
SMTP_HTTP_PORT=$((B + 25))
CATALOG_WORKER_PORT=$((B + 181))
ORDERS_RELAY_PORT=$((B + 182))
ORDERS_CONSUMER_PORT=$((B + 282))
PAYMENTS_WORKER_PORT=$((B + 183))
PAYMENTS_RELAY_PORT=$((B + 283))
NOTIFICATIONS_WORKER_PORT=$((B + 184))
VARNISH_EXPORTER_PORT=$((B + 131))
# HAProxy in front of the api instances (SHOPFLOOR_REPLICAS > 1,
# replicas.sh): its Prometheus exporter (/metrics) and page (/stats).
HAPROXY_METRICS_PORT=$((B + 132))
# Admin listeners (ADMIN_ADDR: /metrics, /readyz with details, /v1/admin;
# ADR 0023): every service process's port + 1000, bound to 127.0.0.1 and
# never behind the CDN (catalog 9081, orders-relay 9182 at the default
# base). The simulators and the exporter (psp-sim, smtp-sink,
# varnish-exporter) stand outside the edge and keep one listener.
ADMIN_OFFSET=1000
# The sandbox identity provider (OpenID Connect): its public port is the
# issuer people and services reach; its admin port (key rotation) is not.
IDENTITY_PORT=$((B + 90))
IDENTITY_ADMIN_PORT=$((IDENTITY_PORT + ADMIN_OFFSET))
WEB_ADMIN_PORT=$((WEB_PORT + ADMIN_OFFSET))
CATALOG_ADMIN_PORT=$((CATALOG_PORT + ADMIN_OFFSET))
CATALOG_WORKER_ADMIN_PORT=$((CATALOG_WORKER_PORT + ADMIN_OFFSET))
ORDERS_ADMIN_PORT=$((ORDERS_PORT + ADMIN_OFFSET))
ORDERS_RELAY_ADMIN_PORT=$((ORDERS_RELAY_PORT + ADMIN_OFFSET))
ORDERS_CONSUMER_ADMIN_PORT=$((ORDERS_CONSUMER_PORT + ADMIN_OFFSET))
PAYMENTS_ADMIN_PORT=$((PAYMENTS_PORT + ADMIN_OFFSET))
PAYMENTS_WORKER_ADMIN_PORT=$((PAYMENTS_WORKER_PORT + ADMIN_OFFSET))
PAYMENTS_RELAY_ADMIN_PORT=$((PAYMENTS_RELAY_PORT + ADMIN_OFFSET))
NOTIFICATIONS_ADMIN_PORT=$((NOTIFICATIONS_PORT + ADMIN_OFFSET))
NOTIFICATIONS_WORKER_ADMIN_PORT=$((NOTIFICATIONS_WORKER_PORT + ADMIN_OFFSET))
SEARCH_ADMIN_PORT=$((SEARCH_PORT + ADMIN_OFFSET))
SMTP_PORT=$((B - 6975))
NATS_PORT=$((B + 6222))
NATS_MON_PORT=$((B + 6223))
# A JetStream cluster (SHOPFLOOR_NATS_NODES=3, ADR 0041): nodes 2 and 3,
# and every node's route port.
NATS2_PORT=$((B + 6224))
NATS2_MON_PORT=$((B + 6225))
NATS3_PORT=$((B + 6226))
NATS3_MON_PORT=$((B + 6227))
NATS_ROUTE_PORT=$((B + 6248))
NATS2_ROUTE_PORT=$((B + 6249))
NATS3_ROUTE_PORT=$((B + 6250))
# The development Kafka (SHOPFLOOR_STREAM_ENGINE=kafka, deploy/kfake; ADR
# 0046) and its health endpoint.
KAFKA_PORT=$((B + 1092))
KFAKE_HEALTH_PORT=$((B + 1093))
# The run's own PostgreSQL cluster (run.sh, when the server binaries are
# installed).
PG_PORT=$((B + 6432))
TOXI_API=$((B + 474))
# One PostgreSQL link per service (Toxiproxy postgres-<service>), so a
# drill can cut one service's database link at a time.
TOXI_PG_CATALOG=$((B + 7433))
TOXI_PG_ORDERS=$((B + 7434))
TOXI_PG_PAYMENTS=$((B + 7435))
TOXI_PG_NOTIFICATIONS=$((B + 7436))
TOXI_PG_SEARCH=$((B + 7437))
TOXI_REDIS=$((B + 7379))
TOXI_NATS=$((B + 7422))
TOXI_NATS2=$((B + 7423))
TOXI_NATS3=$((B + 7424))
TOXI_CATALOG=$((B + 7081))
TOXI_PSP=$((B + 7099))
TOXI_SMTP=$((B + 7025))
# Second instances of the consumer roles (SHOPFLOOR_CONSUMER_INSTANCES=2,
# the default; 1 turns them off): each consumer group runs on two
# processes, so that one can die and the other takes its partitions (the
# partition-handover drill).
CATALOG_INVALIDATION2_PORT=$((B + 381))
ORDERS_CONSUMER2_PORT=$((B + 382))
PAYMENTS_CONSUMER2_PORT=$((B + 383))
NOTIFICATIONS_CONSUMER2_PORT=$((B + 384))
SEARCH_CONSUMER2_PORT=$((B + 385))
CATALOG_INVALIDATION2_ADMIN_PORT=$((CATALOG_INVALIDATION2_PORT + ADMIN_OFFSET))
ORDERS_CONSUMER2_ADMIN_PORT=$((ORDERS_CONSUMER2_PORT + ADMIN_OFFSET))
PAYMENTS_CONSUMER2_ADMIN_PORT=$((PAYMENTS_CONSUMER2_PORT + ADMIN_OFFSET))
NOTIFICATIONS_CONSUMER2_ADMIN_PORT=$((NOTIFICATIONS_CONSUMER2_PORT + ADMIN_OFFSET))
SEARCH_CONSUMER2_ADMIN_PORT=$((SEARCH_CONSUMER2_PORT + ADMIN_OFFSET))
# Services made by make new-service (tools/newservice): public port
# base+offset, relay +100, consumer +200, PostgreSQL link 7432+offset-80.
# new-service: ports above this line
