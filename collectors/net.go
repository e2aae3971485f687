package collectors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"

	"github.com/picket-agent/picket/agent/metric"
)

// netDevFields are the columns of /proc/net/dev after the interface name, in the kernel's
// order, named after its header (rx_errs, tx_colls), unchanged since Linux 2.6.
var netDevFields = [...]string{
	"rx_bytes", "rx_packets", "rx_errs", "rx_drop", "rx_fifo", "rx_frame", "rx_compressed", "rx_multicast",
	"tx_bytes", "tx_packets", "tx_errs", "tx_drop", "tx_fifo", "tx_colls", "tx_carrier", "tx_compressed",
}

var netSeries = []Series{
	{Path: "net.<iface>.rx_bytes", Kind: metric.Counter, Unit: "bytes", Help: "bytes received"},
	{Path: "net.<iface>.rx_packets", Kind: metric.Counter, Help: "packets received"},
	{Path: "net.<iface>.rx_errs", Kind: metric.Counter, Help: "receive errors reported by the driver"},
	{Path: "net.<iface>.rx_drop", Kind: metric.Counter, Help: "received packets dropped (no buffer, unknown protocol, filtered)"},
	{Path: "net.<iface>.rx_fifo", Kind: metric.Counter, Help: "receive FIFO overruns"},
	{Path: "net.<iface>.rx_frame", Kind: metric.Counter, Help: "receive framing, length and CRC errors"},
	{Path: "net.<iface>.rx_compressed", Kind: metric.Counter, Help: "compressed packets received"},
	{Path: "net.<iface>.rx_multicast", Kind: metric.Counter, Help: "multicast packets received"},
	{Path: "net.<iface>.tx_bytes", Kind: metric.Counter, Unit: "bytes", Help: "bytes transmitted"},
	{Path: "net.<iface>.tx_packets", Kind: metric.Counter, Help: "packets transmitted"},
	{Path: "net.<iface>.tx_errs", Kind: metric.Counter, Help: "transmit errors reported by the driver"},
	{Path: "net.<iface>.tx_drop", Kind: metric.Counter, Help: "packets dropped before transmission"},
	{Path: "net.<iface>.tx_fifo", Kind: metric.Counter, Help: "transmit FIFO errors"},
	{Path: "net.<iface>.tx_colls", Kind: metric.Counter, Help: "collisions detected while transmitting"},
	{Path: "net.<iface>.tx_carrier", Kind: metric.Counter, Help: "carrier losses while transmitting"},
	{Path: "net.<iface>.tx_compressed", Kind: metric.Counter, Help: "compressed packets transmitted"},
}

type netCollector struct {
	path   string
	filter deviceFilter
}

func newNet(o Options) (Collector, error) {
	f, err := newDeviceFilter("collector.net.device", o.NetInclude, o.NetExclude)
	if err != nil {
		return nil, err
	}
	return &netCollector{path: filepath.Join(o.ProcFS, "net", "dev"), filter: f}, nil
}

// Collect reads /proc/net/dev. procfs has a parser for it, but one that indexes the
// columns without counting them first and so panics on a short line.
func (c *netCollector) Collect(_ context.Context, s *metric.Sink) error {
	devs, err := readProcFile(c.path, parseNetDev)
	for _, d := range devs {
		if !c.filter.keep(d.name) {
			continue
		}
		l := []metric.Label{{Key: "iface", Value: d.name}}
		for i, v := range d.values {
			s.Counter(netDevFields[i], float64(v), l...)
		}
	}
	return err
}

// netDev is one interface's line of /proc/net/dev.
type netDev struct {
	name   string
	values [len(netDevFields)]uint64
}

// parseNetDev parses /proc/net/dev: two header lines, then "name: 16 counters" per
// interface. It returns the lines parsed before the first bad one with the error.
func parseNetDev(r io.Reader) ([]netDev, error) {
	var devs []netDev
	n := 0
	err := scanLines(r, func(line []byte) error {
		if n++; n <= 2 {
			return nil
		}
		// The name can itself contain ':' (an alias like eth0:1), the counters cannot.
		i := bytes.LastIndexByte(line, ':')
		if i < 0 {
			return errors.New("no colon after the interface name")
		}
		d := netDev{name: string(bytes.TrimSpace(line[:i]))}
		if d.name == "" {
			return errors.New("empty interface name")
		}
		fields := bytes.Fields(line[i+1:])
		if len(fields) != len(d.values) {
			return fmt.Errorf("%d counters for %s, want %d", len(fields), d.name, len(d.values))
		}
		for j, f := range fields {
			v, err := strconv.ParseUint(string(f), 10, 64)
			if err != nil {
				return fmt.Errorf("%s %s %q: %w", d.name, netDevFields[j], f, errors.Unwrap(err))
			}
			d.values[j] = v
		}
		devs = append(devs, d)
		return nil
	})
	return devs, err
}
