package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"github.com/picket-agent/picket/collectors"
)

func writeConfig(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "picket.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigErrors: each bad config exits 2 before anything starts, and stderr names the
// file, the line, the key and what is wrong. (The options only `run` uses are in
// TestRunOnlyOptions.)
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "interval: 10s\nintervall: 5s\n", []string{":2:", `"intervall"`, "unknown option"}},
		{"unknown nested key", "path:\n  procfs: /proc\n  prcfs: /x\n", []string{":3:", `"path.prcfs"`, "unknown option"}},
		{"wrong type duration", "interval: often\n", []string{":1:", `"interval"`, "invalid duration"}},
		{"wrong type bool", "collector:\n  cpu: maybe\n", []string{":2:", `"collector.cpu"`, "bool"}},
		{"interval zero", "interval: 0s\n", []string{":1:", `"interval"`, "must be positive"}},
		{"negative timeout", "timeout: -1s\n", []string{":1:", `"timeout"`, "must be positive"}},
		{"bad regexp", "collector:\n  disk:\n    device-exclude: \"(\"\n", []string{":3:", `"collector.disk.device-exclude"`, "missing closing )"}},
		{"set twice", "path.procfs: /a\npath:\n  procfs: /b\n", []string{":3:", `"path.procfs"`, "set twice (first on line 1)"}},
		{"no value", "prefix:\n", []string{":1:", `"prefix"`, "no value"}},
		{"not a map", "- interval\n", []string{":1:", "top level must be a map"}},
		{"yaml syntax", "interval: [10s\n", []string{"yaml"}},
		{"empty prefix", "prefix: ''\n", []string{`"prefix"`, "must not be empty"}},
		{"sub-second interval", "interval: 1500ms\n", []string{":1:", `"interval"`, "whole number of seconds"}},
		{"nanosecond interval", "interval: 1ns\n", []string{":1:", `"interval"`, "whole number of seconds"}},
		{"not in enum", "log:\n  level: verbose\n", []string{":2:", `"log.level"`, `must be one of debug, info, warn, error, got "verbose"`}},
		{"command's enum", "format: xml\n", []string{":1:", `"format"`, "must be one of"}},
		{"list for one value", "collector:\n  net:\n    device-include: [eth0, eth1]\n", []string{":3:", `"collector.net.device-include"`, "a list, where one value is wanted"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), []string{"once", "--config", path}, &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", code, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("something ran: stdout %q", stdout.String())
			}
			msg := stderr.String()
			if strings.Contains(msg, ": --") {
				t.Errorf("stderr %q names the flag again after the key", msg)
			}
			for _, w := range append([]string{path}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("stderr %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// TestRunOnlyOptions: the delivery, spool and shutdown options are checked for `run`
// only, so `once` and `check` work with a config meant for another host (a CA file that
// is only on the servers) or with an option set wrong for the daemon.
func TestRunOnlyOptions(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"CA file missing", "graphite:\n  tls:\n    enabled: true\n    ca-file: /nonexistent/ca.pem\n", []string{":4:", `"graphite.tls.ca-file"`, "no such file"}},
		{"TLS option with TLS off", "graphite:\n  tls:\n    ca-file: /etc/ssl/ca.pem\n", []string{":3:", `"graphite.tls.ca-file"`, "TLS is off"}},
		{"bad address", "graphite.address: [carbon]\n", []string{":1:", `"graphite.address"`, "missing port"}},
		{"dial timeout zero", "graphite.dial-timeout: 0s\n", []string{":1:", `"graphite.dial-timeout"`, "must be positive"}},
		{"negative replay window", "graphite.replay-window: -1s\n", []string{":1:", `"graphite.replay-window"`, "must not be negative"}},
		{"backoff max under min", "graphite:\n  backoff-min: 5s\n  backoff-max: 1s\n", []string{":3:", `"graphite.backoff-max"`, "less than"}},
		{"splay past the interval", "graphite.splay: 20s\n", []string{":1:", `"graphite.splay"`, "not within the interval"}},
		{"spool max age zero", "spool.max-age: 0s\n", []string{":1:", `"spool.max-age"`, "must be positive"}},
		{"influx option without a URL", "influx.database: db\n", []string{":1:", `"influx.database"`, "--influx.url is not"}},
		{"influx URL scheme", "influx:\n  url: [udp://h:8089]\n  database: db\n", []string{":2:", `"influx.url"`, "http or https"}},
		{"influx URL with a password", "influx:\n  url: [http://u:hunter2@h:8086]\n  database: db\n", []string{":2:", `"influx.url"`, "REDACTED@h:8086", "credentials do not go in the URL"}},
		{"influx neither API", "influx.url: [http://h:8086]\n", []string{":1:", `"influx.url"`, "needs --influx.database"}},
		{"influx both APIs", "influx:\n  url: [http://h:8086]\n  database: db\n  bucket: b\n", []string{":4:", `"influx.bucket"`, "set one"}},
		{"influx token with a database", "influx:\n  url: [http://h:8086]\n  database: db\n  token: t\n", []string{":4:", `"influx.token"`, "goes with --influx.bucket"}},
		{"influx username with a bucket", "influx:\n  url: [http://h:8086]\n  bucket: b\n  username: u\n", []string{":4:", `"influx.username"`, "goes with --influx.database"}},
		{"influx password file missing", "influx:\n  url: [http://h:8086]\n  database: db\n  username: u\n  password-file: /nonexistent/pw\n", []string{":5:", `"influx.password-file"`, "no such file"}},
		{"influx TLS without https", "influx:\n  url: [http://h:8086]\n  database: db\n  tls:\n    ca-file: /etc/ssl/ca.pem\n", []string{":5:", `"influx.tls.ca-file"`, "no --influx.url is https"}},
		{"influx CA file missing", "influx:\n  url: [https://h:8086]\n  database: db\n  tls:\n    ca-file: /nonexistent/ca.pem\n", []string{":5:", `"influx.tls.ca-file"`, "no such file"}},
		{"influx timeout zero", "influx:\n  url: [http://h:8086]\n  database: db\n  timeout: 0s\n", []string{":4:", `"influx.timeout"`, "must be positive"}},
		{"influx splay past the interval", "influx:\n  url: [http://h:8086]\n  database: db\n  splay: 10s\n", []string{":4:", `"influx.splay"`, "not within the interval"}},
		{"shutdown timeout zero", "shutdown-timeout: 0s\n", []string{":1:", `"shutdown-timeout"`, "must be positive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			for _, cmd := range []string{"once", "check"} {
				if _, _, err := parse([]string{cmd, "--config", path}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
					t.Errorf("%s: %v", cmd, err)
				}
			}
			var stdout, stderr bytes.Buffer
			if code := Main(context.Background(), []string{"run", "--config", path}, &stdout, &stderr); code != 2 {
				t.Fatalf("run: exit %d, want 2; stderr: %s", code, stderr.String())
			}
			for _, w := range append([]string{path}, tc.want...) {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("run: stderr %q does not contain %q", stderr.String(), w)
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("run started: stdout %q", stdout.String())
			}
		})
	}
}

