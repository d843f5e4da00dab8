package kafkastream

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// HeaderDLQOriginalPartition carries a dead letter's original partition;
// the other headers are pkg/stream's (stream.HeaderDLQGroup and the rest),
// with HeaderDLQOriginalSubject "<topic>.<partition>" and
// HeaderDLQOriginalSequence the record's offset.
const HeaderDLQOriginalPartition = "Shopfloor-Dlq-Original-Partition"

// Error classes of a dead letter, as in pkg/stream.
const (
	classPermanent = "permanent"
	classExhausted = "exhausted"
)

// deadLetter copies r to "<topic>_DLQ" with the original headers and the
// reason headers, keyed like the original, and waits until all in-sync
// replicas have it. Kafka has no publish de-duplication: if the commit
// after it is lost, the record is handled again and may be dead-lettered a
// second time (the copies share Shopfloor-Event-Id).
func (g *Group) deadLetter(ctx context.Context, cl *kgo.Client, r *kgo.Record, d stream.Delivery, class string, cause error, firstFailure time.Time) error {
	dl := &kgo.Record{Topic: DLQTopic(g.cfg.Topic), Key: r.Key, Value: r.Value}
	reason := map[string]string{
		stream.HeaderDLQGroup:            g.cfg.Name,
		stream.HeaderDLQErrorClass:       class,
		stream.HeaderDLQError:            stream.HeaderValue(cause.Error(), 1000),
		stream.HeaderDLQAttempts:         strconv.Itoa(d.NumDelivered),
		stream.HeaderDLQFirstFailure:     firstFailure.UTC().Format(time.RFC3339),
		stream.HeaderDLQOriginalSubject:  d.Subject,
		stream.HeaderDLQOriginalSequence: strconv.FormatInt(r.Offset, 10),
		HeaderDLQOriginalPartition:       strconv.Itoa(int(r.Partition)),
	}
	for _, h := range r.Headers {
		if _, ours := reason[h.Key]; !ours {
			dl.Headers = append(dl.Headers, h)
		}
	}
	for k, v := range reason {
		dl.Headers = append(dl.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	if err := cl.ProduceSync(ctx, dl).FirstErr(); err != nil {
		return fmt.Errorf("dead-letter %s to %s: %w", d.ID, dl.Topic, err)
	}
	g.metrics.deadLetter(g.cfg, class)
	return nil
}
