package collectors

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"

	"github.com/picket-agent/picket/agent/metric"
)

var filefdSeries = []Series{
	{Path: "filefd.allocated", Kind: metric.Gauge, Help: "file handles allocated now, system-wide (first field of /proc/sys/fs/file-nr)"},
	{Path: "filefd.maximum", Kind: metric.Gauge, Help: "the most file handles the kernel will allocate (fs.file-max)"},
}

type filefdCollector struct {
	path string
}

func newFilefd(o Options) (Collector, error) {
	return &filefdCollector{path: filepath.Join(o.ProcFS, "sys", "fs", "file-nr")}, nil
}

func (c *filefdCollector) Collect(_ context.Context, s *metric.Sink) error {
	v, err := readProcFile(c.path, parseFileNr)
	if err != nil {
		return err
	}
	s.Gauge("allocated", float64(v[0]))
	s.Gauge("maximum", float64(v[2]))
	return nil
}

// parseFileNr reads /proc/sys/fs/file-nr, one line "<allocated> <free> <maximum>". The
// middle field has been 0 since Linux 2.6 (freed handles go straight back) and is not
// reported.
func parseFileNr(r io.Reader) ([3]uint64, error) {
	var v [3]uint64
	f, err := firstLineFields(r, "allocated free maximum")
	if err != nil {
		return v, err
	}
	for i, b := range f {
		if v[i], err = strconv.ParseUint(string(b), 10, 64); err != nil {
			return [3]uint64{}, fmt.Errorf("line 1: field %d: %w", i+1, err)
		}
	}
	return v, nil
}
