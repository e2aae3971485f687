package influx

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
)

// isBad picks the lines of sample n=3: the points the fake servers refuse.
func isBad(line string) bool { return strings.Contains(line, ",n=3 ") }

func splitBad(lines []string) (good []string, bad int) {
	for _, l := range lines {
		if isBad(l) {
			bad++
		} else {
			good = append(good, l)
		}
	}
	return good, bad
}

// checkAllBut: every point of ticks×k is stored exactly once except sample n=3 of each
// tick, counted as refused; the cursor is at the end.
func checkAllBut(t *testing.T, f *fakeInflux, e *Exporter, ticks, k int) {
	t.Helper()
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == e.o.Spool.End() })
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range ticks {
		for j := range k {
			_, ok := f.points[key(i, j)]
			if ok == (j == 3) {
				t.Errorf("point %s stored %v", key(i, j), ok)
			}
		}
	}
	if len(f.points) != ticks*(k-1) {
		t.Errorf("%d points stored, want %d", len(f.points), ticks*(k-1))
	}
	if got := e.rejected.Load(); got != uint64(ticks) {
		t.Errorf("dropped_rejected %d, want %d", got, ticks)
	}
	if got := e.acked.Load(); got != uint64(ticks*(k-1)) {
		t.Errorf("acked %d, want %d", got, ticks*(k-1))
	}
}

// TestPartialWrite: a 1.x partial write (400, good points written, "dropped=N") costs
// exactly the refused points, without sending anything again.
func TestPartialWrite(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.setRespond(func(_ http.Header, lines []string) (int, string, []string) {
		good, bad := splitBad(lines)
		if bad == 0 {
			return http.StatusNoContent, "", lines
		}
		return http.StatusBadRequest, fmt.Sprintf(`partial write: field type conflict: input field "value" on measurement "test" is type float, already exists as type integer dropped=%d`, bad), good
	})
	sp := openSpool(t, t.TempDir())
	var logs logBuffer
	o := testOptions(sp, f.srv.URL)
	o.Logger = logs.logger()
	e := newExporter(t, o)
	appendAll(t, sp, batches(30, 20))
	stop := run(e)
	defer stop()
	checkAllBut(t, f, e, 30, 20)
	if got := e.sent.Load(); got != 600 {
		t.Errorf("sent %d, want 600: nothing needed sending twice", got)
	}
	if n := strings.Count(logs.String(), "field type conflict"); n != 1 {
		t.Errorf("the server's message logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestBisect: a server that refuses a whole batch for one bad line (2.x's 400), or writes
// the lines that parse without counting the others (1.x's "unable to parse … dropped=0"),
// costs exactly the bad lines, found by halving, in few requests.
func TestBisect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		respond func(h http.Header, lines []string) (int, string, []string)
	}{
		{"whole batch refused", func(_ http.Header, lines []string) (int, string, []string) {
			if _, bad := splitBad(lines); bad > 0 {
				return http.StatusBadRequest, "unable to parse: bad line", nil
			}
			return http.StatusNoContent, "", lines
		}},
		{"good lines written, bad not counted", func(_ http.Header, lines []string) (int, string, []string) {
			good, bad := splitBad(lines)
			if bad > 0 {
				return http.StatusBadRequest, "partial write: unable to parse 'x': invalid field format dropped=0", good
			}
			return http.StatusNoContent, "", lines
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.setRespond(tc.respond)
			sp := openSpool(t, t.TempDir())
			e := newExporter(t, testOptions(sp, f.srv.URL))
			const ticks, k = 30, 20
			appendAll(t, sp, batches(ticks, k))
			stop := run(e)
			defer stop()
			checkAllBut(t, f, e, ticks, k)
			// Each bad line costs about two requests per halving of its batch.
			if n := len(f.reqs()); n > ticks*2*10+10 {
				t.Errorf("%d requests to find %d bad lines", n, ticks)
			}
		})
	}
}

// TestRefusedRequestKept: a server that refuses every request with a 400 is refusing the
// request, not its points: nothing is dropped, and all of it arrives once it is fixed.
// It holds both before anything was ever accepted and after (when the line accepted last
// is tried again to tell the two apart).
func TestRefusedRequestKept(t *testing.T) {
	t.Parallel()
	for _, acceptedBefore := range []bool{false, true} {
		t.Run(fmt.Sprintf("accepted-before=%v", acceptedBefore), func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			sp := openSpool(t, t.TempDir())
			var logs logBuffer
			o := testOptions(sp, f.srv.URL)
			o.Logger = logs.logger()
			e := newExporter(t, o)
			stop := run(e)
			defer stop()
			if acceptedBefore {
				appendAll(t, sp, batches(1, 20))
				waitFor(t, "the first tick", func() bool { return f.count() == 20 })
			}
			f.setRespond(func(http.Header, []string) (int, string, []string) {
				return http.StatusBadRequest, "no such thing", nil
			})
			appendAll(t, sp, batches(10, 20)[1:])
			waitFor(t, "the refusal logged", func() bool { return strings.Contains(logs.String(), "taken to be wrong") })
			time.Sleep(300 * time.Millisecond) // a few more tries
			if got := e.rejected.Load(); got != 0 {
				t.Fatalf("%d datapoints dropped for a request the server refuses whole", got)
			}
			f.setRespond(nil)
			want := 180
			if acceptedBefore {
				want = 200
			}
			fixed := time.Now()
			waitFor(t, "everything", func() bool { return f.count() == want })
			t.Logf("delivered %s after the server was fixed, %d requests in all", time.Since(fixed), len(f.reqs()))
			waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
			if !strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("a refused request is not logged as an error:\n%s", logs.String())
			}
		})
	}
}

