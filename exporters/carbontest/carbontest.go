// Package carbontest runs real Graphite servers for tests, the way net/http/httptest runs
// HTTP servers: Debian's carbon-cache (Python, Twisted, whisper files) and carbon-c-relay,
// each on 127.0.0.1 on a free port, with its configuration, storage and logs in the test's
// temporary directory, stopped by the test's cleanup. Tests read back what reached the
// whisper files, point by point.
//
// The servers are real, with their real failure modes. Two matter for delivery tests:
//
//   - carbon-cache keeps received points in memory and writes them to whisper from one
//     writer thread that drains the whole cache, then sleeps a second. A point reaches
//     whisper within about a second of arriving (WaitPoints waits for it).
//   - A carbon-cache that is killed loses its cache; so does one that is stopped, in part:
//     on SIGTERM carbon 1.1 finishes the write pass in progress but does not start another,
//     so points that arrived while the writer slept (up to about a second's worth) are lost
//     (see Stop). A sender must replay after any carbon restart.
package carbontest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/picket-agent/picket/exporters/portlease"
	"github.com/picket-agent/picket/exporters/servertest"
)

// Carbon is a carbon-cache run by Start. Its methods are for the test's goroutine.
type Carbon struct {
	t    testing.TB
	dir  string // holds carbon.conf, storage-schemas.conf and storage/
	addr string
	// hold is a socket bound to the line port and never listening: carbon binds the port
	// with SO_REUSEPORT, so it can share it with hold, and while carbon is stopped the port
	// stays ours, for Restart. Connections to it are refused then, as they should be.
	hold int
	out  *servertest.Output
	proc *servertest.Process
}

// Option changes the configuration Start gives carbon-cache.
type Option func(*config)

type config struct {
	retentions string
	settings   map[string]string
}

// WithRetentions sets the retentions of the storage schema, which matches every series;
// the default is "1s:1d", one point per second for a day. Points reads the first, finest
// archive. Whisper drops points older than the longest retention when they are written.
func WithRetentions(r string) Option {
	return func(c *config) { c.retentions = r }
}

// WithSetting sets key to value in the [cache] section of carbon.conf, over the defaults
// of Start (see defaultSettings). The paths and the line receiver's address are Start's.
func WithSetting(key, value string) Option {
	return func(c *config) { c.settings[key] = value }
}

// defaultSettings are the [cache] settings that make carbon quick and deterministic in
// tests, besides the paths and ports Start sets.
var defaultSettings = map[string]string{
	// No limit on how fast series are created or updated: a rate limit would drop
	// creates and delay writes, which tests would see as lost or late points.
	"MAX_CREATES_PER_MINUTE": "inf",
	"MAX_UPDATES_PER_SECOND": "inf",
	"MAX_CACHE_SIZE":         "inf",
	// Creating a 1s:1d file writes 1 MB of zeros unless sparse.
	"WHISPER_SPARSE_CREATE": "True",
	"WHISPER_AUTOFLUSH":     "False",
	// carbon's own metrics would show up as series after a minute.
	"CARBON_METRIC_INTERVAL": "0",
	// Tagged series are stored under _tagged/ with readable names; no tag database.
	"ENABLE_TAGS":               "False",
	"TAG_HASH_FILENAMES":        "False",
	"LOG_UPDATES":               "False",
	"LOG_CREATES":               "False",
	"LOG_CACHE_HITS":            "False",
	"LOG_CACHE_QUEUE_SORTS":     "False",
	"LOG_LISTENER_CONN_SUCCESS": "False",
	"ENABLE_UDP_LISTENER":       "False",
	"PICKLE_RECEIVER_PORT":      "0", // 0 turns the pickle receiver off
	// The cache query port cannot be turned off; 0 lets the kernel pick one.
	"CACHE_QUERY_INTERFACE": "127.0.0.1",
	"CACHE_QUERY_PORT":      "0",
}

