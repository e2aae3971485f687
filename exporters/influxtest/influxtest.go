// Package influxtest runs a real InfluxDB 1.x server for tests, the way net/http/httptest
// runs HTTP servers: Debian's influxd, on 127.0.0.1 on a free port, with its meta, data and
// WAL directories in the test's temporary directory, usage reporting and its own
// monitoring off, stopped by the test's cleanup. Tests read back what it stored through its
// query API, point by point.
//
// What the real server does that matters for delivery tests (influxd 1.6, as in Debian
// bookworm; checked by this package's tests):
//
//   - A write is answered once it is in the WAL, fsynced (wal-fsync-delay 0): a point
//     acknowledged with a 2xx survives a SIGKILL of the server.
//   - A batch with points the server refuses (a field type conflict, a field called time)
//     gets a 400 "partial write: … dropped=N": the other points are written, N is exact.
//   - A batch with lines that do not parse gets a 400 too: "partial write: unable to parse
//     …" with dropped=0 when some lines parsed (those are written), "unable to parse …"
//     without "partial write" when none did.
//   - An unknown database is a 404; an unknown retention policy a 500; without valid
//     credentials, when auth is on, a 401.
package influxtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/picket-agent/picket/agent/testenv"
	"github.com/picket-agent/picket/exporters/portlease"
	"github.com/picket-agent/picket/exporters/servertest"
)

const (
	// startTimeout bounds the wait for influxd to answer /ping: it starts in well under
	// a second, the rest is for loaded CI machines.
	startTimeout = 30 * time.Second
	// pollInterval is the period of every wait.
	pollInterval = 20 * time.Millisecond
)

// Require skips the test unless influxd is installed, or fails it when the environment
// variable PICKET_REQUIRE_PRIVILEGED is set (CI sets it, and `make test` installs influxd):
// in CI a missing server is a broken machine, not a reason to test less.
func Require(t testing.TB) {
	t.Helper()
	_, err := exec.LookPath("influxd")
	testenv.Require(t, err == nil, "not installed: influxd (Debian package influxdb)")
}

// Server is an influxd run by Start. Its methods are for the test's goroutine, except
// Points and Query, which any goroutine may call.
type Server struct {
	t   testing.TB
	dir string // holds influxdb.conf, meta/, data/, wal/
	// hold is a socket bound to the HTTP port and never listening: influxd binds the port
	// beside it (both set SO_REUSEADDR), and while influxd is stopped the port stays ours,
	// for Restart. Connections to it are refused then, as they should be.
	hold     int
	addr     string
	user     string
	password string
	out      *servertest.Output
	proc     *servertest.Process
	client   *http.Client
}

// Option changes the configuration Start gives influxd.
type Option func(*config)

type config struct {
	user, password string
	http           map[string]string
}

// WithAuth turns authentication on and creates an admin user with that name and password.
// Writes and queries without them get a 401; the Server's own queries use them.
func WithAuth(user, password string) Option {
	return func(c *config) { c.user, c.password = user, password }
}

// WithHTTPSetting sets key to value, a TOML value ("1000", `"10s"`, "true"), in the
// [http] section of the configuration (max-body-size, say).
func WithHTTPSetting(key, value string) Option {
	return func(c *config) { c.http[key] = value }
}

