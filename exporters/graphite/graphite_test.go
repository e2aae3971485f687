package graphite

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/agent/metric/metrictest"
)

func TestAppendNode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"clean", "rx_bytes", "rx_bytes"},
		{"dash", "guest-nice", "guest-nice"},
		{"vlan dot", "eth0.100", "eth0_100"},
		{"path", "/var/lib", "_var_lib"},
		{"root", "/", "_"},
		{"empty", "", "_"},
		{"space", "a b", "a_b"},
		{"graphite specials", "a;b~c=d!e^f*g", "a_b_c_d_e_f_g"},
		{"control", "a\nb\x00c\x7f", "a_b_c_"},
		{"two-byte rune", "café", "caf_"},
		{"three-byte rune", "日本", "__"},
		{"four-byte rune", "x😀y", "x_y"},
		{"invalid utf-8 bytes", "a\xff\xfeb", "a__b"},
		{"truncated rune", "a\xe6\x97", "a__"},
		{"dots only", "..", "__"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := string(AppendNode([]byte("keep."), tc.in))
			if want := "keep." + tc.want; got != want {
				t.Errorf("AppendNode(%q) = %q, want %q", tc.in, got, want)
			}
			if ref := "keep." + refNode(tc.in); got != ref {
				t.Errorf("AppendNode(%q) = %q, reference sanitizer gives %q", tc.in, got, ref)
			}
		})
	}
}

var (
	cpuLabel   = []metric.Label{{Key: "cpu", Value: "0"}}
	cgroupPath = []metric.Label{{Key: "cgroup", Value: "/system.slice/nginx.service", Named: true}}
)

