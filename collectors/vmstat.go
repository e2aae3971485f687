package collectors

import "errors"

// STUB: replaced by the real collector.
var vmstatSeries = []Series{}

func newVmstat(Options) (Collector, error) { return nil, errors.New("vmstat: not written yet") }
