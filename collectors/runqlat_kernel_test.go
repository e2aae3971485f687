package collectors

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/agent/testenv"
	"github.com/picket-agent/picket/collectors/cgroup"
)

// TestRunqlatKernel (root): the collector on the real probe. Four tasks spinning on one
// CPU in a test cgroup wait for it: their cgroup gains tens of waits over 1 ms while an
// idle test cgroup beside it gains none; every counter only grows from one reading to the
// next; the host-wide count is at least the cgroup's; the cumulative buckets never fall as
// the bound grows and the last one equals count. Once the busy cgroup is removed, its
// histogram is freed in the kernel and its counters stay where they were.
func TestRunqlatKernel(t *testing.T) {
	testenv.RequireRoot(t)
	h, err := cgroup.Find("/proc", "/sys", "cpu")
	if err != nil {
		t.Fatal(err)
	}
	var f Factory
	for _, f = range All {
		if f.Name == "runqlat" {
			break
		}
	}
	o := testOptions("/")
	o.BPFStats = true
	col, err := f.New(o)
	if err != nil {
		t.Fatal(err)
	}
	c := col.(*runqlatCollector)
	if err := c.Load(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	name := fmt.Sprintf("picket-runqlat-%d", os.Getpid())
	busyDir := testenv.Cgroup(t, h.Dir, name+"-busy")
	idleDir := testenv.Cgroup(t, h.Dir, name+"-idle")
	testenv.Sleep(t, idleDir)
	stop := testenv.Spin(t, busyDir, 0, 4)
	busy := "runqlat.cgroup./" + filepath.Base(busyDir) + "."
	idle := "runqlat.cgroup./" + filepath.Base(idleDir) + "."
	// Waits over 1 ms: all of them but those of at most 1024 µs.
	over1ms := func(got map[string]float64, prefix string) float64 {
		return got[prefix+"count"] - got[prefix+"le_1024us"]
	}

	prev := map[string]float64{}
	read := func() map[string]float64 {
		t.Helper()
		s := metric.NewSink("runqlat")
		if err := c.Collect(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, smp := range s.Samples() {
			got[strings.Join(Nodes(&smp), ".")] = smp.Value
		}
		checkCumulative(t, got)
		for k, v := range prev {
			if got[k] < v {
				t.Errorf("%s fell from %v to %v", k, v, got[k])
			}
		}
		if got["runqlat.count"] < got[busy+"count"] {
			t.Errorf("host-wide %v waits, fewer than the busy cgroup's %v", got["runqlat.count"], got[busy+"count"])
		}
		prev = got
		return got
	}

	deadline := time.Now().Add(30 * time.Second)
	var got map[string]float64
	for {
		time.Sleep(200 * time.Millisecond)
		got = read()
		if over1ms(got, busy) >= 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the busy cgroup has %v waits over 1 ms after 30 s, want 30 or more", over1ms(got, busy))
		}
	}
	if n := over1ms(got, idle); n > 3 {
		t.Errorf("the idle cgroup has %v waits over 1 ms", n)
	}
	if got[busy+"le_16777216us"] != got[busy+"count"] {
		t.Errorf("busy: le_16777216us %v, count %v", got[busy+"le_16777216us"], got[busy+"count"])
	}
	t.Logf("busy cgroup: %v waits, %v over 1 ms, %v µs in all; idle: %v waits; host: %v waits",
		got[busy+"count"], over1ms(got, busy), got[busy+"sum_us"], got[idle+"count"], got["runqlat.count"])

	self := metric.NewSink("picket")
	c.Report(self)
	report := map[string]float64{}
	for _, smp := range self.Samples() {
		report[strings.Join(Nodes(&smp), ".")] = smp.Value
	}
	if report["picket.bpf.runqlat.cgroups"] < 2 || report["picket.bpf.runqlat.maps_bytes"] == 0 || report["picket.bpf.runqlat.sched_switch.run_count"] == 0 {
		t.Errorf("picket.bpf.runqlat: %v", report)
	}

	// The busy cgroup goes: the next reading frees its histogram, its counters stay.
	stop()
	final := read()
	var st syscall.Stat_t
	if err := syscall.Stat(busyDir, &st); err != nil {
		t.Fatal(err)
	}
	if c.ids[st.Ino] == nil {
		t.Fatalf("the busy cgroup (id %d) holds no histogram", st.Ino)
	}
	if err := os.Remove(busyDir); err != nil {
		t.Fatal(err)
	}
	got = read()
	if got[busy+"count"] != final[busy+"count"] || c.ids[st.Ino] != nil {
		t.Errorf("after removing the busy cgroup: count %v (was %v), histogram held: %v", got[busy+"count"], final[busy+"count"], c.ids[st.Ino] != nil)
	}
}