// TestConfigFailureKeepsData: 401, 403, 404 (bad credentials, no database) and 5xx keep
// the data, back off, and are logged once each, until the server takes it.
func TestConfigFailureKeepsData(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusInternalServerError, http.StatusBadGateway} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.setRespond(func(http.Header, []string) (int, string, []string) { return status, "nope", nil })
			sp := openSpool(t, t.TempDir())
			var logs logBuffer
			o := testOptions(sp, f.srv.URL)
			o.Logger = logs.logger()
			e := newExporter(t, o)
			appendAll(t, sp, batches(10, 20))
			stop := run(e)
			defer stop()
			waitFor(t, "a few tries", func() bool { return len(f.reqs()) >= 4 })
			if n, _ := e.cursor.Backlog(); n != 200 || e.rejected.Load() != 0 {
				t.Fatalf("backlog %d, rejected %d: want everything kept", n, e.rejected.Load())
			}
			f.setRespond(nil)
			waitFor(t, "everything", func() bool { return f.count() == 200 })
			waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
			text := logs.String()
			level := "level=WARN"
			if status < 500 {
				level = "level=ERROR"
			}
			if n := strings.Count(text, fmt.Sprintf("%d %s: nope", status, http.StatusText(status))); n != 1 || !strings.Contains(text, level) {
				t.Errorf("the failure logged %d times (want once, at %s):\n%s", n, level, text)
			}
			if !strings.Contains(text, "endpoint recovered") {
				t.Errorf("the recovery is not logged:\n%s", text)
			}
			if e.reconnects.Load() < 4 {
				t.Errorf("reconnects %d after at least 4 failed requests", e.reconnects.Load())
			}
		})
	}
}

// TestRetryAfter: a 429 or 503 with Retry-After is tried again no sooner than it says.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			var calls atomic.Int32
			f.setRespond(func(h http.Header, lines []string) (int, string, []string) {
				if calls.Add(1) == 1 {
					h.Set("Retry-After", "1")
					return status, "slow down", nil
				}
				return http.StatusNoContent, "", lines
			})
			sp := openSpool(t, t.TempDir())
			e := newExporter(t, testOptions(sp, f.srv.URL))
			appendAll(t, sp, batches(1, 20))
			stop := run(e)
			defer stop()
			waitFor(t, "everything", func() bool { return f.count() == 20 })
			r := f.reqs()
			if len(r) != 2 {
				t.Fatalf("%d requests, want 2", len(r))
			}
			if d := r[1].at.Sub(r[0].at); d < time.Second {
				t.Errorf("tried again after %s, before the Retry-After of 1s", d)
			}
		})
	}
}

