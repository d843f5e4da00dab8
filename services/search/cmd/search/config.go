package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/shopfloor/shopfloor/pkg/natsauth"
	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/catalog/catalogapi"
	"github.com/shopfloor/shopfloor/services/orders/ordersapi"
	"github.com/shopfloor/shopfloor/services/search/internal/indexpg"
	"github.com/shopfloor/shopfloor/services/search/internal/indexsvc"
)

// Streams is what every command that reads the streams needs (with
// NATS_URL).
type Streams struct {
	// Partitions of CATALOG and ORDERS: the counts the streams were
	// created with (search ensures the streams exist with them).
	CatalogPartitions int `env:"CATALOG_PARTITIONS" envDefault:"8"`
	OrdersPartitions  int `env:"ORDERS_PARTITIONS" envDefault:"8"`
}

// validate reports bad partition counts.
func (s Streams) validate() []error {
	var errs []error
	for _, v := range []struct {
		name string
		n    int
	}{{"CATALOG_PARTITIONS", s.CatalogPartitions}, {"ORDERS_PARTITIONS", s.OrdersPartitions}} {
		if err := stream.CheckPartitions(v.name, v.n); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// sources are the live projections and their streams.
func (s Streams) sources() (products, orders indexsvc.Source) {
	return indexsvc.Source{Stream: catalogapi.Stream, Partitions: s.CatalogPartitions, Projection: indexpg.LiveProducts},
		indexsvc.Source{Stream: ordersapi.Stream, Partitions: s.OrdersPartitions, Projection: indexpg.LiveOrders}
}

// Config is the serve command's configuration, from the environment.
type Config struct {
	service.Base
	service.Serve
	Streams
	// LagInterval is how often the live groups' lag is read from the
	// broker (for the answers' freshness and the gauges).
	LagInterval time.Duration `env:"LAG_INTERVAL" envDefault:"2s"`
}

// Validate reports rules beyond one value's syntax.
func (c Config) Validate() []error {
	errs := c.validate()
	if c.LagInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("LAG_INTERVAL: must be at least 100ms (got %s)", c.LagInterval))
	}
	return errs
}

// replayConfig is the configuration of the rebuild and check commands.
// A replay creates, reads and deletes consumer groups of its own
// ("search-replay-<id>"), which search's NATS user may not: run them as
// the operator (NATS_USER=operator; ADR 0039).
type replayConfig struct {
	service.Base
	Streams
	NATS   natsauth.Config
	Engine service.StreamEngine
}

// Validate reports rules beyond one value's syntax.
func (c replayConfig) Validate() []error {
	errs := append(c.validate(), c.NATS.Validate()...)
	if c.Engine.Kafka() {
		// ADR 0046: the rebuild reads the stream with a JetStream replay
		// group; a Kafka one is not built.
		return append(errs, errors.New("STREAM_ENGINE: rebuild and check replay JetStream streams; with kafka they are not built yet (docs/streams-kafka.md)"))
	}
	if c.NATS.URL == "" {
		errs = append(errs, errors.New("NATS_URL: required by the rebuild and check commands"))
	}
	return errs
}
