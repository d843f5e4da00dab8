package main

// insertions are the places a new service is wired in: make run
// (deploy/local: its processes, ports and banner line), compose (its
// jobs, database and its roles' passwords, scrape targets, NATS password), the image, the identity
// provider's audiences, its NATS user (natsauth.Shopfloor; Generate
// renders the broker's auth.conf again), the chaos drills' list of
// databases (a drill run drops them) and the tests that list services.
// Each file carries the marker comment "new-service: <what> above this
// line"; the text goes above it. A JSON file cannot carry a comment: the
// text, one JSON value, is appended to the file's top-level array.
var insertions = []insertion{
	{"deploy/local/ports.sh", "ports", `# {%.Name%}: api, relay, consumer and its PostgreSQL link.
{%.Stream%}_PORT=$((B + {%.Offset%}))
{%.Stream%}_RELAY_PORT=$((B + {%.RelayOffset%}))
{%.Stream%}_CONSUMER_PORT=$((B + {%.ConsumerOffset%}))
{%.Stream%}_ADMIN_PORT=$(({%.Stream%}_PORT + ADMIN_OFFSET))
{%.Stream%}_RELAY_ADMIN_PORT=$(({%.Stream%}_RELAY_PORT + ADMIN_OFFSET))
{%.Stream%}_CONSUMER_ADMIN_PORT=$(({%.Stream%}_CONSUMER_PORT + ADMIN_OFFSET))
TOXI_PG_{%.Stream%}=$((B + {%.ToxiPGOffset%}))`},
	{"deploy/local/run.sh", "generated services", `{%.Name%}`},
	{"deploy/local/run.sh", "processes", `{%.Name%}_env=("${common[@]}" NATS_USER={%.Name%} NATS_PASSWORD="$NATS_{%.Stream%}_PASSWORD" DATABASE_URL="$(dburl {%.Name%})")
supervise {%.Name%} env "${{%.Name%}_env[@]}" ROLES=api HTTP_ADDR="127.0.0.1:${%.Stream%}_PORT" ADMIN_ADDR="127.0.0.1:${%.Stream%}_ADMIN_PORT" "$run/{%.Name%}" serve
supervise {%.Name%}-relay env "${{%.Name%}_env[@]}" ROLES=relay HTTP_ADDR="127.0.0.1:${%.Stream%}_RELAY_PORT" ADMIN_ADDR="127.0.0.1:${%.Stream%}_RELAY_ADMIN_PORT" "$run/{%.Name%}" serve
supervise {%.Name%}-consumer env "${{%.Name%}_env[@]}" ROLES=consumer HTTP_ADDR="127.0.0.1:${%.Stream%}_CONSUMER_PORT" ADMIN_ADDR="127.0.0.1:${%.Stream%}_CONSUMER_ADMIN_PORT" "$run/{%.Name%}" serve
ready+=("{%.Name%}:${%.Stream%}_ADMIN_PORT" "{%.Name%}-relay:${%.Stream%}_RELAY_ADMIN_PORT" "{%.Name%}-consumer:${%.Stream%}_CONSUMER_ADMIN_PORT")`},
	{"deploy/compose/compose.yaml", "databases", `- {%.Name%}`},
	{"deploy/compose/compose.yaml", "database passwords", `{%.Stream%}_DB_OWNER_PASSWORD: ${{%.Stream%}_DB_OWNER_PASSWORD:?set it in deploy/compose/.env (see .env.example)}
{%.Stream%}_DB_APP_PASSWORD: ${{%.Stream%}_DB_APP_PASSWORD:?set it in deploy/compose/.env (see .env.example)}`},
	{"deploy/compose/.env.example", "database passwords", `{%.Stream%}_DB_OWNER_PASSWORD=
{%.Stream%}_DB_APP_PASSWORD=`},
	{"deploy/compose/compose_test.go", "test secrets", `"{%.Stream%}_DB_OWNER_PASSWORD": "test{%.Name%}dbowner0",
"{%.Stream%}_DB_APP_PASSWORD": "test{%.Name%}dbapp0",`},
	{"deploy/compose/compose.yaml", "migrate jobs", `{%.Name%}-migrate:
  <<: *app
  restart: "no"
  command: ["{%.Name%}", "migrate"]
  environment:
    <<: *otel
    DATABASE_URL: postgres://{%.Name%}_owner:${{%.Stream%}_DB_OWNER_PASSWORD:?set it in deploy/compose/.env (see .env.example)}@postgres:5432/{%.Name%}?sslmode=disable
  depends_on: *needs-db
`},
	{"deploy/compose/compose.yaml", "services", `# --- {%.Name%} (make new-service) --------------------------------------
{%.Name%}:
  <<: *app
  command: ["{%.Name%}", "serve"]
  environment:
    <<: [*otel, *auth]
    ROLES: api,relay,consumer
    HTTP_ADDR: ":{%.Port%}"
    ADMIN_ADDR: ":{%.AdminPort%}"
    DATABASE_URL: postgres://{%.Name%}_app:${{%.Stream%}_DB_APP_PASSWORD:?set it in deploy/compose/.env (see .env.example)}@postgres:5432/{%.Name%}?sslmode=disable
    NATS_URL: nats://nats:4222
    NATS_USER: {%.Name%}
    NATS_PASSWORD: ${NATS_{%.Stream%}_PASSWORD:?set it in deploy/compose/.env (see .env.example)}
  depends_on:
    {%.Name%}-migrate:
      condition: service_completed_successfully
    nats:
      condition: service_healthy
    identity:
      condition: service_healthy
  healthcheck:
    test: ["CMD", "probe", "http://127.0.0.1:{%.AdminPort%}/readyz"]
    interval: 2s
    timeout: 2s
    retries: 30
`},
	{"deploy/compose/compose.chaos.yaml", "chaos links", `{%.Name%}:
  environment:
    DATABASE_URL: postgres://{%.Name%}_app:${{%.Stream%}_DB_APP_PASSWORD:?set it in deploy/compose/.env (see .env.example)}@toxiproxy:{%.ChaosPGPort%}/{%.Name%}?sslmode=disable
    NATS_URL: nats://toxiproxy:14222
  depends_on: *needs-toxiproxy`},
	{"deploy/compose/compose.cluster.yaml", "cluster clients", `{%.Name%}: *cluster-service`},
	{"deploy/compose/compose.kafka.yaml", "Kafka clients", `{%.Name%}: *kafka-service`},
	{"deploy/compose/toxiproxy/toxiproxy.json", "proxies", `{"name": "postgres-{%.Name%}", "listen": "0.0.0.0:{%.ChaosPGPort%}", "upstream": "postgres:5432", "enabled": true}`},
	{"deploy/compose/compose.yaml", "NATS passwords", `NATS_{%.Stream%}_PASSWORD: ${NATS_{%.Stream%}_PASSWORD:?set it in deploy/compose/.env (see .env.example)}`},
	{"deploy/compose/.env.example", "NATS passwords", `NATS_{%.Stream%}_PASSWORD=`},
	{"deploy/compose/compose_test.go", "test secrets", `"NATS_{%.Stream%}_PASSWORD": "test-nats-{%.Name%}-0",`},
	{"pkg/natsauth/shopfloor.go", "NATS streams", `{Name: "{%.Stream%}", Partitions: 8},`},
	{"pkg/natsauth/shopfloor.go", "NATS users", `{Name: "{%.Name%}", Owns: []string{"{%.Stream%}"}, Consumes: []Group{{Stream: "{%.Stream%}", Name: "{%.Name%}-counter"}}},`},
	{"deploy/compose/prometheus/prometheus.yml", "jobs", `- job_name: {%.Name%}
  static_configs:
    - targets: [{%.Name%}:{%.AdminPort%}]`},
	{"deploy/compose/otel/collector.yaml", "targets", `- {%.Name%}:{%.AdminPort%}`},
	{"deploy/compose/compose_test.go", "binaries", `"{%.Name%}": withBase(cmdFiles("{%.Name%}"), authConfig),`},
	{"deploy/compose/compose_test.go", "api services", `"{%.Name%}",`},
	{"Dockerfile", "binaries", `RUN go build -trimpath -ldflags="-s -w" -o /out/ ./services/{%.Name%}/cmd/{%.Name%}`},
	{"services/contracts/contracts_test.go", "contract imports", `"{%.Module%}/services/{%.Name%}/{%.Name%}api"`},
	{"services/contracts/contracts_test.go", "streams", `{ {%.Name%}api.Stream, "{%.Name%}/{%.Name%}api", {%.Name%}api.Schemas()},`},
	{"services/identity/identityapi/identityapi.go", "audiences", `"{%.Name%}",`},
	{"deploy/local/run.sh", "banner", `printf -v generated '%s\n  %-16s http://localhost:%s/v1/{%.Entities%}/{id}' "$generated" {%.Name%} "${%.Stream%}_PORT"`},
	{"chaos/target/local.go", "databases", `"{%.Name%}",`},
}
