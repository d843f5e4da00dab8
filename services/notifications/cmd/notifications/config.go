package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"regexp"
	"time"

	"github.com/shopfloor/shopfloor/pkg/service"
	"github.com/shopfloor/shopfloor/pkg/stream"
	"github.com/shopfloor/shopfloor/services/notifications/internal/email"
)

// Config is the serve command's configuration, from the environment.
type Config struct {
	service.Base
	service.Serve
	OrdersPartitions int `env:"ORDERS_PARTITIONS" envDefault:"8"`
	// OrdersGroup is the consumer group on ORDERS. A rebuild runs a new
	// group from the start of the stream: it records nothing twice and
	// sends nothing twice (one row per order and kind).
	OrdersGroup string `env:"ORDERS_GROUP" envDefault:"notifications"`
	// The SMTP server the worker role sends through.
	SMTPHost string `env:"SMTP_HOST"`
	// SMTPPort 0 is the TLS mode's usual port: 25, 587, 465.
	SMTPPort     int    `env:"SMTP_PORT" envDefault:"0"`
	SMTPTLS      string `env:"SMTP_TLS" envDefault:"starttls"`
	SMTPUsername string `env:"SMTP_USERNAME"`
	SMTPPassword string `env:"SMTP_PASSWORD" secret:"true"`
	// SMTPFrom is the sender, "shopfloor <shop@example.com>" or a bare
	// address.
	SMTPFrom    string        `env:"SMTP_FROM"`
	SMTPTimeout time.Duration `env:"SMTP_TIMEOUT" envDefault:"30s"`
	// The SMTP circuit breaker (pkg/breaker): open after this many outage
	// errors in a row (refused, 421, timeouts; not a rejected recipient),
	// then the e-mail worker receives nothing for the cool-down (doubling
	// per failed probe, up to 1m) and the e-mails wait in their queue.
	SMTPBreakerFailures int           `env:"SMTP_BREAKER_FAILURES" envDefault:"5"`
	SMTPBreakerCoolDown time.Duration `env:"SMTP_BREAKER_COOL_DOWN" envDefault:"5s"`
	// SMTPCAFile is a PEM file of CAs to trust for the server's
	// certificate instead of the system's roots.
	SMTPCAFile string `env:"SMTP_CA_FILE"`
	// The e-mail queue's redrive policy and the worker.
	service.Jobs
}

var groupRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate reports rules beyond one value's syntax, one line per bad
// value.
func (c Config) Validate() []error {
	var errs []error
	if err := stream.CheckPartitions("ORDERS_PARTITIONS", c.OrdersPartitions); err != nil {
		errs = append(errs, err)
	}
	if !groupRE.MatchString(c.OrdersGroup) {
		errs = append(errs, fmt.Errorf("ORDERS_GROUP: must be 1-64 letters, digits, _ or - (got %q)", c.OrdersGroup))
	}
	mode, err := email.ParseTLSMode(c.SMTPTLS)
	if err != nil {
		errs = append(errs, fmt.Errorf("SMTP_TLS: must be none, starttls or tls (got %q)", c.SMTPTLS))
	}
	if c.SMTPPort < 0 || c.SMTPPort > 65535 {
		errs = append(errs, fmt.Errorf("SMTP_PORT: must be 1..65535, or 0 for the TLS mode's usual port (got %d)", c.SMTPPort))
	}
	if c.SMTPUsername != "" && mode == email.TLSNone {
		errs = append(errs, errors.New("SMTP_USERNAME: authentication needs SMTP_TLS=starttls or tls (the password would cross the network in clear)"))
	}
	if c.SMTPPassword != "" && c.SMTPUsername == "" {
		errs = append(errs, errors.New("SMTP_PASSWORD: set without SMTP_USERNAME"))
	}
	if c.SMTPBreakerFailures < 1 || c.SMTPBreakerCoolDown <= 0 {
		errs = append(errs, fmt.Errorf("SMTP_BREAKER_FAILURES, SMTP_BREAKER_COOL_DOWN: need at least 1 failure and a positive cool-down (got %d, %s)", c.SMTPBreakerFailures, c.SMTPBreakerCoolDown))
	}
	if c.SMTPTimeout < time.Second {
		errs = append(errs, fmt.Errorf("SMTP_TIMEOUT: must be at least 1s (got %s)", c.SMTPTimeout))
	}
	if c.Has("worker") {
		if c.SMTPHost == "" {
			errs = append(errs, errors.New("SMTP_HOST: required by the worker role (the SMTP server, e.g. 127.0.0.1 with the smtp-sink command)"))
		}
		if _, err := mail.ParseAddress(c.SMTPFrom); err != nil {
			errs = append(errs, fmt.Errorf("SMTP_FROM: required by the worker role, an address such as \"shopfloor <shop@example.com>\" (got %q)", c.SMTPFrom))
		}
		if c.SMTPCAFile != "" {
			if _, err := loadCAs(c.SMTPCAFile); err != nil {
				errs = append(errs, fmt.Errorf("SMTP_CA_FILE: %w", err))
			}
		}
	}
	errs = append(errs, c.CheckJobs()...)
	return errs
}

// loadCAs reads a PEM bundle.
func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the file
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