// TestFailover: while the primary fails, the secondary gets the traffic; once the primary
// answers again, traffic returns to it.
func TestFailover(t *testing.T) {
	t.Parallel()
	primary, secondary := newFake(t), newFake(t)
	primary.setRespond(func(http.Header, []string) (int, string, []string) {
		return http.StatusInternalServerError, "broken", nil
	})
	sp := openSpool(t, t.TempDir())
	e := newExporter(t, testOptions(sp, primary.srv.URL, secondary.srv.URL))
	stop := run(e)
	defer stop()
	bs := batches(20, 10)
	appendAll(t, sp, bs[:10])
	waitFor(t, "the first half at the secondary", func() bool { return secondary.count() == 100 })
	waitFor(t, "the secondary in use", func() bool { return e.active.Load() == 1 })
	primary.setRespond(nil)
	time.Sleep(250 * time.Millisecond) // longer than BackoffMax
	for _, b := range bs[10:] {
		appendAll(t, sp, []*metric.Batch{b})
		time.Sleep(30 * time.Millisecond)
	}
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	waitFor(t, "the primary back", func() bool { return e.active.Load() == 0 })
	if n := primary.count(); n < 50 {
		t.Errorf("the primary got %d points of the last 100: traffic did not return to it", n)
	}
	if primary.count()+secondary.count() < 200 {
		t.Errorf("%d + %d points, want all 200", primary.count(), secondary.count())
	}
}

// TestTooLarge: a 413 splits the batch until it fits; a single line the server will not
// take is dropped and counted.
func TestTooLarge(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.setRespond(func(_ http.Header, lines []string) (int, string, []string) {
		if len(lines) > 15 || slices.ContainsFunc(lines, isBad) {
			return http.StatusRequestEntityTooLarge, "Request Entity Too Large", nil
		}
		return http.StatusNoContent, "", lines
	})
	sp := openSpool(t, t.TempDir())
	e := newExporter(t, testOptions(sp, f.srv.URL))
	appendAll(t, sp, batches(30, 20))
	stop := run(e)
	defer stop()
	checkAllBut(t, f, e, 30, 20)
}

// TestSecretsNeverShown: neither the token nor the password (nor the basic-auth header
// made of it) appears in a log line, whatever the server does, even when it echoes the
// request's headers back.
func TestSecretsNeverShown(t *testing.T) {
	t.Parallel()
	const token, password = "tok-Zq8vX3", "pw-Hu7aK2"
	for _, v2 := range []bool{false, true} {
		secrets := []string{password, "dTpwdy1IdTdhSzI=" /* base64("u:pw-Hu7aK2") */}
		if v2 {
			secrets = []string{token}
		}
		t.Run(fmt.Sprintf("v2=%v", v2), func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			var calls atomic.Int32
			f.setRespond(func(h http.Header, lines []string) (int, string, []string) {
				echo := "you sent " + strings.Join(secrets, " ")
				switch calls.Add(1) {
				case 1:
					return http.StatusUnauthorized, echo, nil
				case 2:
					return http.StatusInternalServerError, echo, nil
				case 3:
					h.Set("X-Influxdb-Error", echo)
					return http.StatusServiceUnavailable, "", nil
				case 4:
					return http.StatusBadRequest, "partial write: " + echo + " dropped=1", lines[1:]
				}
				return http.StatusNoContent, "", lines
			})
			sp := openSpool(t, t.TempDir())
			var logs logBuffer
			o := testOptions(sp, f.srv.URL, "http://127.0.0.1:1")
			o.Logger = logs.logger()
			if v2 {
				o.Database, o.Bucket, o.Token = "", "b", token
			} else {
				o.Username, o.Password = "u", password
			}
			e := newExporter(t, o)
			appendAll(t, sp, batches(5, 10))
			stop := run(e)
			waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
			stop()
			text := logs.String()
			if !strings.Contains(text, "REDACTED") {
				t.Errorf("no echo was logged, so nothing was tested:\n%s", text)
			}
			for _, s := range secrets {
				if strings.Contains(text, s) {
					t.Errorf("the log shows %q:\n%s", s, text)
				}
			}
		})
	}
}

