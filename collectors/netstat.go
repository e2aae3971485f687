package collectors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/picket-agent/picket/agent/metric"
)

// netstatSeries states the kind rule: every field of the reported tables is a counter,
// except those in netstatSpecial: settings and current values, which are gauges, and the
// values the kernel keeps in milliseconds, scaled to seconds and suffixed _seconds.
var netstatSeries = []Series{
	{Path: "netstat.<proto>.<field>", Kind: metric.Counter,
		Help: "every field of the Ip, Icmp, Tcp, Udp, UdpLite tables of /proc/net/snmp and the IpExt, TcpExt tables of /proc/net/netstat, as the kernel counts it; table and field in snake_case, acronyms kept whole (tcp.active_opens, tcp_ext.listen_drops, tcp_ext.delayed_acks, tcp_ext.tcp_sack_reneging). All are counters but the settings and current values below"},
	{Path: "netstat.ip.forwarding", Kind: metric.Gauge, Help: "1 when the host forwards IPv4, 2 when it does not"},
	{Path: "netstat.ip.default_ttl", Kind: metric.Gauge, Help: "TTL of outgoing IPv4 packets"},
	{Path: "netstat.tcp.curr_estab", Kind: metric.Gauge, Help: "TCP connections now ESTABLISHED or CLOSE-WAIT"},
	{Path: "netstat.tcp.rto_algorithm", Kind: metric.Gauge, Help: "retransmission timeout algorithm (1: other, Linux)"},
	{Path: "netstat.tcp.rto_min_seconds", Kind: metric.Gauge, Unit: "seconds", Help: "smallest retransmission timeout"},
	{Path: "netstat.tcp.rto_max_seconds", Kind: metric.Gauge, Unit: "seconds", Help: "largest retransmission timeout"},
	{Path: "netstat.tcp.max_conn", Kind: metric.Gauge, Help: "TCP connection limit, -1 for none"},
	{Path: "netstat.tcp_ext.tcp_memory_pressures_chrono_seconds", Kind: metric.Counter, Unit: "seconds", Help: "time TCP spent under memory pressure"},
}

// netstatField says how one field other than a plain counter is reported: its value is
// divided by div (1000 for milliseconds, a division keeps 200 ms at exactly 0.2 s).
type netstatField struct {
	name string
	kind metric.Kind
	div  float64
}

// netstatKey is a field as the kernel names it: table and field.
type netstatKey struct{ table, field string }

// netstatSpecial is keyed by the kernel's table and field; a struct key, not "Table.Field",
// so that the lookup for each of some 300 fields a tick builds no string.
var netstatSpecial = map[netstatKey]netstatField{
	{"Ip", "Forwarding"}:                   {"forwarding", metric.Gauge, 1},
	{"Ip", "DefaultTTL"}:                   {"default_ttl", metric.Gauge, 1},
	{"Tcp", "CurrEstab"}:                   {"curr_estab", metric.Gauge, 1},
	{"Tcp", "RtoAlgorithm"}:                {"rto_algorithm", metric.Gauge, 1},
	{"Tcp", "RtoMin"}:                      {"rto_min_seconds", metric.Gauge, 1000},
	{"Tcp", "RtoMax"}:                      {"rto_max_seconds", metric.Gauge, 1000},
	{"Tcp", "MaxConn"}:                     {"max_conn", metric.Gauge, 1},
	{"TcpExt", "TCPMemoryPressuresChrono"}: {"tcp_memory_pressures_chrono_seconds", metric.Counter, 1000},
}

// netstatTables are the tables reported. IcmpMsg is left out: its fields (InType3…) come
// and go with the ICMP types seen; MPTcpExt belongs to MPTCP, rarely used.
var netstatTables = map[string]bool{
	"Ip": true, "IpExt": true, "Icmp": true, "Tcp": true, "TcpExt": true, "Udp": true, "UdpLite": true,
}

type netstatCollector struct {
	snmp, netstat string
	names         fieldNames
}

func newNetstat(o Options) (Collector, error) {
	return &netstatCollector{
		snmp:    filepath.Join(o.ProcFS, "net", "snmp"),
		netstat: filepath.Join(o.ProcFS, "net", "netstat"),
		names:   fieldNames{},
	}, nil
}

// Collect reads /proc/net/snmp and /proc/net/netstat. procfs parses both, but into fixed
// structs that drop the fields newer kernels add.
func (c *netstatCollector) Collect(_ context.Context, s *metric.Sink) error {
	return errors.Join(c.collectFile(c.snmp, s), c.collectFile(c.netstat, s))
}

func (c *netstatCollector) collectFile(path string, s *metric.Sink) error {
	tables, err := readProcFile(path, parseNetstat)
	errs := []error{err}
	for _, t := range tables {
		if !netstatTables[t.proto] {
			continue
		}
		l := []metric.Label{{Key: "proto", Value: c.names.get(t.proto)}}
		for i, name := range t.names {
			if sp, ok := netstatSpecial[netstatKey{t.proto, name}]; ok {
				if sp.kind == metric.Gauge {
					s.Gauge(sp.name, t.values[i]/sp.div, l...)
				} else {
					s.Counter(sp.name, t.values[i]/sp.div, l...)
				}
				continue
			}
			field := c.names.get(name)
			if field == "" {
				errs = append(errs, fmt.Errorf("parsing %s: %s field %q has no letters or digits", path, t.proto, name))
				continue
			}
			s.Counter(field, t.values[i], l...)
		}
	}
	return errors.Join(errs...)
}

