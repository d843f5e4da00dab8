package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/shopfloor/shopfloor/chaos/target"
)

// JobQueueServices are the services whose api role serves the job
// queues' operator API (pkg/jobqueue's AdminRoutes: list, inspect with
// redacted bodies, redrive) on its admin listener. The console calls it
// with the signed-in operator's own token: the service decides, and its
// log names the operator.
var JobQueueServices = []string{"notifications", "payments"}

// RedriveRate bounds a redrive from the console (messages per second), as
// the CLI's --rate does, so that a large dead-letter queue does not flood
// the workers or the provider at once.
const RedriveRate = 10

// DeadLetterQueue is one service's dead-letter queue with its first
// messages.
type DeadLetterQueue struct {
	Service, Queue string
	Letters        []DeadLetter
	Err            string
}

// DeadLetter is a dead-lettered job as the service's admin API shows it:
// the body redacted by the service (card data and addresses never reach
// the console).
type DeadLetter struct {
	ID           int64             `json:"id"`
	Queue        string            `json:"queue"`
	SourceQueue  string            `json:"source_queue"`
	Reason       string            `json:"reason"`
	SentAt       time.Time         `json:"sent_at"`
	ReceiveCount int               `json:"receive_count"`
	Attributes   map[string]string `json:"attributes"`
	Body         json.RawMessage   `json:"body"`
}

// BodyText is the body indented for reading.
func (d DeadLetter) BodyText() string {
	var v any
	if json.Unmarshal(d.Body, &v) != nil {
		return string(d.Body)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return string(d.Body)
	}
	return string(b)
}

// deadLetterLimit is how many messages per queue the console lists.
const deadLetterLimit = 20

var queueName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// adminBase is the admin listener of service's api role.
func (c *Console) adminBase(service string) (string, error) {
	base, ok := c.sys.Metrics[service]
	if !ok || !slices.Contains(JobQueueServices, service) {
		return "", fmt.Errorf("%w: no service %q with job queues", ErrUnknown, service)
	}
	return base, nil
}

func (c *Console) admin(ctx context.Context, token, method, url string, body, out any) error {
	return target.DoJSON(ctx, c.sys.Client(), method, url, http.Header{"Authorization": {"Bearer " + token}}, body, out)
}

// DeadLetters lists every service's dead-letter queues and their first
// messages, asking the services at once.
func (c *Console) DeadLetters(ctx context.Context, token string) []DeadLetterQueue {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	per := make([][]DeadLetterQueue, len(JobQueueServices))
	var wg sync.WaitGroup
	for i, svc := range JobQueueServices {
		wg.Go(func() { per[i] = c.deadLettersOf(ctx, token, svc) })
	}
	wg.Wait()
	return slices.Concat(per...)
}

func (c *Console) deadLettersOf(ctx context.Context, token, service string) []DeadLetterQueue {
	base, err := c.adminBase(service)
	if err != nil {
		return nil
	}
	var stats []struct {
		Queue string `json:"queue"`
		DLQ   bool   `json:"dead_letter_queue"`
	}
	if err := c.admin(ctx, token, http.MethodGet, base+"/v1/admin/queues", nil, &stats); err != nil {
		return []DeadLetterQueue{{Service: service, Err: service + " does not answer: " + errText(err)}}
	}
	var out []DeadLetterQueue
	for _, st := range stats {
		if !st.DLQ {
			continue
		}
		q := DeadLetterQueue{Service: service, Queue: st.Queue}
		u := base + "/v1/admin/queues/" + url.PathEscape(st.Queue) + "/messages?limit=" + strconv.Itoa(deadLetterLimit)
		if err := c.admin(ctx, token, http.MethodGet, u, nil, &q.Letters); err != nil {
			q.Err = errText(err)
		}
		out = append(out, q)
	}
	return out
}

// DeadLetter returns one message of a dead-letter queue.
func (c *Console) DeadLetter(ctx context.Context, token, service, queue string, id int64) (DeadLetter, error) {
	base, err := c.adminBase(service)
	if err != nil {
		return DeadLetter{}, err
	}
	if !queueName.MatchString(queue) {
		return DeadLetter{}, fmt.Errorf("%w: no queue %q", ErrUnknown, queue)
	}
	var d DeadLetter
	u := base + "/v1/admin/queues/" + url.PathEscape(queue) + "/messages/" + strconv.FormatInt(id, 10)
	if err := c.admin(ctx, token, http.MethodGet, u, nil, &d); err != nil {
		return DeadLetter{}, err
	}
	return d, nil
}

// Redrive moves messages of a dead-letter queue (ids; none: every one)
// back to the queues they came from, at RedriveRate per second, and
// returns how many moved. dryRun counts and moves nothing.
func (c *Console) Redrive(ctx context.Context, token, service, queue string, ids []int64, dryRun bool) (int, error) {
	base, err := c.adminBase(service)
	if err != nil {
		return 0, err
	}
	if !queueName.MatchString(queue) {
		return 0, fmt.Errorf("%w: no queue %q", ErrUnknown, queue)
	}
	var res struct {
		Redriven int `json:"redriven"`
	}
	body := map[string]any{"ids": ids, "dry_run": dryRun, "rate_per_second": RedriveRate}
	if err := c.admin(ctx, token, http.MethodPost, base+"/v1/admin/queues/"+url.PathEscape(queue)+"/redrive", body, &res); err != nil {
		return 0, err
	}
	return res.Redriven, nil
}

// errText is err for an operator: a service's status and problem, or
// why it could not be reached.
func errText(err error) string {
	var se *target.StatusError
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %s", se.Status, se.Body)
	}
	return err.Error()
}