// TestShutdown: at shutdown, records already read go out within DrainTimeout and the
// cursor is saved past them; a server too slow to answer in time leaves them in the spool.
func TestShutdown(t *testing.T) {
	t.Parallel()
	for _, slow := range []bool{false, true} {
		t.Run(fmt.Sprintf("slow=%v", slow), func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			if slow {
				f.setRespond(func(_ http.Header, lines []string) (int, string, []string) {
					time.Sleep(3 * time.Second)
					return http.StatusNoContent, "", lines
				})
			}
			dir := t.TempDir()
			sp := openSpool(t, dir)
			o := testOptions(sp, f.srv.URL)
			o.BatchInterval = time.Hour // nothing goes before shutdown
			o.Timeout = 10 * time.Second
			e := newExporter(t, o)
			stop := run(e)
			waitFor(t, "the session", func() bool { return sessionStarted(e) })
			appendAll(t, sp, batches(5, 10))
			time.Sleep(100 * time.Millisecond) // read, waiting for the batch interval
			start := time.Now()
			stop()
			if d := time.Since(start); d > o.DrainTimeout+time.Second {
				t.Errorf("Run took %s to return, more than DrainTimeout %s", d, o.DrainTimeout)
			}
			if err := sp.Close(); err != nil {
				t.Fatal(err)
			}
			sp = openSpool(t, dir)
			c, err := sp.Cursor("influx")
			if err != nil {
				t.Fatal(err)
			}
			n, _ := c.Backlog()
			want := uint64(0)
			if slow {
				want = 50
			}
			if n != want {
				t.Errorf("after a restart the backlog is %d datapoints, want %d", n, want)
			}
		})
	}
}

// TestLiveFirstAndPaced: a backlog replays at ReplayRate, and a live tick that comes in
// meanwhile goes out ahead of the rest of the backlog.
func TestLiveFirstAndPaced(t *testing.T) {
	t.Parallel()
	const k, backlog, rate = 100, 40, 2000 // 4,000 datapoints at 2,000/s: about 2 s
	f := newFake(t)
	var order []int64 // tick times in the order their first point arrived
	seen := map[int64]bool{}
	f.setRespond(func(_ http.Header, lines []string) (int, string, []string) {
		for _, l := range lines {
			var ts int64
			fmt.Sscanf(l[strings.LastIndexByte(l[:len(l)-1], ' ')+1:], "%d", &ts)
			if !seen[ts] {
				seen[ts] = true
				order = append(order, ts)
			}
		}
		return http.StatusNoContent, "", lines
	})
	sp := openSpool(t, t.TempDir())
	o := testOptions(sp, f.srv.URL)
	o.ReplayRate, o.BatchBytes = rate, 8<<10
	e := newExporter(t, o)
	appendAll(t, sp, batches(backlog, k))
	start := time.Now()
	stop := run(e)
	defer stop()
	waitFor(t, "the backlog started", func() bool { return e.sent.Load() > 0 })
	live := batches(1, k)[0]
	live.Time = time.Now().Truncate(time.Second)
	appendAll(t, sp, []*metric.Batch{live})
	waitFor(t, "everything", func() bool { return f.count() == (backlog+1)*k })
	took := time.Since(start)
	f.mu.Lock()
	defer f.mu.Unlock()
	pos := slices.Index(order, live.Time.Unix())
	if pos < 0 || pos > backlog/2 {
		t.Errorf("the live tick arrived %d of %d ticks: it waited behind the backlog", pos+1, backlog+1)
	}
	if floor := time.Duration(float64((backlog-1)*k) / rate * float64(time.Second)); took < floor {
		t.Errorf("%d datapoints replayed in %s, faster than %v/s allows (%s)", backlog*k, took, rate, floor)
	}
	if e.replayed.Load() != backlog*k {
		t.Errorf("replayed %d, want %d", e.replayed.Load(), backlog*k)
	}
}

