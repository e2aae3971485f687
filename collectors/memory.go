package collectors

import "errors"

// STUB: replaced by the real collector.
var memorySeries = []Series{}

func newMemory(Options) (Collector, error) { return nil, errors.New("memory: not written yet") }
