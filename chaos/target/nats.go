package target

import (
	"context"
	"fmt"
	"strings"
)

// JetStreamState is what NATS monitoring (/jsz) tells about streams and
// consumers, independent of whether the consuming processes run.
type JetStreamState struct {
	// Messages per stream (ORDERS, ORDERS_DLQ, …).
	Messages map[string]uint64
	// Pending per stream and consumer group: messages not yet delivered
	// plus delivered but not acknowledged, summed over the group's
	// partition consumers (named <group>-p<n>). Key: "STREAM/group".
	Pending map[string]uint64
}

type jsz struct {
	AccountDetails []struct {
		StreamDetail []struct {
			Name  string `json:"name"`
			State struct {
				Messages uint64 `json:"messages"`
			} `json:"state"`
			ConsumerDetail []struct {
				Name          string `json:"name"`
				NumPending    uint64 `json:"num_pending"`
				NumAckPending uint64 `json:"num_ack_pending"`
			} `json:"consumer_detail"`
		} `json:"stream_detail"`
	} `json:"account_details"`
}

// JetStream reads /jsz?consumers=true from the NATS monitoring port.
func (s *System) JetStream(ctx context.Context) (JetStreamState, error) {
	var j jsz
	if err := GetJSON(ctx, s.Client(), s.NATSMonitor+"/jsz?consumers=true", &j); err != nil {
		return JetStreamState{}, fmt.Errorf("nats monitoring: %w", err)
	}
	st := JetStreamState{Messages: map[string]uint64{}, Pending: map[string]uint64{}}
	for _, a := range j.AccountDetails {
		for _, sd := range a.StreamDetail {
			st.Messages[sd.Name] += sd.State.Messages
			for _, c := range sd.ConsumerDetail {
				group := c.Name
				if i := strings.LastIndex(group, "-p"); i > 0 {
					group = group[:i]
				}
				st.Pending[sd.Name+"/"+group] += c.NumPending + c.NumAckPending
			}
		}
	}
	return st, nil
}
