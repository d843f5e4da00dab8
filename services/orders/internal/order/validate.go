package order

import (
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/payments/paymentsapi"
)

// Limits of a checkout request.
const (
	MaxLines      = 50
	MaxQuantity   = 100
	maxIDLen      = 64
	maxEmailLen   = 254
	maxTextLen    = 200
	maxPostalCode = 20
)

// Currencies are the currencies orders accepts: those payments takes
// (paymentsapi, the one declaration of payments' limits), so that no order
// is accepted that payments cannot charge. Catalog prices them all.
var Currencies = paymentsapi.Currencies()

var (
	customerIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)
	// skuRE is catalog's sku form (3–40 upper-case letters, digits or '-').
	skuRE     = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{2,39}$`)
	countryRE = regexp.MustCompile(`^[A-Z]{2}$`)
	// tokenRE is a provider's payment method token.
	tokenRE = regexp.MustCompile(`^(tok|pm)_[A-Za-z0-9_]{1,64}$`)
)

// FieldError is one invalid field: Pointer is an RFC 6901 JSON Pointer into
// the request body ("/items/2/quantity").
type FieldError struct {
	Pointer string
	Message string
}

// ValidationError lists every invalid field of a request.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Pointer + ": " + f.Message
	}
	return "invalid order: " + strings.Join(parts, "; ")
}

type checker struct{ fields []FieldError }

func (c *checker) fail(pointer, format string, args ...any) {
	c.fields = append(c.fields, FieldError{Pointer: pointer, Message: fmt.Sprintf(format, args...)})
}

// text checks a free-text field: required or not, at most max characters,
// valid UTF-8 without control characters.
func (c *checker) text(pointer, s string, required bool, maxLen int) {
	switch {
	case strings.TrimSpace(s) == "":
		if required {
			c.fail(pointer, "is required")
		}
	case !utf8.ValidString(s):
		c.fail(pointer, "must be UTF-8 text")
	case utf8.RuneCountInString(s) > maxLen:
		c.fail(pointer, "must be at most %d characters", maxLen)
	case strings.ContainsFunc(s, unicode.IsControl):
		c.fail(pointer, "must not contain control characters")
	}
}

// ValidateCreate checks a checkout request without calling anyone: it
// returns nil or a *ValidationError naming every bad field. Whether the
// products exist and are on sale is catalog's answer, checked later.
func ValidateCreate(in ordersapi.CreateOrder) error {
	var c checker
	switch {
	case in.CustomerID == "":
		c.fail("/customer_id", "is required")
	case len(in.CustomerID) > maxIDLen || !customerIDRE.MatchString(in.CustomerID):
		c.fail("/customer_id", "must be 1–%d letters, digits or . _ : -", maxIDLen)
	}
	switch addr, err := mail.ParseAddress(in.CustomerEmail); {
	case in.CustomerEmail == "":
		c.fail("/customer_email", "is required")
	case len(in.CustomerEmail) > maxEmailLen || err != nil || addr.Address != in.CustomerEmail:
		c.fail("/customer_email", "must be a plain e-mail address such as ada@example.com")
	}
	if in.PaymentMethod != "" && !tokenRE.MatchString(in.PaymentMethod) {
		c.fail("/payment_method", "must be a payment method token such as tok_visa (never card data)")
	}
	if !isCurrency(in.Currency) {
		c.fail("/currency", "must be one of %s", strings.Join(Currencies, ", "))
	}
	switch n := len(in.Items); {
	case n == 0:
		c.fail("/items", "must list at least one product")
	case n > MaxLines:
		c.fail("/items", "must list at most %d products (got %d)", MaxLines, n)
	default:
		seen := map[string]int{}
		for i, it := range in.Items {
			p := "/items/" + strconv.Itoa(i)
			ref := ""
			switch {
			case it.ProductID != "" && it.SKU != "":
				c.fail(p, "name the product by product_id or sku, not both")
			case it.ProductID != "":
				if _, err := uuid.Parse(it.ProductID); err != nil || len(it.ProductID) != 36 {
					c.fail(p+"/product_id", "must be a product id (a UUID)")
				}
				ref = "id:" + strings.ToLower(it.ProductID)
			case it.SKU != "":
				if !skuRE.MatchString(it.SKU) {
					c.fail(p+"/sku", "must be a sku: 3–40 upper-case letters, digits or -")
				}
				ref = "sku:" + it.SKU
			default:
				c.fail(p, "needs a product_id or a sku")
			}
			if it.Quantity < 1 || it.Quantity > MaxQuantity {
				c.fail(p+"/quantity", "must be 1..%d (got %d)", MaxQuantity, it.Quantity)
			}
			if j, dup := seen[ref]; dup && ref != "" {
				c.fail(p, "names the same product as /items/%d; add up the quantities in one line", j)
			} else if ref != "" {
				seen[ref] = i
			}
		}
	}
	a := in.Shipping
	c.text("/shipping_address/name", a.Name, true, maxTextLen)
	c.text("/shipping_address/line1", a.Line1, true, maxTextLen)
	c.text("/shipping_address/line2", a.Line2, false, maxTextLen)
	c.text("/shipping_address/city", a.City, true, maxTextLen)
	c.text("/shipping_address/postal_code", a.PostalCode, true, maxPostalCode)
	if !countryRE.MatchString(a.Country) {
		c.fail("/shipping_address/country", "must be an ISO 3166-1 alpha-2 code such as DE")
	}
	if len(c.fields) > 0 {
		return &ValidationError{Fields: c.fields}
	}
	return nil
}

func isCurrency(s string) bool {
	for _, c := range Currencies {
		if s == c {
			return true
		}
	}
	return false
}

// PaymentLimitError is an order payments cannot charge: its total is
// above payments' largest payment in its currency (or below the smallest),
// or payments does not take its currency. It is refused at checkout, so
// that order.placed never asks payments for a charge it has to reject.
type PaymentLimitError struct {
	// Limit is payments' answer (paymentsapi.CheckAmount).
	Limit *paymentsapi.LimitError
}

func (e *PaymentLimitError) Error() string { return "order cannot be paid: " + e.Limit.Error() }

// Pointer is the JSON Pointer of the request field to change: /currency
// for a currency payments does not take, /items for a total out of range.
func (e *PaymentLimitError) Pointer() string {
	if e.Limit.Reason == paymentsapi.LimitCurrency {
		return "/currency"
	}
	return "/items"
}

// Detail says, for a person, why the order cannot be paid and what to do.
func (e *PaymentLimitError) Detail() string {
	l := e.Limit
	switch l.Reason {
	case paymentsapi.LimitCurrency:
		return fmt.Sprintf("payments cannot be taken in %s; order in one of %s", l.Currency, strings.Join(paymentsapi.Currencies(), ", "))
	case paymentsapi.LimitBelowMin:
		return fmt.Sprintf("the order's total (%d minor units of %s) is below the smallest payment that can be taken (%d); add items",
			l.AmountMinor, l.Currency, l.LimitMinor)
	default:
		return fmt.Sprintf("the order's total (%d minor units of %s) is above the largest payment that can be taken in %s (%d); order fewer items or split the order",
			l.AmountMinor, l.Currency, l.Currency, l.LimitMinor)
	}
}

// Unwrap returns the *paymentsapi.LimitError.
func (e *PaymentLimitError) Unwrap() error { return e.Limit }

// CheckPayable returns nil when payments can charge totalMinor in
// currency, or a *PaymentLimitError saying which of payments' limits the
// order breaks.
func CheckPayable(currency string, totalMinor int64) error {
	var le *paymentsapi.LimitError
	if errors.As(paymentsapi.CheckAmount(totalMinor, currency), &le) {
		return &PaymentLimitError{Limit: le}
	}
	return nil
}
