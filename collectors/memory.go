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

	"github.com/picket-agent/picket/agent/metric"
)

var memorySeries = []Series{
	{Path: "memory.<field>", Kind: metric.Gauge, Unit: "bytes",
		Help: "every kB field of /proc/meminfo, in bytes, named in snake_case: a word break before an upper-case letter that follows a lower-case one or starts a word after an acronym, before a digit that follows a letter, and for any other character; letters after a digit stay attached (MemTotal mem_total, Active(anon) active_anon, KReclaimable k_reclaimable, NFS_Unstable nfs_unstable, DirectMap2M direct_map_2m)"},
	{Path: "memory.huge_pages_total", Kind: metric.Gauge, Help: "huge pages in the pool (HugePages_Total), a count of pages of Hugepagesize"},
	{Path: "memory.huge_pages_free", Kind: metric.Gauge, Help: "huge pages not yet allocated (HugePages_Free)"},
	{Path: "memory.huge_pages_rsvd", Kind: metric.Gauge, Help: "huge pages reserved but not yet faulted in (HugePages_Rsvd)"},
	{Path: "memory.huge_pages_surp", Kind: metric.Gauge, Help: "huge pages above the pool size, from overcommit (HugePages_Surp)"},
}

type memoryCollector struct {
	path string
	// names caches meminfo keys turned into field names, so a tick converts nothing. The
	// kernel's key set is fixed; the bound only guards against a file that keeps changing.
	names map[string]string
}

// maxMeminfoNames bounds memoryCollector.names at several times the kernel's ~60 keys.
const maxMeminfoNames = 512

func newMemory(o Options) (Collector, error) {
	return &memoryCollector{path: filepath.Join(o.ProcFS, "meminfo"), names: map[string]string{}}, nil
}

func (c *memoryCollector) Collect(_ context.Context, s *metric.Sink) error {
	f, err := os.Open(c.path)
	if err != nil {
		return procFileErr(c.path, err)
	}
	defer f.Close()
	fields, err := parseMeminfo(f)
	for _, fl := range fields {
		name, ok := c.names[fl.Name]
		if !ok {
			if len(c.names) >= maxMeminfoNames {
				clear(c.names)
			}
			name = meminfoName(fl.Name)
			c.names[fl.Name] = name
		}
		if name == "" {
			err = errors.Join(err, fmt.Errorf("key %q has no letters or digits", fl.Name))
			continue
		}
		s.Gauge(name, fl.Value)
	}
	if err != nil {
		return procFileErr(c.path, err)
	}
	return nil
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
	sc := bufio.NewScanner(r)
	sc.Split(scanKernelLines)
	n := 0
	for sc.Scan() {
		n++
		key, rest, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		vu := bytes.Fields(rest)
		if !ok || len(key) == 0 || len(vu) < 1 || len(vu) > 2 {
			return fields, fmt.Errorf("line %d: want \"Key: value [kB]\", got %.60q", n, sc.Bytes())
		}
		v, err := strconv.ParseUint(string(vu[0]), 10, 64)
		if err != nil {
			return fields, fmt.Errorf("line %d: %s: %w", n, key, err)
		}
		f := meminfoField{Name: string(key), Value: float64(v)}
		if len(vu) == 2 {
			if string(vu[1]) != "kB" {
				return fields, fmt.Errorf("line %d: %s: unit %.20q is not kB", n, key, vu[1])
			}
			f.Value *= 1024
		}
		fields = append(fields, f)
	}
	if err := sc.Err(); err != nil {
		return fields, fmt.Errorf("line %d: %w", n+1, err)
	}
	if n == 0 {
		return nil, errEmptyFile
	}
	return fields, nil
}

// meminfoName turns a meminfo key into snake_case (the rule is in memorySeries). Every
// character outside [A-Za-z0-9] breaks words, and runs of breaks collapse into one "_".
func meminfoName(key string) string {
	b := make([]byte, 0, len(key)+4)
	brk := false
	for i := 0; i < len(key); i++ {
		c := key[i]
		var prev, next byte
		if i > 0 {
			prev = key[i-1]
		}
		if i+1 < len(key) {
			next = key[i+1]
		}
		switch {
		case isUpperASCII(c):
			if isLowerASCII(prev) || isUpperASCII(prev) && isLowerASCII(next) {
				brk = true
			}
			c += 'a' - 'A'
		case '0' <= c && c <= '9':
			if isLowerASCII(prev) || isUpperASCII(prev) {
				brk = true
			}
		case isLowerASCII(c):
		default:
			brk = true
			continue
		}
		if brk && len(b) > 0 {
			b = append(b, '_')
		}
		brk = false
		b = append(b, c)
	}
	return string(b)
}

func isUpperASCII(c byte) bool { return 'A' <= c && c <= 'Z' }
func isLowerASCII(c byte) bool { return 'a' <= c && c <= 'z' }

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
