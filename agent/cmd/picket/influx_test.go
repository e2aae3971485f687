package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picket-agent/picket/exporters/influxtest"
	"github.com/picket-agent/picket/exporters/spool"
)

// TestInfluxRun: `picket run` with the InfluxDB options set in its config file (a list of
// URLs, a dead secondary, the password from a file) writes this host's metrics to a real
// influxd with auth on. After SIGTERM, every datapoint of the spool before the influx
// cursor is in influxd, exactly, and the password is nowhere in picket's output or files.
func TestInfluxRun(t *testing.T) {
	const password = "e2e-Pw-41xQ"
	s := influxtest.Start(t, influxtest.WithAuth("admin", "admin-pw"))
	s.CreateDatabase(t, "picket")
	s.Exec(t, "", fmt.Sprintf("CREATE USER picket WITH PASSWORD '%s'; GRANT WRITE ON picket TO picket", password))
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spoolDir := filepath.Join(dir, "spool")
	cfg := filepath.Join(dir, "picket.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`interval: 1s
hostname: e2e
spool.dir: %s
shutdown-timeout: 4s
influx:
  url: [%s, "http://%s"]
  database: picket
  username: picket
  password-file: %s
  batch-interval: 100ms
  splay: 0s
  backoff-min: 100ms
  backoff-max: 500ms
`, spoolDir, s.URL(), freeAddr(t), pwFile)), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "run", "--config", cfg, "--log.level", "debug")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for picket's own self-metrics of three ticks, which say the exporter works.
	for deadline := time.Now().Add(time.Minute); ; {
		pts, _ := s.Points("picket")
		times := map[int64]bool{}
		for _, p := range pts {
			if p.Measurement == "picket" && p.Field == "acked" && strings.Contains(p.Tags, "exporter=influx") {
				times[p.Time.Unix()] = true
			}
		}
		if len(times) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("picket's acked count of 3 ticks not in influxd; picket's log:\n%s", out.Bytes())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v (want exit 0); log:\n%s", err, out.Bytes())
	}

	want := spooledBeforeCursor(t, spoolDir, "influx", "e2e")
	pts, err := s.Points("picket")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, p := range pts {
		got[p.Key()] = p.Value.(float64)
	}
	if !maps.Equal(got, want) {
		n := 0
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if v, ok := got[k]; (!ok || v != want[k]) && n < 10 {
				t.Errorf("%s: stored %v (%v), spooled %v", k, v, ok, want[k])
				n++
			}
		}
		t.Errorf("%d points stored, %d spooled before the cursor", len(got), len(want))
	}
	measurements := map[string]bool{}
	for _, p := range pts {
		measurements[p.Measurement] = true
	}
	for _, m := range []string{"cpu", "load", "memory", "stat", "picket"} {
		if !measurements[m] {
			t.Errorf("no %s measurement in influxd: %v", m, slices.Sorted(maps.Keys(measurements)))
		}
	}
	if bytes.Contains(out.Bytes(), []byte(password)) {
		t.Errorf("the password is in picket's output:\n%s", out.Bytes())
	}
	filepath.WalkDir(spoolDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if b, err := os.ReadFile(path); err != nil || bytes.Contains(b, []byte(password)) {
			t.Errorf("%s holds the password (or cannot be read: %v)", path, err)
		}
		return nil
	})
	t.Logf("%d points of %d measurements in influxd", len(got), len(measurements))
}

// spooledBeforeCursor reads the spool in dir from its start up to cursor name, and returns
// each datapoint as influxtest.Point.Key names it, with its value, for host.
func spooledBeforeCursor(t *testing.T, dir, name, host string) map[string]float64 {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: dir, MaxBytes: 1 << 30, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	c, err := sp.Cursor(name)
	if err != nil {
		t.Fatal(err)
	}
	end := c.Position()
	it := c.Iterator(sp.Start())
	defer it.Close()
	want := map[string]float64{}
	for it.Pos().Less(end) {
		rec, err := it.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range rec.Batch.Samples {
			tags := []string{"host=" + host}
			for _, l := range s.Labels {
				tags = append(tags, l.Key+"="+l.Value)
			}
			slices.Sort(tags)
			p := influxtest.Point{Measurement: s.Collector, Tags: strings.Join(tags, ","), Field: s.Field, Time: rec.Batch.Time}
			want[p.Key()] = s.Value
		}
	}
	if len(want) == 0 {
		t.Fatal("nothing in the spool before the cursor")
	}
	return want
}
