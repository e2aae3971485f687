// Package agent is picket's wiring: the command line, the config file, and the commands
// that put collectors, the scheduler and an output together. It is the only package that
// knows every other.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/picket-agent/picket/agent/scheduler"
	"github.com/picket-agent/picket/collectors"
	"github.com/picket-agent/picket/exporters/graphite"
)

// Version is stamped by the build: -ldflags "-X github.com/picket-agent/picket/agent.Version=…".
var Version = "dev"

// CLI is picket's command line. Every flag can also be set in the config file under its
// own name (nested maps joined with dots) and by the environment variable PICKET_<FLAG>;
// a flag beats the environment, which beats the file, which beats the default.
type CLI struct {
	Config string `help:"YAML config file; every flag can be set there under its own name." default:"/etc/picket/picket.yaml" placeholder:"FILE"`

	Interval        time.Duration `help:"Collect every INTERVAL, on wall-clock multiples of it." default:"10s"`
	Timeout         time.Duration `help:"Deadline of each collector within a tick; at most 80% of --interval is used." default:"5s"`
	ShutdownTimeout time.Duration `help:"On SIGTERM or SIGINT, how long to wait for the tick in flight before exiting anyway." default:"10s"`
	Prefix          string        `help:"First node(s) of every Graphite path (Hosted Graphite: <api-key>.hosts)." default:"hosts"`
	PrefixFile      string        `help:"Read --prefix from this file (for a prefix that carries an API key: it is never logged)." placeholder:"FILE"`
	Hostname        string        `help:"Host node of every path (default: the short host name)."`

	Path struct {
		Procfs string `help:"procfs to read (the host's, mounted into a container)." default:"/proc" placeholder:"DIR"`
		Sysfs  string `help:"sysfs to read." default:"/sys" placeholder:"DIR"`
		Rootfs string `help:"Where the host's / is seen; mount points are statfs'ed under it." default:"/" placeholder:"DIR"`
	} `embed:"" prefix:"path."`

	Log struct {
		Level  string `help:"Log level: debug, info, warn, error." enum:"debug,info,warn,error" default:"info"`
		Format string `help:"Log format: text or json." enum:"text,json" default:"text"`
	} `embed:"" prefix:"log."`

	Collector struct {
		CPU struct {
			PerCPU bool `name:"per-cpu" negatable:"" default:"true" help:"Add cpu.<n>.<mode> for each CPU beside cpu.total (turn off on very wide hosts)."`
		} `embed:"" prefix:"cpu."`
		Disk struct {
			DeviceInclude string `help:"Only devices matching this regexp." placeholder:"REGEXP"`
			DeviceExclude string `help:"Leave out devices matching this regexp (partitions, loop, ram)." default:"${disk_exclude}" placeholder:"REGEXP"`
		} `embed:"" prefix:"disk."`
		Net struct {
			DeviceInclude string `help:"Only interfaces matching this regexp." placeholder:"REGEXP"`
			DeviceExclude string `help:"Leave out interfaces matching this regexp (per-container virtual ones)." default:"${net_exclude}" placeholder:"REGEXP"`
		} `embed:"" prefix:"net."`
		FS struct {
			MountPointsExclude string `help:"Leave out mount points matching this regexp." default:"${fs_mount_exclude}" placeholder:"REGEXP"`
			FSTypesExclude     string `name:"fs-types-exclude" help:"Leave out filesystem types matching this regexp (pseudo filesystems)." default:"${fs_type_exclude}" placeholder:"REGEXP"`
		} `embed:"" prefix:"fs."`
	} `embed:"" prefix:"collector." group:"Collector options"`

	BPF struct {
		Stats bool `help:"Turn on the kernel's BPF run-time statistics while picket runs, for picket.bpf.<probe>.<program>.run_time_seconds and run_count. They cost every BPF program on the host two clock reads per run; needs CAP_SYS_ADMIN (or set sysctl kernel.bpf_stats_enabled=1 instead)."`
	} `embed:"" prefix:"bpf." group:"eBPF"`

	Graphite struct {
		Address      []string      `help:"Graphite endpoint, HOST:PORT; repeat (or a list in the config) for failover, most preferred first. None: Graphite plaintext to stdout." placeholder:"HOST:PORT"`
		Tagged       bool          `help:"Send the tagged form (<collector>.<field>;host=…;key=value)."`
		ReplayWindow time.Duration `help:"After a connection fails, send again this much of what was already delivered (a dying carbon loses its cache)." default:"30s"`
		ReplayRate   float64       `help:"Backlog replay pace, datapoints per second (0: unpaced); live ticks always go first." default:"50000"`
		Splay        string        `help:"Send each tick this long after the tick (timestamps stay aligned), or auto: an offset derived from the host name." default:"auto"`
		DialTimeout  time.Duration `help:"Bound on one connection attempt, TLS handshake included." default:"5s"`
		WriteTimeout time.Duration `help:"Bound on one write." default:"10s"`
		AckTimeout   time.Duration `help:"A peer that takes in none of what was sent for this long is failing; a slow reader is not (also TCP_USER_TIMEOUT)." default:"10s"`
		BackoffMin   time.Duration `help:"First wait before retrying a failed endpoint; doubles up to --graphite.backoff-max, with jitter." default:"1s"`
		BackoffMax   time.Duration `help:"Longest wait before retrying a failed endpoint." default:"30s"`
		TLS          struct {
			Enabled            bool   `name:"enabled" help:"Connect with TLS (verification on, system roots unless --graphite.tls.ca-file)."`
			CAFile             string `help:"CA bundle to verify the endpoint with." placeholder:"FILE"`
			CertFile           string `help:"Client certificate (PEM)." placeholder:"FILE"`
			KeyFile            string `help:"Client key (PEM)." placeholder:"FILE"`
			ServerName         string `help:"Name to verify the endpoint's certificate against (default: the endpoint's host)."`
			InsecureSkipVerify bool   `help:"Do not verify the endpoint's certificate (testing only)."`
		} `embed:"" prefix:"tls."`
	} `embed:"" prefix:"graphite." group:"Graphite"`

	Influx struct {
		URL             []string      `help:"InfluxDB base URL, http(s)://HOST:PORT[/PATH]; repeat (or a list in the config) for failover, most preferred first; https for TLS. Which API is used follows from the options set: --influx.database writes to /write (InfluxDB 1.x, VictoriaMetrics), --influx.bucket to /api/v2/write (InfluxDB 2.x and 3.x; 1.8+ with bucket <db>/<rp>)." placeholder:"URL"`
		Database        string        `help:"1.x API: the database to write to."`
		RetentionPolicy string        `help:"1.x API: the retention policy (default: the database's default one)."`
		Username        string        `help:"1.x API: the user, sent with --influx.password as HTTP basic auth."`
		Password        string        `help:"1.x API: the password; never logged (better: --influx.password-file, or the environment)."`
		PasswordFile    string        `help:"Read --influx.password from this file." placeholder:"FILE"`
		Org             string        `help:"2.x API: the organization (3.x ignores it)."`
		Bucket          string        `help:"2.x API: the bucket (3.x: the database) to write to."`
		Token           string        `help:"2.x API: the API token; never logged (better: --influx.token-file, or the environment)."`
		TokenFile       string        `help:"Read --influx.token from this file." placeholder:"FILE"`
		Gzip            bool          `negatable:"" default:"true" help:"Compress request bodies (Content-Encoding: gzip)."`
		BatchBytes      byteSize      `help:"Bound on a request's body before compression; spooled ticks are gathered into one request up to it." default:"1MiB"`
		BatchInterval   time.Duration `help:"Longest a request waits for more ticks after its first one." default:"1s"`
		ReplayRate      float64       `help:"Backlog replay pace, datapoints per second (0: unpaced); live ticks always go first." default:"50000"`
		Splay           string        `help:"Send each tick this long after the tick (timestamps stay aligned), or auto: an offset derived from the host name." default:"auto"`
		Timeout         time.Duration `help:"Bound on one request, from connecting to reading the answer." default:"10s"`
		BackoffMin      time.Duration `help:"First wait before retrying a failed endpoint; doubles up to --influx.backoff-max, with jitter (or what the server's Retry-After says)." default:"1s"`
		BackoffMax      time.Duration `help:"Longest wait before retrying a failed endpoint." default:"30s"`
		TLS             struct {
			CAFile             string `help:"CA bundle to verify https endpoints with (default: the system roots)." placeholder:"FILE"`
			CertFile           string `help:"Client certificate (PEM)." placeholder:"FILE"`
			KeyFile            string `help:"Client key (PEM)." placeholder:"FILE"`
			ServerName         string `help:"Name to verify the endpoint's certificate against (default: the URL's host)."`
			InsecureSkipVerify bool   `help:"Do not verify the endpoint's certificate (testing only)."`
		} `embed:"" prefix:"tls."`
	} `embed:"" prefix:"influx." group:"InfluxDB"`

	Spool struct {
		Dir      string        `help:"Where batches wait until every exporter has delivered them." default:"/var/lib/picket/spool" placeholder:"DIR"`
		MaxBytes byteSize      `help:"Bound on the spool's size (e.g. 512MiB); over it the oldest data goes first, counted." default:"512MiB"`
		MaxAge   time.Duration `help:"Data older than this is dropped, counted." default:"168h"`
	} `embed:"" prefix:"spool." group:"Spool"`

	// Enabled holds one --[no-]collector.<name> flag per collector, built from the registry
	// so that a new collector gets its flag, env variable and config key with no edit here.
	Enabled kong.Plugins `embed:""`

	Run     RunCmd     `cmd:"" help:"Run the daemon: collect every interval and ship each batch."`
	Once    OnceCmd    `cmd:"" help:"Collect once, write it to stdout, exit."`
	Check   CheckCmd   `cmd:"" help:"Report what this host supports: paths, BTF, privileges, each collector."`
	Version VersionCmd `cmd:"" help:"Print the version and exit."`

	enabled reflect.Value
	file    *fileConfig
}

