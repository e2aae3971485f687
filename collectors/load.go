package collectors

import "errors"

// STUB: replaced by the real collector.
var loadSeries = []Series{}

func newLoad(Options) (Collector, error) { return nil, errors.New("load: not written yet") }
