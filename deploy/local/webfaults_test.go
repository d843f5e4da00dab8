package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/pkg/stream"
)

// endpointsOf is the system whose storefront is web: its port is the
// port base (deploy/local/ports.sh).
func endpointsOf(t *testing.T, web string) target.Endpoints {
	t.Helper()
	base, err := strconv.Atoi(web[strings.LastIndex(web, ":")+1:])
	if err != nil {
		t.Fatalf("storefront URL %s: %v", web, err)
	}
	return target.LocalEndpoints(base)
}

// mailRelay switches the SMTP sink's reject mode of the system at e (the
// test switches it off when it ends).
func mailRelay(t *testing.T, e target.Endpoints, reject bool) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	sink := &target.SMTPSink{URL: e.Mail, HTTP: hc}
	mode := map[bool]string{true: target.MailRejecting, false: target.MailAccepting}[reject]
	if err := sink.SetMailMode(context.Background(), mode); err != nil {
		t.Error(err)
	}
}

// providerFaults sets the payment-provider simulator's faults (a JSON
// object of pspsim.Faults fields; "{}": none); the test sets none when it
// ends.
func providerFaults(t *testing.T, psp, faults string) {
	t.Helper()
	put := func(faults string) error {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPut, psp+"/admin/faults", strings.NewReader(faults))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("PUT %s/admin/faults: %s", psp, resp.Status)
		}
		return nil
	}
	if err := put(faults); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = put("{}") })
}

// chargesOf is how many succeeded charges the provider simulator holds
// for the order (its stats, by reference).
func chargesOf(t *testing.T, psp, orderID string) int {
	t.Helper()
	resp, err := http.Get(psp + "/admin/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		SucceededByReference map[string]int `json:"succeeded_by_reference"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st.SucceededByReference[orderID]
}

// publishPoison publishes an event that is not JSON to partition 0 of the
// ORDERS stream of sys, as a buggy producer would. It connects as the
// NATS operator: no other user but orders may publish to ORDERS.
func publishPoison(t *testing.T, sys *target.System, id string) {
	t.Helper()
	nc, err := sys.NATSConfig().Connect("web test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	m := nats.NewMsg(stream.Subject("ORDERS", 0))
	m.Data = []byte("{this is not an event")
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Header.Set(stream.HeaderEventID, id)
	m.Header.Set(stream.HeaderKey, id)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatalf("publish the poison event: %v", err)
	}
}
