package natsauth

// Shopfloor is shopfloor's matrix: one user per service, with the
// streams it owns and the groups it runs (the tables in ADR 0039), and
// the operator. deploy/compose/nats/auth.conf is its Conf (a test keeps
// them equal), and make run uses the same file.
//
// The names are the services' own: each stream is the Stream constant
// of its owner's <svc>api package, each group the Group constant of its
// consumer's internal/<svc>stream package; a service whose names drift
// from these is refused by the broker in every end-to-end test.
// Partition counts are the services' defaults (<STREAM>_PARTITIONS).
var Shopfloor = Matrix{
	Streams: []Stream{
		{Name: "CATALOG", Partitions: 8},
		{Name: "ORDERS", Partitions: 8},
		{Name: "PAYMENTS", Partitions: 8},
		// new-service: NATS streams above this line
	},
	Users: []User{
		{Name: "catalog", Owns: []string{"CATALOG"},
			Consumes: []Group{{Stream: "CATALOG", Name: "catalog-invalidation"}}},
		{Name: "orders", Owns: []string{"ORDERS"},
			Consumes: []Group{{Stream: "PAYMENTS", Name: "orders"}},
			// The load shedder reads how far payments is behind (ADR 0028).
			Watches: []Group{{Stream: "ORDERS", Name: "payments"}}},
		{Name: "payments", Owns: []string{"PAYMENTS"},
			Consumes: []Group{{Stream: "ORDERS", Name: "payments"}}},
		{Name: "notifications",
			Consumes: []Group{{Stream: "ORDERS", Name: "notifications"}}},
		{Name: "search",
			Consumes: []Group{{Stream: "CATALOG", Name: "search"}, {Stream: "ORDERS", Name: "search"}}},
		// new-service: NATS users above this line
		{Name: "operator", Operator: true},
	},
}
