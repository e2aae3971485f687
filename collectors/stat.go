package collectors

import "errors"

// STUB: replaced by the real collector.
var statSeries = []Series{}

func newStat(Options) (Collector, error) { return nil, errors.New("stat: not written yet") }
