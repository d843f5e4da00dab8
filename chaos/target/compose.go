package target

// ComposeEndpoints returns the endpoints of deploy/compose/compose.yaml as
// a container on its network reaches them (service names, container
// ports): what the web service's console uses when it runs in compose
// (WEB_CONSOLE_COMPOSE). Toxiproxy is there only with the chaos overlay,
// deploy/compose/compose.chaos.yaml, which also publishes the same
// endpoints on the host at LocalEndpoints(8000)'s ports.
func ComposeEndpoints() Endpoints {
	return Endpoints{
		CDN: "http://varnish:80", Catalog: "http://catalog:8081", CatalogAdmin: "http://catalog:9081",
		Orders: "http://orders:8082", Payments: "http://payments:8083", Notifications: "http://notifications:8084", Search: "http://search:8085",
		PSP: "http://psp-sim:8099", Mail: "http://mailpit:8025", Toxiproxy: "http://toxiproxy:8474", NATSMonitor: "http://nats:8222",
		CDNMetrics: "http://varnish-exporter:9131", NATS: "nats://nats:4222", Redis: "redis://redis:6379/0",
		Metrics: map[string]string{
			"catalog":              "http://catalog:9081",
			"catalog-worker":       "http://catalog-worker:9081",
			"orders":               "http://orders:9082",
			"orders-relay":         "http://orders-relay:9082",
			"orders-consumer":      "http://orders-consumer:9082",
			"payments":             "http://payments:9083",
			"payments-worker":      "http://payments-worker:9083",
			"payments-relay":       "http://payments-relay:9083",
			"notifications":        "http://notifications:9084",
			"notifications-worker": "http://notifications-worker:9084",
			"search":               "http://search:9085",
			// The second instances of the consumer groups.
			"catalog-invalidation-2":   "http://catalog-invalidation-2:9081",
			"orders-consumer-2":        "http://orders-consumer-2:9082",
			"payments-consumer-2":      "http://payments-consumer-2:9083",
			"notifications-consumer-2": "http://notifications-consumer-2:9084",
			"search-consumer-2":        "http://search-consumer-2:9085",
		},
	}
}
