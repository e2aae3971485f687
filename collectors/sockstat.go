package collectors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/picket-agent/picket/agent/metric"
)

var sockstatSeries = []Series{
	{Path: "sockstat.sockets.used", Kind: metric.Gauge, Help: "sockets allocated, all families"},
	{Path: "sockstat.<proto>.inuse", Kind: metric.Gauge, Help: "sockets in use (proto: tcp, udp, udplite, raw, frag, and tcp6… from sockstat6)"},
	{Path: "sockstat.<proto>.orphan", Kind: metric.Gauge, Help: "TCP sockets no longer attached to a file descriptor"},
	{Path: "sockstat.<proto>.tw", Kind: metric.Gauge, Help: "TCP sockets in TIME-WAIT"},
	{Path: "sockstat.<proto>.alloc", Kind: metric.Gauge, Help: "TCP sockets allocated, including those not yet or no longer in use"},
	{Path: "sockstat.<proto>.mem_bytes", Kind: metric.Gauge, Unit: "bytes", Help: "memory the protocol's sockets hold (TCP, UDP), counted by the kernel in pages"},
	{Path: "sockstat.<proto>.memory_bytes", Kind: metric.Gauge, Unit: "bytes", Help: "memory held by IP fragments awaiting reassembly"},
}

type sockstatCollector struct {
	v4, v6   string
	pageSize float64
}

func newSockstat(o Options) (Collector, error) {
	ps := o.pageSize
	if ps == 0 {
		ps = os.Getpagesize()
	}
	return &sockstatCollector{
		v4:       filepath.Join(o.ProcFS, "net", "sockstat"),
		v6:       filepath.Join(o.ProcFS, "net", "sockstat6"),
		pageSize: float64(ps),
	}, nil
}

// Collect reads /proc/net/sockstat and, when IPv6 is on, /proc/net/sockstat6. procfs
// parses both, but drops a whole file for one bad line and reports a missing "used" as 0.
func (c *sockstatCollector) Collect(_ context.Context, s *metric.Sink) error {
	v4, err4 := readProcFile(c.v4, parseSockstat)
	c.add(s, v4)
	v6, err6 := readProcFile(c.v6, parseSockstat)
	if errors.Is(err6, fs.ErrNotExist) {
		// A kernel booted with ipv6.disable=1 has no sockstat6.
		err6 = nil
	}
	c.add(s, v6)
	return errors.Join(err4, err6)
}

func (c *sockstatCollector) add(s *metric.Sink, lines []sockstatLine) {
	for _, ln := range lines {
		l := []metric.Label{{Key: "proto", Value: ln.proto}}
		for i, k := range ln.keys {
			v := float64(ln.values[i])
			switch k {
			case "used", "inuse", "orphan", "tw", "alloc":
				s.Gauge(k, v, l...)
			case "mem":
				s.Gauge("mem_bytes", v*c.pageSize, l...)
			case "memory":
				// FRAG's memory is counted in bytes already.
				s.Gauge("memory_bytes", v, l...)
			}
			// A key of a newer kernel is left out until it is documented above.
		}
	}
}

// sockstatLine is one line of /proc/net/sockstat: "TCP: inuse 57 orphan 2 …".
type sockstatLine struct {
	proto  string // lower case: tcp, udp6, sockets
	keys   []string
	values []uint64
}

// parseSockstat parses /proc/net/sockstat or sockstat6, each line a protocol and pairs of
// key and value. It returns the lines parsed before the first bad one with the error.
func parseSockstat(r io.Reader) ([]sockstatLine, error) {
	var lines []sockstatLine
	err := scanLines(r, func(line []byte) error {
		f := strings.Fields(string(line))
		proto, ok := "", false
		if len(f) > 0 {
			proto, ok = strings.CutSuffix(f[0], ":")
		}
		if !ok || proto == "" || len(f) < 3 || len(f)%2 == 0 {
			return fmt.Errorf("want \"PROTO: key value …\", got %.60q", line)
		}
		ln := sockstatLine{proto: strings.ToLower(proto), keys: make([]string, 0, len(f)/2), values: make([]uint64, 0, len(f)/2)}
		for i := 1; i < len(f); i += 2 {
			v, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return fmt.Errorf("%s %s %q: %w", proto, f[i], f[i+1], errors.Unwrap(err))
			}
			ln.keys = append(ln.keys, f[i])
			ln.values = append(ln.values, v)
		}
		lines = append(lines, ln)
		return nil
	})
	return lines, err
}