// Start runs influxd with its HTTP API on 127.0.0.1 and a free port, and returns once it
// answers /ping. The test's cleanup kills it (the data goes with the temporary directory)
// and, if the test failed, logs its output. It skips or fails the test as Require does if
// influxd is not installed.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	Require(t)
	cfg := config{http: map[string]string{}}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{t: t, dir: t.TempDir(), hold: -1, out: &servertest.Output{}, user: cfg.user, password: cfg.password,
		client: &http.Client{Timeout: 30 * time.Second}}
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if s.proc != nil {
			s.proc.Stop(syscall.SIGKILL)
		}
		if s.hold >= 0 {
			unix.Close(s.hold)
		}
		s.client.CloseIdleConnections()
		if t.Failed() {
			t.Logf("influxd on %s, output:\n%s", s.addr, s.out)
		}
	})
	hold, port, err := portlease.Hold()
	if err != nil {
		t.Fatalf("influxtest: %v", err)
	}
	s.hold, s.addr = hold, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	settings := map[string]string{
		"bind-address": strconv.Quote(s.addr),
		"auth-enabled": strconv.FormatBool(cfg.user != ""),
		// No access log: a line per request would drown the output a failed test shows.
		"log-enabled": "false",
	}
	maps.Copy(settings, cfg.http)
	var conf strings.Builder
	// Debian renamed upstream's reporting-disabled to reporting-enabled (off by default);
	// set both, so no build of influxd phones home from a test.
	conf.WriteString("reporting-disabled = true\nreporting-enabled = false\n")
	// The meta service's RPC port (backup and restore) is not used: any free port.
	conf.WriteString("bind-address = \"127.0.0.1:0\"\n")
	fmt.Fprintf(&conf, "[meta]\n  dir = %q\n  logging-enabled = false\n", filepath.Join(s.dir, "meta"))
	fmt.Fprintf(&conf, "[data]\n  dir = %q\n  wal-dir = %q\n  query-log-enabled = false\n",
		filepath.Join(s.dir, "data"), filepath.Join(s.dir, "wal"))
	// Its own metrics would show up as an _internal database; the rest is not needed.
	conf.WriteString("[monitor]\n  store-enabled = false\n")
	conf.WriteString("[continuous_queries]\n  enabled = false\n")
	conf.WriteString("[subscriber]\n  enabled = false\n")
	conf.WriteString("[logging]\n  level = \"warn\"\n  suppress-logo = true\n")
	conf.WriteString("[http]\n")
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(&conf, "  %s = %s\n", k, settings[k])
	}
	if err := os.WriteFile(s.conf(), []byte(conf.String()), 0o644); err != nil {
		t.Fatalf("influxtest: %v", err)
	}
	s.start()
	if cfg.user != "" {
		// With auth on and no user yet, influxd lets anyone create the first admin.
		q := fmt.Sprintf("CREATE USER %s WITH PASSWORD '%s' WITH ALL PRIVILEGES", quoteIdent(cfg.user), strings.ReplaceAll(cfg.password, `'`, `\'`))
		if _, err := s.query("", q, false); err != nil {
			t.Fatalf("influxtest: creating the admin user: %v", err)
		}
	}
	return s
}

func (s *Server) conf() string { return filepath.Join(s.dir, "influxdb.conf") }

