package shop

import (
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"
)

var funcs = template.FuncMap{
	"clock": func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
	"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"short": shortID,
	"title": func(s string) string { return strings.ReplaceAll(s, "_", " ") },
	"field": func(m map[string]string, k string) string { return m[k] },
	"item":  itemValue,
	"label": fieldLabel,
	"pct":   func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
	"num":   func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
	"secs":  func(f float64) string { return fmt.Sprintf("%.1f s", f) },
	"heat": func(f float64) string {
		switch {
		case f < 0:
			return "heat-none"
		case f == 0:
			return "heat-0"
		case f < 10:
			return "heat-1"
		case f < 100:
			return "heat-2"
		default:
			return "heat-3"
		}
	},
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	names := []string{"home", "product", "cart", "checkout", "orders", "order", "mail", "error", "console", "deadletter", "streamdeadletter"}
	pages := make(map[string]*template.Template, len(names))
	for _, n := range names {
		t, err := template.New(n).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n+".html")
		if err != nil {
			return nil, err
		}
		pages[n] = t
	}
	return pages, nil
}