// TestPrefixFile: the prefix comes from the file, trimmed; a file that is missing or holds
// nothing is an error about --prefix-file that names the file, wherever it was set, and
// never one about an empty --prefix.
func TestPrefixFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "  0123abcd.hosts\n")
	empty := write("empty", "")
	blank := write("blank", " \n\t\n")
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name string
		args []string
		body string // the config file
		env  map[string]string
		want []string // in the error; none: no error
	}{
		{name: "file", args: []string{"--prefix-file", good}},
		{name: "empty file", args: []string{"--prefix-file", empty}, want: []string{"--prefix-file: ", empty + " is empty"}},
		{name: "blank file", args: []string{"--prefix-file", blank}, want: []string{"--prefix-file: ", blank + " is empty"}},
		{name: "missing file", args: []string{"--prefix-file", missing}, want: []string{"--prefix-file: ", missing, "no such file"}},
		{name: "empty file from the config", body: "prefix-file: " + empty + "\n", want: []string{`:1: key "prefix-file": `, empty + " is empty"}},
		{name: "empty file from the environment", env: map[string]string{"PICKET_PREFIX_FILE": empty}, want: []string{"$PICKET_PREFIX_FILE: ", empty + " is empty"}},
		{name: "empty file beats a good prefix", args: []string{"--prefix", "hosts", "--prefix-file", empty}, want: []string{"--prefix-file: ", empty + " is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string{"once", "--config", writeConfig(t, tc.body)}, tc.args...)
			cli, _, err := parse(args, &bytes.Buffer{}, &bytes.Buffer{})
			if len(tc.want) == 0 {
				if err != nil || cli.Prefix != "0123abcd.hosts" {
					t.Fatalf("prefix %q, err %v", cli.Prefix, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; prefix %q", cli.Prefix)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "--prefix:") || strings.Contains(err.Error(), `"prefix"`) {
				t.Errorf("error %q is about --prefix, not the file", err)
			}
		})
	}
}

func TestMissingConfig(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	var stderr bytes.Buffer
	if code := Main(context.Background(), []string{"once", "--config", missing}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), missing) {
		t.Errorf("named missing config: exit %d, stderr %q", code, stderr.String())
	}
	// The default file may be absent: picket runs on defaults.
	if c, err := loadConfig(missing, false); c != nil || err != nil {
		t.Errorf("absent default config: %v, %v", c, err)
	}
	if _, err := os.Stat("/etc/picket/picket.yaml"); errors.Is(err, os.ErrNotExist) {
		cli, _, err := parse([]string{"once"}, &bytes.Buffer{}, &bytes.Buffer{})
		if err != nil || cli.Interval != 10*time.Second {
			t.Errorf("no /etc/picket/picket.yaml: interval %v, err %v", cli.Interval, err)
		}
	}
}

