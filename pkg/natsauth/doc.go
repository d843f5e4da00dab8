// Package natsauth is who may do what on shopfloor's NATS broker (ADR
// 0039): a user per service, allowed to create, update and publish to the
// streams it owns, to use the durable consumers of the groups it runs
// (and no other group's), to read its own replies only, and an
// unrestricted operator for the operator's tools.
//
// The matrix (Shopfloor) is declared in Go; Matrix.Permissions derives
// the subjects from pkg/stream's naming (stream subjects, consumer names,
// dead-letter streams, the tombstone bucket), and Matrix.Conf renders
// nats-server's authorization block, with every password a reference to
// an environment variable (PasswordVar): deploy/compose/nats/auth.conf is
// that text, kept equal by a test, and make run and the tests start their
// brokers from it.
//
// Config is the client side: NATS_URL, NATS_USER and NATS_PASSWORD, the
// connection options that go with them (the user's own inbox prefix), and
// a redacted URL for logs. What it does not do: rotate passwords (restart
// the broker and the services with new ones), or use nkeys or JWT
// accounts (a fork changes Conf and Config.Options for that).
//
// A refusal is not returned by the call that caused it: the server sends
// it on the connection (nats.ErrPermissionViolation to the connection's
// error handler) and a JetStream request then times out.
package natsauth
