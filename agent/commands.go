package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kong"

	"github.com/picket-agent/picket/agent/metric"
	"github.com/picket-agent/picket/agent/scheduler"
	"github.com/picket-agent/picket/collectors"
	"github.com/picket-agent/picket/exporters/graphite"
	"github.com/picket-agent/picket/exporters/influx"
	"github.com/picket-agent/picket/exporters/spool"
	"github.com/picket-agent/picket/exporters/table"
)

// usageError is a setting that parsed but that a collector could not work with; like a
// ConfigError it makes picket exit 2 before anything starts.
type usageError struct{ error }

func (c *CLI) newScheduler(env *Env, out scheduler.Output, reporters ...reporter) (*scheduler.Scheduler, error) {
	log := c.logger(env.Stderr)
	jobs, err := c.jobs(log, reporters)
	if err != nil {
		return nil, usageError{err}
	}
	return scheduler.New(scheduler.Options{
		Logger:   log,
		Interval: c.Interval,
		Timeout:  c.effectiveTimeout(),
		Jobs:     jobs,
		Output:   out,
	})
}

// RunCmd is `picket run`.
type RunCmd struct {
	Strict bool `help:"Exit with an error when an eBPF probe cannot load, instead of running on without its collector."`
}

// Run collects every interval until the context ends (SIGINT, SIGTERM), then returns nil.
// With a Graphite or an InfluxDB endpoint, each batch goes into the spool and each
// exporter delivers it from there, through its own cursor; with none, batches go to
// stdout as Graphite plaintext.
func (r RunCmd) Run(cli *CLI, env *Env, kctx *kong.Context) error {
	log := cli.logger(env.Stderr)
	if len(cli.Graphite.Address) == 0 && len(cli.Influx.URL) == 0 {
		out := &writerOutput{w: env.Stdout, enc: encoder{format: "graphite", prefix: cli.Prefix, host: cli.host()}}
		s, err := cli.newScheduler(env, out)
		if err != nil {
			return err
		}
		if err := r.start(env, s); err != nil {
			return err
		}
		defer s.Stop()
		log.Info("picket running", "version", Version, "interval", cli.Interval, "output", "stdout")
		return cli.untilStopped(env, log, func() error { return s.Run(env.Ctx) })
	}

	sp, err := spool.Open(spool.Options{Dir: cli.Spool.Dir, MaxBytes: int64(cli.Spool.MaxBytes), MaxAge: cli.Spool.MaxAge, Logger: log})
	if err != nil {
		// Its other options are checked already: what fails is the directory (not
		// writable, a file, another agent's). Like a bad option, nothing has started.
		return usageError{cli.optionError(kctx, "spool.dir", fmt.Errorf("cannot use %s: %w", cli.Spool.Dir, err))}
	}
	var (
		exporters []exporter
		running   = []any{"version", Version, "interval", cli.Interval, "spool", cli.Spool.Dir}
	)
	if g := cli.Graphite; len(g.Address) > 0 {
		tlsConfig, _, _ := cli.tlsConfig() // checked in validate
		splay, _ := cli.splay()
		exp, err := graphite.New(graphite.Options{
			Logger: log, Name: "graphite", Endpoints: g.Address, TLS: tlsConfig, Tagged: g.Tagged,
			Prefix: cli.Prefix, Host: cli.host(), Spool: sp, Splay: splay,
			ReplayWindow: g.ReplayWindow, ReplayRate: g.ReplayRate,
			DialTimeout: g.DialTimeout, WriteTimeout: g.WriteTimeout, AckTimeout: g.AckTimeout,
			BackoffMin: g.BackoffMin, BackoffMax: g.BackoffMax,
			// Half the shutdown bound confirms what is in flight; the rest closes the spool.
			DrainTimeout: cli.ShutdownTimeout / 2,
		})
		if err != nil {
			sp.Close()
			return usageError{fmt.Errorf("graphite: %w", err)}
		}
		exporters = append(exporters, exp)
		running = append(running, "graphite_endpoints", len(g.Address), "graphite_splay", splay)
	}
	if len(cli.Influx.URL) > 0 {
		o := cli.influxOptions(log, sp)
		exp, err := influx.New(o)
		if err != nil {
			sp.Close()
			return usageError{fmt.Errorf("influx: %w", err)}
		}
		exporters = append(exporters, exp)
		running = append(running, "influx_endpoints", len(o.URLs), "influx_splay", o.Splay)
	}
	var reporters []reporter
	for _, exp := range exporters {
		reporters = append(reporters, exp)
	}
	reporters = append(reporters, spoolReport{sp})
	s, err := cli.newScheduler(env, spoolOutput{sp}, reporters...)
	if err != nil {
		sp.Close()
		return err
	}
	if err := r.start(env, s); err != nil {
		sp.Close()
		return err
	}
	defer s.Stop()
	log.Info("picket running", running...)
	return cli.untilStopped(env, log, func() error {
		exported := make(chan error, len(exporters))
		for _, exp := range exporters {
			go func() { exported <- exp.Run(env.Ctx) }()
		}
		errs := []error{s.Run(env.Ctx)}
		for range exporters {
			errs = append(errs, <-exported)
		}
		return errors.Join(append(errs, sp.Close())...)
	})
}

// exporter delivers the spool to one kind of endpoint, through its own cursor.
type exporter interface {
	reporter
	// Run delivers until ctx ends, then returns within its drain bound, with its cursor
	// saved. It is called once.
	Run(ctx context.Context) error
}