// enabledFlags builds the struct behind --[no-]collector.<name>: one bool field per
// collector, defaulting to the collector's Default.
func enabledFlags() reflect.Value {
	fields := make([]reflect.StructField, len(collectors.All))
	for i, f := range collectors.All {
		fields[i] = reflect.StructField{
			Name: "C" + strconv.Itoa(i),
			Type: reflect.TypeFor[bool](),
			Tag: reflect.StructTag(fmt.Sprintf(`name:"collector.%s" negatable:"" default:"%t" help:%s group:"Collectors"`,
				f.Name, f.Default, strconv.Quote("Collector "+f.Name+": "+f.Help+"."))),
		}
	}
	return reflect.New(reflect.StructOf(fields))
}

// BeforeResolve loads the config file before kong resolves unset flags from it. Kong calls
// it between applying defaults and environment variables and resolving.
func (c *CLI) BeforeResolve(ctx *kong.Context) error {
	if ctx.Command() == "version" {
		return nil
	}
	var flag *kong.Flag
	for _, f := range ctx.Flags() {
		if f.Name == "config" {
			flag = f
		}
		// Kong checks enum values only after resolving, and without naming the variable
		// a bad one came from; the environment's are in place by now.
		if env := setEnv(f); env != "" && !flagOnCommandLine(ctx, f.Name) {
			if err := checkEnum(f, f.Target); err != nil {
				return fmt.Errorf("$%s: %w", env, err)
			}
		}
	}
	path, _ := ctx.FlagValue(flag).(string)
	// A file the user named must exist; the default one may not.
	required := flagOnCommandLine(ctx, "config") || setEnv(flag) != ""
	file, err := loadConfig(path, required)
	if err != nil {
		return err
	}
	if file != nil {
		c.file = file
		ctx.AddResolver(file)
	}
	return nil
}

