package target

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/services/identity/identityapi"
)

// fakeProvider counts sign-ins per user and answers tokens that live for
// ttl from the fake clock.
type fakeProvider struct {
	mu      sync.Mutex
	now     time.Time
	ttl     time.Duration
	signIns map[string]int
	fail    error
}

func (f *fakeProvider) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeProvider) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func (f *fakeProvider) fetch(_ context.Context, user string) (identityapi.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return identityapi.Token{}, f.fail
	}
	f.signIns[user]++
	tok := identityapi.Token{AccessToken: fmt.Sprintf("%s#%d", user, f.signIns[user])}
	if f.ttl > 0 {
		tok.Expiry = f.now.Add(f.ttl)
	}
	return tok, nil
}

func newCache(f *fakeProvider) *tokenCache {
	return &tokenCache{users: map[string]*cachedToken{}, fetch: f.fetch, now: f.clock}
}

// TestTokenCacheSignsInOncePerUserUntilFiveMinutesAreLeft: one sign-in per user while the token has more than 5
// minutes left, a new one after that; a failed sign-in is not cached.
func TestTokenCacheSignsInOncePerUserUntilFiveMinutesAreLeft(t *testing.T) {
	t.Parallel()
	get := func(t *testing.T, c *tokenCache, user, want string) {
		t.Helper()
		got, err := c.get(t.Context(), user)
		if err != nil || got != want {
			t.Fatalf("token of %s = %q, %v; want %q", user, got, err, want)
		}
	}
	t.Run("cached per user", func(t *testing.T) {
		t.Parallel()
		f := &fakeProvider{now: time.Unix(1e9, 0), ttl: time.Hour, signIns: map[string]int{}}
		c := newCache(f)
		get(t, c, "oscar", "oscar#1")
		get(t, c, "load-a", "load-a#1")
		f.advance(54 * time.Minute) // 6 min left
		get(t, c, "oscar", "oscar#1")
		get(t, c, "load-a", "load-a#1")
		if f.signIns["oscar"] != 1 || f.signIns["load-a"] != 1 {
			t.Fatalf("sign-ins %v, want one per user", f.signIns)
		}
	})
	t.Run("refreshed with less than 5 minutes left", func(t *testing.T) {
		t.Parallel()
		f := &fakeProvider{now: time.Unix(1e9, 0), ttl: time.Hour, signIns: map[string]int{}}
		c := newCache(f)
		get(t, c, "oscar", "oscar#1")
		f.advance(55*time.Minute + time.Second)
		get(t, c, "oscar", "oscar#2")
		get(t, c, "oscar", "oscar#2")
		f.advance(2 * time.Hour) // long expired
		get(t, c, "oscar", "oscar#3")
	})
	t.Run("no expiry: assumed 10 minutes", func(t *testing.T) {
		t.Parallel()
		f := &fakeProvider{now: time.Unix(1e9, 0), signIns: map[string]int{}}
		c := newCache(f)
		get(t, c, "ada", "ada#1")
		f.advance(4 * time.Minute)
		get(t, c, "ada", "ada#1")
		f.advance(2 * time.Minute)
		get(t, c, "ada", "ada#2")
	})
	t.Run("a failure is returned and not cached", func(t *testing.T) {
		t.Parallel()
		f := &fakeProvider{now: time.Unix(1e9, 0), ttl: time.Hour, signIns: map[string]int{}, fail: identityapi.ErrSignInRefused}
		c := newCache(f)
		if _, err := c.get(t.Context(), "mallory"); !errors.Is(err, identityapi.ErrSignInRefused) {
			t.Fatalf("err %v, want ErrSignInRefused", err)
		}
		f.mu.Lock()
		f.fail = nil
		f.mu.Unlock()
		get(t, c, "mallory", "mallory#1")
	})
}

// TestTokenCacheShared: concurrent callers for one user share one
// sign-in; other users do not wait for it.
func TestTokenCacheShared(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var calls atomic.Int32
	c := &tokenCache{users: map[string]*cachedToken{}, now: time.Now,
		fetch: func(ctx context.Context, user string) (identityapi.Token, error) {
			calls.Add(1)
			if user == "slow" {
				select {
				case <-release:
				case <-ctx.Done():
					return identityapi.Token{}, ctx.Err()
				}
			}
			return identityapi.Token{AccessToken: user, Expiry: time.Now().Add(time.Hour)}, nil
		}}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			if tok, err := c.get(t.Context(), "slow"); err != nil || tok != "slow" {
				errs <- fmt.Errorf("slow: %q, %w", tok, err)
			}
		})
	}
	// Another user is served while "slow" signs in.
	if tok, err := c.get(t.Context(), "fast"); err != nil || tok != "fast" {
		t.Fatalf("fast: %q, %v", tok, err)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d sign-ins, want 2 (one per user)", n)
	}
}

// TestSystemTokenWithoutIdentity: a System that cannot sign in says why.
func TestSystemTokenWithoutIdentity(t *testing.T) {
	t.Parallel()
	if _, err := (&System{}).Token(t.Context(), Operator); err == nil || !strings.Contains(err.Error(), "no identity provider configured") {
		t.Fatalf("err %v, want no identity provider configured", err)
	}
	l := NewLocal(LocalConfig{RunDir: t.TempDir(), PortBase: 9500})
	if _, err := l.System().Token(t.Context(), Operator); err == nil || !strings.Contains(err.Error(), "identity.env") {
		t.Fatalf("err %v, want one naming identity.env", err)
	}
}

func TestReadIdentityEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file string
		want       Identity
		wantErr    string
	}{
		{"run.sh's", "IDENTITY_ISSUER=http://127.0.0.1:8090\nIDENTITY_DEMO_PASSWORD=s3cret-s3cret\n",
			Identity{Issuer: "http://127.0.0.1:8090", DemoPassword: "s3cret-s3cret"}, ""},
		{"comments, export, quotes", "# made by run.sh\n\nexport IDENTITY_ISSUER='http://127.0.0.1:23590'\nIDENTITY_DEMO_PASSWORD=\"a=b=c\"\nOTHER=x\n",
			Identity{Issuer: "http://127.0.0.1:23590", DemoPassword: "a=b=c"}, ""},
		{"no password", "IDENTITY_ISSUER=http://127.0.0.1:8090\n", Identity{}, "lacks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "identity.env")
			if err := os.WriteFile(p, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadIdentityEnv(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	if _, err := ReadIdentityEnv(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("a missing file read without error")
	}
}
