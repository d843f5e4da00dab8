package kafkastream

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/shopfloor/shopfloor/pkg/stream"
)

// NewBatchGroup runs a stream.BatchHandler (a service's batch consumer,
// ADR 0045) on Kafka by handing it one record at a time: a call with one
// delivery has the contract of stream.Handler, so the handler's effects,
// retries and dead letters are the same as on JetStream, with batches of
// one. Batching records of a partition into one handler call (and one
// transaction) is not built on this engine yet (ADR 0046): a Kafka group
// costs one transaction per record.
func NewBatchGroup(seeds []string, cfg GroupConfig, handler stream.BatchHandler, logger *slog.Logger) (*Group, error) {
	if handler == nil {
		return nil, fmt.Errorf("%w: group %s: nil handler", stream.ErrInvalid, cfg.Name)
	}
	return NewGroup(seeds, cfg, func(ctx context.Context, d stream.Delivery) error {
		return handler(ctx, []stream.Delivery{d})
	}, logger)
}