// flagOnCommandLine reports whether the flag called name was given on the command line,
// as opposed to resolved from the config file.
func flagOnCommandLine(ctx *kong.Context, name string) bool {
	for _, p := range ctx.Path {
		if p.Flag != nil && p.Flag.Name == name && !p.Resolved {
			return true
		}
	}
	return false
}

// setEnv is the name of the environment variable that sets flag, "" if none does.
func setEnv(flag *kong.Flag) string {
	for _, env := range flag.Envs {
		if _, ok := os.LookupEnv(env); ok {
			return env
		}
	}
	return ""
}

// optionError is an impossible value, reported with where the value came from.
func (c *CLI) optionError(ctx *kong.Context, name string, err error) error {
	if !flagOnCommandLine(ctx, name) && c.file != nil && c.file.used[name] {
		return &ConfigError{File: c.file.path, Line: c.file.entries[name].line, Key: name, Err: err}
	}
	for _, f := range ctx.Flags() {
		if env := setEnv(f); f.Name == name && !flagOnCommandLine(ctx, name) && env != "" {
			return fmt.Errorf("$%s: %w", env, err)
		}
	}
	return fmt.Errorf("--%s: %w", name, err)
}

// validate rejects values that parse but cannot work. Options that only `picket run`
// uses (delivery, spool, shutdown) are checked only for run: `once` and `check` on a
// laptop may share a config whose CA file exists only on the servers.
func (c *CLI) validate(ctx *kong.Context) error {
	if c.Interval <= 0 {
		return c.optionError(ctx, "interval", fmt.Errorf("must be positive, got %s", c.Interval))
	}
	// Graphite timestamps are whole seconds: two ticks within a second would carry the
	// same one, and an interval of 1.5s would space them 1s and 2s apart by turns.
	if c.Interval%time.Second != 0 {
		return c.optionError(ctx, "interval", fmt.Errorf("must be a whole number of seconds, got %s", c.Interval))
	}
	if c.Timeout <= 0 {
		return c.optionError(ctx, "timeout", fmt.Errorf("must be positive, got %s", c.Timeout))
	}
	if c.PrefixFile != "" {
		b, err := os.ReadFile(c.PrefixFile)
		if err != nil {
			return c.optionError(ctx, "prefix-file", err)
		}
		// The file's content is a secret: say what is wrong with it, never what it holds.
		if c.Prefix = strings.TrimSpace(string(b)); c.Prefix == "" {
			return c.optionError(ctx, "prefix-file", fmt.Errorf("%s is empty", c.PrefixFile))
		}
	}
	if c.Prefix == "" {
		return c.optionError(ctx, "prefix", errors.New("must not be empty"))
	}
	for name, re := range map[string]string{
		"collector.disk.device-include":     c.Collector.Disk.DeviceInclude,
		"collector.disk.device-exclude":     c.Collector.Disk.DeviceExclude,
		"collector.net.device-include":      c.Collector.Net.DeviceInclude,
		"collector.net.device-exclude":      c.Collector.Net.DeviceExclude,
		"collector.fs.mount-points-exclude": c.Collector.FS.MountPointsExclude,
		"collector.fs.fs-types-exclude":     c.Collector.FS.FSTypesExclude,
	} {
		if _, err := regexp.Compile(re); err != nil {
			return c.optionError(ctx, name, err)
		}
	}
	if ctx.Command() == "run" {
		return c.validateRun(ctx)
	}
	return nil
}