// Start runs carbon-cache with its line receiver on 127.0.0.1 and a free port, and
// returns once that port accepts connections. The test's cleanup kills it (the storage
// goes with the temporary directory) and, if the test failed, logs its output. It skips or
// fails the test as Require does if carbon-cache is not installed.
func Start(t testing.TB, opts ...Option) *Carbon {
	t.Helper()
	Require(t, "carbon-cache")
	cfg := config{retentions: "1s:1d", settings: maps.Clone(defaultSettings)}
	for _, o := range opts {
		o(&cfg)
	}
	c := &Carbon{t: t, dir: t.TempDir(), hold: -1, out: &servertest.Output{}}
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if c.proc != nil {
			c.proc.Stop(syscall.SIGKILL)
		}
		if c.hold >= 0 {
			unix.Close(c.hold)
		}
		if t.Failed() {
			t.Logf("carbon-cache on %s, output:\n%s", c.addr, c.out)
		}
	})
	hold, port, err := portlease.Hold()
	if err != nil {
		t.Fatalf("carbontest: %v", err)
	}
	c.hold, c.addr = hold, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	storage := filepath.Join(c.dir, "storage")
	s := cfg.settings
	for k, v := range map[string]string{
		"STORAGE_DIR":             storage,
		"LOCAL_DATA_DIR":          filepath.Join(storage, "whisper"),
		"WHITELISTS_DIR":          filepath.Join(storage, "lists"),
		"LOG_DIR":                 filepath.Join(storage, "log"),
		"PID_DIR":                 storage,
		"LINE_RECEIVER_INTERFACE": "127.0.0.1",
		"LINE_RECEIVER_PORT":      strconv.Itoa(port),
	} {
		s[k] = v
	}
	var conf strings.Builder
	conf.WriteString("[cache]\n")
	for _, k := range slices.Sorted(maps.Keys(s)) {
		fmt.Fprintf(&conf, "%s = %s\n", k, s[k])
	}
	schemas := "[all]\npattern = .*\nretentions = " + cfg.retentions + "\n"
	for name, body := range map[string]string{"carbon.conf": conf.String(), "storage-schemas.conf": schemas} {
		if err := os.WriteFile(filepath.Join(c.dir, name), []byte(body), 0o644); err != nil {
			t.Fatalf("carbontest: %v", err)
		}
	}
	c.start()
	return c
}

// start runs carbon-cache and waits until it accepts connections.
func (c *Carbon) start() {
	c.t.Helper()
	pidfile := filepath.Join(c.dir, "carbon-cache.pid")
	// carbon refuses to start while its pid file names a live process; after Kill the
	// file is left behind, and the pid may have been reused.
	os.Remove(pidfile)
	proc, err := startProcess(c.out, "carbon-cache",
		"--config="+filepath.Join(c.dir, "carbon.conf"), "--pidfile="+pidfile, "--nodaemon", "start")
	if err != nil {
		c.t.Fatalf("carbontest: %v", err)
	}
	c.proc = proc
	// While hold keeps the port, only carbon can be listening on it.
	if err := waitAccepting(proc, c.addr, func() bool { return true }); err != nil {
		c.t.Fatalf("carbontest: carbon-cache: %v", err)
	}
}

// Addr is the line receiver's address, 127.0.0.1:port. It is the same after Restart.
func (c *Carbon) Addr() string { return c.addr }

// Log is what carbon-cache has printed so far, over all its runs.
func (c *Carbon) Log() string { return c.out.String() }

// Stop stops carbon-cache with SIGTERM and waits for it to exit (SIGKILL after 30 s, which
// fails the test). Carbon closes its connections with a FIN and finishes the write pass its
// writer is in, but the writer does not start another: points that arrived while it slept
// between passes (up to a second's worth) are lost. Wait for them with WaitPoints first to
// keep them. It is a no-op if carbon is not running.
func (c *Carbon) Stop() {
	c.t.Helper()
	if err := c.proc.Stop(syscall.SIGTERM); err != nil {
		c.t.Errorf("carbontest: %v", err)
	}
}

// Kill kills carbon-cache with SIGKILL and waits for it to exit: every point in its cache,
// not yet in whisper, is lost. The kernel closes its connections (with a reset if bytes
// were left unread). It is a no-op if carbon is not running.
func (c *Carbon) Kill() {
	c.t.Helper()
	if err := c.proc.Stop(syscall.SIGKILL); err != nil {
		c.t.Errorf("carbontest: %v", err)
	}
}

// Restart stops carbon-cache if it is running, as Stop does, and starts it again on the
// same port with the same storage.
func (c *Carbon) Restart() {
	c.t.Helper()
	c.Stop()
	c.start()
}

// Points returns the points stored for series in the finest archive of its whisper file, by
// timestamp; none if the series does not exist or carbon is still creating its file. Points
// still in carbon's cache are not there yet. A tagged series ("name;k=v;…") is found the way
// carbon stores it, tags sorted.
func (c *Carbon) Points(t testing.TB, series string) map[int64]float64 {
	t.Helper()
	b, err := os.ReadFile(c.path(series))
	if errors.Is(err, fs.ErrNotExist) {
		return map[int64]float64{}
	}
	if err != nil {
		t.Fatalf("carbontest: %v", err)
	}
	pts, err := parseWhisper(b)
	if errors.Is(err, errShort) {
		return map[int64]float64{} // carbon is creating the file: no point in it yet
	}
	if err != nil {
		t.Fatalf("carbontest: reading %s: %v", c.path(series), err)
	}
	return pts
}

