package shop

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/search/searchapi"
)

// cacheInfo is what the CDN said about a read.
type cacheInfo struct {
	XCache string // HIT or MISS ("" when the catalog URL is not a CDN)
	Age    string
}

func cacheOf(h http.Header) cacheInfo {
	return cacheInfo{XCache: h.Get("X-Cache"), Age: h.Get("Age")}
}

type homeData struct {
	Query    string
	Products []productView
	Cache    cacheInfo
	// Match is search's match kind (fulltext or fuzzy) when Query is set.
	Match     string
	Freshness string
	Next      string
}

type productView struct {
	ID, SKU, Name, Description, Category string
	Price                                string
	Version                              int64
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if utf8.RuneCountInString(q) > 100 {
		s.fail(w, r, http.StatusBadRequest, "That search is too long", "Search for at most 100 characters.")
		return
	}
	d := homeData{Query: q}
	if q != "" {
		var res searchapi.ProductResults
		h, err := s.cfg.Backends.get(r.Context(), "search", s.cfg.Backends.Search, "/v1/search/products",
			url.Values{"q": {q}, "limit": {"24"}}, "", &res)
		if err != nil {
			s.backendFailed(w, r, err)
			return
		}
		for _, p := range res.Products {
			d.Products = append(d.Products, productView{ID: p.ID, SKU: p.SKU, Name: p.Name, Description: p.Description,
				Category: p.Category, Price: money(p.Prices[s.cfg.Currency], s.cfg.Currency), Version: p.Version})
		}
		d.Match = res.Match
		if lag := h.Get(searchapi.HeaderLagSeconds); lag != "" {
			d.Freshness = "search index lag " + lag + " s"
		}
	} else {
		page := r.URL.Query().Get("page")
		if len(page) > 200 { // catalog judges the token; this only bounds it
			s.fail(w, r, http.StatusBadRequest, "That page does not exist", "Go back to the first page of the shop.")
			return
		}
		v := url.Values{"limit": {"24"}, "currency": {s.cfg.Currency}}
		if page != "" {
			v.Set("page_token", page)
		}
		var list catalogapi.ProductList
		h, err := s.cfg.Backends.get(r.Context(), "catalog", s.cfg.Backends.Catalog, "/v1/products", v, "", &list)
		if err != nil {
			if isStatus(err, http.StatusBadRequest) {
				s.fail(w, r, http.StatusBadRequest, "That page does not exist", "Go back to the first page of the shop.")
				return
			}
			s.backendFailed(w, r, err)
			return
		}
		d.Cache = cacheOf(h)
		for _, p := range list.Products {
			d.Products = append(d.Products, viewOf(p))
		}
		d.Next = list.NextPageToken
	}
	s.render(w, r, http.StatusOK, "home", page{Title: "shopfloor", User: s.currentUser(w, r), Data: d})
}

func viewOf(p catalogapi.Product) productView {
	return productView{ID: p.ID, SKU: p.SKU, Name: p.Name, Description: p.Description, Category: p.Category,
		Price: money(p.Price.AmountMinor, p.Price.Currency), Version: p.Version}
}

// money formats minor units: 12345 EUR → "123.45 EUR".
func money(minor int64, currency string) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, minor/100, minor%100, currency)
}

type productData struct {
	Product productView
	Cache   cacheInfo
}

// getProduct reads one product through the CDN.
func (s *Server) getProduct(ctx context.Context, id string) (catalogapi.Product, cacheInfo, error) {
	var p catalogapi.Product
	h, err := s.cfg.Backends.get(ctx, "catalog", s.cfg.Backends.Catalog, "/v1/products/"+url.PathEscape(id),
		url.Values{"currency": {s.cfg.Currency}}, "", &p)
	return p, cacheOf(h), err
}

