package local_test

import (
	"strings"
	"testing"

	"github.com/go-rod/rod"
)

// a11yAudit returns the page's accessibility problems (an empty list when
// none): the basics a screen-reader or keyboard user needs.
//   - the document has a language and a title, and exactly one h1;
//   - every form control has an accessible name (a label, aria-label or
//     aria-labelledby; a button its text);
//   - every link has text; images have alt text;
//   - visible text contrasts with its background at least 4.5:1 (3:1 for
//     large text), WCAG 2 AA, computed from the rendered colours.
const a11yAudit = `() => {
  const out = [];
  const d = document;
  if (!d.documentElement.lang) out.push("html has no lang");
  if (!d.title.trim()) out.push("no title");
  const h1s = d.querySelectorAll("h1").length;
  if (h1s !== 1) out.push("page has " + h1s + " h1 elements");
  const name = (el) => {
    if (el.getAttribute("aria-label")) return el.getAttribute("aria-label");
    const by = el.getAttribute("aria-labelledby");
    if (by) return by.split(/\s+/).map(id => (d.getElementById(id) || {}).textContent || "").join(" ").trim();
    if (el.id) { const l = d.querySelector('label[for="' + el.id + '"]'); if (l) return l.textContent.trim(); }
    const wrap = el.closest("label"); if (wrap) return wrap.textContent.trim();
    if (el.tagName === "BUTTON" || el.tagName === "A") return el.textContent.trim();
    return "";
  };
  for (const el of d.querySelectorAll("input:not([type=hidden]), select, textarea, button")) {
    if (!name(el)) out.push("control without a name: " + el.outerHTML.slice(0, 120));
  }
  for (const a of d.querySelectorAll("a[href]")) {
    if (!name(a) && !a.querySelector("img[alt]")) out.push("link without text: " + a.outerHTML.slice(0, 120));
  }
  for (const img of d.querySelectorAll("img")) if (!img.hasAttribute("alt")) out.push("image without alt: " + img.src);
  const rgb = (s) => { const m = s.match(/[\d.]+/g); return m ? m.map(Number) : [0, 0, 0, 1]; };
  const lum = ([r, g, b]) => { const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const bg = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const seen = new Set();
  for (const el of d.querySelectorAll("body *")) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest(".skip, .sr-only")) continue;
    const r = el.getBoundingClientRect(); if (r.width === 0 || r.height === 0) continue;
    const cs = getComputedStyle(el);
    const fg = rgb(cs.color), b = bg(el);
    const l1 = lum(fg), l2 = lum(b);
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(cs.fontSize), bold = parseInt(cs.fontWeight, 10) >= 700;
    const need = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
    if (ratio < need) {
      const k = el.tagName + ":" + cs.color + "/" + cs.backgroundColor;
      if (!seen.has(k)) { seen.add(k); out.push("contrast " + ratio.toFixed(2) + " < " + need + ": " + el.outerHTML.slice(0, 100)); }
    }
  }
  return out;
}`

// TestAccessibilityAuditFindsProblems: the audit the browser test runs
// on every page reports each kind of problem it looks for on a page made
// of them, and nothing on a page without them.
func TestAccessibilityAuditFindsProblems(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	b := newBrowser(t, findChromium(t))
	audit := func(html string) []string {
		var out []string
		b.do("audit", func(p *rod.Page) {
			p.MustNavigate("about:blank").MustWaitLoad()
			p.MustSetDocumentContent(html)
			for _, v := range p.MustEval(a11yAudit).Arr() {
				out = append(out, v.Str())
			}
		})
		return out
	}
	good := `<!doctype html><html lang="en"><head><title>ok</title></head><body><h1>Fine</h1>
		<label for="a">Name</label><input id="a"><button>Send</button><a href="/x">More</a></body></html>`
	if got := audit(good); len(got) != 0 {
		t.Errorf("a good page: %v", got)
	}
	bad := `<!doctype html><html><head><title></title></head><body><h1>One</h1><h1>Two</h1>
		<input id="a"><button></button><a href="/x"></a><img src="data:,">
		<p style="color:#bbb;background:#fff">faint text</p></body></html>`
	got := strings.Join(audit(bad), "\n")
	for _, want := range []string{"html has no lang", "no title", "2 h1 elements", "control without a name: <input",
		"control without a name: <button", "link without text", "image without alt", "contrast"} {
		if !strings.Contains(got, want) {
			t.Errorf("the audit of a bad page lacks %q:\n%s", want, got)
		}
	}
}
