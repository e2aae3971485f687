package graphite

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/picket-agent/picket/agent/metric"
)

// parseNow is the receive time the parse tests pass: whole seconds, so that a sample
// written back with its time in seconds reads the same.
const parseNow = 1_700_000_123 * int64(1e9)

func TestParse(t *testing.T) {
	t.Parallel()
	const ts = 1_700_000_000 * int64(1e9)
	sample := func(collector string, v float64, time int64, labels ...metric.Label) metric.Sample {
		return metric.Sample{Collector: collector, Labels: labels, Value: v, Kind: metric.Gauge, Origin: metric.Graphite, Time: time}
	}
	for _, tc := range []struct {
		name, line string
		want       metric.Sample
	}{
		{"plain", "servers.web-01.cpu.user 42.5 1700000000", sample("servers.web-01.cpu.user", 42.5, ts)},
		{"no timestamp", "a.b 1", sample("a.b", 1, parseNow)},
		{"minus one is now", "a.b 1 -1", sample("a.b", 1, parseNow)},
		{"minus one with a fraction", "a.b 1 -1.5", sample("a.b", 1, parseNow)},
		{"fraction truncated", "a.b 1 1700000000.999", sample("a.b", 1, ts)},
		{"timestamp with exponent", "a.b 1 1.7e9", sample("a.b", 1, ts)},
		{"last second", "a.b 1 9223372036", sample("a.b", 1, 9223372036*1e9)},
		{"tabs and runs of blanks", " \ta.b \t 2.5\t\t1700000000 \t", sample("a.b", 2.5, ts)},
		{"trailing CR", "a.b 1 1700000000\r", sample("a.b", 1, ts)},
		{"trailing CR no timestamp", "a.b 1\r", sample("a.b", 1, parseNow)},
		{"exponent", "a 1e3", sample("a", 1000, parseNow)},
		{"negative exponent", "a -2.5E-3", sample("a", -0.0025, parseNow)},
		{"leading point", "a .5", sample("a", 0.5, parseNow)},
		{"trailing point", "a 5.", sample("a", 5, parseNow)},
		{"plus sign", "a +7", sample("a", 7, parseNow)},
		{"negative zero", "a -0", sample("a", math.Copysign(0, -1), parseNow)},
		{"many digits", "a 0.1000000000000000055511151231257827", sample("a", 0.1, parseNow)},
		{"beyond 2^53", "a 9007199254740993", sample("a", 9007199254740992, parseNow)},
		{"tiny", "a 1e-400", sample("a", 0, parseNow)},
		{"allowed characters", "a:b#c-d_E9 1", sample("a:b#c-d_E9", 1, parseNow)},
		{"empty nodes", "a..b 1", sample("a.b", 1, parseNow)},
		{"leading and trailing dots", "..a.b... 1", sample("a.b", 1, parseNow)},
		{"slash", "fs./var/lib.free 1", sample("fs._var_lib.free", 1, parseNow)},
		{"character not byte", "café.x 1", sample("caf_.x", 1, parseNow)},
		{"three-byte runes", "日本.x 1", sample("__.x", 1, parseNow)},
		{"specials", "a!b*c{d},e 1", sample("a_b_c_d__e", 1, parseNow)},
		{"tagged", "disk.used;host=web1;dc=eu 5 1700000000", sample("disk.used", 5, ts,
			metric.Label{Key: "dc", Value: "eu"}, metric.Label{Key: "host", Value: "web1"})},
		{"tags sorted", "m;c=3;a=1;b=2 1", sample("m", 1, parseNow,
			metric.Label{Key: "a", Value: "1"}, metric.Label{Key: "b", Value: "2"}, metric.Label{Key: "c", Value: "3"})},
		{"tagged name normalised", ".a..b/c;k=v 1", sample("a.b_c", 1, parseNow, metric.Label{Key: "k", Value: "v"})},
		{"tags verbatim", "m;k.é=a=b~/ 1", sample("m", 1, parseNow, metric.Label{Key: "k.é", Value: "a=b~/"})},
		{"tag value may have '!^'", "m;k=!^ 1", sample("m", 1, parseNow, metric.Label{Key: "k", Value: "!^"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var p Parser
			// Twice: the second parse takes the series from the cache.
			for range 2 {
				var got metric.Sample
				if err := p.Parse([]byte(tc.line), parseNow, &got); err != nil {
					t.Fatalf("Parse(%q): %v", tc.line, err)
				}
				if !reflect.DeepEqual(got, tc.want) || math.Float64bits(got.Value) != math.Float64bits(tc.want.Value) {
					t.Fatalf("Parse(%q) =\n%+v, want\n%+v", tc.line, got, tc.want)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 10_000)
	for _, tc := range []struct {
		name, line, want string
	}{
		{"empty", "", `line "": 0 fields`},
		{"blank", " \t ", `0 fields`},
		{"truncated", "a.b", `line "a.b": 1 fields, want <path> <value> [<timestamp>]`},
		{"four fields", "a 1 2 3", `4 fields`},
		{"garbage", "\x00\xff\x01 \x02 \x03", `value "\x02" is not a finite number`},
		{"nan", "a nan", `value "nan" is not a finite number`},
		{"NaN", "a NaN", `value "NaN" is not a finite number`},
		{"inf", "a -Inf", `value "-Inf" is not a finite number`},
		{"overflow", "a 1e400", `value "1e400" is not a finite number`},
		{"hex", "a 0x10", `value "0x10" is not a finite number`},
		{"underscore", "a 1_000", `value "1_000" is not a finite number`},
		{"two points", "a 1.2.3", `value "1.2.3" is not a finite number`},
		{"point alone", "a .", `value "." is not a finite number`},
		{"sign alone", "a -", `value "-" is not a finite number`},
		{"exponent alone", "a e5", `value "e5" is not a finite number`},
		{"exponent without digits", "a 1e+", `value "1e+" is not a finite number`},
		{"two signs", "a --1", `value "--1" is not a finite number`},
		{"CR inside", "a 1\r 1700000000", `value "1\r" is not a finite number`},
		{"timestamp zero", "a 1 0", `timestamp "0" is not after 1970`},
		{"timestamp below one", "a 1 0.5", `timestamp "0.5" is not after 1970`},
		{"timestamp negative", "a 1 -2", `timestamp "-2" is not after 1970`},
		{"timestamp garbage", "a 1 now", `timestamp "now" is not a number`},
		{"timestamp beyond 2262", "a 1 9223372037", `timestamp "9223372037" is after 2262`},
		{"timestamp huge", "a 1 1e300", `timestamp "1e300" is after 2262`},
		{"timestamp infinite", "a 1 1e999", `timestamp "1e999" is not a number`},
		{"control character", "a\x01b 1", `path "a\x01b" has control character U+0001 at offset 1`},
		{"C1 control character", "a\u0085b 1", `has control character U+0085`},
		{"DEL", "a\x7f 1", `has control character U+007F`},
		{"invalid UTF-8", "a\xffb 1", `path "a\xffb" is not valid UTF-8 (byte 0xff at offset 1)`},
		{"no node", "... 1", `path "..." has no node`},
		{"tagged no node", ";k=v 1", `path ";k=v" has no node`},
		{"empty tag", "a;;k=v 1", `path "a;;k=v" has an empty tag`},
		{"trailing semicolon", "a;k=v; 1", `path "a;k=v;" has an empty tag`},
		{"semicolon alone", "a; 1", `path "a;" has an empty tag`},
		{"tag without =", "a;k 1", `tag "k" is not key=value`},
		{"empty key", "a;=v 1", `tag "=v" has an empty key`},
		{"key with !", "a;k!=v 1", `tag key "k!" has one of ';!^='`},
		{"key with ^", "a;^k=v 1", `tag key "^k" has one of ';!^='`},
		{"key name", "a;name=x 1", `tag "name=x": the key "name" is Graphite's`},
		{"empty value", "a;k= 1", `tag "k=" has an empty value`},
		{"value with ~", "a;k=~v 1", `tag value "~v" starts with '~'`},
		{"duplicate key", "a;k=1;j=0;k=2 1", `path "a;k=1;j=0;k=2" has tag key "k" twice`},
		{"control in tag", "a;k=v\x1b 1", `has control character U+001B`},
		{"long value", "a " + long, `value "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"... is not`},
		{"long path", long + "\x00 1", `path "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"... has control character U+0000 at offset 10000`},
		{"cut at a character", strings.Repeat("x", 63) + "é" + long + "\x00 1", `path "` + strings.Repeat("x", 63) + `"... has control`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var p Parser
			s := metric.Sample{Collector: "untouched"}
			err := p.Parse([]byte(tc.line), parseNow, &s)
			if err == nil {
				t.Fatalf("Parse(%.100q) = %.100v, want an error", tc.line, s)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%.100q) error %q, want it to contain %q", tc.line, err, tc.want)
			}
			if len(err.Error()) > 200 {
				t.Errorf("error of %d bytes, want a short one: %q", len(err.Error()), err)
			}
			if s.Collector != "untouched" {
				t.Errorf("failed Parse changed the sample: %+v", s)
			}
		})
	}
}

func TestParseZeroAllocs(t *testing.T) {
	// Not parallel: AllocsPerRun counts the whole process's allocations.
	for _, line := range []string{
		"servers.web-01.nginx.requests.per_second 1234.5 1700000000",
		"servers.web-01.nginx.requests.per_second 1234.5",
		"fs./var/lib.free_bytes 1.25e9 1700000000.5",
		"nginx.requests;host=web-01;dc=eu-west;status=200 1234.5 1700000000",
		"a 0.12345678901234567890123 1700000000", // ParseFloat, within its 32 bytes on the stack
	} {
		var p Parser
		var s metric.Sample
		b := []byte(line)
		if allocs := testing.AllocsPerRun(100, func() {
			if err := p.Parse(b, parseNow, &s); err != nil {
				t.Fatal(err)
			}
		}); allocs != 0 {
			t.Errorf("Parse(%q): %v allocations, want 0", line, allocs)
		}
	}
}

func TestParseCacheBounded(t *testing.T) {
	t.Parallel()
	var p Parser
	var s metric.Sample
	for i := range maxSeries + 100 {
		if err := p.Parse(fmt.Appendf(nil, "series.%d 1", i), parseNow, &s); err != nil {
			t.Fatal(err)
		}
		if len(p.series) > maxSeries {
			t.Fatalf("%d series remembered, want at most %d", len(p.series), maxSeries)
		}
	}
	if len(p.series) != 100 {
		t.Errorf("%d series remembered after clearing, want 100", len(p.series))
	}
	long := strings.Repeat("n.", 50_000)
	for i := range 200 {
		if err := p.Parse(fmt.Appendf(nil, "%s%d;k=%s 1", long, i, long), parseNow, &s); err != nil {
			t.Fatal(err)
		}
		if p.seriesBytes > maxSeriesBytes {
			t.Fatalf("%d bytes remembered, want at most %d", p.seriesBytes, maxSeriesBytes)
		}
	}
}

// normalPathRE is what a relayed plain path may be, stated independently of normalByte.
var normalPathRE = regexp.MustCompile(`^[A-Za-z0-9_:#-]+(\.[A-Za-z0-9_:#-]+)*$`)

// writeBack writes s as a line again, as <collector>[;<key>=<value>…] <value> <seconds>.
func writeBack(s *metric.Sample) []byte {
	b := []byte(s.Collector)
	for _, l := range s.Labels {
		b = fmt.Appendf(b, ";%s=%s", l.Key, l.Value)
	}
	b = append(b, ' ')
	b = strconv.AppendFloat(b, s.Value, 'g', -1, 64)
	return fmt.Appendf(b, " %d", s.Time/1e9)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"a.b.c 1 1700000000", "a 1", "a 1 -1", "a 1.5e3 1700000000.75\r", " \ta..b\t-0 \t",
		"café.日本 .5", "m;b=2;a=1 3", "m;k=a=b 1", "a;;b=c 1", "a;name=x 1", "a;k=~v 1",
		"a nan", "a 1 0", "a 1 9223372037", "a\x00 1", "\xff 1", "a 1 2 3", "",
		"a 123456789012345678901234567890 1e9", "a 4.9e-324", "a 1.7976931348623157e308",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var p Parser
		var s metric.Sample
		err := p.Parse(line, parseNow, &s)
		if err != nil {
			// At most two quotes, each of maxQuote bytes that may all be \x escapes.
			if len(err.Error()) > 2*(4*maxQuote+5)+100 {
				t.Fatalf("error of %d bytes: %q", len(err.Error()), err)
			}
			return
		}
		if !normalPathRE.MatchString(s.Collector) {
			t.Fatalf("Parse(%q): collector %q has a character or an empty node it must not", line, s.Collector)
		}
		if s.Origin != metric.Graphite || s.Kind != metric.Gauge || s.Field != "" || !s.Finite() || s.Time <= 0 || s.Time%1e9 != 0 && s.Time != parseNow {
			t.Fatalf("Parse(%q) = %+v", line, s)
		}
		for i, l := range s.Labels {
			if l.Key == "" || l.Value == "" || l.Key == "name" || strings.ContainsAny(l.Key, ";!^=") || strings.Contains(l.Value, ";") || l.Value[0] == '~' || l.Named {
				t.Fatalf("Parse(%q): bad tag %+v", line, l)
			}
			if i > 0 && s.Labels[i-1].Key >= l.Key {
				t.Fatalf("Parse(%q): tags %+v not sorted or not unique", line, s.Labels)
			}
		}
		var again metric.Sample
		if err := p.Parse(line, parseNow, &again); err != nil || !sameSample(again, s) {
			t.Fatalf("Parse(%q) from the cache = %+v, %v; first %+v", line, again, err, s)
		}
		back := writeBack(&s)
		var p2 Parser
		if err := p2.Parse(back, parseNow, &again); err != nil || !sameSample(again, s) {
			t.Fatalf("Parse(%q) = %+v, but written back as %q it gives %+v, %v", line, s, back, again, err)
		}
	})
}

// sameSample reports whether a and b are equal, their values bit for bit.
func sameSample(a, b metric.Sample) bool {
	return reflect.DeepEqual(a, b) && math.Float64bits(a.Value) == math.Float64bits(b.Value)
}

// decimalGrammar is what parseDecimal accepts, stated independently.
var decimalGrammar = regexp.MustCompile(`^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$`)

func TestParseDecimal(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"0", "1", "-1", "+1", "-0", "0.1", "0.3", ".5", "5.", "1e3", "1E-3", "1e+3", "42.5",
		"1700000000", "1700000000.123", "9007199254740991", "9007199254740992", "9007199254740993",
		"1e22", "1e23", "1.5e-22", "1e-23", "123456789012345678", "1234567890123456789",
		"12345678901234567890", "0.000000000000000000000000001", "4.9e-324", "2e-324", "1e-400",
		"1.7976931348623157e308", "1.8e308", "1e400", "0e999999999999", "1e-99999999999999",
		"", "-", ".", "e1", "1e", "1e-", "1.e1", ".e1", "0x1p3", "1_0", "inf", "NaN", "1 ", " 1",
	} {
		checkDecimal(t, s)
	}
}

