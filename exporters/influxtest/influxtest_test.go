package influxtest

import (
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

const wait = 20 * time.Second

func keys(pts []Point) []string {
	var out []string
	for _, p := range pts {
		out = append(out, p.Key())
	}
	slices.Sort(out)
	return out
}

// TestPointsRoundTrip: what is written is read back, field by field, with its type.
func TestPointsRoundTrip(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.CreateDatabase(t, "db")
	if pts, err := s.Points("db"); err != nil || len(pts) != 0 {
		t.Fatalf("a new database has points %v (%v)", pts, err)
	}
	code, msg := s.Write(t, "db", "cpu,host=h,cpu=0 user=1.5,system=2 1700000000\n"+
		"cpu,host=h,cpu=1 user=-0.25 1700000000\n"+
		"load,host=h load1=1e300 1700000010\n"+
		"other,host=h n=3i,s=\"x y\",b=true 1700000020\n")
	if code != http.StatusNoContent {
		t.Fatalf("write: %d %s", code, msg)
	}
	pts := s.WaitPoints(t, "db", 7, wait)
	want := map[string]any{
		"cpu,cpu=0,host=h user 1700000000000000000":   1.5,
		"cpu,cpu=0,host=h system 1700000000000000000": 2.0,
		"cpu,cpu=1,host=h user 1700000000000000000":   -0.25,
		"load,host=h load1 1700000010000000000":       1e300,
		"other,host=h n 1700000020000000000":          3.0,
		"other,host=h s 1700000020000000000":          "x y",
		"other,host=h b 1700000020000000000":          true,
	}
	for _, p := range pts {
		if w, ok := want[p.Key()]; !ok || w != p.Value {
			t.Errorf("point %s = %v (%T), want %v", p.Key(), p.Value, p.Value, w)
		}
	}
}

// TestPartialWrite pins what influxd answers to batches with points it refuses, and that
// the other points of such a batch are written.
func TestPartialWrite(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.CreateDatabase(t, "db")
	if code, msg := s.Write(t, "db", "bad,host=h value=1i 1700000000\n"); code != http.StatusNoContent {
		t.Fatalf("write: %d %s", code, msg)
	}
	for _, tc := range []struct {
		name, lines string
		code        int
		msg         string // a prefix of the message, then " dropped=N" where given
		dropped     string
	}{
		{"field type conflict", "good,host=h value=1 1700000001\nbad,host=h value=2 1700000002\ngood,host=h value=3 1700000003\nbad,host=h,x=1 value=4 1700000004\n",
			http.StatusBadRequest, `partial write: field type conflict: input field "value" on measurement "bad" is type float, already exists as type integer`, " dropped=2"},
		{"field named time", "good,host=h time=5 1700000005\ngood,host=h value=6 1700000006\n",
			http.StatusBadRequest, `partial write: invalid field name: input field "time" on measurement "good" is invalid`, " dropped=1"},
		{"some lines do not parse", "good,host=h value=7 1700000007\ngarbage\ngood,host=h value=8 1700000008\n",
			http.StatusBadRequest, `partial write: unable to parse 'garbage': missing fields`, " dropped=0"},
		{"no line parses", "garbage\n", http.StatusBadRequest, `unable to parse 'garbage': missing fields`, ""},
		{"empty", "", http.StatusNoContent, "", ""},
	} {
		code, msg := s.Write(t, "db", tc.lines)
		if code != tc.code || msg != tc.msg+tc.dropped {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, msg, tc.code, tc.msg+tc.dropped)
		}
	}
	got := keys(s.WaitPoints(t, "db", 6, wait))
	want := []string{
		"bad,host=h value 1700000000000000000",
		"good,host=h value 1700000001000000000",
		"good,host=h value 1700000003000000000",
		"good,host=h value 1700000006000000000",
		"good,host=h value 1700000007000000000",
		"good,host=h value 1700000008000000000",
	}
	if !slices.Equal(got, want) {
		t.Errorf("stored %q, want %q", got, want)
	}
}

// TestRequestErrors pins the answers to writes that are wrong as a whole.
func TestRequestErrors(t *testing.T) {
	t.Parallel()
	s := Start(t, WithHTTPSetting("max-body-size", "100"))
	s.CreateDatabase(t, "db")
	for _, tc := range []struct {
		name, path string
		body       string
		code       int
		msg        string
	}{
		{"unknown database", "/write?db=nodb", "m f=1 1\n", http.StatusNotFound, `database not found: "nodb"`},
		{"unknown retention policy", "/write?db=db&rp=nope", "m f=1 1\n", http.StatusInternalServerError, "retention policy not found: nope"},
		{"too large", "/write?db=db", strings.Repeat("m f=1 1\n", 20), http.StatusRequestEntityTooLarge, "Request Entity Too Large"},
		{"no v2 API", "/api/v2/write?bucket=db", "m f=1 1\n", http.StatusNotFound, "404 page not found"},
	} {
		resp, err := http.Post(s.URL()+tc.path, "text/plain", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if msg := errorMessage(body); resp.StatusCode != tc.code || msg != tc.msg {
			t.Errorf("%s: %d %q, want %d %q", tc.name, resp.StatusCode, msg, tc.code, tc.msg)
		}
	}
}

// TestAuth: with auth on, a write without credentials is a 401, and the Server's own
// calls use the admin user.
func TestAuth(t *testing.T) {
	t.Parallel()
	s := Start(t, WithAuth("admin", "s3cret'\"pw"))
	s.CreateDatabase(t, "db")
	resp, err := http.Post(s.URL()+"/write?db=db", "text/plain", strings.NewReader("m f=1 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("write without credentials: %s, want 401", resp.Status)
	}
	if code, msg := s.Write(t, "db", "m f=1 1\n"); code != http.StatusNoContent {
		t.Fatalf("write as admin: %d %s", code, msg)
	}
	s.WaitPoints(t, "db", 1, wait)
}

// TestKillKeepsAcknowledged: a point influxd acknowledged survives a SIGKILL; while it is
// down its port refuses connections; it comes back on the same port with the same data.
func TestKillKeepsAcknowledged(t *testing.T) {
	t.Parallel()
	s := Start(t)
	s.CreateDatabase(t, "db")
	if code, msg := s.Write(t, "db", "m,host=h f=1 1700000000\nm,host=h f=2 1700000010\n"); code != http.StatusNoContent {
		t.Fatalf("write: %d %s", code, msg)
	}
	s.Kill()
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("a killed influxd's port accepts connections")
	}
	s.Restart()
	got := keys(s.WaitPoints(t, "db", 2, wait))
	if want := []string{"m,host=h f 1700000000000000000", "m,host=h f 1700000010000000000"}; !slices.Equal(got, want) {
		t.Errorf("after a SIGKILL and a restart: %q, want %q", got, want)
	}
	s.Stop()
	s.Restart()
	s.WaitPoints(t, "db", 2, wait)
}
