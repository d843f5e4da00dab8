package shop

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/shopfloor/shopfloor/pkg/idempotency"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
)

// Limits of the cart (the cookie must stay small, and orders refuses
// bigger orders anyway).
const (
	maxCartLines = 20
	maxQuantity  = 10
)

// cartLine is one product in the cart cookie; prices are never kept there
// (they are read from catalog for display and by orders at checkout).
type cartLine struct {
	ProductID string `json:"p"`
	Quantity  int    `json:"q"`
}

type cartCookie struct {
	Lines []cartLine `json:"l"`
}

func (c cartCookie) count() int {
	n := 0
	for _, l := range c.Lines {
		n += l.Quantity
	}
	return n
}

func (s *Server) readCart(r *http.Request) cartCookie {
	var c cartCookie
	if err := s.cfg.Sealer.Open(r, cookieCart, &c); err != nil {
		return cartCookie{}
	}
	return c
}

func (s *Server) writeCart(w http.ResponseWriter, c cartCookie) error {
	if len(c.Lines) == 0 {
		s.cfg.Sealer.Clear(w, cookieCart)
		return nil
	}
	return s.cfg.Sealer.Set(w, cookieCart, c, 30*24*time.Hour)
}

func (s *Server) cartAdd(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("product_id")
	qty, ok := parseQuantity(r.PostFormValue("quantity"))
	if !idPattern.MatchString(id) || !ok {
		s.fail(w, r, http.StatusBadRequest, "That cannot go into the cart", "Choose a product and a quantity from 1 to 10.")
		return
	}
	if _, _, err := s.getProduct(r.Context(), id); err != nil {
		if isStatus(err, http.StatusNotFound) || isStatus(err, http.StatusBadRequest) {
			s.fail(w, r, http.StatusBadRequest, "That product is not for sale", "It may have been withdrawn. Browse the shop for what there is.")
			return
		}
		s.backendFailed(w, r, err)
		return
	}
	c := s.readCart(r)
	found := false
	for i := range c.Lines {
		if c.Lines[i].ProductID == id {
			c.Lines[i].Quantity = min(maxQuantity, c.Lines[i].Quantity+qty)
			found = true
		}
	}
	if !found {
		if len(c.Lines) >= maxCartLines {
			s.fail(w, r, http.StatusBadRequest, "The cart is full", "A cart holds at most 20 different products. Check out or remove some first.")
			return
		}
		c.Lines = append(c.Lines, cartLine{ProductID: id, Quantity: qty})
	}
	if err := s.writeCart(w, c); err != nil {
		s.serverError(w, r, err)
		return
	}
	http.Redirect(w, r, "/cart", http.StatusSeeOther)
}

func (s *Server) cartRemove(w http.ResponseWriter, r *http.Request) {
	id := r.PostFormValue("product_id")
	c := s.readCart(r)
	kept := c.Lines[:0]
	for _, l := range c.Lines {
		if l.ProductID != id {
			kept = append(kept, l)
		}
	}
	c.Lines = kept
	if err := s.writeCart(w, c); err != nil {
		s.serverError(w, r, err)
		return
	}
	http.Redirect(w, r, "/cart", http.StatusSeeOther)
}

type cartView struct {
	Lines []cartLineView
	Total string
	// Gone lists products that left the catalog since they were added
	// (they are dropped from the cart).
	Gone int
}

type cartLineView struct {
	ProductID, Name, SKU, Unit, Sum, XCache string
	Quantity                                int
	Version                                 int64
}

// cartView prices the cart from catalog (through the CDN). The total is
// what the page shows; orders prices the order itself at checkout.
func (s *Server) cartView(r *http.Request) (cartView, error) {
	return s.priceLines(r.Context(), s.readCart(r).Lines)
}

func (s *Server) priceLines(ctx context.Context, lines []cartLine) (cartView, error) {
	var v cartView
	var total int64
	for _, l := range lines {
		p, ci, err := s.getProduct(ctx, l.ProductID)
		if isStatus(err, http.StatusNotFound) || isStatus(err, http.StatusBadRequest) {
			v.Gone++
			continue
		}
		if err != nil {
			return cartView{}, err
		}
		sum := p.Price.AmountMinor * int64(l.Quantity)
		total += sum
		v.Lines = append(v.Lines, cartLineView{ProductID: p.ID, Name: p.Name, SKU: p.SKU, Quantity: l.Quantity, Version: p.Version,
			Unit: money(p.Price.AmountMinor, p.Price.Currency), Sum: money(sum, p.Price.Currency), XCache: ci.XCache})
	}
	v.Total = money(total, s.cfg.Currency)
	return v, nil
}

