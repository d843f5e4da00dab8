package httpkit

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/go-kit/kit/endpoint"
	kithttp "github.com/go-kit/kit/transport/http"
)

// NewMux returns a ServeMux with the standard endpoints:
//
//   - GET /healthz: health.Livez();
//   - GET /readyz: health.Readyz() (with each check's error);
//   - GET /metrics: metrics (not registered when metrics is nil);
//   - "/" (everything else): a problem+json answer instead of net/http's
//     plain text: 405 "method-not-allowed" with an Allow header when the
//     path has routes for other methods, otherwise 404 "not-found".
//
// Services add their routes with method patterns ("POST /v1/orders").
// The pattern "/" is taken; registering it again panics. health must not
// be nil.
//
// It suits a process that only operators reach (a test double, an
// exporter). A service that the edge reaches serves two muxes on two
// listeners instead: NewPublicMux and NewAdminMux.
func NewMux(health *Health, metrics http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", health.Livez())
	mux.Handle("GET /readyz", health.Readyz())
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.Handle("/", noRoute(mux))
	return mux
}

// NewAdminMux returns the mux of a service's admin listener (ADMIN_ADDR),
// which no published port and no CDN route reaches: NewMux's endpoints,
// readiness with each check's error and /metrics included. The service
// mounts its admin API on it under /v1/admin/.
func NewAdminMux(health *Health, metrics http.Handler) *http.ServeMux {
	return NewMux(health, metrics)
}

// MountPprof adds Go's profiles under /debug/pprof/ (net/http/pprof:
// the index, cmdline, profile, symbol, trace and every named profile such
// as heap and goroutine) to an operators' mux. Never on a public one.
func MountPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// AdminPrefix is the path under which services mount their admin API, on
// the admin listener only.
const AdminPrefix = "/v1/admin/"

// NewPublicMux returns the mux of a service's public listener (HTTP_ADDR),
// the one the edge reaches:
//
//   - GET /healthz: health.Livez();
//   - GET /readyz: health.PublicReadyz() (ready or not, no details);
//   - /metrics, /v1/admin and everything under AdminPrefix, any method:
//     404 "not-found", reserved so that a service that mounts a handler on
//     "/v1/" never serves its admin routes or metrics here (registering a
//     broader pattern such as "/v1/admin/" again panics: a wiring mistake);
//   - "/" as in NewMux.
//
// health must not be nil.
func NewPublicMux(health *Health) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", health.Livez())
	mux.Handle("GET /readyz", health.PublicReadyz())
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, NewProblem(http.StatusNotFound, "not-found",
			fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)))
	})
	for _, p := range []string{"/metrics", "/metrics/", strings.TrimSuffix(AdminPrefix, "/"), AdminPrefix} {
		mux.Handle(p, notFound)
	}
	mux.Handle("/", noRoute(mux))
	return mux
}

// noRoute answers requests that only the catch-all "/" matched. The mux
// is asked, method by method, which other routes the path has.
func noRoute(mux *http.ServeMux) http.Handler {
	probeMethods := []string{
		http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range probeMethods {
			if m == r.Method {
				continue
			}
			probe := r.WithContext(r.Context()) // shallow copy
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			WriteProblem(w, NewProblem(http.StatusMethodNotAllowed, "method-not-allowed",
				fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, " or "))))
			return
		}
		WriteProblem(w, NewProblem(http.StatusNotFound, "not-found",
			fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)))
	})
}

// NewKitServer returns a go-kit HTTP server for e with ErrorEncoder(logger)
// as its error encoder, so every error of the decoder, the endpoint and
// the encoder is answered as a problem. opts are applied after that and
// may override it. Mount the result on the mux: mux.Handle("POST /v1/x",
// NewKitServer(...)).
func NewKitServer(e endpoint.Endpoint, dec kithttp.DecodeRequestFunc, enc kithttp.EncodeResponseFunc, logger *slog.Logger, opts ...kithttp.ServerOption) *kithttp.Server {
	all := append([]kithttp.ServerOption{kithttp.ServerErrorEncoder(ErrorEncoder(logger))}, opts...)
	return kithttp.NewServer(e, dec, enc, all...)
}
