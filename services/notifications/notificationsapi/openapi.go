package notificationsapi

import (
	"bytes"
	_ "embed" // the OpenAPI document
)

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns notifications' HTTP API contract, an OpenAPI 3.1 document in
// YAML: every route notificationhttp mounts, its parameters, bodies, headers and
// problem answers. The service serves it at GET /v1/openapi.yaml, and
// notificationhttp's tests hold every request and answer to it. Each call returns a
// new copy.
func OpenAPI() []byte { return bytes.Clone(openAPI) }
