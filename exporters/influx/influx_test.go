package influx

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/influxdata/line-protocol/v2/lineprotocol"
	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/agent/metric/metrictest"
)

var tick = time.Unix(1700000000, 0)

func TestAppend(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		host string
		s    metric.Sample
		ts   time.Time
		want string
	}{
		{"no labels", "web1", metric.Sample{Collector: "load", Field: "load1", Value: 0.25}, tick,
			"load,host=web1 load1=0.25 1700000000000000000\n"},
		{"label after host", "web1", metric.Sample{Collector: "net", Labels: []metric.Label{{Key: "iface", Value: "eth0.100"}}, Field: "rx_bytes", Value: 42}, tick,
			"net,host=web1,iface=eth0.100 rx_bytes=42 1700000000000000000\n"},
		{"label before host", "web1", metric.Sample{Collector: "cpu", Labels: []metric.Label{{Key: "cpu", Value: "0"}}, Field: "user", Value: 1234.5}, tick,
			"cpu,cpu=0,host=web1 user=1234.5 1700000000000000000\n"},
		{"named label is a plain tag", "web1", metric.Sample{Collector: "oom", Labels: []metric.Label{{Key: "cgroup", Value: "/system.slice/nginx.service", Named: true}}, Field: "kills", Value: 3}, tick,
			"oom,cgroup=/system.slice/nginx.service,host=web1 kills=3 1700000000000000000\n"},
		{"labels sorted", "web1", metric.Sample{Collector: "runqlat", Labels: []metric.Label{{Key: "le", Value: "8"}, {Key: "cgroup", Value: "db"}, {Key: "a", Value: "x"}}, Field: "count", Value: 7}, tick,
			"runqlat,a=x,cgroup=db,host=web1,le=8 count=7 1700000000000000000\n"},
		{"escapes", "web 1", metric.Sample{Collector: "my coll,x", Labels: []metric.Label{{Key: "k=1", Value: "a b,c=d"}}, Field: "f x", Value: 1}, tick,
			`my\ coll\,x,host=web\ 1,k\=1=a\ b\,c\=d f\ x=1 1700000000000000000` + "\n"},
		{"unicode kept", "hôte", metric.Sample{Collector: "fs", Labels: []metric.Label{{Key: "mount", Value: "/mnt/日本"}}, Field: "free_bytes", Value: 1}, tick,
			"fs,host=hôte,mount=/mnt/日本 free_bytes=1 1700000000000000000\n"},
		{"sub-second timestamp", "h", metric.Sample{Collector: "c", Field: "f", Value: 1}, time.Unix(1, 5),
			"c,host=h f=1 1000000005\n"},
		{"negative", "h", metric.Sample{Collector: "c", Field: "f", Value: -17.5}, tick, "c,host=h f=-17.5 1700000000000000000\n"},
		{"negative zero", "h", metric.Sample{Collector: "c", Field: "f", Value: math.Copysign(0, -1)}, tick, "c,host=h f=0 1700000000000000000\n"},
		{"large integer", "h", metric.Sample{Collector: "c", Field: "f", Value: 16777216000}, tick, "c,host=h f=16777216000 1700000000000000000\n"},
		{"2^53", "h", metric.Sample{Collector: "c", Field: "f", Value: 1 << 53}, tick, "c,host=h f=9.007199254740992e+15 1700000000000000000\n"},
		{"large integer escaped", "h", metric.Sample{Collector: "c c", Field: "f", Value: 16777216000}, tick, "c\\ c,host=h f=1.6777216e+10 1700000000000000000\n"},
		{"huge", "h", metric.Sample{Collector: "c", Field: "f", Value: 1e300}, tick, "c,host=h f=1e+300 1700000000000000000\n"},
		{"tiny", "h", metric.Sample{Collector: "c", Field: "f", Value: 5e-324}, tick, "c,host=h f=5e-324 1700000000000000000\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var e Encoder
			got, err := e.Append([]byte("before\n"), tc.host, &tc.s, tc.ts)
			if err != nil {
				t.Fatal(err)
			}
			if want := "before\n" + tc.want; string(got) != want {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		})
	}
}

