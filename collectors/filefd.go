package collectors

import "errors"

// STUB: replaced by the real collector.
var filefdSeries = []Series{}

func newFilefd(Options) (Collector, error) { return nil, errors.New("filefd: not written yet") }
