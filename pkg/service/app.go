package service

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
	"github.com/shopfloor/shopfloor/pkg/lifecycle"
)

// App is what a Program's Edge and Wire build on: the running serve
// command's runtime, its health checks and muxes, the api role's token
// verifier and, in Wire, the database pool.
type App struct {
	*Runtime
	Health    *httpkit.Health
	Muxes     Muxes
	Listeners Listeners
	// Authz verifies the api role's access tokens; nil without the api
	// role.
	Authz *auth.Verifier
	// Pool is the service's database, set before Wire (nil without
	// Program.Migrations).
	Pool *pgxpool.Pool
	// Limits are the public API's per-caller rate limits (Serve's
	// RateLimit), already in front of /v1/ on the public listener; an
	// Edge that replaces the public mux puts them in front of its routes.
	Limits *Limits

	serve   *Serve
	gate    *Gate
	tasks   *lifecycle.Group
	closers []func()
}

// LimitPublic replaces the public mux with one that serves the routes
// mount adds behind the per-caller limits (Limits; route labels their
// metrics), keeping the probes, /metrics and the /v1/admin answers of the
// old one, unlimited. For an Edge whose public routes are not under /v1/:
// web's pages, identity's endpoints.
func (a *App) LimitPublic(route string, mount func(*http.ServeMux)) {
	routes := http.NewServeMux()
	mount(routes)
	site := http.NewServeMux()
	site.Handle("/", a.Limits.Handler(route, routes))
	for _, p := range []string{"GET /healthz", "GET /readyz", "GET /metrics", "GET /metrics/", "GET /v1/admin", "GET /v1/admin/"} {
		site.Handle(p, a.Muxes.Public)
	}
	a.Muxes.Public = site
}

// Has reports whether role is one of the process's roles.
func (a *App) Has(role string) bool { return a.serve.Has(role) }

// HasAny reports whether any of roles is one of the process's roles.
func (a *App) HasAny(roles ...string) bool { return slices.ContainsFunc(roles, a.serve.Has) }

// Go adds a task that runs until ctx ends; the first to fail stops them
// all (lifecycle.Group).
func (a *App) Go(name string, fn func(context.Context) error) { a.tasks.Add(name, fn) }

// Defer runs fn when the command ends, after every task has stopped, in
// reverse order of the calls.
func (a *App) Defer(fn func()) { a.closers = append(a.closers, fn) }

func (a *App) close() {
	for _, fn := range slices.Backward(a.closers) {
		fn()
	}
}

// OpenAPI mounts the API: from now on requests under /v1/ on the public
// listener, and under /v1/admin/ on the admin listener, go to h (the
// public listener answers 404 for /v1/admin whatever h mounts).
func (a *App) OpenAPI(h http.Handler) { a.gate.Open(h) }

// Every adds a task that runs fn every interval (jittered, Every).
func (a *App) Every(name string, interval time.Duration, fn func(context.Context) error) {
	a.Go(name, func(ctx context.Context) error { return Every(ctx, interval, fn, a.Log) })
}
