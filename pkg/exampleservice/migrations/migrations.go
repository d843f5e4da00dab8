// Package migrations embeds the example service's SQL migrations (goose
// format), applied by the migrate role and by the test harness.
package migrations

import "embed"

// FS holds the numbered migration files.
//
//go:embed *.sql
var FS embed.FS
