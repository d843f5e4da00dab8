package httpkit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"
)

// ContentTypeYAML is the media type of a YAML document (RFC 9512).
const ContentTypeYAML = "application/yaml"

// Document returns a handler that serves doc, a document fixed at build
// time such as a service's OpenAPI contract (the <svc>api package's
// embedded openapi.yaml), as contentType. Its ETag is a hash of doc, so a
// new build with a changed document changes it; If-None-Match is answered
// 304 and HEAD is served (http.ServeContent). Cache-Control lets browsers
// and shared caches keep it for 5 minutes. doc must not be modified
// afterwards.
func Document(contentType string, doc []byte) http.Handler {
	sum := sha256.Sum256(doc)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("ETag", etag)
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(doc))
	})
}
