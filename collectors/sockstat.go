package collectors

import "errors"

// STUB: replaced by the real collector.
var sockstatSeries = []Series{}

func newSockstat(Options) (Collector, error) { return nil, errors.New("sockstat: not written yet") }
