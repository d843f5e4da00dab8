package console

import (
	"testing"

	"github.com/shopfloor/shopfloor/chaos/target"
)

func sample(name string, v float64, labels ...string) target.Sample {
	s := target.Sample{Name: name, Value: v, Labels: map[string]string{}}
	for i := 0; i+1 < len(labels); i += 2 {
		s.Labels[labels[i]] = labels[i+1]
	}
	return s
}

// TestPanelsFromMetrics: the panels read the processes' metrics as the
// dashboards do: the relay leader's outbox sample (the largest of the
// relay processes'), lag per partition in numeric order with a gap for a
// partition not reported, queue depths, cache hit ratios with the
// breaker.
func TestPanelsFromMetrics(t *testing.T) {
	t.Parallel()
	samples := map[string][]target.Sample{
		"orders-relay": {
			sample("outbox_backlog_rows", 12, "stream", "ORDERS"), sample("outbox_oldest_unpublished_age_seconds", 3.5, "stream", "ORDERS"),
		},
		"orders-relay-standby": {sample("outbox_backlog_rows", 0, "stream", "ORDERS")},
		"payments-relay": {
			sample("stream_consumer_lag_messages", 4, "stream", "ORDERS", "group", "payments", "partition", "10"),
			sample("stream_consumer_lag_messages", 1, "stream", "ORDERS", "group", "payments", "partition", "2"),
			sample("stream_consumer_lag_messages", 0, "stream", "ORDERS", "group", "search", "partition", "2"),
			sample("jobqueue_visible_messages", 7, "queue", "charges"), sample("jobqueue_dead_letter_depth", 2, "queue", "charges"),
		},
		"catalog": {
			sample("cache_requests_total", 6, "class", "product", "result", "hit"), sample("cache_requests_total", 2, "class", "product", "result", "near"),
			sample("cache_requests_total", 2, "class", "product", "result", "miss"), sample("cache_redis_errors_total", 5, "class", "product"),
			sample("cache_breaker_open", 1, "class", "product"), sample("cache_bypass", 1, "class", "product"),
		},
	}
	if o := outboxes(samples); len(o) != 1 || o[0] != (Outbox{Stream: "ORDERS", Backlog: 12, OldestAge: 3.5}) {
		t.Errorf("outboxes %+v", o)
	}
	lag := lagMap(samples)
	if len(lag.Partitions) != 2 || lag.Partitions[0] != "2" || lag.Partitions[1] != "10" {
		t.Fatalf("partitions %v, want [2 10]", lag.Partitions)
	}
	if len(lag.Rows) != 2 || lag.Rows[0].Group != "payments" || lag.Rows[0].Total != 5 || lag.Rows[0].Lag[1] != 4 ||
		lag.Rows[1].Group != "search" || lag.Rows[1].Lag[1] != -1 {
		t.Errorf("lag rows %+v", lag.Rows)
	}
	if q := queues(samples); len(q) != 1 || q[0].Visible != 7 || q[0].DLQ != 2 {
		t.Errorf("queues %+v", q)
	}
	c := caches(samples)
	if len(c) != 1 || c[0].HitRatio() != 0.8 || c[0].Near != 2 || c[0].RedisErrors != 5 || !c[0].BreakerOpen || !c[0].Bypassed {
		t.Errorf("caches %+v (hit ratio %v)", c, c[0].HitRatio())
	}
}
