package idp

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// RSAKeyBits is the size of the signing keys.
const RSAKeyBits = 2048

// pemType and the headers of a persisted key file.
const (
	pemType       = "PRIVATE KEY"
	headerCreated = "Shopfloor-Created"
	headerRetired = "Shopfloor-Retired"
)

// KeyRing holds the provider's RS256 signing keys: the newest signs, the
// ones it replaced stay published in the JWKS for Keep after they stopped
// signing, so that every token they signed still verifies until it has
// expired. That is what makes a rotation log nobody out: Keep must be at
// least the longest token lifetime plus the clock skew verifiers allow.
//
// With a directory, every key is a PEM file there (PKCS #8, mode 0600,
// named <kid>.pem, creation and retirement times in PEM headers), written
// before it is used, so a restart keeps the keys and with them every
// token issued. Without one the keys live in memory only.
//
// One KeyRing per directory: two processes sharing a directory would each
// rotate on their own.
//
// Safe for concurrent use.
type KeyRing struct {
	dir  string
	keep time.Duration
	now  func() time.Time

	mu   sync.Mutex
	keys []*signingKey // newest first; keys[0] signs
}

type signingKey struct {
	id      string
	priv    *rsa.PrivateKey
	created time.Time
	retired time.Time // zero while it signs
}

// OpenKeyRing loads the keys in dir (when not empty; created 0700 if
// missing), forgets and deletes those retired longer than keep ago, and
// makes a first key when there is none. A file it cannot read is an
// error: silently dropping a key would log people out.
func OpenKeyRing(dir string, keep time.Duration, now func() time.Time) (*KeyRing, error) {
	if now == nil {
		now = time.Now
	}
	k := &KeyRing{dir: dir, keep: keep, now: now}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("key directory: %w", err)
		}
		if err := k.load(); err != nil {
			return nil, err
		}
	}
	if len(k.keys) == 0 {
		if _, err := k.Rotate(); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func (k *KeyRing) load() error {
	entries, err := os.ReadDir(k.dir)
	if err != nil {
		return fmt.Errorf("key directory: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".pem") {
			continue
		}
		key, err := readKey(filepath.Join(k.dir, e.Name()))
		if err != nil {
			return err
		}
		k.keys = append(k.keys, key)
	}
	slices.SortFunc(k.keys, func(a, b *signingKey) int { return b.created.Compare(a.created) })
	// Only the newest signs. An older key left unretired (a crash between
	// writing a new key and retiring the old one) retired when the newer
	// one was made.
	for i := 1; i < len(k.keys); i++ {
		if k.keys[i].retired.IsZero() {
			k.keys[i].retired = k.keys[i-1].created
			if err := k.write(k.keys[i]); err != nil {
				return err
			}
		}
	}
	if len(k.keys) > 0 && !k.keys[0].retired.IsZero() {
		// Every key is retired (edited by hand): make a new one.
		return k.rotateLocked()
	}
	return k.dropExpiredLocked()
}

// Rotate makes a new key that signs from now on and retires the current
// one (it stays published for Keep). It returns the new key id.
func (k *KeyRing) Rotate() (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.rotateLocked(); err != nil {
		return "", err
	}
	return k.keys[0].id, nil
}

// RotateIfOlder rotates when the signing key is at least maxAge old, and
// reports whether it did. The provider calls it on a timer.
func (k *KeyRing) RotateIfOlder(maxAge time.Duration) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.now().Sub(k.keys[0].created) < maxAge {
		return false, k.dropExpiredLocked()
	}
	return true, k.rotateLocked()
}

func (k *KeyRing) rotateLocked() error {
	priv, err := rsa.GenerateKey(rand.Reader, RSAKeyBits)
	if err != nil {
		return fmt.Errorf("generate signing key: %w", err)
	}
	id, err := keyID(&priv.PublicKey)
	if err != nil {
		return err
	}
	now := k.now()
	key := &signingKey{id: id, priv: priv, created: now}
	// The new key is on disk before it signs anything; the old one is
	// marked retired after (a crash in between is repaired by load).
	if err := k.write(key); err != nil {
		return err
	}
	if len(k.keys) > 0 && k.keys[0].retired.IsZero() {
		k.keys[0].retired = now
		if err := k.write(k.keys[0]); err != nil {
			return err
		}
	}
	k.keys = append([]*signingKey{key}, k.keys...)
	return k.dropExpiredLocked()
}

