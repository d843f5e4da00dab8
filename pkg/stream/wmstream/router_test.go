package wmstream_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/shopfloor/shopfloor/pkg/stream/wmstream"
)

// TestRouterKeepsKeyOrderThroughFailures runs a watermill Router whose
// handler fails every message once: the group retries each failed message
// before the next message of its key, so every key is handled in publish
// order, on either engine.
func TestRouterKeepsKeyOrderThroughFailures(t *testing.T) {
	t.Parallel()
	forEachEngine(t, testRouterKeepsKeyOrderThroughFailures)
}

func testRouterKeepsKeyOrderThroughFailures(t *testing.T, b broker) {
	s := setup(t, b, "router", 0)
	const perKey = 10
	keys := []string{"order-1", "order-2", "order-3"}
	var msgs []*message.Message
	for i := range perKey {
		for _, k := range keys {
			m := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, "%s/%d", k, i))
			m.Metadata.Set(wmstream.MetadataPartitionKey, k)
			msgs = append(msgs, m)
		}
	}
	if err := s.pub.Publish(s.topic, msgs...); err != nil {
		t.Fatal(err)
	}

	var (
		mu      sync.Mutex
		failed  = map[string]bool{}
		handled = map[string][]string{} // key → payloads in handling order
		done    = make(chan struct{})
	)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	router.AddMiddleware(middleware.Recoverer)
	router.AddConsumerHandler("index", s.topic, s.sub, func(m *message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if !failed[m.UUID] {
			failed[m.UUID] = true
			return errors.New("first attempt fails")
		}
		k := m.Metadata.Get(wmstream.MetadataPartitionKey)
		if slices.Contains(handled[k], string(m.Payload)) {
			return nil // at least once: a duplicate is fine, and skipped
		}
		handled[k] = append(handled[k], string(m.Payload))
		total := 0
		for _, h := range handled {
			total += len(h)
		}
		if total == len(msgs) {
			close(done)
		}
		return nil
	})
	runErr := make(chan error, 1)
	go func() { runErr <- router.Run(t.Context()) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("not every message handled within 60s")
	}
	if err := router.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, k := range keys {
		want := make([]string, perKey)
		for i := range want {
			want[i] = fmt.Sprintf("%s/%d", k, i)
		}
		if !slices.Equal(handled[k], want) {
			t.Errorf("key %s handled in order %v, want %v", k, handled[k], want)
		}
	}
}
