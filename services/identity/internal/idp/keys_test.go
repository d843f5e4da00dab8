package idp

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func kids(k *KeyRing) []string {
	var ids []string
	for _, key := range k.Published() {
		ids = append(ids, key.ID())
	}
	return ids
}

// TestKeyRingKeepsRetiredKeysForKeep: a retired key is published for
// exactly keep after it stopped signing, then forgotten and its file
// deleted; the timer rotates only a key that is old enough.
func TestKeyRingKeepsRetiredKeysForKeep(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := testinfra.NewClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	k, err := OpenKeyRing(dir, time.Hour, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	first := k.Signing().ID()
	if rotated, err := k.RotateIfOlder(24 * time.Hour); rotated || err != nil {
		t.Fatalf("young key rotated: %v %v", rotated, err)
	}
	c.Advance(24 * time.Hour)
	if rotated, err := k.RotateIfOlder(24 * time.Hour); !rotated || err != nil {
		t.Fatalf("old key not rotated: %v %v", rotated, err)
	}
	second := k.Signing().ID()
	if got := kids(k); len(got) != 2 || got[0] != second || got[1] != first {
		t.Fatalf("published %v, want [%s %s]", got, second, first)
	}
	c.Advance(time.Hour)
	if got := kids(k); len(got) != 2 {
		t.Fatalf("retired key withdrawn before keep ended: %v", got)
	}
	c.Advance(time.Second)
	if got := kids(k); len(got) != 1 || got[0] != second {
		t.Fatalf("published %v after keep, want [%s]", got, second)
	}
	if _, err := k.RotateIfOlder(24 * time.Hour); err != nil { // the timer also drops expired keys
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, first+".pem")); !os.IsNotExist(err) {
		t.Errorf("expired key file still there: %v", err)
	}
}

// TestKeyRingRepairsTwoSigningKeys: a crash between writing a new key
// and retiring the old one leaves two unretired files; on load the newest
// signs and the other is retired from the newer one's creation.
func TestKeyRingRepairsTwoSigningKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := testinfra.NewClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	a, err := OpenKeyRing(dir, time.Hour, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	b, err := OpenKeyRing(t.TempDir(), time.Hour, c.Now) // another ring's key, moved in unretired
	if err != nil {
		t.Fatal(err)
	}
	newest := b.keys[0]
	b.dir = dir
	if err := b.write(newest); err != nil {
		t.Fatal(err)
	}
	k, err := OpenKeyRing(dir, time.Hour, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	if k.Signing().ID() != newest.id || len(k.keys) != 2 || !k.keys[1].retired.Equal(newest.created) ||
		k.keys[1].id != a.Signing().ID() {
		t.Fatalf("after repair: signing %s, keys %d, old retired %v", k.Signing().ID(), len(k.keys), k.keys[1].retired)
	}
}

func TestKeyRingRefusesAnUnreadableKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "broken.pem"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenKeyRing(dir, time.Hour, nil); err == nil {
		t.Fatal("an unreadable key file was ignored")
	}
}
