package service

import "log/slog"

// Telemetry is the telemetry part of Base, on its own for a service
// without a database (identity, web), which starts with
// service.Base{Telemetry: cfg.Telemetry}.
type Telemetry struct {
	ServiceVersion string     `env:"SERVICE_VERSION" envDefault:"dev"`
	InstanceID     string     `env:"INSTANCE_ID"`
	OTLPEndpoint   string     `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	LogLevel       slog.Level `env:"LOG_LEVEL" envDefault:"INFO"`
}
