// Package product holds catalog's domain: a product, its rules, and how it
// is rendered for a locale and a currency. No I/O.
package product

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/shopfloor/shopfloor/pkg/money"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
)

// Locales are the supported locales; the first is the default. The
// currencies are pkg/money's (the first is the default): a product is
// priced only in a currency orders accepts and payments charges.
var Locales = []string{"en-US", "de-DE", "fr-FR"}

// Statuses.
const (
	StatusDraft    = "draft"
	StatusActive   = "active"
	StatusArchived = "archived"
)

// Domain errors, mapped to HTTP statuses in one place (producthttp).
var (
	ErrNotFound        = errors.New("product not found")
	ErrVersionMismatch = errors.New("product version does not match If-Match")
	ErrSKUTaken        = errors.New("sku already used by another product")
)

// Product is a catalog product.
type Product struct {
	ID           string
	SKU          string
	Category     string
	Images       []string
	Status       string
	Version      int64
	Translations map[string]catalogapi.ProductText
	Prices       map[string]int64
}

// FieldError names one invalid field.
type FieldError struct{ Field, Message string }

// ValidationError lists every invalid field.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid product: " + strings.Join(parts, "; ")
}

var (
	skuPattern      = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{2,39}$`)
	categoryPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
)

// ValidSKU reports whether s has the form of a sku: 3–40 upper-case
// letters, digits or '-', starting with a letter or digit.
func ValidSKU(s string) bool { return skuPattern.MatchString(s) }

// Validate checks every rule and reports every broken one.
func (p Product) Validate() error {
	var fe []FieldError
	add := func(field, msg string) { fe = append(fe, FieldError{field, msg}) }
	if !skuPattern.MatchString(p.SKU) {
		add("sku", "must be 3–40 upper-case letters, digits or '-'")
	}
	if !categoryPattern.MatchString(p.Category) {
		add("category", "must be 1–40 lower-case letters, digits or '-'")
	}
	if !slices.Contains([]string{StatusDraft, StatusActive, StatusArchived}, p.Status) {
		add("status", "must be draft, active or archived")
	}
	if len(p.Images) > 10 {
		add("images", "at most 10")
	}
	for i, img := range p.Images {
		if !strings.HasPrefix(img, "https://") || len(img) > 500 {
			add(fmt.Sprintf("images[%d]", i), "must be an https URL of at most 500 characters")
		}
	}
	if _, ok := p.Translations[Locales[0]]; !ok {
		add("translations", "must include "+Locales[0])
	}
	for loc, t := range p.Translations {
		if !slices.Contains(Locales, loc) {
			add("translations."+loc, "unknown locale (supported: "+strings.Join(Locales, ", ")+")")
			continue
		}
		if n := utf8.RuneCountInString(strings.TrimSpace(t.Name)); n < 1 || n > 200 {
			add("translations."+loc+".name", "must be 1–200 characters")
		}
		if utf8.RuneCountInString(t.Description) > 5000 {
			add("translations."+loc+".description", "must be at most 5000 characters")
		}
	}
	if len(p.Prices) == 0 {
		add("prices", "at least one currency")
	}
	for cur, amount := range p.Prices {
		if !money.Supported(cur) {
			add("prices."+cur, "unknown currency (supported: "+strings.Join(money.Currencies(), ", ")+")")
		} else if amount <= 0 || amount > 100_000_000 {
			add("prices."+cur, "must be between 1 and 100000000 minor units")
		}
	}
	if len(fe) == 0 {
		return nil
	}
	slices.SortFunc(fe, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
	return &ValidationError{Fields: fe}
}

// Render returns p for locale and currency. A missing translation falls
// back to the default locale; a missing price is ErrNoPrice.
func (p Product) Render(locale, currency string) (catalogapi.Product, error) {
	t, ok := p.Translations[locale]
	if !ok {
		t = p.Translations[Locales[0]]
	}
	amount, ok := p.Prices[currency]
	if !ok {
		return catalogapi.Product{}, fmt.Errorf("%w: %s has no price in %s", ErrNoPrice, p.ID, currency)
	}
	images := p.Images
	if images == nil {
		images = []string{}
	}
	return catalogapi.Product{
		ID: p.ID, SKU: p.SKU, Name: t.Name, Description: t.Description, Category: p.Category,
		Images: images, Status: p.Status, Version: p.Version, Locale: locale,
		Price: catalogapi.Price{Currency: currency, AmountMinor: amount},
	}, nil
}

// ErrNoPrice: the product is not sold in the requested currency.
var ErrNoPrice = errors.New("product has no price in this currency")

// NegotiateLocale picks the locale from ?locale= (exact, else an error) or
// Accept-Language (first supported tag, by language if no exact match),
// else the default.
func NegotiateLocale(query, acceptLanguage string) (string, error) {
	if query != "" {
		if slices.Contains(Locales, query) {
			return query, nil
		}
		return "", fmt.Errorf("unknown locale %q (supported: %s)", query, strings.Join(Locales, ", "))
	}
	for _, part := range strings.Split(acceptLanguage, ",") {
		tag := strings.TrimSpace(strings.SplitN(part, ";", 2)[0])
		if tag == "" || tag == "*" {
			continue
		}
		for _, l := range Locales {
			if strings.EqualFold(l, tag) {
				return l, nil
			}
		}
		for _, l := range Locales {
			if strings.EqualFold(strings.SplitN(l, "-", 2)[0], strings.SplitN(tag, "-", 2)[0]) {
				return l, nil
			}
		}
	}
	return Locales[0], nil
}

// ParseCurrency validates ?currency= (default: the first supported).
func ParseCurrency(q string) (string, error) {
	if q == "" {
		return money.Default(), nil
	}
	if money.Supported(q) {
		return q, nil
	}
	return "", fmt.Errorf("unknown currency %q (supported: %s)", q, strings.Join(money.Currencies(), ", "))
}