// netstatTable is one table of /proc/net/snmp or /proc/net/netstat.
type netstatTable struct {
	proto  string
	names  []string
	values []float64
}

// parseNetstat parses the format /proc/net/snmp and /proc/net/netstat share: each table is
// a line of field names and a line of values, both starting with "Table:". It returns the
// tables parsed before the first bad one with the error.
func parseNetstat(r io.Reader) ([]netstatTable, error) {
	var (
		tables []netstatTable
		names  []string // of the table whose values come next; nil between tables
		n      int
	)
	err := scanLines(r, func(line []byte) error {
		n++
		fields := strings.Fields(string(line))
		if names == nil {
			if len(fields) == 0 {
				return errors.New("empty")
			}
			if proto, ok := strings.CutSuffix(fields[0], ":"); !ok || proto == "" {
				return fmt.Errorf("%q does not start a table", fields[0])
			}
			names = fields
			return nil
		}
		proto := strings.TrimSuffix(names[0], ":")
		if len(fields) == 0 || fields[0] != names[0] {
			return fmt.Errorf("%s values missing", proto)
		}
		if len(fields) != len(names) {
			return fmt.Errorf("%s has %d names but %d values", proto, len(names)-1, len(fields)-1)
		}
		t := netstatTable{proto: proto, names: names[1:], values: make([]float64, len(fields)-1)}
		for i, v := range fields[1:] {
			f, err := parseNetstatValue(v)
			if err != nil {
				return fmt.Errorf("%s %s %q: %w", proto, t.names[i], v, err)
			}
			t.values[i] = f
		}
		tables = append(tables, t)
		names = nil
		return nil
	})
	if err == nil && names != nil {
		err = fmt.Errorf("line %d: %s values missing", n+1, strings.TrimSuffix(names[0], ":"))
	}
	return tables, err
}

// parseNetstatValue parses a decimal integer: the kernel prints counters as unsigned
// longs, and a few settings (Tcp MaxConn) as signed.
func parseNetstatValue(s string) (float64, error) {
	if strings.HasPrefix(s, "-") {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, errors.Unwrap(err)
		}
		return float64(v), nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.Unwrap(err)
	}
	return float64(v), nil
}

// snakeCase turns one of the kernel's CamelCase names into a field name. Every character
// outside [A-Za-z0-9] breaks words, and runs of breaks collapse into one "_", with none at
// either end. A new word also starts at:
//   - an upper-case letter after a lower-case one (ListenDrops → listen_drops);
//   - the last capital of an acronym, or of a number, when lower case follows
//     (IPReversePathFilter → ip_reverse_path_filter, InECT1Pkts → in_ect1_pkts), unless
//     that is a plural "s" ending the word (DelayedACKs → delayed_acks, ReasmOKs →
//     reasm_oks);
//   - a digit after a lower-case letter (DirectMap4k → direct_map_4k, FinWait2 →
//     fin_wait_2); a digit after a capital stays with it (TCPMD5NotFound →
//     tcp_md5_not_found);
//   - the letter after a leading "TCP", which TcpExt runs into the acronym after it
//     (TCPSACKReneging → tcp_sack_reneging).
func snakeCase(name string) string {
	upper := func(c byte) bool { return 'A' <= c && c <= 'Z' }
	lower := func(c byte) bool { return 'a' <= c && c <= 'z' }
	digit := func(c byte) bool { return '0' <= c && c <= '9' }
	b := make([]byte, 0, len(name)+4)
	brk := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		var prev, next, after byte
		if i > 0 {
			prev = name[i-1]
		}
		if i+1 < len(name) {
			next = name[i+1]
		}
		if i+2 < len(name) {
			after = name[i+2]
		}
		switch {
		case upper(c):
			plural := next == 's' && !lower(after)
			if lower(prev) || (upper(prev) || digit(prev)) && lower(next) && !plural ||
				i == 3 && strings.HasPrefix(name, "TCP") {
				brk = true
			}
			c += 'a' - 'A'
		case digit(c):
			if lower(prev) {
				brk = true
			}
		case lower(c):
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

// fieldNames caches snakeCase of the kernel's names, so that a tick converts nothing. A
// kernel file's names are fixed; the bound only guards against one that keeps changing.
type fieldNames map[string]string

// maxFieldNames is several times the ~300 names of /proc/net/snmp and /proc/net/netstat.
const maxFieldNames = 2048

func (n fieldNames) get(name string) string {
	f, ok := n[name]
	if !ok {
		if len(n) >= maxFieldNames {
			clear(n)
		}
		f = snakeCase(name)
		n[name] = f
	}
	return f
}
