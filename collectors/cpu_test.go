package collectors

import (
	"context"
	"testing"

	"github.com/picket-agent/picket/agent/metric"
)

// TestCPUPerCPUOff checks that only cpu.total.<mode> is added without per-CPU metrics; the
// golden cases run with them on.
func TestCPUPerCPUOff(t *testing.T) {
	o := testOptions("testdata/cpu/realistic")
	o.PerCPU = false
	c, err := newCPU(o)
	if err != nil {
		t.Fatal(err)
	}
	s := metric.NewSink("cpu")
	if err := c.Collect(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if got := len(s.Samples()); got != len(cpuModes) {
		t.Errorf("%d samples, want %d", got, len(cpuModes))
	}
	for _, x := range s.Samples() {
		if len(x.Labels) != 1 || x.Labels[0].Value != "total" {
			t.Errorf("sample %s with labels %v", x.Field, x.Labels)
		}
	}
}

// TestCPULabelsReused checks that a second tick reuses the first tick's labels slices
// instead of building new ones.
func TestCPULabelsReused(t *testing.T) {
	c, err := newCPU(testOptions("testdata/cpu/realistic"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, second := metric.NewSink("cpu"), metric.NewSink("cpu")
	if err := c.Collect(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := c.Collect(ctx, second); err != nil {
		t.Fatal(err)
	}
	labels := map[string]*metric.Label{}
	for _, x := range first.Samples() {
		labels[x.Labels[0].Value] = &x.Labels[0]
	}
	for _, x := range second.Samples() {
		if labels[x.Labels[0].Value] != &x.Labels[0] {
			t.Fatalf("cpu %s: labels built again on the second tick", x.Labels[0].Value)
		}
	}
}