// WaitPoints waits up to timeout for at least want points of series to be in whisper, and
// returns them. carbon writes its cache asynchronously, about every second. On timeout it
// fails the test with what there is.
func (c *Carbon) WaitPoints(t testing.TB, series string, want int, timeout time.Duration) map[int64]float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pts := c.Points(t, series)
		if len(pts) >= want {
			return pts
		}
		if time.Now().After(deadline) {
			t.Fatalf("carbontest: %s has %d points after %v, want %d: %v", series, len(pts), timeout, want, pts)
		}
		time.Sleep(pollInterval)
	}
}

// Series returns the names of all series in whisper, sorted. Tagged series are named as
// carbon stores them: tags sorted.
func (c *Carbon) Series(t testing.TB) []string {
	t.Helper()
	root := c.whisperDir()
	var names []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == root {
			return fs.SkipAll // nothing written yet
		}
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".wsp") {
			return err
		}
		rel, err := filepath.Rel(root, strings.TrimSuffix(path, ".wsp"))
		if err != nil {
			return err
		}
		if tagged, ok := strings.CutPrefix(rel, "_tagged/"); ok {
			// _tagged/<3 hex>/<3 hex>/<name, '.' spelt _DOT_>
			if parts := strings.SplitN(tagged, "/", 3); len(parts) == 3 {
				names = append(names, strings.ReplaceAll(parts[2], "_DOT_", "."))
				return nil
			}
		}
		names = append(names, strings.ReplaceAll(rel, "/", "."))
		return nil
	})
	if err != nil {
		t.Fatalf("carbontest: listing series: %v", err)
	}
	slices.Sort(names)
	return names
}

func (c *Carbon) whisperDir() string { return filepath.Join(c.dir, "storage", "whisper") }

// path is the whisper file of series, as carbon's TaggedSeries.encode names it (with
// TAG_HASH_FILENAMES off).
func (c *Carbon) path(series string) string {
	if !strings.Contains(series, ";") {
		return filepath.Join(c.whisperDir(), strings.ReplaceAll(series, ".", "/")+".wsp")
	}
	// carbon normalises a tagged series first: the name, then the tags sorted.
	name, tags, _ := strings.Cut(series, ";")
	sorted := strings.Split(tags, ";")
	slices.Sort(sorted)
	norm := strings.TrimLeft(name, "~") + ";" + strings.Join(sorted, ";")
	sum := sha256.Sum256([]byte(norm))
	h := hex.EncodeToString(sum[:])
	return filepath.Join(c.whisperDir(), "_tagged", h[0:3], h[3:6], strings.ReplaceAll(norm, ".", "_DOT_")+".wsp")
}

// Expect waits up to timeout until every point of want (series → timestamp → value) is in
// whisper on one of carbons at least, then checks that the carbons hold nothing else: no
// other series, and in the series of want no other timestamp and no other value. It
// reports what is missing or extra with t.Errorf, and returns how long the points took to
// arrive. It is how a delivery test that may have sent to any of several carbons (failover,
// replays) asserts that each point arrived exactly as sent.
func Expect(t testing.TB, timeout time.Duration, want map[string]map[int64]float64, carbons ...*Carbon) time.Duration {
	t.Helper()
	start := time.Now()
	series := slices.Sorted(maps.Keys(want))
	var got []map[string]map[int64]float64
	var missing []string
	for deadline := start.Add(timeout); ; {
		got = got[:0]
		for _, c := range carbons {
			m := make(map[string]map[int64]float64, len(series))
			for _, s := range series {
				m[s] = c.Points(t, s)
			}
			got = append(got, m)
		}
		missing = missing[:0]
		for _, s := range series {
			for ts := range want[s] {
				found := false
				for _, m := range got {
					if _, ok := m[s][ts]; ok {
						found = true
						break
					}
				}
				if !found {
					missing = append(missing, fmt.Sprintf("%s@%d", s, ts))
				}
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	elapsed := time.Since(start)
	if len(missing) > 0 {
		slices.Sort(missing)
		n := 0
		for _, pts := range want {
			n += len(pts)
		}
		t.Errorf("carbontest: %d of %d points not in whisper after %v; the first: %v", len(missing), n, timeout, missing[:min(len(missing), 10)])
	}
	for i, c := range carbons {
		for _, s := range c.Series(t) {
			if _, ok := want[s]; !ok {
				t.Errorf("carbontest: carbon %d (%s) holds series %s, not expected", i, c.Addr(), s)
			}
		}
		for _, s := range series {
			for ts, v := range got[i][s] {
				switch w, ok := want[s][ts]; {
				case !ok:
					t.Errorf("carbontest: carbon %d (%s) holds %s@%d = %v, not expected", i, c.Addr(), s, ts, v)
				case v != w:
					t.Errorf("carbontest: carbon %d (%s) holds %s@%d = %v, want %v", i, c.Addr(), s, ts, v, w)
				}
			}
		}
	}
	return elapsed
}