func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"1", "-2.5", "1e3", ".5", "0.1", "9007199254740993", "1e23", "4.9e-324", "1e400", "0x1p3", "-0"} {
		f.Add(s)
	}
	f.Fuzz(checkDecimal)
}

// checkDecimal checks parseDecimal against decimalGrammar and strconv.ParseFloat: it takes
// what both take, and gives the same float64 bit for bit.
func checkDecimal(t *testing.T, s string) {
	got, ok := parseDecimal([]byte(s))
	want, err := strconv.ParseFloat(s, 64)
	if wantOK := decimalGrammar.MatchString(s) && err == nil; ok != wantOK {
		t.Fatalf("parseDecimal(%q) ok = %v, want %v (ParseFloat: %v, %v)", s, ok, wantOK, want, err)
	}
	if ok && math.Float64bits(got) != math.Float64bits(want) {
		t.Fatalf("parseDecimal(%q) = %v (%#x), ParseFloat gives %v (%#x)", s, got, math.Float64bits(got), want, math.Float64bits(want))
	}
}

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct{ name, line string }{
		{"plain", "servers.web-01.nginx.requests.per_second 1234.5 1700000000"},
		{"normalised", "fs./var/lib/docker.free_bytes 1.25e9 1700000000"},
		{"tagged", "nginx.requests;host=web-01;dc=eu-west;status=200 1234.5 1700000000"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var p Parser
			var s metric.Sample
			line := []byte(bc.line)
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				if err := p.Parse(line, parseNow, &s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("distinct", func(b *testing.B) {
		// Every line a new series: the cost of the first line of each, and of the cache's
		// clearing.
		var p Parser
		var s metric.Sample
		var line []byte
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			line = append(line[:0], "servers.web-01.nginx.requests."...)
			line = strconv.AppendInt(line, int64(i), 10)
			line = append(line, " 1234.5 1700000000"...)
			if err := p.Parse(line, parseNow, &s); err != nil {
				b.Fatal(err)
			}
		}
	})
}