func (s *Server) cart(w http.ResponseWriter, r *http.Request) {
	v, err := s.cartView(r)
	if err != nil {
		s.backendFailed(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "cart", page{Title: "Cart", User: s.currentUser(w, r), Data: v})
}

// testCards are the sandbox provider's test tokens (services/payments/
// pspsim documents them; like a real provider's, they are public names,
// not an API of payments), which the checkout offers in place of a card
// form: the shop never sees card data, only a provider's token.
var testCards = []struct{ Token, Label string }{
	{"tok_visa", "Visa, succeeds"},
	{"tok_mastercard", "Mastercard, succeeds"},
	{"tok_chargeDeclined", "Declined by the bank"},
	{"tok_insufficientFunds", "Insufficient funds"},
	{"tok_expiredCard", "Expired card"},
}

func knownCard(tok string) bool {
	for _, c := range testCards {
		if c.Token == tok {
			return true
		}
	}
	return false
}

// keyPattern is the Idempotency-Key the pages generate (randomID).
var keyPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

type checkoutForm struct {
	Cart cartView
	// Key is the Idempotency-Key of this checkout: made when the form is
	// first shown and sent back with every submit of it, so a double
	// click or a browser's resubmit places one order.
	Key                                           string
	Name, Line1, Line2, City, PostalCode, Country string
	Card                                          string
	Cards                                         []struct{ Token, Label string }
	// Error and Fields explain a refused submit.
	Error  string
	Fields map[string]string
}

func (s *Server) checkoutForm(w http.ResponseWriter, r *http.Request, u *user) {
	if !u.IsCustomer() {
		s.fail(w, r, http.StatusForbidden, "Only customers can check out", "You are signed in as "+u.Name+", who is not a customer. Sign out and sign in as a customer (ada or grace).")
		return
	}
	cv, err := s.cartView(r)
	if err != nil {
		s.backendFailed(w, r, err)
		return
	}
	f := checkoutForm{Cart: cv, Key: randomID(), Name: u.Name, Card: testCards[0].Token, Cards: testCards, Country: "DE"}
	s.render(w, r, http.StatusOK, "checkout", page{Title: "Checkout", User: u, Data: f})
}

// checkout places the order a submitted checkout form describes: it reads
// the form (readCheckoutForm), checks it (checkCheckoutForm) and answers
// a form with mistakes with the form again, then places the order with
// the form's Idempotency-Key (placeOrder) and answers orders' refusal or
// failure (checkoutFailed) or redirects to the order placed (orderPlaced).
func (s *Server) checkout(w http.ResponseWriter, r *http.Request, u *user) {
	if !u.IsCustomer() {
		s.fail(w, r, http.StatusForbidden, "Only customers can check out", "Sign in as a customer (ada or grace).")
		return
	}
	f := readCheckoutForm(r)
	if !keyPattern.MatchString(f.Key) {
		s.fail(w, r, http.StatusBadRequest, "The checkout form was incomplete", "Open the checkout page again and submit it from there.")
		return
	}
	// The items come from the form, not the cart cookie: the form is what
	// the customer confirmed, and a resubmit of it (double click, browser
	// retry after the cart was emptied) is then the same request to orders,
	// which replays its first answer.
	cart, ok := parseItems(r.PostForm["item"])
	if !ok {
		s.fail(w, r, http.StatusBadRequest, "The checkout form was incomplete", "Open the checkout page again and submit it from there.")
		return
	}
	checkCheckoutForm(&f, cart)
	if len(f.Fields) > 0 || f.Error != "" {
		if f.Error == "" {
			f.Error = "Some fields need attention."
		}
		s.refuseCheckout(w, r, u, f, cart, http.StatusUnprocessableEntity)
		return
	}
	o, h, err := s.placeOrder(r.Context(), u, f, cart)
	if err != nil {
		s.checkoutFailed(w, r, u, f, cart, err)
		return
	}
	s.orderPlaced(w, r, o, h)
}

// readCheckoutForm reads the submitted form, trimmed.
func readCheckoutForm(r *http.Request) checkoutForm {
	return checkoutForm{Key: r.PostFormValue("idempotency_key"), Name: strings.TrimSpace(r.PostFormValue("name")),
		Line1: strings.TrimSpace(r.PostFormValue("line1")), Line2: strings.TrimSpace(r.PostFormValue("line2")),
		City: strings.TrimSpace(r.PostFormValue("city")), PostalCode: strings.TrimSpace(r.PostFormValue("postal_code")),
		Country: strings.ToUpper(strings.TrimSpace(r.PostFormValue("country"))), Card: r.PostFormValue("card"), Cards: testCards,
		Fields: map[string]string{}}
}

// checkCheckoutForm records in f what is missing or wrong, for a readable
// page; orders checks again and decides.
func checkCheckoutForm(f *checkoutForm, cart cartCookie) {
	for field, v := range map[string]string{"name": f.Name, "line1": f.Line1, "city": f.City, "postal_code": f.PostalCode} {
		if v == "" {
			f.Fields[field] = "is required"
		}
	}
	if len(f.Country) != 2 {
		f.Fields["country"] = "must be a two-letter country code such as DE"
	}
	if !knownCard(f.Card) {
		f.Fields["card"] = "choose one of the test cards"
	}
	if len(cart.Lines) == 0 {
		f.Error = "Your cart is empty: add something first."
	}
}

// refuseCheckout shows the form again, priced, with status and f's
// explanation.
func (s *Server) refuseCheckout(w http.ResponseWriter, r *http.Request, u *user, f checkoutForm, cart cartCookie, status int) {
	cv, err := s.priceLines(r.Context(), cart.Lines)
	if err != nil {
		s.backendFailed(w, r, err)
		return
	}
	f.Cart = cv
	s.render(w, r, status, "checkout", page{Title: "Checkout", User: u, Data: f})
}

// placeOrder asks orders to place the order, with the form's
// Idempotency-Key. It returns the order and orders' response header.
func (s *Server) placeOrder(ctx context.Context, u *user, f checkoutForm, cart cartCookie) (ordersapi.Order, http.Header, error) {
	in := ordersapi.CreateOrder{CustomerEmail: u.Email, Currency: s.cfg.Currency, PaymentMethod: f.Card,
		Shipping: ordersapi.Address{Name: f.Name, Line1: f.Line1, Line2: f.Line2, City: f.City, PostalCode: f.PostalCode, Country: f.Country}}
	for _, l := range cart.Lines {
		in.Items = append(in.Items, ordersapi.LineInput{ProductID: l.ProductID, Quantity: l.Quantity})
	}
	var o ordersapi.Order
	h, err := s.postIdempotent(ctx, "orders", s.cfg.Backends.Orders, "/v1/orders", u.Access,
		http.Header{idempotency.HeaderKey: {f.Key}}, in, &o)
	return o, h, err
}

// checkoutFailed answers a checkout orders did not place: the form again
// with the same key when the outcome is unknown, with a new key and
// orders' explanation when orders refused it, else the backend's failure.
func (s *Server) checkoutFailed(w http.ResponseWriter, r *http.Request, u *user, f checkoutForm, cart cartCookie, err error) {
	var ua *Unavailable
	var ae *APIError
	switch {
	case errors.As(err, &ua):
		// Unknown outcome: keep the key, so that trying again cannot
		// place a second order.
		f.Error = "The shop could not confirm your order just now (" + ua.Service + " is unavailable). Press Place order again: it is safe, the same checkout places at most one order."
		s.refuseCheckout(w, r, u, f, cart, http.StatusServiceUnavailable)
	case errors.As(err, &ae) && ae.Status < 500:
		// orders refused it and stored nothing: a corrected form is a
		// new request, with a new key.
		f.Key = randomID()
		f.Error = firstNonEmpty(ae.Detail, ae.Title, "The order was refused.")
		for _, fe := range ae.Fields {
			f.Fields[formField(fe.Field)] = fe.Message
		}
		s.refuseCheckout(w, r, u, f, cart, http.StatusUnprocessableEntity)
	default:
		s.backendFailed(w, r, err)
	}
}

// orderPlaced empties the cart and redirects to the order's page, which
// says whether it was placed now or earlier (a replay).
func (s *Server) orderPlaced(w http.ResponseWriter, r *http.Request, o ordersapi.Order, h http.Header) {
	s.cfg.Sealer.Clear(w, cookieCart)
	q := url.Values{"placed": {"1"}}
	if h.Get(idempotency.HeaderReplayed) == "true" {
		q = url.Values{"replayed": {"1"}}
	}
	s.cfg.Log.InfoContext(r.Context(), "order placed", "order_id", o.ID, "replayed", h.Get(idempotency.HeaderReplayed) == "true")
	http.Redirect(w, r, "/orders/"+url.PathEscape(o.ID)+"?"+q.Encode(), http.StatusSeeOther)
}

// parseItems reads the checkout form's "item" fields ("<product id>:<quantity>").
func parseItems(items []string) (cartCookie, bool) {
	if len(items) > maxCartLines {
		return cartCookie{}, false
	}
	var c cartCookie
	for _, it := range items {
		id, q, ok := strings.Cut(it, ":")
		n, qok := parseQuantity(q)
		if !ok || !qok || !idPattern.MatchString(id) {
			return cartCookie{}, false
		}
		c.Lines = append(c.Lines, cartLine{ProductID: id, Quantity: n})
	}
	return c, true
}

func itemValue(l cartLineView) string { return l.ProductID + ":" + strconv.Itoa(l.Quantity) }

// formField maps an orders field ("shipping_address.city") to the form's
// ("city"), so the page marks the input it belongs to.
func formField(f string) string {
	f = strings.TrimPrefix(f, "shipping_address.")
	if f == "payment_method" {
		return "card"
	}
	return f
}

// fieldLabels are the form's labels, for the error summary.
var fieldLabels = map[string]string{"name": "Name", "line1": "Street and number", "line2": "Address line 2", "city": "City",
	"postal_code": "Postal code", "country": "Country", "card": "Test card", "items": "Cart", "customer_email": "Your e-mail address"}

func fieldLabel(f string) string {
	if l, ok := fieldLabels[f]; ok {
		return l
	}
	return strings.ReplaceAll(f, "_", " ")
}
