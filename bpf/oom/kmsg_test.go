package oom

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// records splits a fixture in the form `cat /dev/kmsg` prints into the records a read of
// the device returns: a line starting with a space continues the record before it.
func records(t testing.TB, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := append(sc.Bytes(), '\n')
		if len(line) > 1 && line[0] == ' ' && len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], line...)
			continue
		}
		out = append(out, append([]byte(nil), line...))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKernelLog: each fixture under testdata/kmsg/ is what /dev/kmsg returned around OOM
// kills (memcg-v1-6.18 verbatim from this project's CI machine, the others in the formats
// of the kernels named, from their printk formats), and <case>.golden the kills read from
// it: one per "Killed process" line the kernel wrote, with the cgroup from the summary
// before it when that is the same victim's, else from /proc while the victim is there;
// records user space wrote, partial summaries and garbage are not kills.
func TestKernelLog(t *testing.T) {
	cases, err := filepath.Glob("testdata/kmsg/*.txt")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, name := range cases {
		t.Run(strings.TrimSuffix(filepath.Base(name), ".txt"), func(t *testing.T) {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			k := &kernelLog{procfs: "testdata/kmsg/proc", memcgV1: true}
			var got bytes.Buffer
			var e Event
			for _, rec := range records(t, b) {
				if k.record(rec, &e) {
					line, err := json.Marshal(&e)
					if err != nil {
						t.Fatal(err)
					}
					got.Write(line)
					got.WriteByte('\n')
				}
			}
			fmt.Fprintf(&got, "counts: %+v\n", k.counts())
			golden := strings.TrimSuffix(name, ".txt") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("got:\n%s\nwant:\n%s", got.Bytes(), want)
			}
		})
	}
}

func TestAncestorLevels(t *testing.T) {
	for _, c := range []struct {
		path, anc string
		want      int
	}{
		{"/a/b/c", "/a/b/c", 0},
		{"/a/b/c", "/a/b", 1},
		{"/a/b/c", "/a", 2},
		{"/a/b/c", "/", 3},
		{"/", "/", 0},
		{"/a/bc", "/a/b", -1},
		{"/a", "/b", -1},
	} {
		if got := ancestorLevels(c.path, c.anc); got != c.want {
			t.Errorf("ancestorLevels(%q, %q) = %d, want %d", c.path, c.anc, got, c.want)
		}
	}
}

func TestParseProcCgroup(t *testing.T) {
	const v1 = "13:memory:/jobs/a\n12:cpu,cpuacct:/x\n1:name=systemd:/y\n0::/unified/z\n"
	for _, c := range []struct {
		name, in string
		v1       bool
		want     string
		ok       bool
	}{
		{"v1", v1, true, "/jobs/a", true},
		{"v2 line on a hybrid host", v1, false, "/unified/z", true},
		{"shared v1 mount", "4:memory,hugetlb:/m\n", true, "/m", true},
		{"empty", "", true, "", false},
		{"truncated", "13:memory", true, "", false},
		{"garbage", "\x00:::\n::\nmemory\n", false, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := parseProcCgroup(strings.NewReader(c.in), c.v1)
			if got != c.want || ok != c.ok {
				t.Errorf("got %q, %v, want %q, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

// FuzzKernelLog: no record makes the reader panic, and a kill it reports is whole: one
// kill, a cgroup either unknown or named to its depth.
func FuzzKernelLog(f *testing.F) {
	cases, _ := filepath.Glob("testdata/kmsg/*.txt")
	for _, name := range cases {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for _, rec := range records(f, b) {
			f.Add(rec)
		}
	}
	empty := f.TempDir()
	f.Fuzz(func(t *testing.T, rec []byte) {
		k := &kernelLog{procfs: empty, memcgV1: true}
		var e Event
		for range 2 {
			if k.record(rec, &e) {
				if e.Kills != 1 || (e.CgroupLevel != -1 && e.CgroupLevel != len(e.Names)) || e.ConstraintFrom != "kernel_log" {
					t.Errorf("record %q: %+v", rec, e)
				}
			}
		}
	})
}

// TestKernelLogDevice (root): the reader opens /dev/kmsg at its end, so kills from
// before are not counted, and Run returns once ctx ends, closing it.
func TestKernelLogDevice(t *testing.T) {
	testenv.RequireRoot(t)
	p, err := load(Options{KernelLog: true}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Source() != "kmsg" || p.StackConstraint() != nil {
		t.Errorf("Source() = %q, StackConstraint() = %v", p.Source(), p.StackConstraint())
	}
	if mem, err := p.MapBytes(); err != nil || len(mem) != 0 {
		t.Errorf("MapBytes() = %v, %v; the kernel log has no maps", mem, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	self := uint32(os.Getpid())
	err = p.Run(ctx, func(e *Event) {
		// Another process on the host may be OOM-killed meanwhile, not this one.
		if e.PID == self {
			t.Errorf("a kill of this test's process: %+v", e)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.klog.f.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("/dev/kmsg still open after Run: %v", err)
	}
}
