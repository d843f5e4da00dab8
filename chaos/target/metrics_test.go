package target_test

import (
	"maps"
	"strings"
	"testing"

	"github.com/shopfloor/shopfloor/chaos/target"
	"github.com/shopfloor/shopfloor/pkg/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func TestParseMetricsReadsSamplesAndReportsMalformedLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []target.Sample
		wantErr string
	}{
		{name: "comments and blank lines", in: "# HELP x y\n# TYPE x gauge\n\nx 1\n",
			want: []target.Sample{{Name: "x", Labels: map[string]string{}, Value: 1}}},
		{name: "labels", in: `stream_consumer_lag_messages{group="search",partition="3",stream="ORDERS"} 12` + "\n",
			want: []target.Sample{{Name: "stream_consumer_lag_messages", Labels: map[string]string{"group": "search", "partition": "3", "stream": "ORDERS"}, Value: 12}}},
		{name: "escapes and a timestamp", in: `m{a="x\"y\\z",b="l\n2"} 1.5e3 1700000000000` + "\n",
			want: []target.Sample{{Name: "m", Labels: map[string]string{"a": `x"y\z`, "b": "l\n2"}, Value: 1500}}},
		{name: "trailing comma, special values", in: "a{x=\"1\",} NaN\nb +Inf\n",
			want: []target.Sample{{Name: "a", Labels: map[string]string{"x": "1"}}, {Name: "b", Labels: map[string]string{}}}},
		{name: "no value", in: "lonely\n", wantErr: "no value"},
		{name: "bad value", in: "x abc\n", wantErr: "value"},
		{name: "unterminated labels", in: `x{a="1" 2` + "\n", wantErr: "label"},
		{name: "unterminated value", in: `x{a="1} 2` + "\n", wantErr: "unterminated label value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := target.ParseMetrics(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d samples %+v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.Name != w.Name || !maps.Equal(g.Labels, w.Labels) || (w.Value != 0 && g.Value != w.Value) {
					t.Errorf("sample %d: %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestSeriesWritesSortedQuotedLabels(t *testing.T) {
	t.Parallel()
	s := target.Sample{Name: "m", Labels: map[string]string{"b": "2", "a": `q"`}}
	if got, want := s.Series(), `m{a="q\"",b="2"}`; got != want {
		t.Fatalf("Series() = %s, want %s", got, want)
	}
}