// TestSplay: a live tick is sent no earlier than its tick time plus the splay.
func TestSplay(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	sp := openSpool(t, t.TempDir())
	o := testOptions(sp, f.srv.URL)
	tick := batches(1, 10)[0]
	tick.Time = time.Now().Truncate(time.Second)
	// Half a second from now, whatever the fraction of the second now is.
	o.Splay = time.Since(tick.Time) + 500*time.Millisecond
	e := newExporter(t, o)
	stop := run(e)
	defer stop()
	waitFor(t, "the session", func() bool { return sessionStarted(e) })
	appendAll(t, sp, []*metric.Batch{tick})
	waitFor(t, "the tick", func() bool { return f.count() == 10 })
	if got := f.reqs()[0].at; got.Before(tick.Time.Add(o.Splay)) {
		t.Errorf("tick %s arrived at %s, before its splay of %s", tick.Time.Format(time.TimeOnly), got.Format(time.StampMilli), o.Splay)
	}
}

// TestReport: the self-metrics say what happened, by name.
func TestReport(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.setRespond(func(_ http.Header, lines []string) (int, string, []string) {
		good, bad := splitBad(lines)
		if bad == 0 {
			return http.StatusNoContent, "", lines
		}
		return http.StatusBadRequest, fmt.Sprintf("partial write: conflict dropped=%d", bad), good
	})
	sp := openSpool(t, t.TempDir())
	e := newExporter(t, testOptions(sp, f.srv.URL))
	tick := batches(3, 10)
	tick[1].Samples[0].Value = 1 / zero()                                // non-finite: not sent, counted
	tick[2].Samples[1].Labels[0].Value = ""                              // line protocol cannot carry it: counted
	tick[2].Samples[2].Labels[0] = metric.Label{Key: "host", Value: "x"} // nor this
	appendAll(t, sp, tick)
	stop := run(e)
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	s := metric.NewSink("picket")
	e.Report(s)
	stop()
	got := map[string]float64{}
	for _, m := range s.Samples() {
		if len(m.Labels) != 1 || m.Labels[0] != (metric.Label{Key: "exporter", Value: "influx"}) {
			t.Errorf("%s has labels %v, want exporter=influx", m.Field, m.Labels)
		}
		got[m.Field] = m.Value
	}
	// 30 samples: 1 non-finite, 2 unencodable, 3 refused by the server (n=3), 24 written.
	for field, want := range map[string]float64{
		"sent": 27, "acked": 24, "replayed": 27, "dropped_nonfinite": 1, "dropped_rejected": 5,
		"dropped_spool_full": 0, "dropped_expired": 0, "dropped_corrupt": 0,
		"backlog_datapoints": 0, "backlog_age_seconds": 0, "reconnects": 0, "endpoint": 0,
	} {
		if v, ok := got[field]; !ok || v != want {
			t.Errorf("%s = %v (reported: %v), want %v", field, v, ok, want)
		}
	}
	if len(got) != 12 {
		t.Errorf("%d self-metrics, want 12: %v", len(got), got)
	}
}

func zero() float64 { return 0 }

func TestRetryAfterHeader(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		h    string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 0 ", 0},
		{"86400", maxRetryAfter},
		{"-5", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := retryAfter(tc.h, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %s, want %s", tc.h, got, tc.want)
		}
	}
}

func TestServerMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		header string
		body   string
		want   string
	}{
		{"1.x header", "partial write: x dropped=1", `{"error":"other"}`, "partial write: x dropped=1"},
		{"1.x body", "", `{"error":"database not found: \"db\""}`, `database not found: "db"`},
		{"2.x body", "", `{"code":"invalid","message":"unable to parse"}`, "unable to parse"},
		{"text", "", "  Bad Gateway\n", "Bad Gateway"},
		{"empty", "", "", ""},
		{"long", "", strings.Repeat("x", 600), strings.Repeat("x", maxMessage) + "…"},
		{"binary", "", "a\xffb", "a?b"},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("X-Influxdb-Error", tc.header)
		}
		if got := serverMessage(h, []byte(tc.body)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestNothingToSend: records whose every sample is left out cost no request, and the
// cursor moves past them.
func TestNothingToSend(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	sp := openSpool(t, t.TempDir())
	e := newExporter(t, testOptions(sp, f.srv.URL))
	b := batches(2, 3)
	for i := range b[0].Samples {
		b[0].Samples[i].Value = 1 / zero()
	}
	appendAll(t, sp, b[:1])
	stop := run(e)
	defer stop()
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	if n := len(f.reqs()); n != 0 {
		t.Errorf("%d requests for nothing", n)
	}
	appendAll(t, sp, b[1:])
	waitFor(t, "the next tick", func() bool { return f.count() == 3 })
}

// TestBacklogEndsInDamage: a backlog whose last record is damaged (skipped, charged as
// corrupt) still lets the cursor pass on to the live data delivered after it.
func TestBacklogEndsInDamage(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	dir := t.TempDir()
	sp := openSpool(t, dir)
	newExporter(t, testOptions(sp, f.srv.URL)) // the cursor starts here
	appendAll(t, sp, batches(5, 10))
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments %v (%v)", segs, err)
	}
	// The last byte of the last segment is in the payload of its last record.
	last := segs[len(segs)-1]
	b, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(last, b, 0o640); err != nil {
		t.Fatal(err)
	}
	sp = openSpool(t, dir)
	e := newExporter(t, testOptions(sp, f.srv.URL))
	stop := run(e)
	defer stop()
	waitFor(t, "the backlog's 4 good records", func() bool { return f.count() == 40 })
	live := batches(1, 10)[0]
	live.Time = time.Unix(1750000000, 0) // in the past: a live tick waits for its time
	appendAll(t, sp, []*metric.Batch{live})
	waitFor(t, "the live tick", func() bool { return f.count() == 50 })
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	if d := e.cursor.Drops(); d.Corrupt != 10 {
		t.Errorf("corrupt %d, want the 10 datapoints of the damaged record", d.Corrupt)
	}
}

// TestFixedDuringSearch: a server that refused whole requests and is fixed while the
// refused lines are being searched for drops nothing: a line refused before anything was
// accepted counts only if it is refused alone again.
func TestFixedDuringSearch(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	var calls atomic.Int32
	f.setRespond(func(_ http.Header, lines []string) (int, string, []string) {
		// The whole batch, a half, a quarter, an eighth and its two single lines.
		if calls.Add(1) <= 6 {
			return http.StatusBadRequest, "not now", nil
		}
		return http.StatusNoContent, "", lines
	})
	sp := openSpool(t, t.TempDir())
	o := testOptions(sp, f.srv.URL)
	o.BatchInterval = time.Second // the 20 lines in one request
	e := newExporter(t, o)
	appendAll(t, sp, batches(2, 10))
	stop := run(e)
	defer stop()
	waitFor(t, "the cursor at the end", func() bool { return e.cursor.Position() == sp.End() })
	if f.count() != 20 || e.rejected.Load() != 0 {
		t.Errorf("%d points stored, %d rejected; want 20 and 0", f.count(), e.rejected.Load())
	}
	if r := f.reqs(); r[4].lines != 1 || r[5].lines != 1 {
		t.Errorf("requests %+v: the search did not reach single lines before the fix", r)
	}
}
