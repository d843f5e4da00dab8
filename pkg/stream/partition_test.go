package stream_test

import (
	"fmt"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// TestPartitionMatchesPinnedHashVectors pins the partition function. If it fails, the
// function changed and every existing stream would see its keys remapped:
// that is a breaking change, not a test to update.
func TestPartitionMatchesPinnedHashVectors(t *testing.T) {
	t.Parallel()
	// FNV-1a 32 of the key, mod n; hashes from an independent implementation.
	tests := []struct {
		key  string
		hash uint32
		n    int
		want int
	}{
		{"", 0x811c9dc5, 8, 5},
		{"a", 0xe40c292c, 8, 4},
		{"a", 0xe40c292c, 16, 12},
		{"foobar", 0xbf9cf968, 8, 0},
		{"foobar", 0xbf9cf968, 3, 1},
		{"order-1", 0x2b7fcd6d, 8, 5},
		{"order-1", 0x2b7fcd6d, 16, 13},
		{"order-2", 0x287fc8b4, 8, 4},
		{"0190b5e2-7c1d-7f00-8000-000000000001", 0x945ace86, 8, 6},
		{"ключ", 0x95c4e9e1, 8, 1},
		{"anything", 0, 1, 0},
	}
	for _, tt := range tests {
		if tt.hash != 0 && int(tt.hash%uint32(tt.n)) != tt.want {
			t.Fatalf("bad vector %q: %#x mod %d != %d", tt.key, tt.hash, tt.n, tt.want)
		}
		if got := stream.Partition(tt.key, tt.n); got != tt.want {
			t.Errorf("Partition(%q, %d) = %d, want %d", tt.key, tt.n, got, tt.want)
		}
	}
	if got, want := stream.SubjectForKey("ORDERS", "order-1", 8), "ORDERS.events.5"; got != want {
		t.Errorf("SubjectForKey = %q, want %q", got, want)
	}
}

func TestPartitionSpreadsKeysEvenly(t *testing.T) {
	t.Parallel()
	const n, keys = 8, 80000
	counts := make([]int, n)
	for i := range keys {
		counts[stream.Partition(fmt.Sprintf("order-%d", i), n)]++
	}
	// Each partition should get close to keys/n = 10000; allow 5%.
	for p, c := range counts {
		if c < 9500 || c > 10500 {
			t.Errorf("partition %d got %d of %d keys, want about %d: %v", p, c, keys, keys/n, counts)
		}
	}
}

func TestPartitionPanicsOnNoPartitions(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("Partition(key, 0) did not panic")
		}
	}()
	stream.Partition("k", 0)
}
