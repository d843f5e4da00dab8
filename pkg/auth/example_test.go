package auth_test

import (
	"fmt"
	"log"
	"net/http"

	"github.com/shopfloor/shopfloor/pkg/auth"
)

// A service declares per route who may call; the handler reads the
// caller from the context and never takes the customer id from the body.
func ExampleVerifier_Handle() {
	v, err := auth.NewVerifier(auth.Config{Issuer: "https://id.example.com", RolesClaim: "roles"}, "orders", auth.Options{})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/orders/{id}", v.Handle(auth.AnyOf(auth.RoleCustomer, auth.RoleOperator),
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := auth.FromContext(r.Context())
			if !p.IsOperator() {
				// Load the order, and answer 404 unless p.Subject owns it.
				_ = p.Subject
			}
		})))
	fmt.Println(v.Audience())
	// Output: orders
}
