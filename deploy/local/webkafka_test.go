package local_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/stream"
	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
)

// TestConsoleShowsKafkaDeadLettersInBrowser: with the streams on Kafka
// (SHOPFLOOR_STREAM_ENGINE=kafka, ADR 0046) a record no consumer can read
// is dead-lettered by each group of ORDERS; the operator finds the three
// dead letters in the plumbing console, marked read only (no redrive
// button on Kafka), and opens one: its group, its error, the payload
// withheld (not JSON) and how to redrive it by hand. Screenshots of both
// pages go to the test's artifact directory; both pass the accessibility
// audit.
func TestConsoleShowsKafkaDeadLettersInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser test starts the whole system and Chromium")
	}
	chromium := findChromium(t)
	local := startTopology(t, "webkafka", webPortBase, 13, "SEED_PRODUCTS=50", "SHOPFLOOR_STREAM_ENGINE=kafka", "SHOPFLOOR_CONSUMER_INSTANCES=1")
	sys := local.System()
	web := "http://127.0.0.1:" + strconv.Itoa(webPortBase)

	cl, err := kgo.NewClient(kafkastream.ClientOpts(sys.KafkaBrokers)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pub, err := kafkastream.NewPublisher(cl, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	poison := fmt.Sprintf("poison-%d", time.Now().UnixNano())
	if _, err := pub.Publish(t.Context(), stream.Message{ID: poison, Key: "order-poison", Payload: []byte("not an event")}); err != nil {
		t.Fatal(err)
	}

	shots := t.ArtifactDir()
	b := newBrowser(t, chromium)
	audit := b.audit

	b.do("sign in as the operator", func(p *rod.Page) {
		p.MustNavigate(web + "/").MustWaitLoad()
		p.MustElement(`a[href="/signin"]`).MustClick()
		p.MustElement(`#username`).MustInput(identityapi.UserOscar)
		p.MustElement(`#password`).MustInput(sys.Identity.DemoPassword)
		p.MustElement(`button[type=submit]`).MustClick()
		p.MustElement(`form[action="/signout"]`)
	})
	const table = `table[data-testid="stream-dlq-ORDERS"]`
	var heading string
	b.do("the Kafka dead letters in the console", func(p *rod.Page) {
		// The console lists what the groups have dead-lettered so far:
		// reload until all three did.
		deadline := time.Now().Add(25 * time.Second)
		for {
			p.MustNavigate(web + "/console#h-dlq").MustWaitLoad()
			n := p.MustEval(`(t) => document.querySelectorAll(t + ' tbody tr').length`, table).Int()
			if n == 3 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		heading = p.MustElementR("h3", "ORDERS_DLQ").MustText()
	})
	var groups, redrives int
	var first string
	b.do("read the table", func(p *rod.Page) {
		groups = p.MustEval(`(t) => new Set([...document.querySelectorAll(t + ' tbody tr')].map(r => r.dataset.group)).size`, table).Int()
		redrives = p.MustEval(`(t) => document.querySelectorAll(t + ' button').length`, table).Int()
		first = *p.MustElement(table + ` tbody tr a`).MustAttribute("href")
	})
	if groups != 3 {
		t.Errorf("the console lists dead letters of %d groups on ORDERS_DLQ, want 3 (payments, notifications, search)", groups)
	}
	if redrives != 0 || !strings.Contains(heading, "Kafka topic: read only") {
		t.Errorf("ORDERS_DLQ heading %q with %d redrive buttons, want read only and none", heading, redrives)
	}
	audit("console with Kafka dead letters")
	var img []byte
	b.do("screenshot of the dead letters", func(p *rod.Page) {
		img = p.MustElement(`section[aria-labelledby="h-dlq"]`).MustScreenshot()
	})
	if err := os.WriteFile(filepath.Join(shots, "01-console-kafka-dead-letters.png"), img, 0o600); err != nil {
		t.Fatal(err)
	}

	var group, errText, payload, readOnly string
	b.do("inspect one", func(p *rod.Page) {
		p.MustNavigate(web + first).MustWaitLoad()
		group = p.MustElement(`[data-testid="sdlq-group"]`).MustText()
		errText = p.MustElement(`[data-testid="sdlq-error"]`).MustText()
		payload = p.MustElement(`[data-testid="sdlq-payload"]`).MustText()
		readOnly = p.MustElement(`[data-testid="sdlq-read-only"]`).MustText()
	})
	if group == "" || errText == "" || !strings.Contains(payload, "not JSON") || !strings.Contains(readOnly, "Kafka client") {
		t.Errorf("dead letter %s: group %q, error %q, payload %q, note %q", first, group, errText, payload, readOnly)
	}
	audit("Kafka dead letter")
	b.screenshot(filepath.Join(shots, "02-kafka-dead-letter.png"))
	t.Logf("screenshots in %s; %s: group %s, error %q", shots, first, group, errText)
}
