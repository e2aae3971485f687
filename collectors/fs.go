package collectors

import "errors"

// STUB: replaced by the real collector.
var fsSeries = []Series{}

func newFS(Options) (Collector, error) { return nil, errors.New("fs: not written yet") }
