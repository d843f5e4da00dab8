// Package identityapi is the public contract of the sandbox OpenID Connect
// provider (services/identity): the claims its access tokens carry, the
// roles, the demo users, the registered clients, and two helpers that get
// tokens from it. Services, tests, chaos drills, load tests and the CLI
// import only this package of identity (STYLE.md, layout).
//
// # The access-token contract
//
// Access tokens are JWTs (RFC 9068 shape), signed RS256 by a key published
// in the issuer's JWKS (jwks_uri of /.well-known/openid-configuration):
//   - "iss" is the issuer URL exactly (IDENTITY_ISSUER);
//   - "sub" is the user name for a person, the client id for a service;
//   - "aud" is always a JSON array: PublicAudiences plus ClientCLI for a
//     person signed in through ClientCLI, the client's own Audiences for a
//     service (ServiceClients);
//   - "exp", "iat", "nbf", "jti", "client_id";
//   - "scope": the granted scopes, space-separated (absent when none);
//   - ClaimRoles ("roles"): an array of role names (RoleCustomer,
//     RoleOperator, RoleService);
//   - for a person also ClaimEmail and ClaimName.
//
// Nothing in a resource server should depend on this provider beyond the
// issuer URL, the audience it is registered as and the roles claim: a fork
// swaps the sandbox provider for Keycloak, Auth0 or its own by changing
// those three.
package identityapi

import "slices"

// Claim names of the access token beyond the registered JWT claims.
const (
	// ClaimRoles is the private claim holding the caller's roles (a JSON
	// array of strings). Keycloak puts them at "realm_access.roles"; a fork
	// configures its verifier accordingly.
	ClaimRoles = "roles"
	// ClaimClientID is the OAuth client the token was issued to (RFC 9068).
	ClaimClientID = "client_id"
	// ClaimScope is the granted scopes, space-separated (RFC 9068).
	ClaimScope = "scope"
	// ClaimEmail and ClaimName describe a person; service tokens lack them.
	ClaimEmail = "email"
	ClaimName  = "name"
)

// Roles, the values of ClaimRoles.
const (
	// RoleCustomer may place orders and read its own data (the "sub" is its
	// customer id).
	RoleCustomer = "customer"
	// RoleOperator may use the operator console and admin routes.
	RoleOperator = "operator"
	// RoleService is every client-credentials token: a service calling
	// another service on its own behalf.
	RoleService = "service"
)

// Audiences: the names the resource servers are registered as. A service
// verifies that "aud" contains its own name.
const (
	AudienceCatalog       = "catalog"
	AudienceOrders        = "orders"
	AudiencePayments      = "payments"
	AudienceNotifications = "notifications"
	AudienceSearch        = "search"
	// AudienceIdentity is the provider's own operator API (POST
	// /v1/admin/rotate-keys on its admin listener): an operator's token
	// carries it like the services'.
	AudienceIdentity = "identity"
)

// PublicAudiences are the public APIs a person's token is good for.
func PublicAudiences() []string {
	return []string{
		AudienceCatalog, AudienceOrders, AudiencePayments, AudienceNotifications, AudienceSearch, AudienceIdentity,
		// new-service: audiences of generated services above this line
	}
}

// Client ids.
const (
	// ClientCLI is the public client for people, scripts, tests and k6: no
	// secret, authorization code flow with PKCE (S256, required) and
	// refresh tokens, redirect URI CLIRedirectURI (a loopback redirect, RFC
	// 8252: any port on 127.0.0.1 with path /callback is accepted).
	ClientCLI = "shopfloor-cli"
	// CLIRedirectURI is ClientCLI's registered redirect URI.
	CLIRedirectURI = "http://127.0.0.1/callback"
	// ClientWeb is the web storefront (services/web), a confidential
	// client of the authorization code flow with PKCE: registered when
	// IDENTITY_WEB_REDIRECT_URIS names its callback(s), with its secret in
	// IDENTITY_CLIENT_SECRETS ("web=<secret>"). A person's token through
	// it carries PublicAudiences plus ClientWeb.
	ClientWeb = "web"

	// Confidential service clients (client_credentials grant; secrets from
	// IDENTITY_CLIENT_SECRETS). Each is also the audience name of the
	// service it belongs to.
	ClientOrders        = "orders"
	ClientPayments      = "payments"
	ClientNotifications = "notifications"
	ClientSearch        = "search"
)

// ServiceClient is a confidential client that gets tokens for itself
// (client_credentials): sub = ID, roles = [RoleService], aud = Audiences
// (or the one of them it asked for).
type ServiceClient struct {
	ID string
	// Audiences are the services it may call.
	Audiences []string
}

// ServiceClients returns the registered service clients, in a fixed order.
func ServiceClients() []ServiceClient {
	return []ServiceClient{
		// orders reads an order's payment to repair a stuck order.
		{ID: ClientOrders, Audiences: []string{AudienceCatalog, AudiencePayments}},
		{ID: ClientPayments, Audiences: []string{AudienceOrders}},
		{ID: ClientNotifications, Audiences: []string{AudienceOrders}},
		{ID: ClientSearch, Audiences: []string{AudienceOrders}},
	}
}

// Demo user names. Every demo user signs in with IDENTITY_DEMO_PASSWORD.
const (
	UserAda   = "ada"
	UserGrace = "grace"
	UserOscar = "oscar"
)

// User is a demo user. Username is the token's "sub".
type User struct {
	Username string
	Name     string
	Email    string
	Roles    []string
}

// DemoUsers returns the sandbox's people, in a fixed order: two customers
// and an operator.
func DemoUsers() []User {
	return []User{
		{Username: UserAda, Name: "Ada Lovelace", Email: UserAda + "@example.com", Roles: []string{RoleCustomer}},
		{Username: UserGrace, Name: "Grace Hopper", Email: UserGrace + "@example.com", Roles: []string{RoleCustomer}},
		{Username: UserOscar, Name: "Oscar Operator", Email: UserOscar + "@example.com", Roles: []string{RoleOperator}},
	}
}

// DemoUser returns the demo user with that name.
func DemoUser(username string) (User, bool) {
	users := DemoUsers()
	i := slices.IndexFunc(users, func(u User) bool { return u.Username == username })
	if i < 0 {
		return User{}, false
	}
	return users[i], true
}
