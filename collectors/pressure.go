package collectors

import "errors"

// STUB: replaced by the real collector.
var pressureSeries = []Series{}

func newPressure(Options) (Collector, error) { return nil, errors.New("pressure: not written yet") }
