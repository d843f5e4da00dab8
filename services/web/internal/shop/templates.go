package shop

import (
	"html/template"
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
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	names := []string{"home", "product", "cart", "checkout", "orders", "order", "mail", "error"}
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