func TestAppendPlain(t *testing.T) {
	t.Parallel()
	const ts = 1700000000
	for _, tc := range []struct {
		name, prefix, host string
		s                  metric.Sample
		want               string // "" means dropped
	}{
		{"no labels", "hosts", "web1", metric.Sample{Collector: "load", Field: "load1", Value: 0.25},
			"hosts.web1.load.load1 0.25 1700000000\n"},
		{"label", "hosts", "web1", metric.Sample{Collector: "cpu", Labels: cpuLabel, Field: "user", Value: 1234.5},
			"hosts.web1.cpu.0.user 1234.5 1700000000\n"},
		{"vlan interface", "hosts", "web1", metric.Sample{Collector: "net", Labels: []metric.Label{{Key: "iface", Value: "eth0.100"}}, Field: "rx_bytes", Value: 42},
			"hosts.web1.net.eth0_100.rx_bytes 42 1700000000\n"},
		{"named label", "hosts", "web1", metric.Sample{Collector: "oom", Labels: cgroupPath, Field: "kills", Value: 3},
			"hosts.web1.oom.cgroup._system_slice_nginx_service.kills 3 1700000000\n"},
		{"two labels", "hosts", "web1", metric.Sample{Collector: "runqlat", Labels: []metric.Label{{Key: "cgroup", Value: "db", Named: true}, {Key: "le", Value: "le_8us"}}, Field: "count", Value: 7},
			"hosts.web1.runqlat.cgroup.db.le_8us.count 7 1700000000\n"},
		{"mount slash", "hosts", "web1", metric.Sample{Collector: "fs", Labels: []metric.Label{{Key: "mount", Value: "/"}}, Field: "free_bytes", Value: 1 << 30},
			"hosts.web1.fs._.free_bytes 1073741824 1700000000\n"},
		{"odd names", "hosts", "web 1", metric.Sample{Collector: "my coll", Labels: []metric.Label{{Key: "k", Value: "a;b=c"}, {Key: "", Value: "", Named: true}}, Field: "größe", Value: 1},
			"hosts.web_1.my_coll.a_b_c._._.gr__e 1 1700000000\n"},
		{"empty collector and field", "hosts", "", metric.Sample{Value: 1},
			"hosts._._._ 1 1700000000\n"},
		{"prefix with dots", "0123abcd-key.hosts", "web1", metric.Sample{Collector: "load", Field: "load1", Value: 1},
			"0123abcd-key.hosts.web1.load.load1 1 1700000000\n"},
		{"prefix nodes sanitized", "my key.hosts..x", "web1", metric.Sample{Collector: "load", Field: "load1", Value: 1},
			"my_key.hosts._.x.web1.load.load1 1 1700000000\n"},
		{"prefix leading and trailing dots", ".hosts.", "web1", metric.Sample{Collector: "load", Field: "load1", Value: 1},
			"_.hosts._.web1.load.load1 1 1700000000\n"},
		{"prefix only a dot", ".", "web1", metric.Sample{Collector: "load", Field: "load1", Value: 1},
			"_._.web1.load.load1 1 1700000000\n"},
		{"empty prefix", "", "web1", metric.Sample{Collector: "load", Field: "load1", Value: 1},
			"web1.load.load1 1 1700000000\n"},
		{"fqdn host", "hosts", "web1.example.com", metric.Sample{Collector: "load", Field: "load1", Value: 1},
			"hosts.web1_example_com.load.load1 1 1700000000\n"},
		{"negative", "p", "h", metric.Sample{Collector: "c", Field: "f", Value: -17}, "p.h.c.f -17 1700000000\n"},
		{"negative float", "p", "h", metric.Sample{Collector: "c", Field: "f", Value: -0.5}, "p.h.c.f -0.5 1700000000\n"},
		{"negative zero", "p", "h", metric.Sample{Collector: "c", Field: "f", Value: math.Copysign(0, -1)}, "p.h.c.f 0 1700000000\n"},
		{"largest exact integer", "p", "h", metric.Sample{Collector: "c", Field: "f", Value: 1<<53 - 1}, "p.h.c.f 9007199254740991 1700000000\n"},
		{"2^53", "p", "h", metric.Sample{Collector: "c", Field: "f", Value: 1 << 53}, "p.h.c.f 9.007199254740992e+15 1700000000\n"},
		{"huge", "p", "h", metric.Sample{Collector: "c", Field: "f", Value: 1e21}, "p.h.c.f 1e+21 1700000000\n"},
		{"max float", "p", "h", metric.Sample{Collector: "c", Field: "f", Value: math.MaxFloat64}, "p.h.c.f 1.7976931348623157e+308 1700000000\n"},
		{"tiny", "p", "h", metric.Sample{Collector: "c", Field: "f", Value: 1.5e-7}, "p.h.c.f 1.5e-07 1700000000\n"},
		{"smallest denormal", "p", "h", metric.Sample{Collector: "c", Field: "f", Value: 5e-324}, "p.h.c.f 5e-324 1700000000\n"},
		{"NaN dropped", "p", "h", metric.Sample{Collector: "c", Field: "f", Value: math.NaN()}, ""},
		{"+Inf dropped", "p", "h", metric.Sample{Collector: "c", Field: "f", Value: math.Inf(1)}, ""},
		{"-Inf dropped", "p", "h", metric.Sample{Collector: "c", Field: "f", Value: math.Inf(-1)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := AppendPlain([]byte("before\n"), tc.prefix, tc.host, &tc.s, ts)
			if ok != (tc.want != "") {
				t.Fatalf("ok = %v, want %v", ok, tc.want != "")
			}
			if want := "before\n" + tc.want; string(got) != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestAppendTagged(t *testing.T) {
	t.Parallel()
	const ts = 1700000000
	for _, tc := range []struct {
		name, host string
		s          metric.Sample
		want       string // "" means dropped
	}{
		{"no labels", "web1", metric.Sample{Collector: "load", Field: "load1", Value: 0.25},
			"load.load1;host=web1 0.25 1700000000\n"},
		{"label", "web1", metric.Sample{Collector: "cpu", Labels: cpuLabel, Field: "user", Value: 12},
			"cpu.user;host=web1;cpu=0 12 1700000000\n"},
		{"named label is a tag too", "web1", metric.Sample{Collector: "oom", Labels: cgroupPath, Field: "kills", Value: 3},
			"oom.kills;host=web1;cgroup=_system_slice_nginx_service 3 1700000000\n"},
		{"label order kept", "web1", metric.Sample{Collector: "runqlat", Labels: []metric.Label{{Key: "le", Value: "8"}, {Key: "cgroup", Value: "db", Named: true}}, Field: "count", Value: 7},
			"runqlat.count;host=web1;le=8;cgroup=db 7 1700000000\n"},
		{"tag specials", "web1.example.com", metric.Sample{Collector: "net", Labels: []metric.Label{{Key: "if ace", Value: "~a;b=c!d^"}}, Field: "rx.bytes", Value: 1},
			"net.rx_bytes;host=web1_example_com;if_ace=_a_b_c_d_ 1 1700000000\n"},
		{"empty tag", "", metric.Sample{Collector: "c", Labels: []metric.Label{{}}, Field: "f", Value: 1},
			"c.f;host=_;_=_ 1 1700000000\n"},
		{"unicode", "h", metric.Sample{Collector: "c", Labels: []metric.Label{{Key: "k", Value: "naïve"}}, Field: "f", Value: 1},
			"c.f;host=h;k=na_ve 1 1700000000\n"},
		{"float", "h", metric.Sample{Collector: "c", Field: "f", Value: 1e-300}, "c.f;host=h 1e-300 1700000000\n"},
		{"negative zero", "h", metric.Sample{Collector: "c", Field: "f", Value: math.Copysign(0, -1)}, "c.f;host=h 0 1700000000\n"},
		{"NaN dropped", "h", metric.Sample{Collector: "c", Field: "f", Value: math.NaN()}, ""},
		{"+Inf dropped", "h", metric.Sample{Collector: "c", Field: "f", Value: math.Inf(1)}, ""},
		{"-Inf dropped", "h", metric.Sample{Collector: "c", Field: "f", Value: math.Inf(-1)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := AppendTagged([]byte("before\n"), tc.host, &tc.s, ts)
			if ok != (tc.want != "") {
				t.Fatalf("ok = %v, want %v", ok, tc.want != "")
			}
			if want := "before\n" + tc.want; string(got) != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestAppendRelayed(t *testing.T) {
	t.Parallel()
	const ts = 1700000000
	graphite := func(path string, value float64, tags ...metric.Label) metric.Sample {
		return metric.Sample{Collector: path, Labels: tags, Value: value, Origin: metric.Graphite}
	}
	influx := func(o metric.Origin, measurement, field string, value float64, tags ...metric.Label) metric.Sample {
		return metric.Sample{Collector: measurement, Labels: tags, Field: field, Value: value, Origin: o}
	}
	tag := func(k, v string) metric.Label { return metric.Label{Key: k, Value: v} }
	many := make([]metric.Label, 10)
	for i := range many {
		many[i] = tag(fmt.Sprintf("k%d", 9-i), fmt.Sprint(i))
	}
	for _, tc := range []struct {
		name, prefix string
		tagged       bool
		s            metric.Sample
		want         string // "" means dropped
	}{
		{"graphite", "", false, graphite("app.web1.requests", 17), "app.web1.requests 17 1700000000\n"},
		{"graphite with prefix", "0123abcd-key", false, graphite("app.requests", 0.5), "0123abcd-key.app.requests 0.5 1700000000\n"},
		{"graphite with a multi-node prefix", "key.relayed", false, graphite("app.requests", 1), "key.relayed.app.requests 1 1700000000\n"},
		{"graphite prefix sanitized", "my key..x", false, graphite("a", 1), "my_key._.x.a 1 1700000000\n"},
		{"graphite verbatim", "", false, graphite("app:v2.req#1.p-99", 1), "app:v2.req#1.p-99 1 1700000000\n"},
		{"graphite tags kept whatever the form", "", false, graphite("app.req", 1, tag("dc", "eu:1"), tag("env", "prod")),
			"app.req;dc=eu:1;env=prod 1 1700000000\n"},
		{"graphite tags in the tagged form", "p", true, graphite("app.req", 1, tag("dc", "eu")), "p.app.req;dc=eu 1 1700000000\n"},
		{"graphite plain in the tagged form", "", true, graphite("app.req", 1), "app.req 1 1700000000\n"},
		{"influx", "", false, influx(metric.InfluxFloat, "http", "p99", 0.125), "http.p99 0.125 1700000000\n"},
		{"influx tags sorted", "", false, influx(metric.InfluxInt, "http", "count", 1<<40, tag("route", "api"), tag("dc", "eu")),
			"http.dc.eu.route.api.count 1099511627776 1700000000\n"},
		{"influx field named value", "", false, influx(metric.InfluxFloat, "app.load", "value", 3, tag("host", "web1")),
			"app.load.host.web1 3 1700000000\n"},
		{"influx dotted measurement", "", false, influx(metric.InfluxUint, "app..db.", "ops", 7), "app._.db._.ops 7 1700000000\n"},
		{"influx ugly names", "key", false, influx(metric.InfluxFloat, "my meas,x", "f=1", 1, tag("mount", "/var/lib"), tag("k ä", "a;b=c")),
			"key.my_meas_x.k__.a_b_c.mount._var_lib.f_1 1 1700000000\n"},
		{"influx empty names", "", false, influx(metric.InfluxFloat, "", "", 1, tag("", "")), "_._._._ 1 1700000000\n"},
		{"influx tagged", "p", true, influx(metric.InfluxFloat, "http", "p99", 0.125, tag("route", "/api"), tag("dc", "eu")),
			"p.http.p99;dc=eu;route=_api 0.125 1700000000\n"},
		{"influx tagged field named value", "", true, influx(metric.InfluxFloat, "app.load", "value", 3, tag("host", "web1")),
			"app.load;host=web1 3 1700000000\n"},
		{"influx tagged name tag", "", true, influx(metric.InfluxInt, "m", "f", -2, tag("name", "x"), tag("a", "b")),
			"m.f;a=b;name_=x -2 1700000000\n"},
		{"influx tagged ugly names", "", true, influx(metric.InfluxFloat, "a b.c", "d.e", 1, tag("k=1", "v;2"), tag("", "")),
			"a_b.c.d_e;_=_;k_1=v_2 1 1700000000\n"},
		{"influx more than 8 tags", "", false, influx(metric.InfluxFloat, "m", "f", 1, many...),
			"m.k0.9.k1.8.k2.7.k3.6.k4.5.k5.4.k6.3.k7.2.k8.1.k9.0.f 1 1700000000\n"},
		{"NaN dropped", "p", false, graphite("a", math.NaN()), ""},
		{"+Inf dropped", "p", true, influx(metric.InfluxFloat, "m", "f", math.Inf(1)), ""},
		{"-Inf dropped", "p", false, influx(metric.InfluxFloat, "m", "f", math.Inf(-1)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			labels := slices.Clone(tc.s.Labels)
			got, ok := AppendRelayed([]byte("before\n"), tc.prefix, tc.tagged, &tc.s, ts)
			if ok != (tc.want != "") {
				t.Fatalf("ok = %v, want %v", ok, tc.want != "")
			}
			if want := "before\n" + tc.want; string(got) != want {
				t.Errorf("got  %q\nwant %q", got, want)
			}
			if !slices.Equal(tc.s.Labels, labels) {
				t.Errorf("labels changed to %v", tc.s.Labels)
			}
		})
	}
}

// relayedSamples returns MixedBatch as the relay would hand it over with origin o: a
// Graphite line named as AppendPlain names the sample after the host, or a field of
// Influx line protocol with the sample's names.
func relayedSamples(o metric.Origin) []metric.Sample {
	samples := metrictest.MixedBatch()
	for i := range samples {
		s := &samples[i]
		if o == metric.Graphite {
			line, _ := AppendPlain(nil, "", "app", s, 0)
			s.Collector, s.Labels, s.Field = string(line[len("app."):bytes.IndexByte(line, ' ')]), nil, ""
		}
		s.Origin = o
	}
	return samples
}

func TestZeroAllocs(t *testing.T) {
	// Not parallel: AllocsPerBatch counts the whole process's allocations.
	for _, tc := range []struct {
		name string
		fn   metrictest.AppendFunc
	}{
		{"plain", func(dst []byte, s *metric.Sample) []byte {
			dst, _ = AppendPlain(dst, "0123abcd.hosts", "web1", s, 1700000000)
			return dst
		}},
		{"tagged", func(dst []byte, s *metric.Sample) []byte {
			dst, _ = AppendTagged(dst, "web1", s, 1700000000)
			return dst
		}},
	} {
		if allocs := metrictest.AllocsPerBatch(tc.fn); allocs != 0 {
			t.Errorf("%s: %v allocations per batch, want 0", tc.name, allocs)
		}
	}
	eight := []metric.Label{{Key: "h", Value: "8"}, {Key: "g", Value: "7"}, {Key: "f", Value: "6"}, {Key: "e", Value: "5"},
		{Key: "d", Value: "4"}, {Key: "c", Value: "3"}, {Key: "b", Value: "2"}, {Key: "a", Value: "1"}}
	for _, o := range []metric.Origin{metric.Graphite, metric.InfluxFloat} {
		samples := relayedSamples(o)
		if o == metric.InfluxFloat {
			samples = append(samples, metric.Sample{Collector: "m", Labels: eight, Field: "f", Value: 1, Origin: o})
		}
		for _, tagged := range []bool{false, true} {
			buf := make([]byte, 0, 1<<20)
			allocs := testing.AllocsPerRun(10, func() {
				buf = buf[:0]
				for i := range samples {
					buf, _ = AppendRelayed(buf, "0123abcd", tagged, &samples[i], 1700000000)
				}
			})
			if allocs != 0 {
				t.Errorf("relayed, origin %d, tagged %v: %v allocations per batch, want 0", o, tagged, allocs)
			}
		}
	}
}

// refNode is an independent statement of the sanitizing rule, for the tests to check
// AppendNode against: range yields one rune per character, and one RuneError per
// invalid byte.
func refNode(s string) string {
	if s == "" {
		return "_"
	}
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// nodeRE is what carbon needs of a path node or tag, stated independently of nodeByte.
var nodeRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// decimalRE is the plain decimal form that every consumer parses, carbon's Python float()
// included: no hex floats, no underscores, no "Inf".
var decimalRE = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?(e[+-][0-9]+)?$`)

// line is one parsed Graphite line: the path nodes, then the tags (tagged form only).
type line struct {
	nodes []string
	tags  [][2]string
	value float64
	ts    int64
}

// parseLine reads exactly one Graphite line, plain or tagged, and checks what carbon needs
// of it: one line, three space-separated parts, no empty or unsanitized node or tag.
func parseLine(b []byte, tagged bool) (line, error) {
	var l line
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return l, errors.New("no trailing newline")
	}
	if n := bytes.Count(b, []byte{'\n'}); n != 1 {
		return l, fmt.Errorf("%d newlines", n)
	}
	parts := strings.Split(string(b[:len(b)-1]), " ")
	if len(parts) != 3 {
		return l, fmt.Errorf("%d space-separated parts, want 3", len(parts))
	}
	name := parts[0]
	if tagged {
		tags := strings.Split(name, ";")
		name = tags[0]
		for _, tag := range tags[1:] {
			k, v, ok := strings.Cut(tag, "=")
			if !ok || !nodeRE.MatchString(k) || !nodeRE.MatchString(v) {
				return l, fmt.Errorf("bad tag %q", tag)
			}
			l.tags = append(l.tags, [2]string{k, v})
		}
	}
	l.nodes = strings.Split(name, ".")
	for _, n := range l.nodes {
		if !nodeRE.MatchString(n) {
			return l, fmt.Errorf("bad node %q", n)
		}
	}
	if !decimalRE.MatchString(parts[1]) {
		return l, fmt.Errorf("value %q is not a plain decimal", parts[1])
	}
	var err error
	if l.value, err = strconv.ParseFloat(parts[1], 64); err != nil {
		return l, err
	}
	if l.ts, err = strconv.ParseInt(parts[2], 10, 64); err != nil {
		return l, err
	}
	return l, nil
}

// before is what dst holds when a fuzz target appends to it.
var before = []byte("previous line\n")

// checkAppend checks what AppendPlain or AppendTagged did to before: kept it, refused a
// non-finite value and wrote nothing, or wrote exactly one line that carbon parses, with
// the sample's value bit for bit (negative zero as zero) and timestamp. It returns that
// line, and whether there is one.
func checkAppend(t *testing.T, got []byte, ok bool, s *metric.Sample, ts int64, tagged bool) (line, bool) {
	t.Helper()
	if !bytes.HasPrefix(got, before) {
		t.Fatalf("dst prefix clobbered: %q", got)
	}
	if !s.Finite() {
		if ok || len(got) != len(before) {
			t.Fatalf("non-finite %v: ok=%v, wrote %q", s.Value, ok, got[len(before):])
		}
		return line{}, false
	}
	if !ok {
		t.Fatalf("finite %v refused", s.Value)
	}
	l, err := parseLine(got[len(before):], tagged)
	if err != nil {
		t.Fatalf("parsing %q: %v", got[len(before):], err)
	}
	want := s.Value
	if want == 0 {
		want = 0 // negative zero is printed as 0
	}
	if math.Float64bits(l.value) != math.Float64bits(want) {
		t.Errorf("value %v (%#x) came back as %v (%#x)", want, math.Float64bits(want), l.value, math.Float64bits(l.value))
	}
	if l.ts != ts {
		t.Errorf("timestamp %d, want %d", l.ts, ts)
	}
	return l, true
}

func fuzzSample(collector, k1, v1 string, named1 bool, k2, v2 string, named2 bool, field string, value float64) *metric.Sample {
	return &metric.Sample{
		Collector: collector,
		Labels:    []metric.Label{{Key: k1, Value: v1, Named: named1}, {Key: k2, Value: v2, Named: named2}},
		Field:     field,
		Value:     value,
	}
}

func addSeeds(f *testing.F) {
	f.Add("hosts", "web1", "cpu", "cpu", "0", false, "", "", false, "user", 1234.5, int64(1700000000))
	f.Add("key.hosts", "web1.example", "oom", "cgroup", "/system.slice/x.service", true, "le", "le_8us", false, "kills", 3.0, int64(0))
	f.Add("", "", "", "", "", true, "", "", true, "", math.Copysign(0, -1), int64(-1))
	f.Add("a..b.", "日本", "c\xff", "k;=", "v~ ", false, "\n", "\x00", true, "f", math.NaN(), int64(math.MaxInt64))
	f.Add("p", "h", "c", "k", "v", false, "k", "v", false, "f", 1e-310, int64(math.MinInt64))
	f.Add("p", "h", "c", "k", "v", false, "k", "v", false, "f", float64(1<<53), int64(1))
}

func FuzzAppendNode(f *testing.F) {
	for _, s := range []string{"", "eth0", "eth0.100", "/var/lib", "café", "\xff", "a\xe6\x97", "😀x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendNode([]byte("x"), s)
		if string(got[1:]) != refNode(s) {
			t.Fatalf("AppendNode(%q) = %q, want %q", s, got[1:], refNode(s))
		}
		if !nodeRE.Match(got[1:]) {
			t.Fatalf("AppendNode(%q) = %q is not a valid node", s, got[1:])
		}
	})
}

func FuzzAppendPlain(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, prefix, host, collector, k1, v1 string, named1 bool, k2, v2 string, named2 bool, field string, value float64, ts int64) {
		s := fuzzSample(collector, k1, v1, named1, k2, v2, named2, field, value)
		got, ok := AppendPlain(before, prefix, host, s, ts)
		l, written := checkAppend(t, got, ok, s, ts, false)
		if !written {
			return
		}
		var want []string
		if prefix != "" {
			for _, n := range strings.Split(prefix, ".") {
				want = append(want, refNode(n))
			}
		}
		want = append(want, refNode(host), refNode(collector))
		for _, lb := range s.Labels {
			if lb.Named {
				want = append(want, refNode(lb.Key))
			}
			want = append(want, refNode(lb.Value))
		}
		want = append(want, refNode(field))
		if g, w := strings.Join(l.nodes, "."), strings.Join(want, "."); g != w {
			t.Errorf("path %q, want %q", g, w)
		}
	})
}

func FuzzAppendTagged(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, _, host, collector, k1, v1 string, named1 bool, k2, v2 string, named2 bool, field string, value float64, ts int64) {
		s := fuzzSample(collector, k1, v1, named1, k2, v2, named2, field, value)
		got, ok := AppendTagged(before, host, s, ts)
		l, written := checkAppend(t, got, ok, s, ts, true)
		if !written {
			return
		}
		if g, w := strings.Join(l.nodes, "."), refNode(collector)+"."+refNode(field); g != w {
			t.Errorf("name %q, want %q", g, w)
		}
		want := [][2]string{{"host", refNode(host)}}
		for _, lb := range s.Labels {
			want = append(want, [2]string{refNode(lb.Key), refNode(lb.Value)})
		}
		if fmt.Sprint(l.tags) != fmt.Sprint(want) {
			t.Errorf("tags %q, want %q", l.tags, want)
		}
	})
}
