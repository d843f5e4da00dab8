package target

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	kafkastream "github.com/shopfloor/shopfloor/pkg/stream/kafka"
)

// KafkaLag is how many records of topic group has not committed, over
// all partitions, read from the broker (the system must run on Kafka:
// KafkaBrokers).
func (s *System) KafkaLag(ctx context.Context, topic, group string) (int64, error) {
	if len(s.KafkaBrokers) == 0 {
		return 0, errors.New("the system's streams do not run on Kafka")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaBrokers...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	lags, err := kafkastream.Lag(ctx, kadm.NewClient(cl), topic, group)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, l := range lags {
		n += l
	}
	return n, nil
}
