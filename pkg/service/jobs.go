package service

import (
	"errors"
	"fmt"
	"time"

	"github.com/shopfloor/shopfloor/pkg/backoff"
	"github.com/shopfloor/shopfloor/pkg/jobqueue"
)

// Jobs is the configuration of a service with job queues (pkg/jobqueue):
// the redrive policy, the workers' concurrency and their retry backoff.
// Services embed it in their Config; a service whose workers want another
// default concurrency sets it in Program.Defaults.
type Jobs struct {
	// MaxReceives moves a job to its dead-letter queue after this many
	// receives (the redrive policy).
	MaxReceives int `env:"MAX_RECEIVES" envDefault:"10"`
	// VisibilityTimeout hides a received job from other workers this
	// long; a worker that dies with it lets it reappear after that.
	VisibilityTimeout time.Duration `env:"VISIBILITY_TIMEOUT" envDefault:"30s"`
	// WorkerConcurrency is how many jobs each worker handles at once.
	WorkerConcurrency int `env:"WORKER_CONCURRENCY" envDefault:"4"`
	// RetryInitial and RetryMax bound the backoff (doubling) before a
	// failed job is visible again.
	RetryInitial time.Duration `env:"RETRY_INITIAL" envDefault:"1s"`
	RetryMax     time.Duration `env:"RETRY_MAX" envDefault:"5m"`
	// JobqueueAsyncAcks commits receives and deletes without waiting for
	// the WAL flush (jobqueue.Options.AsyncAcks, ADR 0018).
	JobqueueAsyncAcks bool `env:"JOBQUEUE_ASYNC_ACKS" envDefault:"false"`
}

// CheckJobs reports bad values, one error per variable (call it from the
// Config's Validate).
func (j Jobs) CheckJobs() []error {
	var errs []error
	if j.MaxReceives < 1 || j.MaxReceives > 100 {
		errs = append(errs, fmt.Errorf("MAX_RECEIVES: must be 1..100 (got %d)", j.MaxReceives))
	}
	if j.VisibilityTimeout < time.Second {
		errs = append(errs, fmt.Errorf("VISIBILITY_TIMEOUT: must be at least 1s (got %s)", j.VisibilityTimeout))
	}
	if j.WorkerConcurrency < 1 {
		errs = append(errs, fmt.Errorf("WORKER_CONCURRENCY: must be at least 1 (got %d)", j.WorkerConcurrency))
	}
	if j.RetryInitial <= 0 || j.RetryMax < j.RetryInitial {
		errs = append(errs, errors.New("RETRY_INITIAL, RETRY_MAX: need 0 < RETRY_INITIAL <= RETRY_MAX"))
	}
	return errs
}

// JobQueue is the service's job queue client on its database, with its
// metrics on the service's registry; it closes when the command ends.
// redact hides personal data per queue in the operator tools.
func (a *App) JobQueue(cfg Jobs, redact map[string]func([]byte) []byte) (*jobqueue.Client, error) {
	jobs, err := jobqueue.New(a.Pool, jobqueue.Options{Logger: a.Log, Registerer: a.Tel.Registry, Redact: redact, AsyncAcks: cfg.JobqueueAsyncAcks})
	if err != nil {
		return nil, err
	}
	a.Defer(jobs.Close)
	if err := a.Tel.Registry.Register(jobs.NewCollector()); err != nil {
		return nil, fmt.Errorf("job queue metrics: %w", err)
	}
	return jobs, nil
}

// Worker adds a worker role task on queue ("<queue>-worker"): cfg's
// concurrency, visibility and backoff, trace context from the jobs, and
// gate (nil: none) in front of each receive.
func (a *App) Worker(jobs *jobqueue.Client, cfg Jobs, queue string, gate jobqueue.Gate, h jobqueue.Handler) {
	w := jobs.NewWorker(jobqueue.WorkerConfig{Queue: queue, Concurrency: cfg.WorkerConcurrency, VisibilityTimeout: cfg.VisibilityTimeout,
		Backoff: backoff.Policy{Initial: cfg.RetryInitial, Max: cfg.RetryMax, Multiplier: 2},
		Extract: a.Tel.Extract, Tracer: a.Tel.Tracer("github.com/shopfloor/shopfloor/pkg/jobqueue"), Gate: gate}, h)
	a.Go(queue+"-worker", w.Run)
}
