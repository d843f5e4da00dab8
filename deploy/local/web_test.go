package local_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-rod/rod"
	"github.com/go-rod/rod/lib/input"
	"github.com/go-rod/rod/lib/launcher"
	"github.com/go-rod/rod/lib/proto"

	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/services/identity/identityapi"
)

// webPortBase is the browser test's own topology (the end-to-end test
// uses portBase, the chaos drills 23500).
const webPortBase = 22000

// TestStorefrontInBrowser drives the web storefront in headless Chromium
// the way a person would: browse (the CDN's X-Cache shows on the page),
// sign in as a demo customer through the identity provider's form, put
// two products in the cart, check out with a double submit, and watch the
// order page's timeline reach "paid" with both e-mails sent, without a
// reload; then send the same checkout again (one order, and the page says
// so), read the receipt, and try bad input. Every page it visits passes
// the accessibility checks of a11yAudit, and the checkout form is filled
// by keyboard. Screenshots of each step go to the test's artifact
// directory (go test -artifacts; make test keeps them in test-artifacts/).
//
// SHOPFLOOR_WEB_RUN_DIR=.run runs it against a system already started
// with make start (its identity.env gives the demo password) instead of
// starting one.
func TestStorefrontInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser test starts the whole system and Chromium")
	}
	chromium := findChromium(t)
	web, psp, password, natsPassword := storefront(t)
	shots := t.ArtifactDir()
	t.Logf("screenshots in %s", shots)
	b := newBrowser(t, chromium)
	step := 0
	shot := func(name string) {
		t.Helper()
		step++
		b.screenshot(filepath.Join(shots, fmt.Sprintf("%02d-%s.png", step, name)))
	}
	// shotOf keeps a screenshot of one element of the page.
	shotOf := func(name, selector string) {
		t.Helper()
		step++
		var img []byte
		b.do("screenshot of "+selector, func(p *rod.Page) {
			// The console swaps some parts every few seconds (the
			// topology's live rates): an element replaced between the
			// query and the capture has no box any more (rod panics), so
			// query it again, a few times.
			var err error
			for range 5 {
				if err = rod.Try(func() { img = p.MustElement(selector).MustScreenshot() }); err == nil {
					return
				}
			}
			panic(err)
		})
		if err := os.WriteFile(filepath.Join(shots, fmt.Sprintf("%02d-%s.png", step, name)), img, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	do := b.do
	text := func(sel string) string {
		t.Helper()
		var s string
		do("read "+sel, func(p *rod.Page) { s = p.MustElement(sel).MustText() })
		return s
	}
	audit := b.audit

	// 1. The shop, anonymous: products through the CDN. The second load
	// of the same listing is a CDN hit.
	// (A fresh system's seed events purge the listing for a few seconds
	// after start, so a reload may miss again: within ten it must hit.)
	xcache := ""
	do("front page", func(p *rod.Page) {
		p.MustNavigate(web + "/").MustWaitLoad()
		for range 10 {
			p.MustReload().MustWaitLoad()
			if xcache = p.MustElement(`[data-testid="x-cache"]`).MustText(); xcache == "HIT" {
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
	if xcache != "HIT" {
		t.Errorf("ten reloads of the front page say X-Cache %q, want HIT (the CDN caches the listing)", xcache)
	}
	shot("front-page")
	audit("front page")

	// 2. Sign in through the provider's form (authorization code + PKCE)
	// as a customer of the sandbox: a synthetic one (load-…, the demo
	// password) new to this run, so that its order counts start at zero
	// however often the test runs against the same system; back on the
	// shop, signed in.
	customer := fmt.Sprintf("load-web-%d", time.Now().UnixNano())
	do("sign in", func(p *rod.Page) {
		p.MustElement(`a[href="/signin"]`).MustClick()
		p.MustElement(`#username`)
	})
	shot("sign-in-form")
	do("sign in", func(p *rod.Page) {
		p.MustElement(`#username`).MustInput(customer)
		p.MustElement(`#password`).MustInput(password)
		p.MustElement(`button[type=submit]`).MustClick()
		p.MustElement(`form[action="/signout"]`)
	})
	if who := text(`.who`); !strings.Contains(who, customer) {
		t.Fatalf("after sign-in the header says %q, want %s", who, customer)
	}
	ordersBefore := b.countOrders(web)

	// 3. Two products into the cart, the first with quantity 2.
	var hrefs []string
	do("product links", func(p *rod.Page) {
		p.MustNavigate(web + "/").MustWaitLoad()
		for _, v := range p.MustEval(`() => [...document.querySelectorAll(".card h2 a")].map(a => a.getAttribute("href"))`).Arr() {
			hrefs = append(hrefs, v.Str())
		}
	})
	if len(hrefs) < 2 {
		t.Fatalf("the front page lists %d products", len(hrefs))
	}
	for i, href := range hrefs[:2] {
		do("product page", func(p *rod.Page) { p.MustNavigate(web + href).MustWaitLoad() })
		if i == 0 {
			shot("product")
			audit("product page")
			do("quantity 2", func(p *rod.Page) { p.MustElement(`#quantity`).MustSelectAllText().MustInput("2") })
		}
		do("add to cart", func(p *rod.Page) {
			p.MustElement(`form.add button`).MustClick()
			p.MustElement(`a.button.primary[href="/checkout"]`)
		})
	}
	var lines int
	do("cart", func(p *rod.Page) { lines = p.MustEval(`() => document.querySelectorAll("tbody tr").length`).Int() })
	if lines != 2 {
		t.Fatalf("the cart has %d lines, want 2", lines)
	}
	shot("cart")
	audit("cart")

	// 4. Checkout, filled by keyboard: Tab moves through the fields in
	// order and reaches the button.
	do("checkout", func(p *rod.Page) {
		p.MustElement(`a.button.primary[href="/checkout"]`).MustClick()
		p.MustElement(`#place-order`)
	})
	audit("checkout")
	do("fill by keyboard", func(p *rod.Page) {
		p.MustElement(`#line1`).MustFocus()
		p.MustInsertText("1 Market Street")
		p.Keyboard.MustType(input.Tab, input.Tab)
		p.MustInsertText("Berlin")
		p.Keyboard.MustType(input.Tab)
		p.MustInsertText("10115")
	})
	focused := ""
	for range 12 {
		do("tab", func(p *rod.Page) {
			p.Keyboard.MustType(input.Tab)
			focused = p.MustEval(`() => document.activeElement.id`).Str()
		})
		if focused == "place-order" {
			break
		}
	}
	if focused != "place-order" {
		t.Fatalf("Tab from the postal code never reached the Place order button (stopped at %q)", focused)
	}
	key := text(`[data-testid="idempotency-key"]`)
	var formBody string
	do("form body", func(p *rod.Page) {
		formBody = p.MustEval(`() => new URLSearchParams(new FormData(document.getElementById("checkout"))).toString()`).Str()
	})
	shot("checkout-filled")

	// A double submit: the form sent twice at once (what a double click
	// or an impatient reload does), both with this checkout's key.
	do("double submit", func(p *rod.Page) {
		p.MustEval(`() => {
			const f = document.getElementById("checkout");
			fetch("/checkout", {method: "POST", body: new URLSearchParams(new FormData(f))});
			f.requestSubmit();
		}`)
		p.MustElement(`[data-testid="order-status"]`)
	})
	orderURL := ""
	do("where", func(p *rod.Page) { orderURL = p.MustInfo().URL })
	orderID := regexp.MustCompile(`/orders/([^/?]+)`).FindStringSubmatch(orderURL)
	if orderID == nil {
		t.Fatalf("after checkout the browser is at %s", orderURL)
	}
	t.Logf("order %s, Idempotency-Key %s", orderID[1], key)
	shot("order-placed")

	// 5. The timeline goes live: paid, both e-mails sent, indexed in
	// search, with no reload (a marker set on the page now is still
	// there at the end).
	do("mark the page", func(p *rod.Page) { p.MustEval(`() => { window.__noReload = true }`) })
	audit("order page")
	do("timeline reaches paid", func(p *rod.Page) {
		p.CancelTimeout().Timeout(90 * time.Second).MustWait(`() => {
			const t = document.querySelector("#timeline ol");
			const done = t ? [...t.querySelectorAll("li.step-done .what")].map(e => e.textContent) : [];
			return done.includes("Order paid") && done.includes("Published: order.placed") && done.includes("E-mail: order received") && done.includes("E-mail: receipt") &&
				done.includes("Indexed in search") && t.dataset.final === "true";
		}`)
	})
	// The outbox step says where the relay put order.placed, with the
	// trace it belongs to.
	var published string
	do("published step", func(p *rod.Page) {
		published = p.MustEval(`() => [...document.querySelectorAll("#timeline li.step-done")]
			.find(li => li.querySelector(".what").textContent === "Published: order.placed").querySelector("p").textContent`).Str()
	})
	if !regexp.MustCompile(`ORDERS, partition \d+, sequence \d+`).MatchString(published) || !regexp.MustCompile(`trace [0-9a-f]{32}`).MatchString(published) {
		t.Errorf("the published step says %q: want the stream, partition, sequence and trace id", published)
	}
	var stillSame bool
	do("no reload", func(p *rod.Page) { stillSame = p.MustEval(`() => window.__noReload === true`).Bool() })
	if !stillSame {
		t.Error("the order page reloaded; the timeline must update in place")
	}
	if live := text(`#live-status`); !strings.Contains(live, "Complete") {
		t.Errorf("the live status says %q, want Complete", live)
	}
	shot("order-paid")

	// The double submit placed one order.
	if n := b.countOrders(web); n != ordersBefore+1 {
		t.Fatalf("the customer has %d orders after one checkout sent twice, had %d: want exactly one more", n, ordersBefore)
	}
	// A browser retry much later (the same form again, after the cart
	// was emptied) gets the same order back, and the page says so.
	var replayURL string
	do("resubmit", func(p *rod.Page) {
		replayURL = p.MustEval(`(body) => fetch("/checkout", {method: "POST", body: body,
			headers: {"Content-Type": "application/x-www-form-urlencoded"}}).then(r => r.url)`, formBody).Str()
	})
	if !strings.Contains(replayURL, "/orders/"+orderID[1]+"?replayed=1") {
		t.Fatalf("the same checkout sent again ended at %s, want the same order %s, replayed", replayURL, orderID[1])
	}
	do("replayed page", func(p *rod.Page) {
		p.MustNavigate(replayURL).MustWaitLoad()
		p.MustElement(`[data-testid="replayed"]`)
	})
	shot("checkout-replayed")
	if n := b.countOrders(web); n != ordersBefore+1 {
		t.Fatalf("the customer has %d orders after the retry, want %d", n, ordersBefore+1)
	}

	// 6. Read the receipt.
	do("read the receipt", func(p *rod.Page) {
		p.MustNavigate(orderURL).MustWaitLoad()
		// The live timeline replaces its nodes when an update arrives:
		// follow the link's address rather than click a node that may go.
		href := p.MustEval(`() => document.evaluate('//li[.//strong[text()="E-mail: receipt"]]//a', document, null,
			XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue.getAttribute("href")`).Str()
		p.MustNavigate(web + href).MustWaitLoad()
		p.MustElement(`pre.mail`)
	})
	if mail := text(`pre.mail`); !strings.Contains(mail, orderID[1][:8]) {
		t.Errorf("the receipt does not name the order %s:\n%s", orderID[1], mail)
	}
	shot("receipt")
	audit("e-mail")

	// 7. A declined card: the failure travels the same way, and the
	// customer gets the payment-failed e-mail.
	do("declined order", func(p *rod.Page) {
		buy(p, web+hrefs[2%len(hrefs)], "tok_chargeDeclined")
		p.MustElement(`[data-testid="order-status"]`)
	})
	waitTimeline(b, "declined order", []string{"Order accepted", "E-mail: order received", "Indexed in search", "E-mail: payment failed"},
		[]string{"Payment failed"})
	var cancelShown bool
	do("cancel button", func(p *rod.Page) {
		cancelShown = p.MustEval(`() => { const c = document.getElementById("cancel"); return !!c && !c.hidden; }`).Bool()
	})
	if cancelShown {
		t.Error("a failed order still offers Cancel order")
	}
	shot("order-declined")

	// 8. Cancel while the payment is in flight (the provider answers
	// after 3 s): the order is cancelled, the charge that lands after it
	// is refunded (order.refund_required), and the customer gets the
	// cancellation e-mail.
	providerFaults(t, psp, `{"latency":"3s"}`)
	do("slow order", func(p *rod.Page) {
		buy(p, web+hrefs[3%len(hrefs)], "tok_visa")
		clickAndWait(p, `#cancel button`)
		p.MustElement(`[data-testid="order-status"]`)
	})
	waitTimeline(b, "cancelled order", []string{"Order cancelled", "Payment succeeded", "Refunded", "E-mail: cancelled"}, nil)
	shot("order-cancelled-refunded")
	audit("cancelled order")
	providerFaults(t, psp, `{}`)

	// 9. The provider charges but its answer is lost (it hangs past the
	// worker's 5 s timeout): the timeline shows the call without an
	// answer, the look-up that finds the charge, and the order paid;
	// the provider holds one charge for it.
	providerFaults(t, psp, `{"timeout_after_charge_rate":1,"hang":"6s"}`)
	var lostURL string
	do("order with a lost answer", func(p *rod.Page) {
		buy(p, web+hrefs[4%len(hrefs)], "tok_visa")
		p.MustElement(`[data-testid="order-status"]`)
		lostURL = p.MustInfo().URL
	})
	waitTimeline(b, "lost answer", []string{"Look-up: the charge exists", "Payment succeeded", "Order paid", "E-mail: receipt"}, nil)
	var retried []string
	do("retried steps", func(p *rod.Page) {
		for _, v := range p.MustEval(`() => [...document.querySelectorAll("#timeline li.step-retry .what")].map(e => e.textContent)`).Arr() {
			retried = append(retried, v.Str())
		}
	})
	if !slices.Contains(retried, "Charge: no answer") {
		t.Errorf("the timeline's retried steps are %q, want the charge without an answer", retried)
	}
	lostID := regexp.MustCompile(`/orders/([^/?]+)`).FindStringSubmatch(lostURL)
	if lostID == nil {
		t.Fatalf("after checkout the browser is at %s", lostURL)
	}
	if n := chargesOf(t, psp, lostID[1]); n != 1 {
		t.Errorf("the provider holds %d charges for order %s, want 1", n, lostID[1])
	}
	shot("order-lost-answer")
	providerFaults(t, psp, `{}`)

	// 10. Bad input gets a readable page, not a stack trace or a 500.
	// (A malformed query is dropped by the URL parser: the first page.
	// The last address is an error page, for the screenshot.)
	for _, u := range []string{"/?page=%ZZ", "/products/%00nope", "/?q=" + strings.Repeat("x", 200), "/no-such-page", "/orders/not-an-order"} {
		var h1, body string
		do("bad input "+u, func(p *rod.Page) {
			p.MustNavigate(web + u).MustWaitLoad()
			h1 = p.MustElement(`h1`).MustText()
			body = p.MustElement(`body`).MustText()
		})
		if strings.Contains(body, "goroutine") || strings.Contains(body, "panic") || strings.Contains(strings.ToLower(h1), "internal") || h1 == "" {
			t.Errorf("%s: page %q:\n%.500s", u, h1, body)
		}
	}
	shot("bad-input")

	// 11. The plumbing console, as the operator: links, caches, lag,
	// queues, processes. A customer is refused.
	do("customer at the console", func(p *rod.Page) {
		p.MustNavigate(web + "/console").MustWaitLoad()
		if h := p.MustElement("h1").MustText(); h != "Operators only" {
			t.Errorf("a customer at /console sees %q, want Operators only", h)
		}
		p.MustElement(`form[action="/signout"] button`).MustClick()
		p.MustElement(`a[href="/signin"]`).MustClick()
		p.MustElement(`#username`).MustInput(identityapi.UserOscar)
		p.MustElement(`#password`).MustInput(password)
		p.MustElement(`button[type=submit]`).MustClick()
		p.MustElement(`form[action="/signout"]`)
		p.MustElement(`a[href="/console"]`).MustClick()
		p.MustElement(`[data-testid="link-redis"]`)
	})
	audit("console")
	shot("console")

	// Cut catalog's link to Redis: the console says so, the shop keeps
	// serving products the CDN has not cached (catalog fails open to
	// PostgreSQL), and the cache panel shows the Redis errors and the
	// breaker.
	do("cut redis", func(p *rod.Page) {
		clickAndWait(p, `button[aria-label="Cut the redis link"]`)
		p.MustWait(`() => { const e = document.querySelector('[data-testid="link-redis"]'); return e && e.textContent === "cut"; }`)
	})
	for _, href := range hrefs[5:min(len(hrefs), 12)] {
		var price string
		do("product while redis is cut", func(p *rod.Page) {
			p.MustNavigate(web + href).MustWaitLoad()
			price = p.MustElement(`.price`).MustText()
		})
		if !strings.Contains(price, "EUR") {
			t.Errorf("%s while Redis is cut: price %q", href, price)
		}
	}
	do("cache panel reacts", func(p *rod.Page) {
		p.MustNavigate(web + "/console").MustWaitLoad()
		p.CancelTimeout().Timeout(60 * time.Second).MustWait(`() => [...document.querySelectorAll('[data-testid="redis-errors"]')].some(e => Number(e.textContent) > 0)`)
	})
	shot("console-redis-cut")
	// The topology draws the cut link, and the CDN's and catalog's
	// traffic of the reads above as measured throughput.
	do("topology shows the cut", func(p *rod.Page) {
		p.MustWait(`() => { const e = document.querySelector('line[data-edge="catalog-redis"]'); return e && e.classList.contains("edge-cut"); }`)
		p.CancelTimeout().Timeout(30 * time.Second).MustWait(`() => /\d/.test(document.querySelector('[data-rate="web-cdn"]')?.textContent || "")`)
	})
	shotOf("topology-redis-cut", `svg.topology`)
	do("restore redis", func(p *rod.Page) {
		clickAndWait(p, `button[aria-label="Restore the redis link"]`)
		p.MustWait(`() => { const e = document.querySelector('[data-testid="link-redis"]'); return e && e.textContent === "up"; }`)
	})

	// The cache's emergency switch: bypassed, catalog reads PostgreSQL
	// for every product (the shop keeps working); switched back.
	do("bypass the cache", func(p *rod.Page) {
		clickAndWait(p, `button[aria-label="Bypass catalog's cache"]`)
		p.MustElement(`[data-testid="bypassed"]`)
	})
	for _, href := range hrefs[:3] {
		var price string
		do("product while the cache is bypassed", func(p *rod.Page) {
			p.MustNavigate(web + href).MustWaitLoad()
			price = p.MustElement(`.price`).MustText()
		})
		if !strings.Contains(price, "EUR") {
			t.Errorf("%s while the cache is bypassed: price %q", href, price)
		}
	}
	do("use the cache again", func(p *rod.Page) {
		p.MustNavigate(web + "/console").MustWaitLoad()
		clickAndWait(p, `button[aria-label="Use catalog's cache again"]`)
		p.MustElement(`button[aria-label="Bypass catalog's cache"]`)
		if p.MustHas(`[data-testid="bypassed"]`) {
			panic("still bypassed after Use the cache")
		}
	})

	// Stop a process and start it again: the console follows it live.
	do("stop search", func(p *rod.Page) {
		clickAndWait(p, `button[aria-label="Stop search"]`)
		p.CancelTimeout().Timeout(30 * time.Second).MustWait(`() => { const e = document.querySelector('[data-testid="proc-search"]'); return e && e.textContent === "down"; }`)
	})
	shot("console-search-stopped")
	do("topology shows search stopped", func(p *rod.Page) {
		p.MustWait(`() => document.querySelector('g[data-node="search"]')?.classList.contains("state-stopped") &&
			document.querySelector('line[data-edge="nats-search"]')?.classList.contains("edge-stopped")`)
	})
	do("start search", func(p *rod.Page) {
		clickAndWait(p, `button[aria-label="Start search"]`)
		p.CancelTimeout().Timeout(60 * time.Second).MustWait(`() => { const e = document.querySelector('[data-testid="proc-search"]'); return e && e.textContent === "ready"; }`)
	})

	// 12. A dead letter, redriven. The mail relay refuses for good (550):
	// the e-mails of the next order are not retried but dead-lettered at
	// once, and the order page says so. The operator finds them in the
	// console, reads one (redacted), fixes the relay and redrives them:
	// the customer's order page shows both e-mails sent.
	mailMode := func(mode string) {
		do("mail relay "+mode, func(p *rod.Page) {
			p.MustNavigate(web + "/console").MustWaitLoad()
			clickAndWait(p, `button[aria-label^="Mail relay: `+map[string]string{"rejecting": "Reject", "accepting": "Accept"}[mode]+`"]`)
			p.MustWait(`(m) => { const e = document.querySelector('[data-testid="mail-mode"]'); return e && e.textContent === m; }`, mode)
		})
	}
	signInAs := func(who string) {
		do("sign in as "+who, func(p *rod.Page) {
			p.MustNavigate(web + "/").MustWaitLoad()
			clickAndWait(p, `form[action="/signout"] button`)
			p.MustElement(`a[href="/signin"]`).MustClick()
			p.MustElement(`#username`).MustInput(who)
			p.MustElement(`#password`).MustInput(password)
			p.MustElement(`button[type=submit]`).MustClick()
			p.MustElement(`form[action="/signout"]`)
		})
	}
	mailMode("rejecting")
	t.Cleanup(func() { mailRelay(t, endpointsOf(t, web), false) })
	signInAs(customer)
	var refusedURL string
	do("order while the relay refuses", func(p *rod.Page) {
		buy(p, web+hrefs[5%len(hrefs)], "tok_visa")
		p.MustElement(`[data-testid="order-status"]`)
		refusedURL = p.MustInfo().URL
	})
	waitTimeline(b, "mail refused", []string{"Order paid"}, []string{"E-mail: order received", "E-mail: receipt"})
	shot("order-mail-dead-lettered")
	signInAs(identityapi.UserOscar)
	refusedID := regexp.MustCompile(`/orders/([^/?]+)`).FindStringSubmatch(refusedURL)[1]
	do("dead letters in the console", func(p *rod.Page) {
		p.MustNavigate(web + "/console#h-dlq").MustWaitLoad()
		p.CancelTimeout().Timeout(30*time.Second).MustWait(`(id) => [...document.querySelectorAll('table[data-testid="dlq-emails-dlq"] td.reason')]
			.filter(e => e.textContent.includes("order=" + id)).length === 2`, refusedID)
	})
	shot("console-dead-letters")
	var reason, body string
	do("inspect a dead letter", func(p *rod.Page) {
		href := p.MustEval(`(id) => [...document.querySelectorAll('table[data-testid="dlq-emails-dlq"] tr')]
			.find(r => r.textContent.includes("order=" + id)).querySelector("a").getAttribute("href")`, refusedID).Str()
		p.MustNavigate(web + href).MustWaitLoad()
		reason = p.MustElement(`[data-testid="dlq-reason"]`).MustText()
		body = p.MustElement(`[data-testid="dlq-body"]`).MustText()
	})
	if !strings.Contains(reason, "550") || strings.Contains(reason+body, customer) {
		t.Errorf("dead letter: reason %q, body %q: want the relay's 550 and no address of the customer", reason, body)
	}
	shot("dead-letter")
	audit("dead letter")
	mailMode("accepting")
	var flash string
	do("redrive", func(p *rod.Page) {
		clickAndWait(p, `button[aria-label="Redrive every dead letter in emails-dlq (notifications)"]`)
		flash = p.MustElement(`.flash`).MustText()
	})
	if !strings.Contains(flash, "Redrove") {
		t.Errorf("after the redrive the console says %q", flash)
	}
	shot("console-redriven")
	signInAs(customer)
	do("order page after the redrive", func(p *rod.Page) { p.MustNavigate(refusedURL).MustWaitLoad() })
	waitTimeline(b, "redriven e-mails", []string{"Order paid", "E-mail: order received", "E-mail: receipt"}, nil)
	shot("order-mail-redriven")

	// 12b. A poison event on ORDERS (not JSON): every consumer group of
	// the stream dead-letters it at once (a decode error is permanent)
	// while healthy events behind it flow. The console lists it per group
	// and shows it (nothing personal in it); a redrive for search sends it
	// again, and since search cannot decode it either, it is back.
	signInAs(identityapi.UserOscar)
	poisonID := fmt.Sprintf("poison-%d", time.Now().UnixNano())
	publishPoison(t, &target.System{Endpoints: endpointsOf(t, web), NATSPassword: natsPassword}, poisonID)
	do("stream dead letters in the console", func(p *rod.Page) {
		p.MustNavigate(web + "/console#h-dlq").MustWaitLoad()
		p.CancelTimeout().Timeout(60*time.Second).MustWait(`(id) => ["payments", "notifications", "search"].every(g =>
			[...document.querySelectorAll('table[data-testid="stream-dlq-ORDERS"] tr[data-group="' + g + '"]')].some(r => r.textContent.includes(id)))`, poisonID)
	})
	var sdlqGroup, sdlqError string
	do("inspect a stream dead letter", func(p *rod.Page) {
		href := p.MustEval(`(id) => [...document.querySelectorAll('table[data-testid="stream-dlq-ORDERS"] tr[data-group="search"]')]
			.find(r => r.textContent.includes(id)).querySelector("a").getAttribute("href")`, poisonID).Str()
		p.MustNavigate(web + href).MustWaitLoad()
		sdlqGroup = p.MustElement(`[data-testid="sdlq-group"]`).MustText()
		sdlqError = p.MustElement(`[data-testid="sdlq-error"]`).MustText()
	})
	if sdlqGroup != "search" || !strings.Contains(sdlqError, "permanent") {
		t.Errorf("the poison event's dead letter: group %q, error %q", sdlqGroup, sdlqError)
	}
	shot("stream-dead-letter")
	audit("stream dead letter")
	do("redrive the poison event for search", func(p *rod.Page) {
		clickAndWait(p, `form[action="/console/stream-dead-letters/ORDERS/redrive"] button`)
		flash = p.MustElement(`.flash`).MustText()
		p.CancelTimeout().Timeout(60*time.Second).MustWait(`(id) => [...document.querySelectorAll('table[data-testid="stream-dlq-ORDERS"] tr[data-group="search"]')]
			.some(r => r.textContent.includes(id))`, poisonID)
	})
	if !strings.Contains(flash, "Redrove 1 of search") {
		t.Errorf("after the stream redrive the console says %q", flash)
	}

	// 13. A chaos drill from the page: redis-down with 10 s of load. Its
	// timeline streams in, then the verdict table: every row held.
	do("run a drill", func(p *rod.Page) {
		p.MustNavigate(web + "/console#h-drills").MustWaitLoad()
		p.MustElement(`input[name="drill"][value="redis-down"]`).MustClick()
		p.MustElement(`#drill-seconds`).MustSelectAllText().MustInput("10")
		clickAndWait(p, `#run-drill`)
		p.MustWait(`() => document.querySelector('[data-testid="drill-log"]')?.textContent.includes("redis-down: run")`)
	})
	shot("drill-running")
	var violated string
	do("drill verdicts", func(p *rod.Page) {
		w := p.CancelTimeout().Timeout(5 * time.Minute)
		w.MustWait(`() => document.querySelector('[data-testid="drill-run"]')?.dataset.running === "false"`)
		violated = *w.MustElement(`[data-testid="drill-run"]`).MustAttribute("data-violated")
		if w.MustHas(`[data-testid="drill-run"] p.error`) {
			violated += ": " + w.MustElement(`[data-testid="drill-run"] p.error`).MustText()
		}
	})
	var rows int
	do("verdict rows", func(p *rod.Page) {
		rows = p.MustEval(`() => document.querySelectorAll('[data-testid="verdicts"] tbody tr').length`).Int()
	})
	if violated != "0" || rows < 5 {
		t.Errorf("the drill from the console: %s rows violated, %d verdict rows; want every row held", violated, rows)
	}
	do("scroll to the drill", func(p *rod.Page) { p.MustElement(`[data-testid="drill-run"]`).MustScrollIntoView() })
	shotOf("drill-verdicts", `[data-testid="drill-run"]`)
	audit("console with a drill")
}

// buy puts the product at productURL into the cart and checks out with
// the test card token, with the mouse.
func buy(p *rod.Page, productURL, card string) {
	p.MustNavigate(productURL).MustWaitLoad()
	p.MustElement(`form.add button`).MustClick()
	p.MustElement(`a.button.primary[href="/checkout"]`).MustClick()
	p.MustElement(`#line1`).MustInput("2 Side Street")
	p.MustElement(`#city`).MustInput("Hamburg")
	p.MustElement(`#postal_code`).MustInput("20095")
	p.MustElement(`#card-` + card).MustClick()
	clickAndWait(p, `#place-order`)
}

// clickAndWait clicks the element and waits (20 s) until a new document
// has replaced the page (a form's POST and its redirect), so that what
// comes next is looked for in the new page, not the old. A marker set on
// the old page tells them apart; an evaluation that fails while the
// documents swap is asked again.
func clickAndWait(p *rod.Page, selector string) {
	p.MustElement(selector) // wait until there is one
	// Clicked from inside the page: a live region may replace the node
	// between finding it and clicking it from here.
	p.MustEval(`(s) => { window.__before = true; document.querySelector(s).click(); }`, selector)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		swapped := false
		_ = rod.Try(func() {
			swapped = p.MustEval(`() => window.__before !== true && document.readyState === "complete"`).Bool()
		})
		if swapped {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	panic(fmt.Sprintf("clicking %s led to no new page within 20 s", selector))
}

// waitTimeline waits (90 s) until the order page's live timeline is final
// with the steps done and failed among its done and failed steps.
func waitTimeline(b *browser, what string, done, failed []string) {
	b.t.Helper()
	b.do(what+": timeline", func(p *rod.Page) {
		p.CancelTimeout().Timeout(90*time.Second).MustWait(`(done, failed) => {
			const t = document.querySelector("#timeline ol");
			if (!t || t.dataset.final !== "true") return false;
			const has = (state, titles) => {
				const got = [...t.querySelectorAll("li.step-" + state + " .what")].map(e => e.textContent);
				return (titles || []).every(x => got.includes(x));
			};
			return has("done", done) && has("failed", failed);
		}`, done, failed)
	})
}

// browser is one headless Chromium with one page, for one test.
type browser struct {
	t    *testing.T
	page *rod.Page
}

func newBrowser(t *testing.T, chromium string) *browser {
	t.Helper()
	l := launcher.New().Bin(chromium).Headless(true).NoSandbox(true).Leakless(false).
		Set("disable-gpu").Set("disable-quic").Set("no-first-run").Set("disable-background-networking").
		Set("disable-component-update").Set("disable-sync").UserDataDir(t.TempDir())
	u, err := l.Launch()
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	br := rod.New().ControlURL(u).Context(t.Context())
	if err := br.Connect(); err != nil {
		t.Fatalf("connect to chromium: %v", err)
	}
	t.Cleanup(func() { _ = br.Close(); l.Kill() })
	p, err := br.Page(proto.TargetCreateTarget{URL: "about:blank"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetViewport(&proto.EmulationSetDeviceMetricsOverride{Width: 1280, Height: 1000, DeviceScaleFactor: 1}); err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, page: p}
}

// screenshot writes the whole page as a PNG to path.
func (b *browser) screenshot(path string) {
	b.t.Helper()
	img, err := b.page.Screenshot(true, &proto.PageCaptureScreenshot{Format: proto.PageCaptureScreenshotFormatPng})
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", path, err)
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		b.t.Fatal(err)
	}
}

// audit runs the accessibility audit (a11yAudit) on the page and fails
// the test with every problem it finds.
func (b *browser) audit(page string) {
	b.t.Helper()
	var problems []string
	b.do("accessibility audit of "+page, func(p *rod.Page) {
		for _, v := range p.MustEval(a11yAudit).Arr() {
			problems = append(problems, v.Str())
		}
	})
	if len(problems) > 0 {
		b.t.Errorf("%s: accessibility problems:\n  %s", page, strings.Join(problems, "\n  "))
	}
}

// do runs fn (Must* calls of rod, which panic) on the page with 30
// seconds to finish, and fails the test with where the page was and what
// it showed.
func (b *browser) do(what string, fn func(p *rod.Page)) {
	b.t.Helper()
	p := b.page.Timeout(30 * time.Second)
	defer p.CancelTimeout()
	if err := rod.Try(func() { fn(p) }); err != nil {
		where, body := "?", ""
		_ = rod.Try(func() {
			where = b.page.MustInfo().URL
			body = b.page.MustElement("body").MustText()
		})
		b.t.Fatalf("%s: %v\nat %s:\n%.2000s", what, err, where, body)
	}
}

// countOrders counts the rows of "My orders".
func (b *browser) countOrders(web string) int {
	var n int
	b.do("my orders", func(p *rod.Page) {
		b.page.MustNavigate(web + "/orders").MustWaitLoad()
		n = b.page.MustEval(`() => document.querySelectorAll("tbody tr").length`).Int()
	})
	return n
}

// storefront returns the storefront's URL, the provider simulator's, the
// demo password and the NATS operator's password: of the run in
// SHOPFLOOR_WEB_RUN_DIR, or of a topology started for this test.
func storefront(t *testing.T) (web, psp, password, natsPassword string) {
	if dir := os.Getenv("SHOPFLOOR_WEB_RUN_DIR"); dir != "" {
		id, err := target.ReadIdentityEnv(filepath.Join(dir, "identity.env"))
		if err != nil {
			t.Fatal(err)
		}
		if natsPassword, err = target.ReadNATSEnv(dir); err != nil {
			t.Fatal(err)
		}
		base := 8000
		if s := os.Getenv("SHOPFLOOR_PORT_BASE"); s != "" {
			if base, err = strconv.Atoi(s); err != nil {
				t.Fatalf("SHOPFLOOR_PORT_BASE=%q: %v", s, err)
			}
		}
		return "http://127.0.0.1:" + strconv.Itoa(base), "http://127.0.0.1:" + strconv.Itoa(base+99), id.DemoPassword, natsPassword
	}
	// One instance per consumer group: stopping "search" then stops the
	// whole service, which the console draws as stopped (with a second
	// instance it would be degraded).
	local := startTopology(t, "web", webPortBase, 13, "SEED_PRODUCTS=100", "SHOPFLOOR_CONSUMER_INSTANCES=1")
	sys := local.System()
	return "http://127.0.0.1:" + strconv.Itoa(webPortBase), "http://127.0.0.1:" + strconv.Itoa(webPortBase+99), sys.Identity.DemoPassword, sys.NATSPassword
}

// findChromium finds Debian's chromium (make tools installs it), or
// CHROME_PATH. Missing, the test fails: CI must not skip it silently.
func findChromium(t *testing.T) string {
	if p := os.Getenv("CHROME_PATH"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found: run 'make tools' (it installs Debian's chromium) or set CHROME_PATH")
	return ""
}
