package table

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestWrite(t *testing.T) {
	t.Parallel()
	cpu0 := []metric.Label{{Key: "cpu", Value: "0"}}
	for _, tc := range []struct {
		name    string
		samples []metric.Sample
	}{
		{"empty", nil},
		{"mixed", []metric.Sample{
			{Collector: "net", Labels: []metric.Label{{Key: "iface", Value: "eth0.100"}}, Field: "rx_bytes", Value: 123456789012, Kind: metric.Counter},
			{Collector: "cpu", Labels: cpu0, Field: "user", Value: 1234.56, Kind: metric.Counter},
			{Collector: "cpu", Labels: cpu0, Field: "idle", Value: 98765.43, Kind: metric.Counter},
			{Collector: "oom", Labels: []metric.Label{{Key: "cgroup", Value: "/system.slice/nginx.service", Named: true}}, Field: "kills", Value: 2, Kind: metric.Counter},
			{Collector: "load", Field: "load1", Value: 0.25},
			{Collector: "fs", Labels: []metric.Label{{Key: "mount", Value: "/"}}, Field: "free_bytes", Value: 1 << 40},
			{Collector: "memory", Field: "mem_total", Value: 1e21},
			{Collector: "pressure", Field: "tiny", Value: 1.5e-7},
			{Collector: "picket", Field: "negative", Value: -3},
			{Collector: "picket", Field: "nan", Value: math.NaN()},
			{Collector: "picket", Field: "inf", Value: math.Inf(-1)},
			{Collector: "fs", Labels: []metric.Label{{Key: "mount", Value: "/mnt/My Drive"}}, Field: "free_bytes", Value: 0},
			{Collector: "fs", Labels: []metric.Label{{Key: "mount", Value: "/mnt/tab\there"}}, Field: "free_bytes", Value: 1},
			{Collector: "fs", Labels: []metric.Label{{Key: "mount", Value: "/mnt/日本"}}, Field: "free_bytes", Value: 2},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := Write(&buf, &metric.Batch{Time: time.Unix(1700000000, 0), Samples: tc.samples}); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("got:\n%s\nwant:\n%s", buf.Bytes(), want)
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	t.Parallel()
	b := &metric.Batch{Samples: []metric.Sample{{Collector: "load", Field: "load1", Value: 1}}}
	if err := Write(failWriter{}, b); err == nil {
		t.Error("no error from a failing writer")
	}
}
