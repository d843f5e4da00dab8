# shopfloor: one command runs the system, one runs the tests (README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Tools are installed into ./bin at pinned versions; nothing global.
GOBIN := $(CURDIR)/bin
export PATH := $(GOBIN):$(PATH)

NATS_SERVER_VERSION   := v2.15.2
TOXIPROXY_VERSION     := v2.5.0
GOLANGCI_LINT_VERSION := v2.15.0
GOVULNCHECK_VERSION   := v1.9.0
K6_VERSION            := v1.8.1
# promtool of Prometheus v3.16.0 (the Go module numbers v3.X.Y as v0.3XX.Y;
# compose runs the same version: prom/prometheus:v3.16.0), built without the
# cloud service-discovery plugins (Prometheus' remove_all_sd tag): the rule
# tests need none, and the build takes less than half the CPU time.
PROMTOOL_VERSION      := v0.316.0

# Tests use the servers running on this machine when their ports answer, and
# otherwise leave the address unset so pkg/testinfra starts containers (with a
# Docker engine) or fails with instructions. Set the variables to override.
port_open = $(shell (exec 3<>/dev/tcp/127.0.0.1/$(1)) 2>/dev/null && echo yes)
ifeq ($(origin SHOPFLOOR_TEST_POSTGRES_URL),undefined)
ifeq ($(call port_open,5432),yes)
export SHOPFLOOR_TEST_POSTGRES_URL := postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
endif
endif
ifeq ($(origin SHOPFLOOR_TEST_REDIS_URL),undefined)
ifeq ($(call port_open,6379),yes)
export SHOPFLOOR_TEST_REDIS_URL := redis://127.0.0.1:6379/0
endif
endif
# NATS: unset means an embedded nats-server (pinned in go.mod) per test binary.

GO_TEST_FLAGS ?= -race -count=1 -timeout 20m
# Test artifacts (the browser tests' screenshots) are kept here, one
# directory per test: test-artifacts/_artifacts/<id>/.
ARTIFACTS := $(CURDIR)/test-artifacts

.PHONY: help
help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: tools
tools: ## install pinned tools into ./bin, and from Debian varnish, haproxy (SHOPFLOOR_REPLICAS), pgbouncer (ADR 0042 tests) and chromium (browser tests) (idempotent: version stamps make a second call instant; run, start and test call it)
	@scripts/install-tool.sh nats-server   $(NATS_SERVER_VERSION)   github.com/nats-io/nats-server/v2
	@scripts/install-tool.sh toxiproxy-server $(TOXIPROXY_VERSION) github.com/Shopify/toxiproxy/v2/cmd/server
	@scripts/install-tool.sh golangci-lint $(GOLANGCI_LINT_VERSION) github.com/golangci/golangci-lint/v2/cmd/golangci-lint
	@scripts/install-tool.sh govulncheck   $(GOVULNCHECK_VERSION)   golang.org/x/vuln/cmd/govulncheck
	@TOOL_GOFLAGS=-tags=remove_all_sd scripts/install-tool.sh promtool $(PROMTOOL_VERSION) github.com/prometheus/prometheus/cmd/promtool
	@scripts/install-apt.sh /usr/lib/x86_64-linux-gnu/varnish/vmods/libvmod_xkey.so varnish varnish-modules
	@scripts/install-apt.sh /usr/bin/chromium chromium
	@scripts/install-apt.sh /usr/sbin/haproxy haproxy
	@scripts/install-apt.sh /usr/sbin/pgbouncer pgbouncer

.PHONY: test
test: tools ## run every test against real PostgreSQL, Redis and NATS JetStream (installs the tools on first use)
	@echo "postgres: $${SHOPFLOOR_TEST_POSTGRES_URL:-<unset: testcontainers or fail>}"
	@echo "redis:    $${SHOPFLOOR_TEST_REDIS_URL:-<unset: testcontainers or fail>}"
	@echo "nats:     $${SHOPFLOOR_TEST_NATS_URL:-<unset: embedded nats-server>}"
	@mkdir -p $(ARTIFACTS)
	go test $(GO_TEST_FLAGS) -artifacts -outputdir $(ARTIFACTS) ./...

.PHONY: lint
lint: ## gofmt, go vet, golangci-lint (errorlint, gosec, bodyclose, boundaries), go mod tidy check
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	go mod tidy -diff
	golangci-lint run ./...

.PHONY: vuln
vuln: ## govulncheck (needs vuln.go.dev, which CI here cannot reach)
	govulncheck ./...

.PHONY: bench
bench: ## run benchmarks (figures go to docs, never asserted in tests)
	go test -run '^$$' -bench . -benchmem -count=1 ./...

.PHONY: k6
k6: ## install k6 into ./bin (built from the Go module proxy; a few minutes the first time)
	@scripts/install-tool.sh k6 $(K6_VERSION) go.k6.io/k6

.PHONY: loadtest
loadtest: k6 ## k6 against a running system (make start): SCRIPT=catalog|checkout|shop, k6 flags in K6_ARGS; checkout and shop sign in K6_CUSTOMERS (10) synthetic customers first; shop writes its summary to SUMMARY_DIR (loadtests/results)
	@script=$(or $(SCRIPT),catalog); \
	export SUMMARY_DIR=$(or $(SUMMARY_DIR),loadtests/results); \
	mkdir -p "$$SUMMARY_DIR"; \
	if [[ $$script == checkout || $$script == shop ]]; then \
		TOKENS=$$(loadtests/k6/tokens.sh $(or $(K6_CUSTOMERS),10)) || exit 1; \
		export TOKENS; \
	fi; \
	echo "bin/k6 run $(K6_ARGS) loadtests/k6/$$script.js"; \
	bin/k6 run $(K6_ARGS) loadtests/k6/$$script.js

.PHONY: run
run: tools ## run the system as supervised local processes in the foreground (see deploy/local; installs the tools on first use)
	deploy/local/run.sh

.PHONY: start
start: tools ## like run, in the background; returns when every process is ready
	deploy/local/ctl.sh up

.PHONY: stop
stop: ## stop a background run (make start)
	deploy/local/ctl.sh down

.PHONY: token
token: ## print a demo user's access token (make start first): make -s token USER=ada (customers ada, grace; operator oscar)
	@test "$(origin USER)" = "command line" || { echo "make token: name a user: make -s token USER=ada (customers ada, grace; operator oscar)" >&2; exit 2; }
	@scripts/token.sh $(USER)

.PHONY: chaos
chaos: ## run chaos drills against the running system (make start first): make chaos DRILL=relay-killed (or DRILL=all; CHAOS_FLAGS='--duration 30s')
	@test -n "$(DRILL)" || { go run ./chaos/cmd/chaos list; echo; echo "make chaos: name a drill: DRILL=<name> (or DRILL=all)"; exit 2; }
	go run ./chaos/cmd/chaos run $(CHAOS_FLAGS) $(DRILL)

.PHONY: new-service
new-service: ## create a service of the standard shape and wire it in: make new-service NAME=inventory [ENTITY=item] (tools/newservice)
	@test -n "$(NAME)" || { echo "make new-service: name the service: make new-service NAME=inventory [ENTITY=item]" >&2; exit 2; }
	go run ./tools/newservice -name "$(NAME)" -entity "$(or $(ENTITY),item)"

.PHONY: ci
ci: tools lint test ## what .ci/run calls: tools, lint, test
