// Package migrations embeds notifications' SQL migrations (goose), applied
// by the migrate command and by the tests' template database.
package migrations

import "embed"

// FS holds the numbered migration files.
//
//go:embed *.sql
var FS embed.FS