// validateRun rejects values of the options only `picket run` uses.
func (c *CLI) validateRun(ctx *kong.Context) error {
	if c.ShutdownTimeout <= 0 {
		return c.optionError(ctx, "shutdown-timeout", fmt.Errorf("must be positive, got %s", c.ShutdownTimeout))
	}
	g := &c.Graphite
	for name, d := range map[string]time.Duration{
		"graphite.dial-timeout": g.DialTimeout, "graphite.write-timeout": g.WriteTimeout,
		"graphite.ack-timeout": g.AckTimeout, "graphite.backoff-min": g.BackoffMin,
		"graphite.backoff-max": g.BackoffMax, "spool.max-age": c.Spool.MaxAge,
	} {
		if d <= 0 {
			return c.optionError(ctx, name, fmt.Errorf("must be positive, got %s", d))
		}
	}
	if g.ReplayWindow < 0 {
		return c.optionError(ctx, "graphite.replay-window", fmt.Errorf("must not be negative, got %s", g.ReplayWindow))
	}
	if g.ReplayRate < 0 {
		return c.optionError(ctx, "graphite.replay-rate", fmt.Errorf("must not be negative, got %v", g.ReplayRate))
	}
	if g.BackoffMax < g.BackoffMin {
		return c.optionError(ctx, "graphite.backoff-max", fmt.Errorf("%s is less than --graphite.backoff-min %s", g.BackoffMax, g.BackoffMin))
	}
	if _, err := c.splay(); err != nil {
		return c.optionError(ctx, "graphite.splay", err)
	}
	for _, a := range g.Address {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c.optionError(ctx, "graphite.address", err)
		}
	}
	if _, option, err := c.tlsConfig(); err != nil {
		return c.optionError(ctx, option, err)
	}
	if option, err := c.validateInflux(); err != nil {
		return c.optionError(ctx, option, err)
	}
	return nil
}