func TestAppendRelayed(t *testing.T) {
	t.Parallel()
	at := func(d time.Duration) int64 { return tick.Add(d).UnixNano() }
	influx := func(o metric.Origin, measurement, field string, v float64, labels ...metric.Label) metric.Sample {
		return metric.Sample{Collector: measurement, Labels: labels, Field: field, Value: v, Origin: o, Time: at(-1500 * time.Millisecond)}
	}
	api := []metric.Label{{Key: "route", Value: "/api"}, {Key: "dc", Value: "eu"}}
	for _, tc := range []struct {
		name string
		s    metric.Sample
		want string
	}{
		{"float", influx(metric.InfluxFloat, "http", "p99", 0.125, api...),
			"http,dc=eu,route=/api p99=0.125 1699999998500000000\n"},
		{"integral float stays a float", influx(metric.InfluxFloat, "http", "n", 42), "http n=42 1699999998500000000\n"},
		{"float negative zero", influx(metric.InfluxFloat, "m", "f", math.Copysign(0, -1)), "m f=0 1699999998500000000\n"},
		{"int", influx(metric.InfluxInt, "http", "count", 7, api...),
			"http,dc=eu,route=/api count=7i 1699999998500000000\n"},
		{"int beyond 2^31", influx(metric.InfluxInt, "m", "f", 1<<40+1), "m f=1099511627777i 1699999998500000000\n"},
		{"int 2^53", influx(metric.InfluxInt, "m", "f", 1<<53), "m f=9007199254740992i 1699999998500000000\n"},
		{"negative int", influx(metric.InfluxInt, "m", "f", -(1 << 33)), "m f=-8589934592i 1699999998500000000\n"},
		{"int negative zero", influx(metric.InfluxInt, "m", "f", math.Copysign(0, -1)), "m f=0i 1699999998500000000\n"},
		{"uint", influx(metric.InfluxUint, "m", "f", 42), "m f=42u 1699999998500000000\n"},
		{"uint beyond 2^32", influx(metric.InfluxUint, "m", "f", 1<<52), "m f=4503599627370496u 1699999998500000000\n"},
		{"host tag allowed", influx(metric.InfluxFloat, "cpu", "user", 1.5, metric.Label{Key: "host", Value: "app7"}, metric.Label{Key: "cpu", Value: "0"}),
			"cpu,cpu=0,host=app7 user=1.5 1699999998500000000\n"},
		{"escapes", influx(metric.InfluxInt, "my meas,x", "f x", 5, metric.Label{Key: "k=1", Value: "a b,c=d"}),
			`my\ meas\,x,k\=1=a\ b\,c\=d f\ x=5i 1699999998500000000` + "\n"},
		{"escapes uint", influx(metric.InfluxUint, "m", "f", 5, metric.Label{Key: "k", Value: "a b"}), `m,k=a\ b f=5u 1699999998500000000` + "\n"},
		{"escapes float", influx(metric.InfluxFloat, "m m", "f", 16777216000), `m\ m f=1.6777216e+10 1699999998500000000` + "\n"},
		{"graphite", metric.Sample{Collector: "app.web1.requests", Value: 17, Origin: metric.Graphite, Time: at(-10 * time.Second)},
			"app.web1.requests value=17 1699999990000000000\n"},
		{"graphite tags", metric.Sample{Collector: "app.req", Labels: []metric.Label{{Key: "host", Value: "web1"}, {Key: "dc", Value: "eu"}}, Value: 0.5, Origin: metric.Graphite, Time: at(time.Nanosecond)},
			"app.req,dc=eu,host=web1 value=0.5 1700000000000000001\n"},
		{"graphite at the batch's time", metric.Sample{Collector: "app.req", Value: 1, Origin: metric.Graphite},
			"app.req value=1 1700000000000000000\n"},
		{"collected with its own time", metric.Sample{Collector: "c", Field: "f", Value: 1, Time: at(time.Millisecond)},
			"c,host=h f=1 1700000000001000000\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var e Encoder
			labels := slices.Clone(tc.s.Labels)
			got, err := e.Append([]byte("before\n"), "h", &tc.s, tick)
			if err != nil {
				t.Fatal(err)
			}
			if want := "before\n" + tc.want; string(got) != want {
				t.Errorf("got  %q\nwant %q", got, want)
			}
			if !slices.Equal(tc.s.Labels, labels) {
				t.Errorf("labels changed to %v", tc.s.Labels)
			}
			// lineprotocol alone writes the same point.
			p, err := decodeOne(got[len("before\n"):])
			if err != nil {
				t.Fatal(err)
			}
			fv, err := sampleValue(&tc.s)
			if err != nil {
				t.Fatal(err)
			}
			ts := tick
			if tc.s.Time != 0 {
				ts = time.Unix(0, tc.s.Time)
			}
			checked, err := e.appendChecked(nil, "h", &tc.s, fv, ts)
			if err != nil {
				t.Fatal(err)
			}
			if q, err := decodeOne(checked); err != nil || !q.equal(p) {
				t.Errorf("lineprotocol alone wrote %q (%v)", checked, err)
			}
		})
	}
}

