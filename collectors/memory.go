package collectors

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/picket-agent/picket/agent/metric"
)

var memorySeries = []Series{
	{Path: "memory.<field>", Kind: metric.Gauge, Unit: "bytes",
		Help: "every kB field of /proc/meminfo, in bytes, named in snake_case: a word break before an upper-case letter that follows a lower-case one or starts a word after an acronym, before a digit that follows a lower-case letter, and for any other character (MemTotal mem_total, Active(anon) active_anon, KReclaimable k_reclaimable, NFS_Unstable nfs_unstable, DirectMap2M direct_map_2m)"},
	{Path: "memory.huge_pages_total", Kind: metric.Gauge, Help: "huge pages in the pool (HugePages_Total), a count of pages of Hugepagesize"},
	{Path: "memory.huge_pages_free", Kind: metric.Gauge, Help: "huge pages not yet allocated (HugePages_Free)"},
	{Path: "memory.huge_pages_rsvd", Kind: metric.Gauge, Help: "huge pages reserved but not yet faulted in (HugePages_Rsvd)"},
	{Path: "memory.huge_pages_surp", Kind: metric.Gauge, Help: "huge pages above the pool size, from overcommit (HugePages_Surp)"},
}

type memoryCollector struct {
	path  string
	names fieldNames
}

func newMemory(o Options) (Collector, error) {
	return &memoryCollector{path: filepath.Join(o.ProcFS, "meminfo"), names: fieldNames{}}, nil
}

func (c *memoryCollector) Collect(_ context.Context, s *metric.Sink) error {
	fields, err := readProcFile(c.path, parseMeminfo)
	errs := []error{err}
	for _, fl := range fields {
		name := c.names.get(fl.Name)
		if name == "" {
			errs = append(errs, fmt.Errorf("parsing %s: key %q has no letters or digits", c.path, fl.Name))
			continue
		}
		s.Gauge(name, fl.Value)
	}
	return errors.Join(errs...)
}

// meminfoField is one line of /proc/meminfo: the kernel's key and the value in base units.
type meminfoField struct {
	Name  string
	Value float64
}

// parseMeminfo reads /proc/meminfo lines "Key:   value kB" or "Key:   value", the first
// in bytes, the second a plain count. It stops at the first bad line and returns the fields
// before it with the error, so the caller can keep them.
func parseMeminfo(r io.Reader) ([]meminfoField, error) {
	var fields []meminfoField
	err := scanLines(r, func(line []byte) error {
		key, rest, ok := bytes.Cut(line, []byte(":"))
		vu := bytes.Fields(rest)
		if !ok || len(key) == 0 || len(vu) < 1 || len(vu) > 2 {
			return fmt.Errorf("want \"Key: value [kB]\", got %.60q", line)
		}
		v, err := strconv.ParseUint(string(vu[0]), 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		f := meminfoField{Name: string(key), Value: float64(v)}
		if len(vu) == 2 {
			if string(vu[1]) != "kB" {
				return fmt.Errorf("%s: unit %.20q is not kB", key, vu[1])
			}
			f.Value *= 1024
		}
		fields = append(fields, f)
		return nil
	})
	return fields, err
}

// The kernel's text files under /proc are read with the helpers below: readProcFile opens
// one and names it in any error, scanLines walks its lines, firstLineFields splits a
// one-line file.

// readProcFile opens path and hands it to parse. What parse returns is kept with its
// error, so the caller can add the values read before a bad line; the error names path
// once, "reading" for I/O and "parsing" for content (procFileErr).
func readProcFile[T any](path string, parse func(io.Reader) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, procFileErr(path, err)
	}
	defer f.Close()
	v, err := parse(f)
	if err != nil {
		return v, procFileErr(path, err)
	}
	return v, nil
}

// scanLines calls fn with each line of r, a file the kernel writes, without its newline;
// the line is only valid during the call. It stops at fn's first error, at a read error
// and at a last line without a newline (the file was cut short), and returns that error
// prefixed with the line number. A file without a single line is errEmptyFile: every
// file read this way has at least one.
func scanLines(r io.Reader, fn func(line []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Split(scanKernelLines)
	n := 0
	for sc.Scan() {
		n++
		if err := fn(sc.Bytes()); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", n+1, err)
	}
	if n == 0 {
		return errEmptyFile
	}
	return nil
}

// firstLineFields returns the fields of the first line of r, a one-line file the kernel
// writes. layout names the fields, space-separated ("uptime idle"): there must be exactly
// that many.
func firstLineFields(r io.Reader, layout string) ([][]byte, error) {
	var fields [][]byte
	err := scanLines(r, func(line []byte) error {
		if fields != nil {
			return nil
		}
		// Cloned: the scanner reuses line's bytes for the next line.
		if fields = bytes.Fields(bytes.Clone(line)); len(fields) != strings.Count(layout, " ")+1 {
			return fmt.Errorf("want %q, got %.60q", layout, line)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return fields, nil
}

// errEmptyFile is a source file with no lines at all.
var errEmptyFile = errors.New("empty file")

// errNoNewline is a last line that does not end in a newline.
var errNoNewline = errors.New("no newline at end: file truncated")

// scanKernelLines is bufio.ScanLines for files the kernel writes: each line of those ends
// in "\n", so a last line without one means the file was cut short, and is an error
// instead of a value that silently lost digits.
func scanKernelLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return 0, nil, errNoNewline
	}
	return 0, nil, nil
}