// splay is --graphite.splay: a duration within the interval, or derived from the host name.
func (c *CLI) splay() (time.Duration, error) {
	return c.parseSplay(c.Graphite.Splay)
}

// parseSplay reads a splay option: a duration within the interval, or "auto", derived from
// the host name.
func (c *CLI) parseSplay(v string) (time.Duration, error) {
	if v == "auto" {
		return graphite.SplayFor(c.host(), c.Interval), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, errors.New(`want "auto" or a duration`)
	}
	if d < 0 || d >= c.Interval {
		return 0, fmt.Errorf("%s is not within the interval [0, %s)", d, c.Interval)
	}
	return d, nil
}

// tlsConfig is the Graphite TLS setup, nil for plain TCP. Setting a TLS file without
// enabling TLS is an error rather than a silent plain-text connection. An error comes with
// the option it is about, so that validate can say where that option was set.
func (c *CLI) tlsConfig() (cfg *tls.Config, option string, err error) {
	t := c.Graphite.TLS
	if !t.Enabled {
		for _, o := range []struct {
			name string
			set  bool
		}{
			{"graphite.tls.ca-file", t.CAFile != ""}, {"graphite.tls.cert-file", t.CertFile != ""},
			{"graphite.tls.key-file", t.KeyFile != ""}, {"graphite.tls.server-name", t.ServerName != ""},
			{"graphite.tls.insecure-skip-verify", t.InsecureSkipVerify},
		} {
			if o.set {
				return nil, o.name, errors.New("TLS options are set but TLS is off: add --graphite.tls.enabled")
			}
		}
		return nil, "", nil
	}
	return buildTLS("graphite.tls.", t.CAFile, t.CertFile, t.KeyFile, t.ServerName, t.InsecureSkipVerify)
}

// buildTLS makes the TLS setup of an exporter whose TLS options are named prefix+ca-file
// and so on: verification on unless insecure, the system roots unless caFile.
func buildTLS(prefix, caFile, certFile, keyFile, serverName string, insecure bool) (*tls.Config, string, error) {
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: insecure, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, prefix + "ca-file", err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, prefix + "ca-file", fmt.Errorf("%s holds no PEM certificate", caFile)
		}
	}
	switch {
	case certFile != "" && keyFile == "":
		return nil, prefix + "cert-file", fmt.Errorf("a client certificate needs --%skey-file too", prefix)
	case certFile == "" && keyFile != "":
		return nil, prefix + "key-file", fmt.Errorf("a client key needs --%scert-file too", prefix)
	case certFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, prefix + "cert-file", err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, "", nil
}

// collectorOptions are the collectors' options as set on the command line.
func (c *CLI) collectorOptions(log *slog.Logger) collectors.Options {
	return collectors.Options{
		Logger:         log,
		ProcFS:         c.Path.Procfs,
		SysFS:          c.Path.Sysfs,
		RootFS:         c.Path.Rootfs,
		PerCPU:         c.Collector.CPU.PerCPU,
		DiskInclude:    c.Collector.Disk.DeviceInclude,
		DiskExclude:    c.Collector.Disk.DeviceExclude,
		NetInclude:     c.Collector.Net.DeviceInclude,
		NetExclude:     c.Collector.Net.DeviceExclude,
		FSMountExclude: c.Collector.FS.MountPointsExclude,
		FSTypeExclude:  c.Collector.FS.FSTypesExclude,
		BPFStats:       c.BPF.Stats,
	}
}

