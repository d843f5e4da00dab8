package service

import (
	"net/http"
	"time"

	"github.com/shopfloor/shopfloor/pkg/auth"
	"github.com/shopfloor/shopfloor/pkg/httpkit"
)

// NewVerifier returns the bearer-token verifier of the service's API:
// audience defaults to the service's name, discovery and key fetches are
// traced, and auth_rejections_total is on the service's registry. Add
// v.Check to the api role's health checks so that a process whose
// identity provider cannot be reached is not ready.
func (rt *Runtime) NewVerifier(cfg auth.Config) (*auth.Verifier, error) {
	return auth.NewVerifier(cfg, rt.Name, auth.Options{
		HTTPClient: &http.Client{Timeout: 5 * time.Second, Transport: rt.Tel.HTTPTransport(nil)},
		Registerer: rt.Tel.Registry,
	})
}

// APIVerifier is NewVerifier for a process whose roles include the api
// (api true), with the provider's reachability added to health as the
// "identity" check; without the api role it returns nil (no routes need
// it) and adds nothing.
func (rt *Runtime) APIVerifier(cfg auth.Config, api bool, health *httpkit.Health) (*auth.Verifier, error) {
	if !api {
		return nil, nil
	}
	v, err := rt.NewVerifier(cfg)
	if err != nil {
		return nil, err
	}
	health.AddCheck("identity", v.Check)
	return v, nil
}

// NewServiceTransport returns a traced http.RoundTripper whose requests
// carry a client-credentials token of cfg's client for audience (the
// callee's name at the identity provider).
func (rt *Runtime) NewServiceTransport(cfg auth.ClientConfig, audience string) (http.RoundTripper, error) {
	tokens := &http.Client{Timeout: 5 * time.Second, Transport: rt.Tel.HTTPTransport(nil)}
	return auth.NewClientCredentials(cfg, audience, rt.Tel.HTTPTransport(nil), tokens)
}