func TestAppendTimes(t *testing.T) {
	t.Parallel()
	// One encoder across different times: the cached timestamp text must follow, and a
	// sample's own time must not be taken for the batch's, nor the other way round.
	var e Encoder
	s := metric.Sample{Collector: "c", Field: "f", Value: 1}
	r := metric.Sample{Collector: "r", Field: "f", Value: 1, Origin: metric.InfluxFloat, Time: 1700000000_500000000}
	var got []byte
	for _, x := range []struct {
		s  *metric.Sample
		ts time.Time
	}{{&s, time.Unix(0, 0)}, {&s, tick}, {&r, tick}, {&s, tick}, {&r, tick}, {&r, time.Unix(1, 0)}, {&s, time.Unix(-1, 0)}, {&s, time.Unix(0, 0)}} {
		var err error
		if got, err = e.Append(got, "h", x.s, x.ts); err != nil {
			t.Fatal(err)
		}
	}
	want := "c,host=h f=1 0\n" +
		"c,host=h f=1 1700000000000000000\n" +
		"r f=1 1700000000500000000\n" +
		"c,host=h f=1 1700000000000000000\n" +
		"r f=1 1700000000500000000\n" +
		"r f=1 1700000000500000000\n" +
		"c,host=h f=1 -1000000000\n" +
		"c,host=h f=1 0\n"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestAppendPrecision: a coarser precision truncates the timestamp as lineprotocol does,
// on both ways of writing a line, and the cached timestamp text follows a change of it.
func TestAppendPrecision(t *testing.T) {
	t.Parallel()
	plain := metric.Sample{Collector: "c", Field: "f", Value: 1}
	escaped := metric.Sample{Collector: "c c", Field: "f", Value: 1}
	for _, tc := range []struct {
		prec lineprotocol.Precision
		ts   time.Time
		want string
	}{
		{lineprotocol.Second, tick, "1700000000"},
		{lineprotocol.Second, tick.Add(999 * time.Millisecond), "1700000000"},
		{lineprotocol.Millisecond, tick.Add(1500 * time.Microsecond), "1700000000001"},
		{lineprotocol.Microsecond, time.Unix(0, 1999), "1"},
		{lineprotocol.Second, time.Unix(-1, 0), "-1"},
		{lineprotocol.Nanosecond, tick, "1700000000000000000"},
	} {
		e := Encoder{Precision: tc.prec}
		got, err := e.Append(nil, "h", &plain, tc.ts)
		if err != nil {
			t.Fatal(err)
		}
		if want := "c,host=h f=1 " + tc.want + "\n"; string(got) != want {
			t.Errorf("%v %v: got %q, want %q", tc.prec, tc.ts.UnixNano(), got, want)
		}
		got, err = e.Append(nil, "h", &escaped, tc.ts)
		if err != nil {
			t.Fatal(err)
		}
		if want := `c\ c,host=h f=1 ` + tc.want + "\n"; string(got) != want {
			t.Errorf("%v %v through lineprotocol: got %q, want %q", tc.prec, tc.ts.UnixNano(), got, want)
		}
	}
	// One encoder, the same time, the precision changed between calls.
	var e Encoder
	got, _ := e.Append(nil, "h", &plain, tick)
	e.Precision = lineprotocol.Second
	got, _ = e.Append(got, "h", &plain, tick)
	if want := "c,host=h f=1 1700000000000000000\nc,host=h f=1 1700000000\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestAppendRejects(t *testing.T) {
	t.Parallel()
	ok := metric.Sample{Collector: "c", Labels: []metric.Label{{Key: "k", Value: "v"}}, Field: "f", Value: 1}
	with := func(change func(s *metric.Sample)) metric.Sample {
		s := ok
		s.Labels = append([]metric.Label(nil), ok.Labels...)
		change(&s)
		return s
	}
	relayed := func(o metric.Origin, v float64) metric.Sample {
		return metric.Sample{Collector: "c", Field: "f", Value: v, Origin: o, Time: 1}
	}
	withRelayed := func(change func(s *metric.Sample)) metric.Sample {
		return with(func(s *metric.Sample) {
			s.Origin, s.Time = metric.InfluxFloat, 1
			change(s)
		})
	}
	for _, tc := range []struct {
		name string
		host string
		s    metric.Sample
		ts   time.Time
		want string // in the error; "" means ErrNonFinite
	}{
		{"NaN", "h", with(func(s *metric.Sample) { s.Value = math.NaN() }), tick, ""},
		{"+Inf", "h", with(func(s *metric.Sample) { s.Value = math.Inf(1) }), tick, ""},
		{"-Inf", "h", with(func(s *metric.Sample) { s.Value = math.Inf(-1) }), tick, ""},
		{"empty collector", "h", with(func(s *metric.Sample) { s.Collector = "" }), tick, `invalid measurement ""`},
		{"empty field", "h", with(func(s *metric.Sample) { s.Field = "" }), tick, `invalid field key ""`},
		{"empty label key", "h", with(func(s *metric.Sample) { s.Labels[0].Key = "" }), tick, `invalid tag key ""`},
		{"empty label value", "h", with(func(s *metric.Sample) { s.Labels[0].Value = "" }), tick, `invalid tag value k=""`},
		{"empty host", "", ok, tick, `invalid tag value host=""`},
		{"invalid utf-8", "h", with(func(s *metric.Sample) { s.Labels[0].Value = "a\xff" }), tick, `invalid tag value`},
		{"newline", "h", with(func(s *metric.Sample) { s.Field = "a\nb" }), tick, `invalid field key`},
		{"trailing backslash", "h", with(func(s *metric.Sample) { s.Collector = `c\` }), tick, `invalid measurement`},
		{"comment", "h", with(func(s *metric.Sample) { s.Collector = "#c" }), tick, `starts with '#'`},
		{"duplicate key", "h", with(func(s *metric.Sample) { s.Labels = append(s.Labels, s.Labels[0]) }), tick, `out of order`},
		{"label keyed host", "h", with(func(s *metric.Sample) { s.Labels[0].Key = "host" }), tick, `out of order`},
		{"zero time", "h", ok, time.Time{}, "zero timestamp"},
		{"time out of range", "h", ok, time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), "out of range"},
		{"relayed NaN", "h", relayed(metric.InfluxInt, math.NaN()), tick, ""},
		{"relayed +Inf", "h", relayed(metric.InfluxUint, math.Inf(1)), tick, ""},
		{"int not integral", "h", relayed(metric.InfluxInt, 1.5), tick, "integer field value 1.5 is not a 64-bit integer"},
		{"int 2^63", "h", relayed(metric.InfluxInt, 1<<63), tick, "is not a 64-bit integer"},
		{"uint negative", "h", relayed(metric.InfluxUint, -1), tick, "unsigned field value -1 is not a 64-bit unsigned integer"},
		{"uint not integral", "h", relayed(metric.InfluxUint, 0.5), tick, "is not a 64-bit unsigned integer"},
		{"uint 2^64", "h", relayed(metric.InfluxUint, 1<<64), tick, "is not a 64-bit unsigned integer"},
		{"relayed duplicate key", "h", withRelayed(func(s *metric.Sample) { s.Labels = append(s.Labels, s.Labels[0]) }), tick, `out of order`},
		{"relayed empty tag value", "h", withRelayed(func(s *metric.Sample) { s.Labels[0].Value = "" }), tick, `invalid tag value k=""`},
		{"relayed comment", "h", withRelayed(func(s *metric.Sample) { s.Collector = "#c" }), tick, `starts with '#'`},
		{"relayed empty field", "h", withRelayed(func(s *metric.Sample) { s.Field = "" }), tick, `invalid field key ""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var e Encoder
			dst := make([]byte, 0, 4)
			dst = append(dst, "ok\n"...)
			got, err := e.Append(dst, tc.host, &tc.s, tc.ts)
			if string(got) != "ok\n" || &got[0] != &dst[0] {
				t.Errorf("dst changed to %q", got)
			}
			switch {
			case err == nil:
				t.Fatal("no error")
			case tc.want == "":
				if err != ErrNonFinite {
					t.Errorf("error %v, want ErrNonFinite itself", err)
				}
			case !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `sample "`):
				t.Errorf("error %q does not name the sample and contain %q", err, tc.want)
			}
			// The encoder must be usable again after any failure.
			if got, err := e.Append(nil, "h", &ok, tick); err != nil || string(got) != "c,host=h,k=v f=1 1700000000000000000\n" {
				t.Errorf("next Append: %q, %v", got, err)
			}
		})
	}
}

func TestZeroAllocs(t *testing.T) {
	// Not parallel: AllocsPerBatch counts the whole process's allocations.
	for _, o := range []metric.Origin{metric.Collected, metric.Graphite, metric.InfluxFloat, metric.InfluxInt, metric.InfluxUint} {
		var e Encoder
		allocs := metrictest.AllocsPerBatch(func(dst []byte, s *metric.Sample) []byte {
			r := *s
			r.Origin = o
			if o.Relayed() {
				r.Value, r.Time = math.Trunc(s.Value), 1700000000_250000000
			}
			dst, err := e.Append(dst, "web1", &r, tick)
			if err != nil {
				t.Fatal(err)
			}
			return dst
		})
		if allocs != 0 {
			t.Errorf("origin %d: %v allocations per batch, want 0", o, allocs)
		}
	}
}

// encodable states independently what lineprotocol accepts as a measurement, key or tag
// value: not empty, valid UTF-8, no control character, no trailing backslash.
func encodable(s string) bool {
	if s == "" || !utf8.ValidString(s) || strings.HasSuffix(s, `\`) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// point is one decoded line.
type point struct {
	measurement string
	tags        [][2]string
	field       string
	value       lineprotocol.Value
	time        time.Time
}

func (p point) equal(q point) bool {
	same := p.value.Kind() == q.value.Kind()
	if same && p.value.Kind() == lineprotocol.Float {
		same = math.Float64bits(p.value.FloatV()) == math.Float64bits(q.value.FloatV())
	} else if same {
		same = p.value.Equal(q.value)
	}
	return same && p.measurement == q.measurement && slices.Equal(p.tags, q.tags) && p.field == q.field && p.time.Equal(q.time)
}

// decodeOne decodes b, which must hold exactly one point on exactly one line.
func decodeOne(b []byte) (point, error) {
	var p point
	if !bytes.HasSuffix(b, []byte("\n")) || bytes.Count(b, []byte("\n")) != 1 {
		return p, errors.New("not exactly one newline-terminated line")
	}
	dec := lineprotocol.NewDecoderWithBytes(b)
	if !dec.Next() {
		return p, errors.New("no point")
	}
	m, err := dec.Measurement()
	if err != nil {
		return p, err
	}
	p.measurement = string(m)
	for {
		k, v, err := dec.NextTag()
		if err != nil {
			return p, err
		}
		if k == nil {
			break
		}
		p.tags = append(p.tags, [2]string{string(k), string(v)})
	}
	k, v, err := dec.NextField()
	if err != nil {
		return p, err
	}
	p.field, p.value = string(k), v
	if k, _, err := dec.NextField(); err != nil || k != nil {
		return p, fmt.Errorf("second field %q, %v", k, err)
	}
	if p.time, err = dec.Time(lineprotocol.Nanosecond, time.Time{}); err != nil {
		return p, err
	}
	if dec.Next() {
		return p, errors.New("more than one point")
	}
	return p, nil
}

func FuzzInflux(f *testing.F) {
	f.Add("cpu", "web1", "cpu", "0", "", "", "user", 1234.5, int64(1700000000000000000), uint8(metric.Collected))
	f.Add("net", "web 1", "iface", "eth0.100", "z", `a\b`, "rx_bytes", 1e300, int64(-1), uint8(metric.Collected))
	f.Add("#c", "h", "k", "v", "k", "v", "f", math.NaN(), int64(0), uint8(metric.Collected))
	f.Add(` c\ `, "h=", "host", "v", ",", "=", `f\`, math.Copysign(0, -1), int64(math.MaxInt64), uint8(metric.Collected))
	f.Add("c", "日本", "k\n", "\xff", "k2", "v", "f", 5e-324, int64(math.MinInt64), uint8(metric.Collected))
	f.Add("app.requests", "h", "dc", "eu", "host", "web1", "", 17.0, int64(1700000000123456789), uint8(metric.Graphite))
	f.Add("http", "h", "route", "/api", "host", "a b", "p99", 0.125, int64(1), uint8(metric.InfluxFloat))
	f.Add("http", "h", "k", "v", "", "", "count", float64(1<<40), int64(0), uint8(metric.InfluxInt))
	f.Add("http", "h", "k", "v", "k", "v", "count", -1.5, int64(-1), uint8(metric.InfluxInt))
	f.Add("m m", "h", "k=", "v,", "", "", "bytes", float64(1<<63), int64(5), uint8(metric.InfluxUint))
	f.Fuzz(func(t *testing.T, collector, host, k1, v1, k2, v2, field string, value float64, nanos int64, o uint8) {
		origin := metric.Origin(o % 5)
		s := &metric.Sample{Collector: collector, Field: field, Value: value, Origin: origin}
		// An empty key drops that label, so samples with zero, one and two labels are all tried.
		for _, l := range []metric.Label{{Key: k1, Value: v1}, {Key: k2, Value: v2}} {
			if l.Key != "" {
				s.Labels = append(s.Labels, l)
			}
		}
		// A relayed sample carries its own time (0: the batch's); picket's own have the
		// batch's.
		ts := time.Unix(0, nanos)
		wantTime := ts
		if origin.Relayed() {
			s.Time, ts = nanos, tick
			if nanos == 0 {
				wantTime = tick
			}
		}
		var want [][2]string
		if !origin.Relayed() {
			want = append(want, [2]string{"host", host})
		}
		for _, l := range s.Labels {
			want = append(want, [2]string{l.Key, l.Value})
		}
		sort.Slice(want, func(i, j int) bool { return want[i][0] < want[j][0] })
		wantField := field
		if origin == metric.Graphite {
			wantField = "value"
		}
		valid := encodable(collector) && !strings.HasPrefix(collector, "#") && encodable(wantField)
		for i, kv := range want {
			valid = valid && encodable(kv[0]) && encodable(kv[1]) && (i == 0 || want[i-1][0] != kv[0])
		}
		switch origin {
		case metric.InfluxInt:
			valid = valid && value == math.Trunc(value) && value >= -(1<<63) && value < 1<<63
		case metric.InfluxUint:
			valid = valid && value == math.Trunc(value) && value >= 0 && value < 1<<64
		}

		var e Encoder
		before := []byte("previous line\n")
		got, err := e.Append(before, host, s, ts)
		if !s.Finite() {
			if err != ErrNonFinite || len(got) != len(before) {
				t.Fatalf("non-finite %v: %v, wrote %q", value, err, got[len(before):])
			}
			return
		}
		if err != nil {
			if valid {
				t.Fatalf("valid sample refused: %v", err)
			}
			if string(got) != string(before) {
				t.Fatalf("failed Append changed dst to %q", got)
			}
			return
		}
		if !valid {
			t.Fatalf("invalid sample encoded as %q", got[len(before):])
		}
		if !bytes.HasPrefix(got, before) {
			t.Fatalf("dst prefix clobbered: %q", got)
		}
		line := got[len(before):]
		if value == 0 {
			value = 0 // negative zero is printed as 0
		}
		p, err := decodeOne(line)
		if err != nil {
			t.Fatalf("decoding %q: %v", line, err)
		}
		fv, err := sampleValue(s)
		if err != nil {
			t.Fatalf("Append wrote %q, but the value is refused: %v", line, err)
		}
		checked, err := e.appendChecked(nil, host, s, fv, wantTime)
		if err != nil {
			t.Fatalf("lineprotocol alone refused what Append wrote as %q: %v", line, err)
		}
		if q, err := decodeOne(checked); err != nil || !q.equal(p) {
			t.Errorf("Append wrote %q, lineprotocol alone %q (%v)", line, checked, err)
		}
		if p.measurement != collector {
			t.Errorf("measurement %q, want %q", p.measurement, collector)
		}
		if fmt.Sprintf("%q", p.tags) != fmt.Sprintf("%q", want) {
			t.Errorf("tags %q, want %q", p.tags, want)
		}
		if p.field != wantField {
			t.Errorf("field %q, want %q", p.field, wantField)
		}
		switch k := p.value.Kind(); origin {
		case metric.InfluxInt:
			if k != lineprotocol.Int || p.value.IntV() != int64(value) {
				t.Errorf("value %v (%v), want integer %v", p.value, k, value)
			}
		case metric.InfluxUint:
			if k != lineprotocol.Uint || p.value.UintV() != uint64(value) {
				t.Errorf("value %v (%v), want unsigned %v", p.value, k, value)
			}
		default:
			if k != lineprotocol.Float || math.Float64bits(p.value.FloatV()) != math.Float64bits(value) {
				t.Errorf("value %v (%v), want float %v", p.value, k, value)
			}
		}
		if !p.time.Equal(wantTime) {
			t.Errorf("time %v, want %v", p.time.UnixNano(), wantTime.UnixNano())
		}
	})
}
