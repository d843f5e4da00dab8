// Package testinfra gives each test real, isolated infrastructure: its own
// PostgreSQL database, its own Redis key prefix and its own NATS JetStream
// stream names, so that tests run in parallel and never see each other's rows,
// keys or messages (ADR 0004).
//
// Where the servers come from, in order:
//
//  1. An address in the environment: SHOPFLOOR_TEST_POSTGRES_URL,
//     SHOPFLOOR_TEST_REDIS_URL, SHOPFLOOR_TEST_NATS_URL. CI and `make test`
//     set them to the services running on the machine.
//  2. PostgreSQL and Redis: when no address is set and a Docker engine answers,
//     testcontainers-go starts one container per test binary.
//     NATS: when no address is set, an embedded nats-server (pinned in go.mod,
//     JetStream on a temporary directory) starts in-process once per test binary.
//  3. Otherwise the test fails with a message that says what to start. Only
//     `go test -short` turns that failure into a skip; CI never runs -short.
//
// Isolation:
//
//   - PostgreSQL: every call to Postgres creates a database cloned
//     (CREATE DATABASE … TEMPLATE) from a template that has the given
//     migrations applied. The template's name carries a hash of the migration
//     files, so a changed migration builds a new template; building is
//     serialised across test binaries by an advisory lock. The clone is dropped
//     when the test ends.
//   - Redis: every call to Redis returns a client and a key prefix unique to the
//     test; keys under the prefix are deleted when the test ends.
//   - NATS: every call to NATS returns a connection and a name prefix; streams
//     whose names start with it are deleted when the test ends.
//
// PgBouncer starts Debian's pgbouncer (make tools) in transaction pooling
// mode in front of a test's database, for code that must work through a
// transaction pooler (ADR 0042); a missing binary fails the test.
//
// A test package that uses this package calls Main from TestMain, so that
// servers started for the test binary are stopped before the goroutine leak
// check:
//
//	func TestMain(m *testing.M) { testinfra.Main(m) }
package testinfra