// start runs influxd and waits until it answers /ping.
func (s *Server) start() {
	s.t.Helper()
	proc, err := servertest.Start(s.out, "influxtest", nil, "influxd", "run", "-config", s.conf())
	if err != nil {
		s.t.Fatalf("influxtest: %v", err)
	}
	s.proc = proc
	deadline := time.Now().Add(startTimeout)
	for {
		if !proc.Running() {
			s.t.Fatalf("influxtest: influxd exited before answering /ping: %v\n%s", proc.Err(), s.out)
		}
		// While hold keeps the port, only influxd can be listening on it.
		resp, err := s.client.Get(s.URL() + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("influxtest: influxd not answering /ping on %s after %v: %v", s.addr, startTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// URL is the HTTP API's base URL, http://127.0.0.1:port. It is the same after Restart.
func (s *Server) URL() string { return "http://" + s.addr }

// Addr is the HTTP API's address, 127.0.0.1:port.
func (s *Server) Addr() string { return s.addr }

// Log is what influxd has printed so far, over all its runs.
func (s *Server) Log() string { return s.out.String() }

// Stop stops influxd with SIGTERM and waits for it to exit (SIGKILL after 30 s, which
// fails the test). Everything it acknowledged is on disk. It is a no-op if influxd is not
// running.
func (s *Server) Stop() {
	s.t.Helper()
	s.client.CloseIdleConnections()
	if err := s.proc.Stop(syscall.SIGTERM); err != nil {
		s.t.Errorf("influxtest: %v", err)
	}
}

// Kill kills influxd with SIGKILL and waits for it to exit. What it acknowledged is in
// its fsynced WAL and survives; a request in progress gets no answer. It is a no-op if
// influxd is not running.
func (s *Server) Kill() {
	s.t.Helper()
	s.client.CloseIdleConnections()
	if err := s.proc.Stop(syscall.SIGKILL); err != nil {
		s.t.Errorf("influxtest: %v", err)
	}
}

// Restart stops influxd if it is running, as Stop does, and starts it again on the same
// port with the same data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Exec runs statements (CREATE DATABASE, DROP SERIES …) as the admin user, failing the
// test on an error.
func (s *Server) Exec(t testing.TB, db, statements string) {
	t.Helper()
	if _, err := s.query(db, statements, true); err != nil {
		t.Fatalf("influxtest: %s: %v", statements, err)
	}
}

// CreateDatabase creates database name, with its default retention policy autogen
// (infinite duration, so points of any age are kept).
func (s *Server) CreateDatabase(t testing.TB, name string) {
	t.Helper()
	s.Exec(t, "", "CREATE DATABASE "+quoteIdent(name))
}

// Write posts lines to /write of db at precision s (seconds) as the admin user, and
// returns the status code and influxd's error message, if any. Tests use it to set a
// field's type before picket writes.
func (s *Server) Write(t testing.TB, db, lines string) (int, string) {
	t.Helper()
	u := s.URL() + "/write?" + url.Values{"db": {db}, "precision": {"s"}}.Encode()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(lines))
	if err != nil {
		t.Fatal(err)
	}
	if s.user != "" {
		req.SetBasicAuth(s.user, s.password)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("influxtest: writing: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, errorMessage(body)
}

// Point is one field value of one series at one time, as influxd stores it.
type Point struct {
	Measurement string
	// Tags are the series' tags, sorted by key: "host=h,iface=eth0". Tags a series does
	// not have are left out.
	Tags  string
	Field string
	Time  time.Time
	// Value is float64 for a float or integer field (JSON does not tell them apart),
	// string or bool for those types.
	Value any
}

// Key is the point's identity: a second point with the same key overwrites the first.
func (p Point) Key() string {
	return fmt.Sprintf("%s,%s %s %d", p.Measurement, p.Tags, p.Field, p.Time.UnixNano())
}

// Points returns every point in database db, one per field value, in influxd's order
// (by measurement, series, time). It is safe to call from any goroutine; on an error
// (influxd down, say) it returns the error rather than failing the test.
func (s *Server) Points(db string) ([]Point, error) {
	return s.query(db, "SELECT * FROM /.*/ GROUP BY *", true)
}

// WaitPoints polls Points until it returns exactly want points, failing the test with
// what there is after timeout. influxd makes a write visible before it answers it, so a
// poll is only needed for writes still in flight.
func (s *Server) WaitPoints(t testing.TB, db string, want int, timeout time.Duration) []Point {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pts, err := s.Points(db)
		if err == nil && len(pts) == want {
			return pts
		}
		if time.Now().After(deadline) {
			t.Fatalf("influxtest: %d points in %s after %v (%v), want %d", len(pts), db, timeout, err, want)
		}
		time.Sleep(pollInterval * 5)
	}
}

// queryResponse is one chunk of /query's answer.
type queryResponse struct {
	Results []struct {
		Series []struct {
			Name    string            `json:"name"`
			Tags    map[string]string `json:"tags"`
			Columns []string          `json:"columns"`
			Values  [][]any           `json:"values"`
		} `json:"series"`
		Error string `json:"error"`
	} `json:"results"`
	Error string `json:"error"`
}

// query runs q and returns the points of its series. The answer is read in chunks, so
// that no row limit of the server's applies.
func (s *Server) query(db, q string, auth bool) ([]Point, error) {
	form := url.Values{"q": {q}, "epoch": {"ns"}, "chunked": {"true"}, "chunk_size": {"10000"}}
	if db != "" {
		form.Set("db", db)
	}
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth && s.user != "" {
		req.SetBasicAuth(s.user, s.password)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("%s: %s", resp.Status, errorMessage(body))
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	var pts []Point
	for {
		var r queryResponse
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			return pts, nil
		} else if err != nil {
			return nil, err
		}
		if r.Error != "" {
			return nil, errors.New(r.Error)
		}
		for _, res := range r.Results {
			if res.Error != "" {
				return nil, errors.New(res.Error)
			}
			for _, se := range res.Series {
				var tags []string
				for _, k := range slices.Sorted(maps.Keys(se.Tags)) {
					if v := se.Tags[k]; v != "" { // GROUP BY * shows tags a series lacks as ""
						tags = append(tags, k+"="+v)
					}
				}
				for _, row := range se.Values {
					if len(row) != len(se.Columns) || len(row) == 0 {
						return nil, fmt.Errorf("row %v does not match columns %v", row, se.Columns)
					}
					ns, err := row[0].(json.Number).Int64()
					if err != nil {
						return nil, fmt.Errorf("time %v: %w", row[0], err)
					}
					for i, v := range row[1:] {
						if v == nil {
							continue // a field this row does not have
						}
						if n, ok := v.(json.Number); ok {
							f, err := n.Float64()
							if err != nil {
								return nil, err
							}
							v = f
						}
						pts = append(pts, Point{Measurement: se.Name, Tags: strings.Join(tags, ","),
							Field: se.Columns[i+1], Time: time.Unix(0, ns), Value: v})
					}
				}
			}
		}
	}
}

// errorMessage is the error influxd put in a response body: {"error": "…"}.
func errorMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	return string(bytes.TrimSpace(body))
}

// quoteIdent quotes an InfluxQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
