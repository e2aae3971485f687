package collectors

import "errors"

// STUB: replaced by the real collector.
var conntrackSeries = []Series{}

func newConntrack(Options) (Collector, error) { return nil, errors.New("conntrack: not written yet") }
