package jobqueue

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopfloor/shopfloor/pkg/backoff"
)

// notifier holds one LISTEN connection per client and wakes the receivers
// long-polling a queue when a NOTIFY names it. It starts with the first
// subscriber and reconnects with backoff; while it is down, receivers fall
// back to their periodic re-check.
//
// A NOTIFY sent before the LISTEN took effect (the first subscriber's
// check raced the connection being set up, or the listener was
// reconnecting) reaches nobody, so every time LISTEN succeeds all waiters
// are woken to check their queue again: a message committed before that
// point is found by the re-check, one committed after it is notified.
type notifier struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
	// beforeListen, when set (tests), runs before each LISTEN.
	beforeListen func()
}

func newNotifier(pool *pgxpool.Pool, log *slog.Logger) *notifier {
	return &notifier{pool: pool, log: log, waiters: map[string]map[chan struct{}]struct{}{}}
}

// subscribe registers interest in queue before the caller checks the table,
// so a message sent between the check and the wait is not missed.
func (n *notifier) subscribe(queue string) chan struct{} {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.started {
		n.started = true
		ctx, cancel := context.WithCancel(context.Background())
		n.cancel, n.done = cancel, make(chan struct{})
		go n.run(ctx)
	}
	if n.waiters[queue] == nil {
		n.waiters[queue] = map[chan struct{}]struct{}{}
	}
	n.waiters[queue][ch] = struct{}{}
	return ch
}

func (n *notifier) unsubscribe(queue string, ch chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.waiters[queue], ch)
}

func (n *notifier) wake(queue string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.waiters[queue] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (n *notifier) wakeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, chans := range n.waiters {
		for ch := range chans {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

func (n *notifier) close() {
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (n *notifier) run(ctx context.Context) {
	defer close(n.done)
	policy := backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	for attempt := 1; ctx.Err() == nil; attempt++ {
		err := n.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		n.log.WarnContext(ctx, "jobqueue listener lost, reconnecting", "err", err)
		if policy.Sleep(ctx, attempt) != nil {
			return
		}
	}
}

func (n *notifier) listen(ctx context.Context) error {
	pc, err := n.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if n.beforeListen != nil {
		n.beforeListen()
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return err
	}
	n.wakeAll()
	for {
		note, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		n.wake(note.Payload)
	}
}
