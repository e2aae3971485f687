package collectors

import "errors"

// STUB: replaced by the real collector.
var netSeries = []Series{}

func newNet(Options) (Collector, error) { return nil, errors.New("net: not written yet") }
