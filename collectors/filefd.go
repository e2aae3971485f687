package collectors

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
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
	f, err := os.Open(c.path)
	if err != nil {
		return procFileErr(c.path, err)
	}
	defer f.Close()
	allocated, maximum, err := parseFileNr(f)
	if err != nil {
		return procFileErr(c.path, err)
	}
	s.Gauge("allocated", float64(allocated))
	s.Gauge("maximum", float64(maximum))
	return nil
}

// parseFileNr reads /proc/sys/fs/file-nr, one line "<allocated> <free> <maximum>". The
// middle field has been 0 since Linux 2.6 (freed handles go straight back), so it is
// checked but not returned.
func parseFileNr(r io.Reader) (allocated, maximum uint64, err error) {
	sc := bufio.NewScanner(r)
	sc.Split(scanKernelLines)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return 0, 0, fmt.Errorf("line 1: %w", err)
		}
		return 0, 0, errEmptyFile
	}
	f := bytes.Fields(sc.Bytes())
	if len(f) != 3 {
		return 0, 0, fmt.Errorf("line 1: want \"allocated free maximum\", got %.60q", sc.Bytes())
	}
	var v [3]uint64
	for i, b := range f {
		if v[i], err = strconv.ParseUint(string(b), 10, 64); err != nil {
			return 0, 0, fmt.Errorf("line 1: field %d: %w", i+1, err)
		}
	}
	return v[0], v[2], nil
}