func (s *Server) product(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !idPattern.MatchString(id) {
		s.fail(w, r, http.StatusNotFound, "No such product", "That product does not exist. Browse the shop for what there is.")
		return
	}
	p, ci, err := s.getProduct(r.Context(), id)
	if err != nil {
		if isStatus(err, http.StatusNotFound) || isStatus(err, http.StatusBadRequest) {
			s.fail(w, r, http.StatusNotFound, "No such product", "That product does not exist. Browse the shop for what there is.")
			return
		}
		s.backendFailed(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "product", page{Title: p.Name, User: s.currentUser(w, r), Data: productData{Product: viewOf(p), Cache: ci}})
}

// --- orders ------------------------------------------------------------------

type orderRow struct {
	ID, Status, Total, Created string
	Items                      int
}

func (s *Server) orders(w http.ResponseWriter, r *http.Request, u *user) {
	var list ordersapi.OrderList
	_, err := s.cfg.Backends.get(r.Context(), "orders", s.cfg.Backends.Orders, "/v1/orders", url.Values{"limit": {"50"}}, u.Access, &list)
	if err != nil {
		s.backendFailed(w, r, err)
		return
	}
	rows := make([]orderRow, 0, len(list.Orders))
	for _, o := range list.Orders {
		n := 0
		for _, l := range o.Items {
			n += l.Quantity
		}
		rows = append(rows, orderRow{ID: o.ID, Status: o.Status, Total: money(o.TotalMinor, o.Currency), Created: o.CreatedAt.UTC().Format(time.DateTime), Items: n})
	}
	s.render(w, r, http.StatusOK, "orders", page{Title: "My orders", User: u, Data: rows})
}

type orderData struct {
	Order    ordersapi.Order
	Total    string
	Lines    []lineView
	Timeline timeline
	// Placed says the order was just placed; Replayed that the same
	// checkout was sent again and answered with this same order.
	Placed, Replayed bool
	CancelKey        string
	Cancellable      bool
}

type lineView struct {
	Name, SKU, Unit, Sum string
	Quantity             int
	Version              int64
}

func (s *Server) order(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PathValue("id")
	tl, o, err := s.buildTimeline(r.Context(), id, u)
	if err != nil {
		if isStatus(err, http.StatusNotFound) || errors.Is(err, errBadID) {
			s.fail(w, r, http.StatusNotFound, "No such order", "There is no such order, or it is not yours to see.")
			return
		}
		s.backendFailed(w, r, err)
		return
	}
	d := orderData{Order: o, Total: money(o.TotalMinor, o.Currency), Timeline: tl,
		Placed: r.URL.Query().Get("placed") == "1", Replayed: r.URL.Query().Get("replayed") == "1",
		CancelKey: randomID(), Cancellable: o.Status == ordersapi.StatusPendingPayment}
	for _, l := range o.Items {
		d.Lines = append(d.Lines, lineView{Name: l.Name, SKU: l.SKU, Quantity: l.Quantity, Version: l.CatalogVersion,
			Unit: money(l.UnitPriceMinor, o.Currency), Sum: money(l.UnitPriceMinor*int64(l.Quantity), o.Currency)})
	}
	s.render(w, r, http.StatusOK, "order", page{Title: "Order " + shortID(o.ID), User: u, Data: d})
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PathValue("id")
	key := r.PostFormValue("idempotency_key")
	if !idPattern.MatchString(id) {
		s.fail(w, r, http.StatusNotFound, "No such order", "There is no such order, or it is not yours to see.")
		return
	}
	if !keyPattern.MatchString(key) {
		s.fail(w, r, http.StatusBadRequest, "The form was incomplete", "Reload the order page and press Cancel again.")
		return
	}
	hdr := http.Header{"Idempotency-Key": {key}}
	_, err := s.postIdempotent(r.Context(), "orders", s.cfg.Backends.Orders, "/v1/orders/"+url.PathEscape(id)+"/cancel", u.Access, hdr, map[string]string{"reason": "cancelled in the web shop"}, nil)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusConflict {
			s.fail(w, r, http.StatusConflict, "This order can no longer be cancelled", firstNonEmpty(ae.Detail, "Its state has moved on; the order page shows where it is."))
			return
		}
		s.backendFailed(w, r, err)
		return
	}
	http.Redirect(w, r, "/orders/"+url.PathEscape(id), http.StatusSeeOther)
}

// postIdempotent POSTs with an Idempotency-Key and, while the key's first
// request is still in flight (409 key-in-use: a double click), waits and
// asks again until it gets that request's stored answer (at most 15s).
func (s *Server) postIdempotent(ctx context.Context, service, base, path, token string, hdr http.Header, in, out any) (http.Header, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		h, err := s.cfg.Backends.call(ctx, service, http.MethodPost, base, path, token, hdr, in, out)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.HasSuffix(ae.Type, "/idempotency-key-in-use") || time.Now().After(deadline) {
			return h, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func parseQuantity(s string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	return n, err == nil && n >= 1 && n <= maxQuantity
}
