package collectors

import (
	"slices"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/bpf/probe"
)

// programStats reports a probe's BPF run time and count per program (hook), while the
// kernel keeps BPF statistics.
type programStats struct {
	base []metric.Label
	// labels are base plus the program, by hook; only Report's goroutine touches them.
	labels map[string][]metric.Label
}

// report adds picket.bpf.<probe>.<program>.run_time_seconds and .run_count.
func (p *programStats) report(s *metric.Sink, probe interface {
	Stats() ([]probe.ProgramStats, bool, error)
}) {
	stats, on, _ := probe.Stats()
	if !on {
		return
	}
	if p.labels == nil {
		p.labels = map[string][]metric.Label{}
	}
	for _, st := range stats {
		labels := p.labels[st.Hook]
		if labels == nil {
			labels = append(slices.Clip(p.base), metric.Label{Key: "program", Value: st.Hook})
			p.labels[st.Hook] = labels
		}
		s.Counter("run_time_seconds", st.RunTime.Seconds(), labels...)
		s.Counter("run_count", float64(st.RunCount), labels...)
	}
}
