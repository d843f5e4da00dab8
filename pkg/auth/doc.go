// Package auth makes a service an OAuth 2.0 resource server: it verifies
// the bearer access tokens of an OpenID Connect provider and says, per
// route, who may call.
//
// # Contract
//
// A token is accepted only when all of these hold (coreos/go-oidc does the
// cryptography; RFC 9068 and RFC 6750 name the rules):
//   - it is a JWS signed with an algorithm the issuer's discovery document
//     lists (never "none", never HS256 with the public key), by a key in
//     the issuer's JWKS; a key the service has not seen yet makes it fetch
//     the JWKS again, so the provider may rotate keys without logging
//     anyone out;
//   - "iss" equals Config.Issuer exactly;
//   - "aud" contains Config.Audience (this service's name at the provider);
//   - "exp" is in the future, with Config.Leeway for clock skew.
//
// Anything else is 401 with `WWW-Authenticate: Bearer error="invalid_token"`
// and a problem+json body that says what to do; a token without the role a
// route needs is 403 with error="insufficient_scope". Neither is ever
// stored by a cache. When the provider cannot be reached to discover it,
// requests get 503 with Retry-After (a dependency failure, not the
// caller's fault), and discovery is tried again on the next request.
//
// # Who the caller is
//
// A verified token becomes a Principal in the request's context: Subject
// ("sub", the customer id for a customer), ClientID, Roles (from
// Config.RolesClaim, "roles" by default; a dotted path such as
// "realm_access.roles" reads Keycloak's) and Scopes. Handlers take the
// customer id from the Principal, never from a request body.
//
// Nothing here is specific to the sandbox's provider (services/identity):
// a fork points Issuer at Keycloak, Auth0 or its own provider, sets the
// audience each service is registered as, and names its roles claim.
//
// # Calling another service
//
// ClientCredentials is an http.RoundTripper that adds a client-credentials
// access token (RFC 6749 §4.4) for the callee's audience, cached until
// shortly before it expires.
package auth
