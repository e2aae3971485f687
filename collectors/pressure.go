package collectors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/picket-agent/picket/agent/metric"
)

var pressureSeries = []Series{
	{Path: "pressure.<resource>.some_seconds", Kind: metric.Counter, Unit: "seconds",
		Help: "time at least one task stalled waiting for the resource (cpu, memory, io) since boot, from /proc/pressure/<resource> total="},
	{Path: "pressure.<resource>.full_seconds", Kind: metric.Counter, Unit: "seconds",
		Help: "time all non-idle tasks stalled at once on the resource (cpu, memory, io, irq); irq has only this line"},
}

// pressureResources are the files of /proc/pressure. irq needs CONFIG_IRQ_TIME_ACCOUNTING
// and is absent on many kernels; a missing file is left out.
var pressureResources = [...]string{"cpu", "io", "irq", "memory"}

type pressureCollector struct {
	dir    string
	files  [len(pressureResources)]string
	labels [len(pressureResources)][]metric.Label
}

func newPressure(o Options) (Collector, error) {
	c := &pressureCollector{dir: filepath.Join(o.ProcFS, "pressure")}
	for i, r := range pressureResources {
		c.files[i] = filepath.Join(c.dir, r)
		c.labels[i] = []metric.Label{{Key: "resource", Value: r}}
	}
	return c, nil
}

func (c *pressureCollector) Collect(_ context.Context, s *metric.Sink) error {
	// The kernel creates /proc/pressure only when PSI is built in and not disabled with psi=0.
	if _, err := os.Stat(c.dir); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", c.dir, ErrNoData)
	}
	var errs []error
	found := false
	for i, path := range c.files {
		t, err := readProcFile(path, parsePSI)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		found = true
		errs = append(errs, err)
		// total= is in microseconds.
		if t.hasSome {
			s.Counter("some_seconds", float64(t.some)/1e6, c.labels[i]...)
		}
		if t.hasFull {
			s.Counter("full_seconds", float64(t.full)/1e6, c.labels[i]...)
		}
	}
	if !found {
		return fmt.Errorf("reading %s: no resource files: %w", c.dir, ErrNoData)
	}
	return errors.Join(errs...)
}

// psiTotals are the total= values of a /proc/pressure file, in microseconds.
type psiTotals struct {
	some, full       uint64
	hasSome, hasFull bool
}

// parsePSI parses a /proc/pressure file: a "some" and a "full" line (irq has only the
// second), each "avg10=… avg60=… avg300=… total=<µs>". Only total is read: the averages
// are the kernel's own rates. procfs has a parser for it, but one that reads a last line
// cut short inside total as a smaller total. It returns what it parsed before the first
// bad line with the error.
func parsePSI(r io.Reader) (psiTotals, error) {
	var t psiTotals
	err := scanLines(r, func(line []byte) error {
		kind, rest, _ := bytes.Cut(line, []byte(" "))
		var total *uint64
		var has *bool
		switch string(kind) {
		case "some":
			total, has = &t.some, &t.hasSome
		case "full":
			total, has = &t.full, &t.hasFull
		default:
			// A line of a newer kernel.
			return nil
		}
		for _, kv := range bytes.Fields(rest) {
			if v, ok := bytes.CutPrefix(kv, []byte("total=")); ok {
				n, err := strconv.ParseUint(string(v), 10, 64)
				if err != nil {
					return fmt.Errorf("%s total: %w", kind, err)
				}
				*total, *has = n, true
				return nil
			}
		}
		return fmt.Errorf("%s: no total= in %.60q", kind, line)
	})
	if err == nil && !t.hasSome && !t.hasFull {
		err = errors.New("no some or full line")
	}
	return t, err
}