// collectorEnabled reports the --[no-]collector.<name> switch of registry entry i.
func (c *CLI) collectorEnabled(i int) bool {
	return c.enabled.Elem().Field(i).Bool()
}

// jobs builds every enabled collector, and picket's own, in registry order.
func (c *CLI) jobs(log *slog.Logger, reporters []reporter) ([]scheduler.Job, error) {
	opts := c.collectorOptions(log)
	var jobs []scheduler.Job
	for i, f := range collectors.All {
		if !c.collectorEnabled(i) {
			continue
		}
		col, err := f.New(opts)
		if err != nil {
			return nil, fmt.Errorf("collector %s: %w", f.Name, err)
		}
		jobs = append(jobs, scheduler.Job{Name: f.Name, Collector: col})
		// A probe's own cost (picket.bpf.<probe>.*) is reported with picket's.
		if p, ok := col.(collectors.Probe); ok {
			reporters = append(reporters, p)
		}
	}
	return append(jobs, scheduler.Job{Name: "picket", Collector: newSelfCollector(reporters)}), nil
}

// effectiveTimeout caps --timeout so a tick always ends before the next one starts.
func (c *CLI) effectiveTimeout() time.Duration {
	return min(c.Timeout, c.Interval*4/5)
}

// host is --hostname, or the short host name.
func (c *CLI) host() string {
	if c.Hostname != "" {
		return c.Hostname
	}
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	short, _, _ := strings.Cut(h, ".")
	return short
}

func (c *CLI) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Env is what the commands run with: where they write and when they stop.
type Env struct {
	Ctx    context.Context
	Stdout io.Writer
	Stderr io.Writer
}

// exitCode carries an exit status out of kong's Exit hook (kong calls it for --help).
type exitCode int

// parse reads the command line, the environment and the config file into a CLI. Errors
// are the user's: a bad flag, a bad config file, an impossible value.
func parse(args []string, stdout, stderr io.Writer) (*CLI, *kong.Context, error) {
	cli := &CLI{enabled: enabledFlags()}
	cli.Enabled = kong.Plugins{cli.enabled.Interface()}
	parser, err := kong.New(cli,
		kong.Name("picket"),
		kong.Description("Linux host metrics agent: the kernel's own counters, shipped to Graphite or InfluxDB without losing any."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(c int) { panic(exitCode(c)) }),
		kong.DefaultEnvars("PICKET"),
		kong.Vars{
			"disk_exclude":     collectors.DefaultDiskExclude,
			"net_exclude":      collectors.DefaultNetExclude,
			"fs_mount_exclude": collectors.DefaultFSMountExclude,
			"fs_type_exclude":  collectors.DefaultFSTypeExclude,
		},
	)
	if err != nil {
		return nil, nil, err
	}
	kctx, err := parser.Parse(args)
	if err == nil && kctx.Command() != "version" {
		err = cli.validate(kctx)
	}
	var cfg *ConfigError
	if errors.As(err, &cfg) {
		// Kong prefixes the flag's summary; the config error already names the key.
		err = cfg
	}
	return cli, kctx, err
}

// Main parses args and runs the command, returning the process's exit status: 0 on
// success, 1 when the command failed, 2 when the command line or config is wrong (in which
// case nothing was started).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if p := recover(); p != nil {
			c, ok := p.(exitCode)
			if !ok {
				panic(p)
			}
			code = int(c)
		}
	}()
	cli, kctx, err := parse(args, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "picket: %v\n", err)
		return 2
	}
	if err := kctx.Run(cli, &Env{Ctx: ctx, Stdout: stdout, Stderr: stderr}); err != nil {
		fmt.Fprintf(stderr, "picket: %v\n", err)
		var cfg *ConfigError
		var usage usageError
		if errors.As(err, &cfg) || errors.As(err, &usage) {
			return 2
		}
		return 1
	}
	return 0
}
