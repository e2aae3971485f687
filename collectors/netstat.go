package collectors

import "errors"

// STUB: replaced by the real collector.
var netstatSeries = []Series{}

func newNetstat(Options) (Collector, error) { return nil, errors.New("netstat: not written yet") }
