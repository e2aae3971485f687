package influx

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
	"github.com/picket-agent/picket/agent/metric"
)

// parseNow is the receive time the parse tests pass.
const parseNow = int64(1_700_000_123_456_789_012)

// refusal is one call of Parse's reject.
type refusal struct {
	line int
	err  error
}

// parseAll parses data with p and returns what it appended and refused.
func parseAll(p *Parser, data []byte, precision lineprotocol.Precision) ([]metric.Sample, []refusal) {
	var refused []refusal
	got := p.Parse(nil, data, precision, parseNow, func(line int, err error) {
		refused = append(refused, refusal{line, err})
	})
	return got, refused
}

func labels(kv ...string) []metric.Label {
	var l []metric.Label
	for i := 0; i < len(kv); i += 2 {
		l = append(l, metric.Label{Key: kv[i], Value: kv[i+1]})
	}
	return l
}

func relayed(meas string, l []metric.Label, field string, v float64, o metric.Origin, time int64) metric.Sample {
	return metric.Sample{Collector: meas, Labels: l, Field: field, Value: v, Kind: metric.Gauge, Origin: o, Time: time}
}

func TestParse(t *testing.T) {
	t.Parallel()
	const ts = int64(1_700_000_000_000_000_000)
	host := labels("host", "web1", "cpu", "0")
	for _, tc := range []struct {
		name, data string
		precision  lineprotocol.Precision
		want       []metric.Sample
	}{
		{"floats", "cpu,host=web1,cpu=0 user=1.5,system=2 1700000000000000000", lineprotocol.Nanosecond, []metric.Sample{
			relayed("cpu", host, "user", 1.5, metric.InfluxFloat, ts),
			relayed("cpu", host, "system", 2, metric.InfluxFloat, ts),
		}},
		{"every type", "m f=-1.5e3,i=-42i,u=42u,z=-0", lineprotocol.Nanosecond, []metric.Sample{
			relayed("m", nil, "f", -1500, metric.InfluxFloat, parseNow),
			relayed("m", nil, "i", -42, metric.InfluxInt, parseNow),
			relayed("m", nil, "u", 42, metric.InfluxUint, parseNow),
			relayed("m", nil, "z", math.Copysign(0, -1), metric.InfluxFloat, parseNow),
		}},
		{"integers at ±2^53", "m a=9007199254740992i,b=-9007199254740992i,c=9007199254740992u", lineprotocol.Nanosecond, []metric.Sample{
			relayed("m", nil, "a", 1<<53, metric.InfluxInt, parseNow),
			relayed("m", nil, "b", -(1 << 53), metric.InfluxInt, parseNow),
			relayed("m", nil, "c", 1<<53, metric.InfluxUint, parseNow),
		}},
		{"tags in the line's order", "m,z=1,a=2,m=3 v=1", lineprotocol.Nanosecond, []metric.Sample{
			relayed("m", labels("z", "1", "a", "2", "m", "3"), "v", 1, metric.InfluxFloat, parseNow),
		}},
		{"no timestamp", "m v=1\n", lineprotocol.Second, []metric.Sample{relayed("m", nil, "v", 1, metric.InfluxFloat, parseNow)}},
		{"seconds", "m v=1 1700000000", lineprotocol.Second, []metric.Sample{relayed("m", nil, "v", 1, metric.InfluxFloat, ts)}},
		{"milliseconds", "m v=1 1700000000123", lineprotocol.Millisecond, []metric.Sample{
			relayed("m", nil, "v", 1, metric.InfluxFloat, ts+123_000_000)}},
		{"microseconds", "m v=1 1700000000123456", lineprotocol.Microsecond, []metric.Sample{
			relayed("m", nil, "v", 1, metric.InfluxFloat, ts+123_456_000)}},
		{"nanoseconds", "m v=1 1700000000123456789", lineprotocol.Nanosecond, []metric.Sample{
			relayed("m", nil, "v", 1, metric.InfluxFloat, ts+123_456_789)}},
		{"last second", "m v=1 9223372036", lineprotocol.Second, []metric.Sample{
			relayed("m", nil, "v", 1, metric.InfluxFloat, 9223372036*1e9)}},
		{"unknown precision without timestamp", "m v=1", lineprotocol.Precision(9), []metric.Sample{
			relayed("m", nil, "v", 1, metric.InfluxFloat, parseNow)}},
		{"escapes", `my\ meas\,x,ta\,g\ =va\=l\ ue fi\=eld\ =1`, lineprotocol.Nanosecond, []metric.Sample{
			relayed("my meas,x", labels("ta,g ", "va=l ue"), "fi=eld ", 1, metric.InfluxFloat, parseNow),
		}},
		{"backslashes kept", `m\n,k=v\x f\"=1`, lineprotocol.Nanosecond, []metric.Sample{
			relayed(`m\n`, labels("k", `v\x`), `f\"`, 1, metric.InfluxFloat, parseNow),
		}},
		{"unicode", "température,pièce=salon °C=19.5", lineprotocol.Nanosecond, []metric.Sample{
			relayed("température", labels("pièce", "salon"), "°C", 19.5, metric.InfluxFloat, parseNow),
		}},
		{"measurement with '#' inside", "a#b v=1", lineprotocol.Nanosecond, []metric.Sample{relayed("a#b", nil, "v", 1, metric.InfluxFloat, parseNow)}},
		{"CRLF", "m v=1 1700000000000000000\r\nm v=2\r\n", lineprotocol.Nanosecond, []metric.Sample{
			relayed("m", nil, "v", 1, metric.InfluxFloat, ts),
			relayed("m", nil, "v", 2, metric.InfluxFloat, parseNow),
		}},
		{"blank lines and comments", "\n   \n# a comment\n  # another\n\t\n# \x01 control\n \t# tab\nm v=1\n\n", lineprotocol.Nanosecond, []metric.Sample{
			relayed("m", nil, "v", 1, metric.InfluxFloat, parseNow),
		}},
		{"empty", "", lineprotocol.Nanosecond, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var p Parser
			// Twice: the second time the names come from the caches.
			for range 2 {
				got, refused := parseAll(&p, []byte(tc.data), tc.precision)
				if len(refused) > 0 {
					t.Fatalf("refused %+v", refused)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("got\n%+v, want\n%+v", got, tc.want)
				}
				for i := range got {
					if math.Float64bits(got[i].Value) != math.Float64bits(tc.want[i].Value) {
						t.Fatalf("value %v, want %v", got[i].Value, tc.want[i].Value)
					}
				}
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("x", 1<<20)
	lines := []struct{ line, err string }{ // err "" is a good line, "-" one skipped
		{"cpu,host=a user=1 1700000000000000000", ""},
		{"", "-"},
		{"# comment", "-"},
		{"cpu,host=a user=", `measurement "cpu": column 17: field value has unrecognized type`},
		{"m s=\"str\",v=1", `measurement "m": field "s" is a string: the relay carries numbers only`},
		{"m v=1,b=true", `measurement "m": field "b" is a boolean: the relay carries numbers only`},
		{"m b=tru", `field "b" value "tru" is not a boolean`},
		{"m i=9007199254740993i", `measurement "m": field "i" integer "9007199254740993" is beyond ±2^53`},
		{"m i=-9007199254740993i", `integer "-9007199254740993" is beyond ±2^53`},
		{"m u=9007199254740993u", `integer "9007199254740993" is beyond ±2^53`},
		{"m i=99999999999999999999i", `integer "99999999999999999999" is beyond ±2^53`},
		{"m i=1.5i", `field "i" value "1.5" is not an integer`},
		{"m f=1e999", `field "f" value "1e999" is not a finite number`},
		{"m f=-Inf", `field "f" value "-Inf" is not a finite number`},
		{"m f=NaN", `measurement "m": column 5: field value has unrecognized type`},
		{"m,t=1,u=0,t=2 v=1", `measurement "m": tag key "t" appears twice`},
		{"\x00\x01\xff garbage", `column 1: invalid character '\x00' found at start of measurement name`},
		{"m\xff v=1", `column 1: invalid utf-8 sequence in token "m\xff"`},
		{"m,t=" + huge + "\x00 v=1", `measurement "m": column 1048581: expected tag key or field but found '\x00' instead`},
		{"m," + huge + " v=1", `measurement "m": column 3: expected '=' after tag key "xxxxxxxxxxxxxxxx`},
		{"m v=1 0", `measurement "m": timestamp "0" is not after 1970`},
		{"m v=1 -5", `timestamp "-5" is not after 1970`},
		{"m v=1 9223372036854775808", `timestamp "9223372036854775808" is after 2262 at precision ns`},
		{"m v=1 1-2", `timestamp "1-2" is not an integer`},
		{"m v=1 1700000000 extra", `unexpected text after timestamp`},
		{"cpu,host=a user=2", ""},
		{"m v=1,s=\"two\nlines\"", `field "s" is a string`}, // two lines, refused at the first
		{"m v=3", ""},
		{`m\ x f\ 1="a\"b"`, `field "f 1" is a string`}, // no token of this point lies in data
		{"#", "-"},
		{"m v=4", ""},
		{"", "-"},
	}
	var data []string
	var want []refusal
	line := 1
	for _, l := range lines {
		data = append(data, l.line)
		if l.err != "" && l.err != "-" {
			want = append(want, refusal{line, fmt.Errorf("%s", l.err)})
		}
		line += 1 + strings.Count(l.line, "\n")
	}
	var p Parser
	got, refused := parseAll(&p, []byte(strings.Join(data, "\n")), lineprotocol.Nanosecond)
	wantSamples := []metric.Sample{
		relayed("cpu", labels("host", "a"), "user", 1, metric.InfluxFloat, 1_700_000_000_000_000_000),
		relayed("cpu", labels("host", "a"), "user", 2, metric.InfluxFloat, parseNow),
		relayed("m", nil, "v", 3, metric.InfluxFloat, parseNow),
		relayed("m", nil, "v", 4, metric.InfluxFloat, parseNow),
	}
	if !reflect.DeepEqual(got, wantSamples) {
		t.Errorf("got\n%+v, want\n%+v", got, wantSamples)
	}
	for i := range max(len(refused), len(want)) {
		switch {
		case i >= len(refused):
			t.Errorf("line %d not refused, want %q", want[i].line, want[i].err)
		case i >= len(want):
			t.Errorf("line %d refused: %v", refused[i].line, refused[i].err)
		case refused[i].line != want[i].line || !strings.Contains(refused[i].err.Error(), want[i].err.Error()):
			t.Errorf("line %d refused: %v\nwant line %d: %v", refused[i].line, refused[i].err, want[i].line, want[i].err)
		}
		if i < len(refused) && len(refused[i].err.Error()) > 250 {
			t.Errorf("line %d: error of %d bytes, want a short one: %q", refused[i].line, len(refused[i].err.Error()), refused[i].err)
		}
	}
	// Nothing of a refused line is remembered.
	for k := range p.names.m {
		if strings.Contains(k, "x") || k == "s" || k == "b" || k == "i" || k == "t" {
			t.Errorf("name %q of a refused line remembered", k)
		}
	}
}

func TestParseUnknownPrecision(t *testing.T) {
	t.Parallel()
	var p Parser
	got, refused := parseAll(&p, []byte("m v=1 1700000000\nm v=2"), lineprotocol.Precision(9))
	if len(got) != 1 || got[0].Value != 2 {
		t.Errorf("got %+v, want the line without timestamp only", got)
	}
	if len(refused) != 1 || refused[0].line != 1 || !strings.Contains(refused[0].err.Error(), "precision 9 is not one of line protocol's") {
		t.Errorf("refused %+v", refused)
	}
}

func TestParseAppends(t *testing.T) {
	t.Parallel()
	var p Parser
	dst := []metric.Sample{{Collector: "before"}}
	dst = p.Parse(dst, []byte("m v=1\nm s=\"x\"\nm v=2,w=3"), lineprotocol.Nanosecond, parseNow, func(int, error) {})
	var got []string
	for _, s := range dst {
		got = append(got, fmt.Sprintf("%s.%s=%v", s.Collector, s.Field, s.Value))
	}
	if want := []string{"before.=0", "m.v=1", "m.v=2", "m.w=3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseCachesBounded(t *testing.T) {
	t.Parallel()
	var p Parser
	var body []byte
	for i := range maxCached + 100 {
		body = fmt.Appendf(body, "m%d,t=%d v=1\n", i, i)
	}
	p.Parse(nil, body, lineprotocol.Nanosecond, parseNow, func(line int, err error) { t.Fatalf("line %d: %v", line, err) })
	if len(p.names.m) > maxCached || len(p.tagSets.m) > maxCached {
		t.Errorf("%d names, %d tag sets remembered, want at most %d", len(p.names.m), len(p.tagSets.m), maxCached)
	}
	long := strings.Repeat("n", 100_000)
	for i := range 100 {
		p.Parse(nil, fmt.Appendf(nil, "%s%d,t=%s%d %s=1", long, i, long, i, long), lineprotocol.Nanosecond, parseNow, func(line int, err error) { t.Fatalf("line %d: %v", line, err) })
		if p.names.bytes > maxCachedBytes || p.tagSets.bytes > maxCachedBytes {
			t.Fatalf("%d bytes of names, %d of tag sets remembered, want at most %d", p.names.bytes, p.tagSets.bytes, maxCachedBytes)
		}
	}
}

// benchBody is a body of 1,000 lines of a measurement, 3 tags and 4 fields.
func benchBody() []byte {
	var b []byte
	for i := range 1000 {
		b = fmt.Appendf(b, "nginx,host=web-%02d,dc=eu-west,status=%d requests=%di,bytes=%du,latency=%d.25,up=1 %d\n",
			i%20, 200+i%3, i, i*512, i, 1_700_000_000_000_000_000+int64(i))
	}
	return b
}

func TestParseZeroAllocs(t *testing.T) {
	// Not parallel: AllocsPerRun counts the whole process's allocations.
	var p Parser
	body := benchBody()
	dst := make([]metric.Sample, 0, 4000)
	reject := func(line int, err error) { t.Fatalf("line %d: %v", line, err) }
	allocs := testing.AllocsPerRun(20, func() {
		dst = p.Parse(dst[:0], body, lineprotocol.Nanosecond, parseNow, reject)
	})
	// NewDecoderWithBytes allocates the decoder's buffer (and the decoder, unless inlined)
	// once a call.
	if allocs > 2 {
		t.Errorf("%v allocations parsing 1,000 known lines, want at most the decoder's 2", allocs)
	}
}

func BenchmarkParse(b *testing.B) {
	var p Parser
	body := benchBody()
	dst := make([]metric.Sample, 0, 4000)
	reject := func(line int, err error) { b.Fatalf("line %d: %v", line, err) }
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		dst = p.Parse(dst[:0], body, lineprotocol.Nanosecond, parseNow, reject)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(dst)), "ns/field")
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"cpu,host=web1,cpu=0 user=1.5,system=2i,idle=3u 1700000000000000000\n",
		"m v=1\n\n# comment\nm s=\"x\"\nm b=t\nm,t=1,t=2 v=1\n\x00\xff\n",
		"m v=1,s=\"two\nlines\" 5\nm v=2\n",
		`my\ meas,ta\,g=va\=l fi\ eld=1 1` + "\r\n",
		"m i=9007199254740993i\nm v=1 0\nm v=1 99999999999999999999\n \t# x\x01\n",
		`m\ x f\ 1="a\"b"` + "\n#\nm v=1",
	} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, prec uint8) {
		precision := lineprotocol.Precision(prec % 5) // 4 is none of line protocol's
		var p Parser
		got, refused := parseAll(&p, data, precision)
		nlines := bytes.Count(data, []byte{'\n'}) + 1
		for i, r := range refused {
			if r.line < 1 || r.line > nlines || i > 0 && r.line <= refused[i-1].line {
				t.Fatalf("refusals %+v, of %d lines", refused, nlines)
			}
			// At most two quotes, each of maxQuote bytes that may all be \x escapes, or a
			// decoder's message cut.
			if len(r.err.Error()) > 2*(4*maxQuote+5)+100 {
				t.Fatalf("line %d: error of %d bytes: %q", r.line, len(r.err.Error()), r.err)
			}
		}
		for _, s := range got {
			checkRelayed(t, s)
		}
		if bytes.IndexByte(data, '"') >= 0 {
			return // a string may span lines: each line alone is not a point
		}
		// Every line gives the same parsed alone as in data: a refusal, samples, or, for a
		// blank line or a comment, nothing.
		var want []metric.Sample
		cursor := lineCursor{data: data, line: 1}
		for i, line := range bytes.Split(data, []byte{'\n'}) {
			alone, r := parseAll(&Parser{}, line, precision)
			want = append(want, alone...)
			skip := cursor.skippable(i + 1)
			refusedHere := slices.ContainsFunc(refused, func(r refusal) bool { return r.line == i+1 })
			switch {
			case len(r) > 1 || len(r) == 1 && len(alone) > 0:
				t.Fatalf("line %q alone: %+v and %d samples", line, r, len(alone))
			case skip && (len(r) > 0 || len(alone) > 0):
				t.Fatalf("blank line or comment %q alone: refused %+v, %d samples", line, r, len(alone))
			case !skip && len(r) == 0 && len(alone) == 0:
				t.Fatalf("line %q alone: neither refused nor taken", line)
			case refusedHere != (len(r) == 1):
				t.Fatalf("line %d %q: refused in data %v, alone %+v", i+1, line, refusedHere, r)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got\n%+v, want, line by line,\n%+v", got, want)
		}
	})
}

// checkRelayed checks what every sample Parse gives must be.
func checkRelayed(t *testing.T, s metric.Sample) {
	t.Helper()
	switch {
	case s.Collector == "" || s.Field == "" || s.Kind != metric.Gauge || !s.Finite() || s.Time <= 0:
	case s.Origin == metric.InfluxFloat:
		return
	case s.Origin == metric.InfluxInt || s.Origin == metric.InfluxUint:
		if s.Value == math.Trunc(s.Value) && math.Abs(s.Value) <= maxExact && (s.Origin == metric.InfluxInt || s.Value >= 0) {
			return
		}
	}
	t.Fatalf("sample %+v", s)
}