func TestBadFlagAndEnv(t *testing.T) {
	var stderr bytes.Buffer
	if code := Main(context.Background(), []string{"once", "--interval", "0s", "--config", writeConfig(t, "")}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "--interval: must be positive") {
		t.Errorf("flag: exit %d, stderr %q", code, stderr.String())
	}
	t.Setenv("PICKET_INTERVAL", "-5s")
	stderr.Reset()
	if code := Main(context.Background(), []string{"once", "--config", writeConfig(t, "")}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "$PICKET_INTERVAL: must be positive") {
		t.Errorf("env: exit %d, stderr %q", code, stderr.String())
	}
	// version reports the version whatever else is set.
	stderr.Reset()
	if code := Main(context.Background(), []string{"version"}, &bytes.Buffer{}, &stderr); code != 0 {
		t.Errorf("version with a bad $PICKET_INTERVAL: exit %d, stderr %q", code, stderr.String())
	}
	t.Setenv("PICKET_INTERVAL", "10s")
	t.Setenv("PICKET_LOG_LEVEL", "verbose")
	stderr.Reset()
	if code := Main(context.Background(), []string{"once", "--config", writeConfig(t, "")}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "$PICKET_LOG_LEVEL: must be one of") {
		t.Errorf("env enum: exit %d, stderr %q", code, stderr.String())
	}
	// A flag on the command line beats the bad variable, so it is no error.
	stderr.Reset()
	if code := Main(context.Background(), []string{"once", "--log.level=info", "--no-collector.fs", "--config", writeConfig(t, "")}, &bytes.Buffer{}, &stderr); code != 0 {
		t.Errorf("flag over a bad env enum: exit %d, stderr %q", code, stderr.String())
	}
}

