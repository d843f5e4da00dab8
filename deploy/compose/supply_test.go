package compose_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// notPinned are the third-party images still referenced by tag only: no
// digest for that exact tag was found in an authoritative source when
// the others were pinned (docs/supply-chain.md says how to pin each).
// An image leaves this list when it is pinned; a new image is pinned
// from the start.
var notPinned = []string{
	"apache/kafka:4.1.0",
	"axllent/mailpit:v1.21",
	"gcr.io/distroless/static-debian12:nonroot",
	"ghcr.io/shopify/toxiproxy:2.5.0",
	"grafana/otel-lgtm:0.9.2",
	"nats:2.11-alpine",
	"otel/opentelemetry-collector-contrib:0.115.0",
	"prom/prometheus:v3.16.0",
	"redis:7-alpine",
	"varnish:7.6",
}

// TestImagesArePinnedByDigest: every third-party image of compose.yaml,
// the chaos and Kafka overlays and the Dockerfiles is name:tag@sha256:<digest>,
// under a comment that names name:tag (a reader sees the version, the
// engine pulls exactly the digest), or is in notPinned. The images built
// here (shopfloor, shopfloor-varnish) are not pulled.
func TestImagesArePinnedByDigest(t *testing.T) {
	t.Parallel()
	image := regexp.MustCompile(`(?m)^\s*(?:image:|FROM)\s+(\S+)`)
	pinned := regexp.MustCompile(`^([a-z0-9./-]+:[A-Za-z0-9._-]+)@sha256:[0-9a-f]{64}$`)
	var seen []string
	for _, f := range []string{"compose.yaml", overlay, kafkaOverlay, filepath.Join(root, "Dockerfile"), "varnish/Dockerfile"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		for i, line := range lines {
			m := image.FindStringSubmatch(line)
			if m == nil || strings.HasPrefix(m[1], "shopfloor") {
				continue
			}
			ref := m[1]
			if p := pinned.FindStringSubmatch(ref); p != nil {
				seen = append(seen, p[1])
				if i == 0 || !strings.Contains(lines[i-1], "# "+p[1]) {
					t.Errorf("%s:%d: %s: want a comment line above naming %s", f, i+1, ref, p[1])
				}
				if slices.Contains(notPinned, p[1]) {
					t.Errorf("%s is pinned: take it off notPinned", p[1])
				}
				continue
			}
			seen = append(seen, ref)
			if !slices.Contains(notPinned, ref) {
				t.Errorf("%s:%d: %s is not pinned by digest (name:tag@sha256:…, docs/supply-chain.md)", f, i+1, ref)
			}
		}
	}
	for _, ref := range notPinned {
		if !slices.Contains(seen, ref) {
			t.Errorf("notPinned lists %s, which no file uses", ref)
		}
	}
	if len(seen) < 12 {
		t.Fatalf("only %d image references found: %v", len(seen), seen)
	}
}
