package agent

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/scheduler"
	"github.com/picket-agent/picket/collectors"
	"github.com/picket-agent/picket/exporters/graphite"
	"github.com/picket-agent/picket/exporters/influx"
	"github.com/picket-agent/picket/exporters/spool"
)

var update = flag.Bool("update", false, "rewrite the metric reference in README.md")

const (
	refBegin = "<!-- metric-reference:begin -->\n"
	refEnd   = "<!-- metric-reference:end -->"
)

func referenceTable(b *strings.Builder, title string, series []collectors.Series) {
	fmt.Fprintf(b, "#### %s\n\n| path | kind | unit | meaning |\n|---|---|---|---|\n", title)
	for _, s := range series {
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", s.Path, s.Kind, s.Unit, s.Help)
	}
	b.WriteString("\n")
}

// TestMetricReference keeps README.md's metric reference equal to the code's Series.
func TestMetricReference(t *testing.T) {
	var b strings.Builder
	for _, f := range collectors.All {
		on := ""
		if !f.Default {
			on = " (off by default)"
		}
		referenceTable(&b, fmt.Sprintf("`%s`%s: %s", f.Name, on, f.Help), f.Series)
	}
	referenceTable(&b, "`picket`: the agent itself (always on)", selfSeries)
	want := b.String()

	path := filepath.Join("..", "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	i, j := strings.Index(text, refBegin), strings.Index(text, refEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %q … %q markers", refBegin, refEnd)
	}
	got := text[i+len(refBegin) : j]
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(text[:i+len(refBegin)]+want+text[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's metric reference is stale: run go test ./agent -run TestMetricReference -update")
}

// TestSelfSeriesDocumented: every picket.* sample of a real tick is documented, and every
// documented picket.* series is emitted.
func TestSelfSeriesDocumented(t *testing.T) {
	cli, _, err := parse([]string{"once", "--config", writeConfig(t, "")}, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	// The exporters and the spool report whether or not the exporters run.
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), MaxBytes: 1 << 20, MaxAge: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	exp, err := graphite.New(graphite.Options{Logger: slog.New(slog.DiscardHandler), Name: "graphite", Endpoints: []string{"127.0.0.1:1"}, Spool: sp})
	if err != nil {
		t.Fatal(err)
	}
	ix, err := influx.New(influx.Options{Logger: slog.New(slog.DiscardHandler), Name: "influx", URLs: []string{"http://127.0.0.1:1"}, Database: "db", Spool: sp})
	if err != nil {
		t.Fatal(err)
	}
	s, err := cli.newScheduler(&Env{Ctx: context.Background(), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, nil, exp, ix, spoolReport{sp})
	if err != nil {
		t.Fatal(err)
	}
	b := s.Tick(context.Background(), scheduler.Aligned(time.Now(), cli.Interval))
	seen := map[string]bool{}
	for i := range b.Samples {
		smp := &b.Samples[i]
		if smp.Collector != "picket" {
			continue
		}
		ok := false
		for _, doc := range selfSeries {
			if doc.Matches(smp) {
				ok, seen[doc.Path] = true, true
			}
		}
		if !ok {
			t.Errorf("%s (%s) is not documented in selfSeries", strings.Join(collectors.Nodes(smp), "."), smp.Kind)
		}
	}
	for _, doc := range selfSeries {
		if !seen[doc.Path] {
			t.Errorf("documented %s was not emitted", doc.Path)
		}
	}
}