// TestPrecedence: flag > environment > file > default, for a value and a collector switch.
func TestPrecedence(t *testing.T) {
	file := writeConfig(t, "interval: 20s\ncollector:\n  cpu: false\npath:\n  procfs: /file/proc\n")
	for _, tc := range []struct {
		name      string
		env       map[string]string
		args      []string
		interval  time.Duration
		cpu       bool
		procfs    string
		useConfig bool
	}{
		{name: "default", interval: 10 * time.Second, cpu: true, procfs: "/proc"},
		{name: "file", useConfig: true, interval: 20 * time.Second, cpu: false, procfs: "/file/proc"},
		{name: "env over file", useConfig: true, env: map[string]string{"PICKET_INTERVAL": "30s", "PICKET_COLLECTOR_CPU": "true"}, interval: 30 * time.Second, cpu: true, procfs: "/file/proc"},
		{name: "flag over env", useConfig: true, env: map[string]string{"PICKET_INTERVAL": "30s", "PICKET_COLLECTOR_CPU": "true"}, args: []string{"--interval=40s", "--no-collector.cpu", "--path.procfs=/flag/proc"}, interval: 40 * time.Second, cpu: false, procfs: "/flag/proc"},
		{name: "env config path", env: map[string]string{"PICKET_CONFIG": file}, interval: 20 * time.Second, cpu: false, procfs: "/file/proc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string{"once"}, tc.args...)
			if tc.useConfig {
				args = append(args, "--config", file)
			} else if tc.env["PICKET_CONFIG"] == "" {
				args = append(args, "--config", writeConfig(t, ""))
			}
			cli, _, err := parse(args, &bytes.Buffer{}, &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			var cpu bool
			for i, f := range collectors.All {
				if f.Name == "cpu" {
					cpu = cli.collectorEnabled(i)
				}
			}
			if cli.Interval != tc.interval || cpu != tc.cpu || cli.Path.Procfs != tc.procfs {
				t.Errorf("interval %v cpu %v procfs %q; want %v %v %q", cli.Interval, cpu, cli.Path.Procfs, tc.interval, tc.cpu, tc.procfs)
			}
		})
	}
}

// TestEveryCollectorHasASwitch: the registry drives --[no-]collector.<name>.
func TestEveryCollectorHasASwitch(t *testing.T) {
	var out bytes.Buffer
	code := Main(context.Background(), []string{"run", "--help"}, &out, &out)
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, name := range []string{"cpu", "disk", "fs", "net", "vmstat"} {
		if !strings.Contains(out.String(), "--[no-]collector."+name+" ") {
			t.Errorf("help lacks --[no-]collector.%s:\n%s", name, out.String())
		}
	}
	for _, env := range []string{"PICKET_INTERVAL", "PICKET_PATH_PROCFS", "PICKET_COLLECTOR_CPU_PER_CPU"} {
		if !strings.Contains(out.String(), env) {
			t.Errorf("help does not document %s", env)
		}
	}
}

// TestConfigLists: a YAML list reaches a list flag item by item, an item holding the
// separator included, and the command line and environment still beat it.
func TestConfigLists(t *testing.T) {
	cfg, err := parseConfig("lists.yaml", []byte("list: ['(a|b),c', d]\nsingle: [x]\n"))
	if err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) (list, single []string) {
		t.Helper()
		var cli struct {
			List   []string
			Single []string `sep:"none"`
		}
		parser, err := kong.New(&cli, kong.Resolvers(cfg), kong.DefaultEnvars("PICKET"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parser.Parse(args); err != nil {
			t.Fatal(err)
		}
		return cli.List, cli.Single
	}
	if list, single := parse(); !slices.Equal(list, []string{"(a|b),c", "d"}) || !slices.Equal(single, []string{"x"}) {
		t.Errorf("from the file: list %q single %q", list, single)
	}
	if _, err := parseConfig("lists.yaml", []byte("single: [x, y]\n")); err != nil {
		t.Fatal(err)
	}
	two, _ := parseConfig("lists.yaml", []byte("single: [x, y]\n"))
	var one struct {
		Single []string `sep:"none"`
	}
	if _, err := kong.Must(&one, kong.Resolvers(two)).Parse(nil); err == nil || !strings.Contains(err.Error(), "more than one item") {
		t.Errorf("two items for a flag that takes one per occurrence: %v", err)
	}
	t.Setenv("PICKET_LIST", "e,f")
	if list, _ := parse(); !slices.Equal(list, []string{"e", "f"}) {
		t.Errorf("env over file: %q", list)
	}
	if list, _ := parse("--list=g"); !slices.Equal(list, []string{"g"}) {
		t.Errorf("flag over env and file: %q", list)
	}
}
