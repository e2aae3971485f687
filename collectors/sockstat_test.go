package collectors

import (
	"context"
	"testing"

	"github.com/picket-agent/picket/agent/metric"
)

// The golden files hold 4 KiB pages; this checks mem is scaled by the page size the
// collector was built with, whatever the test machine's.
func TestSockstatPageSize(t *testing.T) {
	t.Parallel()
	c, err := newSockstat(testOptions("testdata/sockstat/busy"))
	if err != nil {
		t.Fatal(err)
	}
	c.(*sockstatCollector).pageSize = 65536
	s := metric.NewSink("sockstat")
	if err := c.Collect(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, x := range s.Samples() {
		if x.Field == "mem_bytes" || x.Field == "memory_bytes" {
			got[x.Labels[0].Value+"."+x.Field] = x.Value
		}
	}
	want := map[string]float64{"tcp.mem_bytes": 25 * 65536, "udp.mem_bytes": 6 * 65536, "frag.memory_bytes": 4352, "frag6.memory_bytes": 0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
