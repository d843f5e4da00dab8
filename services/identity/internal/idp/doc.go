// Package idp is the sandbox OpenID Connect provider: the op.Storage that
// zitadel/oidc's op package (OpenID certified) runs on, the demo users and
// registered clients of identityapi, the sign-in form, and a signing-key
// ring that rotates without logging anybody out.
//
// Contract:
//   - Access tokens are RS256 JWTs with the claims identityapi documents.
//     They are not stored and cannot be revoked; they end at "exp"
//     (Config.AccessTokenTTL, default 1h). ID tokens live as long.
//   - The public client (identityapi.ClientCLI) must use PKCE S256: an
//     authorize request without code_challenge is refused before the
//     sign-in form. Confidential service clients use client_credentials
//     with HTTP Basic (or form) secrets; a requested "audience"/"resource"
//     they may not call is refused with invalid_target.
//   - Key rotation (KeyRing.Rotate, on a timer and on the admin route): a
//     new key signs at once; the retired key stays in the JWKS for
//     AccessTokenTTL + KeyMargin, so every token it signed keeps verifying
//     until it expires. Verifiers that meet an unknown kid fetch the JWKS
//     again (go-oidc's RemoteKeySet does).
//   - With a key directory the keys survive restarts; auth requests, codes
//     and refresh tokens are in memory and do not (a restart ends sign-ins
//     in progress and refresh tokens, never an access token's validity).
//   - Sign-in gives the same answer for an unknown user and a wrong
//     password. There is no rate limiting: this is a sandbox provider.
//
// Not provided: sessions (every authorize shows the form; prompt=none
// fails with login_required), consent, dynamic client registration,
// device flow, JWT client authentication, more than one instance sharing
// a key directory.
package idp
