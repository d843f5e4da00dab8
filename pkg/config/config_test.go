package config_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopfloor/shopfloor/pkg/config"
)

type dbConfig struct {
	URL      string `env:"URL,required"`
	MaxConns int    `env:"MAX_CONNS" envDefault:"8"`
}

type testConfig struct {
	Addr     string        `env:"HTTP_ADDR" envDefault:":8080"`
	Timeout  time.Duration `env:"TIMEOUT" envDefault:"5s"`
	Workers  int           `env:"WORKERS" envDefault:"4"`
	Token    string        `env:"ADMIN_TOKEN" secret:"true"`
	TokenLen int           `env:"TOKEN_LEN" secret:"true"`
	DB       dbConfig      `envPrefix:"DATABASE_"`
}

func (c testConfig) Validate() []error {
	var errs []error
	if c.Workers < 1 || c.Workers > 64 {
		errs = append(errs, fmt.Errorf("WORKERS: must be 1..64 (got %d)", c.Workers))
	}
	return errs
}

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadAppliesDefaultsAndReportsEveryBadValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    testConfig
		wantErr []string // exact problem lines, sorted
	}{
		{
			name: "defaults",
			env:  map[string]string{"DATABASE_URL": "postgres://x"},
			want: testConfig{Addr: ":8080", Timeout: 5 * time.Second, Workers: 4, DB: dbConfig{URL: "postgres://x", MaxConns: 8}},
		},
		{
			name: "empty string counts as unset",
			env:  map[string]string{"DATABASE_URL": "postgres://x", "WORKERS": ""},
			want: testConfig{Addr: ":8080", Timeout: 5 * time.Second, Workers: 4, DB: dbConfig{URL: "postgres://x", MaxConns: 8}},
		},
		{
			name: "every bad value on its own line",
			env: map[string]string{
				"TIMEOUT":             "soon",
				"DATABASE_MAX_CONNS":  "many",
				"TOKEN_LEN":           "s3cret",
				"HTTP_ADDR":           ":9090",
				"UNRELATED_VARIABLE_": "ignored",
			},
			wantErr: []string{
				"DATABASE_MAX_CONNS: not a number (got \"many\")",
				"DATABASE_URL: required, not set",
				"TIMEOUT: not a duration (use e.g. 500ms, 30s, 5m) (got \"soon\")",
				"TOKEN_LEN: not a number (got \"***\")",
			},
		},
		{
			name:    "cross-field validation",
			env:     map[string]string{"DATABASE_URL": "postgres://x", "WORKERS": "0"},
			wantErr: []string{"WORKERS: must be 1..64 (got 0)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := config.Load[testConfig](getenv(tt.env))
			if tt.wantErr != nil {
				var cerr *config.Error
				if !errors.As(err, &cerr) {
					t.Fatalf("err = %v, want *config.Error", err)
				}
				if strings.Join(cerr.Problems, "\n") != strings.Join(tt.wantErr, "\n") {
					t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(cerr.Problems, "\n"), strings.Join(tt.wantErr, "\n"))
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error echoes a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("config = %+v, want %+v", got, tt.want)
			}
		})
	}
}
