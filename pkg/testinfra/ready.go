package testinfra

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// WaitReady polls url (a /readyz) until it answers 200, for at most within;
// the last answer is in the failure message.
func WaitReady(tb testing.TB, url string, within time.Duration) {
	tb.Helper()
	Eventually(tb, within, func() error {
		resp, err := http.Get(url) //nolint:gosec // G107: the test's own server
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("%s answered %d %s", url, resp.StatusCode, b)
		}
		return nil
	})
}
