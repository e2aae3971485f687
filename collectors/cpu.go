package collectors

import "errors"

// STUB: replaced by the real collector.
var cpuSeries = []Series{}

func newCPU(Options) (Collector, error) { return nil, errors.New("cpu: not written yet") }
