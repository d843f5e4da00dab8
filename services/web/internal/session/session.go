// Package session keeps small server-side state in the browser, sealed:
// a value is JSON, encrypted and authenticated with AES-256-GCM under a
// key derived from the service's secret, and bound to its cookie name and
// an expiry. The browser can store and return it but neither read nor
// change it; a changed, expired or foreign cookie opens as "none".
//
// It holds the signed-in person's tokens (the web service is a backend for
// frontend: tokens never reach JavaScript) and the sign-in's state, nonce
// and PKCE verifier between the redirect and the callback. Keeping them in
// a sealed cookie instead of a session store lets any instance of the
// service answer any request; the price is that a sign-out cannot revoke a
// copied cookie before it expires (ADR 0024).
package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// MinSecretLength is the shortest secret New accepts.
const MinSecretLength = 32

// maxCookieBytes keeps a cookie inside what every browser stores (4096
// bytes for name, value and attributes).
const maxCookieBytes = 3800

// ErrNone is returned by Open for a missing, tampered, foreign or expired
// cookie: the caller treats all of them as "no session".
var ErrNone = errors.New("no valid session cookie")

// Sealer seals and opens cookies.
type Sealer struct {
	aead   cipher.AEAD
	secure bool
	now    func() time.Time
}

// New derives the cookie key from secret (at least MinSecretLength
// characters). secure marks cookies Secure (set it when the site is
// served over https). now defaults to time.Now.
func New(secret string, secure bool, now func() time.Time) (*Sealer, error) {
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("session secret: must be at least %d characters", MinSecretLength)
	}
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, "shopfloor web session cookies v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Sealer{aead: aead, secure: secure, now: now}, nil
}

type envelope struct {
	Exp int64           `json:"exp"`
	V   json.RawMessage `json:"v"`
}

// Set seals v into cookie name for ttl (HttpOnly, SameSite=Lax, Path /).
func (s *Sealer) Set(w http.ResponseWriter, name string, v any, ttl time.Duration) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	plain, err := json.Marshal(envelope{Exp: s.now().Add(ttl).Unix(), V: raw})
	if err != nil {
		return err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	// The cookie's name is the additional data: a value sealed for one
	// cookie does not open as another.
	sealed := s.aead.Seal(nonce, nonce, plain, []byte(name))
	value := base64.RawURLEncoding.EncodeToString(sealed)
	if len(name)+len(value) > maxCookieBytes {
		return fmt.Errorf("session: cookie %s would be %d bytes, more than a browser keeps", name, len(name)+len(value))
	}
	//nolint:gosec // G124: Secure follows the site's scheme (set for https; the sandbox is http://127.0.0.1); HttpOnly and SameSite are set.
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: int(ttl.Seconds()),
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
	return nil
}

// Open reads cookie name into v; ErrNone when there is no valid one.
func (s *Sealer) Open(r *http.Request, name string, v any) error {
	c, err := r.Cookie(name)
	if err != nil {
		return ErrNone
	}
	sealed, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(sealed) < s.aead.NonceSize() {
		return ErrNone
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(name))
	if err != nil {
		return ErrNone
	}
	var env envelope
	if err := json.Unmarshal(plain, &env); err != nil || s.now().Unix() >= env.Exp {
		return ErrNone
	}
	if err := json.Unmarshal(env.V, v); err != nil {
		return ErrNone
	}
	return nil
}

// Clear deletes cookie name.
func (s *Sealer) Clear(w http.ResponseWriter, name string) {
	//nolint:gosec // G124: as in Set.
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
}
