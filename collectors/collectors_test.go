package collectors

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/agent/testenv"
	"github.com/picket-agent/picket/bpf/oom"
	"github.com/picket-agent/picket/bpf/runqlat"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testOptions are the defaults the CLI uses, rooted at a fixture case.
func testOptions(root string) Options {
	o := DefaultOptions()
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	o.ProcFS = filepath.Join(root, "proc")
	o.SysFS = filepath.Join(root, "sys")
	if root != "/" {
		o.pageSize = 4096
	}
	// statfs cannot reach a fixture's mounts: a case answers for them in statfs.txt.
	if fake, err := readFakeStatfs(filepath.Join(root, "statfs.txt")); err == nil && root != "/" {
		o.statfs = fake
	}
	// Nor can a fixture trigger OOM kills: a case replays recorded ones from kills.json.
	if fake, err := readFakeOOM(filepath.Join(root, "kills.json")); err == nil && root != "/" {
		o.loadOOM = func(oom.Options) (oomProbe, error) { return fake, nil }
	}
	// …nor make waits for a CPU: a case plays back recorded readings from runqlat.json.
	if fake, err := readFakeRunqlat(root); err == nil && root != "/" {
		o.loadRunqlat = func(runqlat.Options) (runqlatProbe, error) { return fake, nil }
	}
	return o
}

// checkDocumented fails the test for every sample that no Series of f describes, and
// marks the series that were seen.
func checkDocumented(t *testing.T, f Factory, samples []metric.Sample, seen map[string]bool) {
	t.Helper()
	for _, s := range samples {
		ok := false
		for _, doc := range f.Series {
			if doc.Matches(&s) {
				ok = true
				if seen != nil {
					seen[doc.Path] = true
				}
			}
		}
		if !ok {
			t.Errorf("%s: sample %s (%s) matches no documented series", f.Name, strings.Join(Nodes(&s), "."), s.Kind)
		}
	}
}

// render is the golden form of one collection: one sample a line, sorted, then the error.
func render(samples []metric.Sample, err error, root string) string {
	lines := make([]string, 0, len(samples))
	for _, s := range samples {
		lines = append(lines, fmt.Sprintf("%s %s %s", strings.Join(Nodes(&s), "."), s.Kind, strconv.FormatFloat(s.Value, 'g', -1, 64)))
	}
	sort.Strings(lines)
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if err != nil {
		fmt.Fprintf(&b, "error: %s\n", strings.ReplaceAll(err.Error(), root, "<root>"))
	}
	return b.String()
}

func collect(t *testing.T, f Factory, opts Options) ([]metric.Sample, error) {
	t.Helper()
	c, err := f.New(opts)
	if err != nil {
		t.Fatalf("%s: building: %v", f.Name, err)
	}
	// A collector with a kernel probe runs as the agent runs it: loaded, served in the
	// background, its own cost reported among picket's samples, stopped at the end.
	p, isProbe := c.(Probe)
	if isProbe && p.Load() == nil {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := p.Run(ctx); err != nil {
				t.Errorf("%s: Run: %v", f.Name, err)
			}
		}()
		defer func() { cancel(); <-done }()
		if r, ok := c.(interface{ waitReplayed() }); ok {
			r.waitReplayed()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := metric.NewSink(f.Name)
	err = c.Collect(ctx, s)
	samples := s.Samples()
	if isProbe {
		self := metric.NewSink("picket")
		p.Report(self)
		samples = append(samples, self.Samples()...)
	}
	return samples, err
}

// TestGolden runs every collector against each fixture tree under testdata/<name>/<case>/
// and compares the result, errors included, with <case>/golden.txt.
func TestGolden(t *testing.T) {
	for _, f := range All {
		cases, err := os.ReadDir(filepath.Join("testdata", f.Name))
		if err != nil || len(cases) == 0 {
			t.Errorf("%s: no fixture cases under testdata/%s", f.Name, f.Name)
			continue
		}
		seen := map[string]bool{}
		t.Run(f.Name, func(t *testing.T) {
			for _, c := range cases {
				if !c.IsDir() {
					continue
				}
				root := filepath.Join("testdata", f.Name, c.Name())
				t.Run(c.Name(), func(t *testing.T) {
					samples, err := collect(t, f, testOptions(root))
					checkDocumented(t, f, samples, seen)
					got := render(samples, err, root)
					golden := filepath.Join(root, "golden.txt")
					if *update {
						if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
							t.Fatal(err)
						}
						return
					}
					want, err := os.ReadFile(golden)
					if err != nil {
						t.Fatalf("%v (run go test -update)", err)
					}
					if got != string(want) {
						t.Errorf("%s differs from the golden file:\n--- got\n%s--- want\n%s", golden, got, want)
					}
				})
			}
			for _, doc := range f.Series {
				if !seen[doc.Path] {
					t.Errorf("%s: documented series %s is emitted by no fixture case", f.Name, doc.Path)
				}
			}
		})
	}
}

// TestHost runs every collector against this machine's /proc and /sys: each either works
// or says its source is absent, and everything it emits is documented.
func TestHost(t *testing.T) {
	for _, f := range All {
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			opts := testOptions("/")
			samples, err := collect(t, f, opts)
			// An eBPF collector needs root here; under PICKET_REQUIRE_PRIVILEGED it must run.
			if errors.Is(err, ErrUnavailable) && !testenv.Required() {
				t.Skipf("%s on this host: %v", f.Name, err)
			}
			if err != nil && !errors.Is(err, ErrNoData) {
				t.Errorf("%s on this host: %v", f.Name, err)
			}
			if err == nil && len(samples) == 0 {
				t.Errorf("%s on this host: no samples and no error", f.Name)
			}
			checkDocumented(t, f, samples, nil)
			for _, s := range samples {
				if !s.Finite() || (s.Kind == metric.Counter && s.Value < 0) {
					t.Errorf("%s: %s = %v", f.Name, strings.Join(Nodes(&s), "."), s.Value)
				}
			}
		})
	}
}
