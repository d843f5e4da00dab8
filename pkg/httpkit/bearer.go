package httpkit

import (
	"crypto/subtle"
	"net/http"
)

// RequireBearer lets a request through to next only with the header
// "Authorization: Bearer <token>" (constant-time compare). Anything else,
// and every request when token is empty, gets 401 problem+json with a
// WWW-Authenticate challenge naming realm; the refusal is never stored by
// a cache (Cache-Control: private, no-store).
func RequireBearer(realm, token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
			w.Header().Set("Cache-Control", "private, no-store")
			WriteProblem(w, NewProblem(http.StatusUnauthorized, "unauthorized", "the admin API needs Authorization: Bearer <admin token>"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