// untilStopped runs fn, and once the context ends gives it --shutdown-timeout to return:
// a tick stuck on a reader that stopped reading must not keep picket from exiting, so a
// supervisor's stop never has to kill it. Ticks already in the spool are safe on disk.
func (c *CLI) untilStopped(env *Env, log *slog.Logger, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-env.Ctx.Done():
	}
	select {
	case err := <-done:
		log.Info("picket stopped")
		return err
	case <-time.After(c.ShutdownTimeout):
		return fmt.Errorf("the tick in flight did not finish within --shutdown-timeout %s; exiting", c.ShutdownTimeout)
	}
}

// spoolOutput appends each batch to the spool, where exporters find it.
type spoolOutput struct{ s *spool.Spool }

// Write appends b; it returns once b is on disk.
func (o spoolOutput) Write(_ context.Context, b *metric.Batch) error { return o.s.Append(b) }

// spoolReport reports the spool's size as picket.spool.*.
type spoolReport struct{ s *spool.Spool }

var spoolLabels = []metric.Label{{Key: "component", Value: "spool"}}

// Report adds picket.spool.bytes, .segments and .corrupt_bytes.
func (r spoolReport) Report(s *metric.Sink) {
	st := r.s.Stats()
	s.Gauge("bytes", float64(st.Bytes), spoolLabels...)
	s.Gauge("segments", float64(st.Segments), spoolLabels...)
	s.Counter("corrupt_bytes", float64(st.CorruptBytes), spoolLabels...)
}

// OnceCmd is `picket once`.
type OnceCmd struct {
	Format string `help:"Output format: graphite, graphite-tagged, influx or table." enum:"graphite,graphite-tagged,influx,table" default:"graphite"`
}

// Run collects one tick, stamped with the current aligned tick time, and writes it.
func (o OnceCmd) Run(cli *CLI, env *Env) error {
	s, err := cli.newScheduler(env, nil)
	if err != nil {
		return err
	}
	// A probe that cannot load shows as its collector down in the tick.
	_ = s.Start(env.Ctx)
	defer s.Stop()
	b := s.Tick(env.Ctx, scheduler.Aligned(time.Now(), cli.Interval))
	if o.Format == "table" {
		return table.Write(env.Stdout, b)
	}
	out := &writerOutput{w: env.Stdout, enc: encoder{format: o.Format, prefix: cli.Prefix, host: cli.host()}}
	return out.Write(env.Ctx, b)
}

// encoder turns samples into one of the line formats.
type encoder struct {
	format       string
	prefix, host string
	influx       influx.Encoder
}

// append adds one sample's line to dst. It returns an error only for a sample that the
// format cannot carry; dst is then unchanged.
func (e *encoder) append(dst []byte, s *metric.Sample, t time.Time) ([]byte, error) {
	var ok bool
	switch e.format {
	case "graphite":
		dst, ok = graphite.AppendPlain(dst, e.prefix, e.host, s, t.Unix())
	case "graphite-tagged":
		dst, ok = graphite.AppendTagged(dst, e.host, s, t.Unix())
	case "influx":
		return e.influx.Append(dst, e.host, s, t)
	}
	if !ok {
		return dst, fmt.Errorf("%s: value %v cannot be sent", strings.Join(collectors.Nodes(s), "."), s.Value)
	}
	return dst, nil
}

// writerOutput writes each batch to w in one write, so a batch never interleaves with
// anything else written there.
type writerOutput struct {
	w   io.Writer
	enc encoder
	buf []byte
}

// Write encodes b and writes it. Samples the format cannot carry are left out, and the
// error names them; the rest of the batch is written.
func (o *writerOutput) Write(_ context.Context, b *metric.Batch) error {
	o.buf = o.buf[:0]
	var errs []error
	for i := range b.Samples {
		var err error
		if o.buf, err = o.enc.append(o.buf, &b.Samples[i], b.Time); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := o.w.Write(o.buf); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// CheckCmd is `picket check`.
type CheckCmd struct{}

// Run reports what picket can read on this host and runs each enabled collector once. It
// fails when a collector fails (a source that is absent is reported, not a failure).
func (CheckCmd) Run(cli *CLI, env *Env) error {
	w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	for _, p := range []struct{ what, path string }{
		{"procfs", cli.Path.Procfs + "/stat"},
		{"sysfs", cli.Path.Sysfs + "/class"},
		{"btf", cli.Path.Sysfs + "/kernel/btf/vmlinux"},
	} {
		status := "ok"
		if _, err := os.Stat(p.path); err != nil {
			status = "missing: " + err.Error()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", p.what, p.path, status)
	}
	cli.checkKernel(w)
	s, err := cli.newScheduler(env, nil)
	if err != nil {
		// A collector that cannot start (no procfs at --path.procfs) stops the check, but
		// the paths above say why: show them first.
		_ = w.Flush()
		return err
	}
	_ = s.Start(env.Ctx)
	defer s.Stop()
	b := s.Tick(env.Ctx, scheduler.Aligned(time.Now(), cli.Interval))
	count := map[string]int{}
	for _, smp := range b.Samples {
		count[smp.Collector]++
	}
	failed := 0
	for i, f := range collectors.All {
		st, why := "disabled", ""
		if cli.collectorEnabled(i) {
			var err error
			st, err = s.Status(f.Name)
			if err != nil {
				why = err.Error()
			}
			if st == "failing" {
				failed++
			}
		}
		fmt.Fprintf(w, "collector\t%s\t%s\t%d samples\t%s\n", f.Name, st, count[f.Name], why)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d collector(s) failing; the log above says why", failed)
	}
	return nil
}

// VersionCmd is `picket version`.
type VersionCmd struct{}

// Run prints the version.
func (VersionCmd) Run(env *Env) error {
	_, err := fmt.Fprintf(env.Stdout, "picket %s %s %s/%s\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}
