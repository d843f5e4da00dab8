package natsauth_test

import (
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/pkg/natsauth"
)

func TestConfigValidateNamesTheVariable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  natsauth.Config
		want string // "" is valid
	}{
		{"no URL is valid", natsauth.Config{}, ""},
		{"URL alone", natsauth.Config{URL: "nats://127.0.0.1:4222"}, ""},
		{"user and password", natsauth.Config{URL: "nats://a:4222,nats://b:4222", User: "orders", Password: "pw"}, ""},
		{"credentials in the URL", natsauth.Config{URL: "nats://orders:pw@a:4222"}, ""},
		{"user without password", natsauth.Config{URL: "nats://a:4222", User: "orders"}, "NATS_PASSWORD: required with NATS_USER"},
		{"password without user", natsauth.Config{URL: "nats://a:4222", Password: "pw"}, "NATS_USER: required with NATS_PASSWORD"},
		{"bad user name", natsauth.Config{URL: "nats://a:4222", User: "Orders", Password: "pw"}, "NATS_USER:"},
		{"two users", natsauth.Config{URL: "nats://x:pw@a:4222", User: "orders", Password: "pw"}, "use one of them"},
		{"credentials without URL", natsauth.Config{User: "orders", Password: "pw"}, "set without NATS_URL"},
		{"not a URL, password hidden", natsauth.Config{URL: "orders:s3cret@", User: "", Password: ""}, "NATS_URL:"},
		{"three replicas", natsauth.Config{URL: "nats://a:4222,nats://b:4222,nats://c:4222", StreamReplicas: 3}, ""},
		{"too many replicas", natsauth.Config{URL: "nats://a:4222", StreamReplicas: 7}, "STREAM_REPLICAS: 7 outside 1..5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			errs := tc.cfg.Validate()
			var got []string
			for _, err := range errs {
				got = append(got, err.Error())
			}
			all := strings.Join(got, "; ")
			switch {
			case tc.want == "" && len(errs) > 0:
				t.Fatalf("Validate() = %s; want valid", all)
			case tc.want != "" && !strings.Contains(all, tc.want):
				t.Fatalf("Validate() = %q; want %q", all, tc.want)
			case strings.Contains(all, "s3cret"):
				t.Fatalf("Validate() shows the password: %s", all)
			}
		})
	}
}

func TestRedactedHidesEveryPassword(t *testing.T) {
	t.Parallel()
	c := natsauth.Config{URL: "nats://orders:s3cret@a:4222, nats://orders:s3cret@b:4222"}
	got := c.Redacted()
	if strings.Contains(got, "s3cret") || !strings.Contains(got, "orders:xxxxx@a:4222") || !strings.Contains(got, "orders:xxxxx@b:4222") {
		t.Fatalf("Redacted() = %q", got)
	}
	if got := (natsauth.Config{URL: "nats://a:4222"}).Redacted(); got != "nats://a:4222" {
		t.Fatalf("Redacted() without credentials = %q", got)
	}
}