// dropExpiredLocked forgets (and deletes) keys retired longer than keep
// ago: every token they signed has expired.
func (k *KeyRing) dropExpiredLocked() error {
	now := k.now()
	kept := k.keys[:0]
	var errs []error
	for _, key := range k.keys {
		if !key.retired.IsZero() && now.Sub(key.retired) > k.keep {
			if k.dir != "" {
				if err := os.Remove(k.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, fmt.Errorf("delete expired key: %w", err))
				}
			}
			continue
		}
		kept = append(kept, key)
	}
	k.keys = kept
	return errors.Join(errs...)
}

// Signing returns the key that signs now.
func (k *KeyRing) Signing() op.SigningKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys[0]
}

// Published returns the public keys of the JWKS: the signing key and the
// retired ones still within Keep, newest first.
func (k *KeyRing) Published() []op.Key {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	out := make([]op.Key, 0, len(k.keys))
	for _, key := range k.keys {
		if key.retired.IsZero() || now.Sub(key.retired) <= k.keep {
			out = append(out, publicKey{key})
		}
	}
	return out
}

// Keep is how long a retired key stays published.
func (k *KeyRing) Keep() time.Duration { return k.keep }

func (k *KeyRing) path(key *signingKey) string { return filepath.Join(k.dir, key.id+".pem") }

// write stores key atomically (temporary file, then rename) with mode
// 0600. Without a directory it does nothing.
func (k *KeyRing) write(key *signingKey) error {
	if k.dir == "" {
		return nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(key.priv)
	if err != nil {
		return fmt.Errorf("encode signing key: %w", err)
	}
	headers := map[string]string{headerCreated: key.created.UTC().Format(time.RFC3339Nano)}
	if !key.retired.IsZero() {
		headers[headerRetired] = key.retired.UTC().Format(time.RFC3339Nano)
	}
	f, err := os.CreateTemp(k.dir, ".key-*.tmp")
	if err != nil {
		return fmt.Errorf("write signing key: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename there is nothing to remove
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("write signing key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: pemType, Headers: headers, Bytes: der}); err != nil {
		_ = f.Close()
		return fmt.Errorf("write signing key: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("write signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write signing key: %w", err)
	}
	if err := os.Rename(f.Name(), k.path(key)); err != nil {
		return fmt.Errorf("write signing key: %w", err)
	}
	return nil
}

func readKey(path string) (*signingKey, error) {
	data, err := os.ReadFile(path) //nolint:gosec // G304: the operator's key directory, files it listed
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemType {
		return nil, fmt.Errorf("signing key %s: not a PEM %q block", path, pemType)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	priv, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: not an RSA key", path)
	}
	id, err := keyID(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	key := &signingKey{id: id, priv: priv}
	if key.created, err = time.Parse(time.RFC3339Nano, block.Headers[headerCreated]); err != nil {
		return nil, fmt.Errorf("signing key %s: header %s: %w", path, headerCreated, err)
	}
	if v, ok := block.Headers[headerRetired]; ok {
		if key.retired, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return nil, fmt.Errorf("signing key %s: header %s: %w", path, headerRetired, err)
		}
	}
	return key, nil
}

// keyID is the key's RFC 7638 thumbprint, base64url: stable across
// restarts and safe as a file name.
func keyID(pub *rsa.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// signingKey is an op.SigningKey.
func (s *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (s *signingKey) Key() any                                    { return s.priv }
func (s *signingKey) ID() string                                  { return s.id }

// publicKey is the JWKS entry (op.Key) of a signing key.
type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return &p.k.priv.PublicKey }

var (
	_ op.SigningKey = (*signingKey)(nil)
	_ op.Key        = publicKey{}
)
