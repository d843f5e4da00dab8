package main

import (
	"context"
	"net/http"
	"strings"

	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/search/internal/indexhttp"
	"github.com/shopfloor/shopfloor/services/search/internal/indexstream"
	"github.com/shopfloor/shopfloor/services/search/internal/indexsvc"
)

// wire builds the roles on the connected database and stream engine: the lag
// sampler (both roles: the api's answers say how fresh they are), the two
// projections and the API.
func wire(ctx context.Context, app *service.App, cfg *Config) error {
	products, orders := cfg.sources()
	broker, err := app.ConnectStreams(ctx, service.Streams{Read: []stream.StreamConfig{
		{Name: products.Stream, Partitions: products.Partitions},
		{Name: orders.Stream, Partitions: orders.Partitions}}})
	if err != nil {
		return err
	}
	lags, err := indexsvc.NewLagSampler(broker.GroupLag, app.Pool, indexstream.Group, []indexsvc.Source{products, orders},
		indexsvc.LagConfig{Interval: cfg.LagInterval, Registerer: app.Tel.Registry}, app.Log)
	if err != nil {
		return err
	}
	app.Go("lag-sampler", lags.Run)
	if app.Has(service.RoleConsumer) {
		metrics, err := indexstream.NewMetrics(app.Tel.Registry)
		if err != nil {
			return err
		}
		for _, src := range []indexsvc.Source{products, orders} {
			metrics.Zero(src.Stream)
			p := &indexstream.Projector{Pool: app.Pool, Projection: src.Projection, Stream: src.Stream, Metrics: metrics, Log: app.Log}
			grp, err := app.NewBatchGroup(broker, src.Stream, indexstream.Group, src.Partitions, p.HandleBatch)
			if err != nil {
				return err
			}
			app.Go(strings.ToLower(src.Stream)+"-consumer", grp.Run)
		}
	}
	if app.Has(service.RoleAPI) {
		mux := http.NewServeMux()
		indexhttp.Routes(mux, indexsvc.NewSearcher(app.Pool, products, orders, lags), indexhttp.Config{Authz: app.Authz, Log: app.Log})
		app.OpenAPI(mux)
	}
	return nil
}
