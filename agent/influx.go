package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/picket-agent/picket/exporters/influx"
	"github.com/picket-agent/picket/exporters/spool"
)

// validateInflux checks the --influx.* options for `picket run`, reads the password and
// token files, and returns the option an error is about. Errors name files, never what
// a secret holds.
func (c *CLI) validateInflux() (string, error) {
	x := &c.Influx
	if len(x.URL) == 0 {
		// Options that only make sense with an endpoint: set without one, the user
		// probably meant to send somewhere.
		for _, o := range []struct {
			name string
			set  bool
		}{
			{"influx.database", x.Database != ""}, {"influx.retention-policy", x.RetentionPolicy != ""},
			{"influx.username", x.Username != ""}, {"influx.password", x.Password != ""},
			{"influx.password-file", x.PasswordFile != ""}, {"influx.org", x.Org != ""},
			{"influx.bucket", x.Bucket != ""}, {"influx.token", x.Token != ""}, {"influx.token-file", x.TokenFile != ""},
		} {
			if o.set {
				return o.name, errors.New("set, but --influx.url is not")
			}
		}
		return "", nil
	}
	for _, u := range x.URL {
		if err := influx.CheckURL(u); err != nil {
			return "influx.url", err
		}
	}
	for _, f := range []struct {
		option, file string
		value        *string
	}{{"influx.password", x.PasswordFile, &x.Password}, {"influx.token", x.TokenFile, &x.Token}} {
		if f.file == "" {
			continue
		}
		if *f.value != "" {
			return f.option + "-file", fmt.Errorf("--%s is set too; set one of them", f.option)
		}
		b, err := os.ReadFile(f.file)
		if err != nil {
			return f.option + "-file", err
		}
		// The file's content is a secret: say what is wrong with it, never what it holds.
		if *f.value = strings.TrimSpace(string(b)); *f.value == "" {
			return f.option + "-file", fmt.Errorf("%s is empty", f.file)
		}
	}
	switch {
	case x.Database != "" && x.Bucket != "":
		return "influx.bucket", errors.New("--influx.database is set too: the database is for the 1.x API (/write), the bucket for the 2.x API (/api/v2/write); set one")
	case x.Database == "" && x.Bucket == "":
		return "influx.url", errors.New("needs --influx.database (the 1.x API, /write) or --influx.bucket (the 2.x API, /api/v2/write)")
	case x.Database != "":
		if x.Org != "" {
			return "influx.org", errors.New("goes with --influx.bucket (the 2.x API), not --influx.database")
		}
		if x.Token != "" {
			return "influx.token", errors.New("goes with --influx.bucket (the 2.x API), not --influx.database; the 1.x API takes --influx.username and --influx.password")
		}
		if x.Password != "" && x.Username == "" {
			return "influx.password", errors.New("needs --influx.username too")
		}
	default:
		for _, o := range []struct {
			name string
			set  bool
		}{{"influx.username", x.Username != ""}, {"influx.password", x.Password != ""}, {"influx.retention-policy", x.RetentionPolicy != ""}} {
			if o.set {
				return o.name, errors.New("goes with --influx.database (the 1.x API), not --influx.bucket; the 2.x API takes --influx.token")
			}
		}
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"influx.timeout", x.Timeout}, {"influx.backoff-min", x.BackoffMin}, {"influx.backoff-max", x.BackoffMax}} {
		if d.d <= 0 {
			return d.name, fmt.Errorf("must be positive, got %s", d.d)
		}
	}
	if x.BackoffMax < x.BackoffMin {
		return "influx.backoff-max", fmt.Errorf("%s is less than --influx.backoff-min %s", x.BackoffMax, x.BackoffMin)
	}
	if x.BatchInterval < 0 {
		return "influx.batch-interval", fmt.Errorf("must not be negative, got %s", x.BatchInterval)
	}
	if x.ReplayRate < 0 {
		return "influx.replay-rate", fmt.Errorf("must not be negative, got %v", x.ReplayRate)
	}
	if _, err := c.parseSplay(x.Splay); err != nil {
		return "influx.splay", err
	}
	_, option, err := c.influxTLS()
	return option, err
}

// influxTLS is the TLS setup for https endpoints: nil (the system roots) unless a TLS
// option is set. TLS options with no https URL are an error rather than ignored.
func (c *CLI) influxTLS() (*tls.Config, string, error) {
	t := c.Influx.TLS
	var set string
	for _, o := range []struct {
		name string
		set  bool
	}{
		{"influx.tls.ca-file", t.CAFile != ""}, {"influx.tls.cert-file", t.CertFile != ""},
		{"influx.tls.key-file", t.KeyFile != ""}, {"influx.tls.server-name", t.ServerName != ""},
		{"influx.tls.insecure-skip-verify", t.InsecureSkipVerify},
	} {
		if o.set {
			set = o.name
			break
		}
	}
	if set == "" {
		return nil, "", nil
	}
	https := false
	for _, u := range c.Influx.URL {
		https = https || strings.HasPrefix(strings.ToLower(u), "https://")
	}
	if !https {
		return nil, set, errors.New("TLS options are set but no --influx.url is https://")
	}
	return buildTLS("influx.tls.", t.CAFile, t.CertFile, t.KeyFile, t.ServerName, t.InsecureSkipVerify)
}

// influxOptions are the Influx exporter's options, once validate has passed.
func (c *CLI) influxOptions(log *slog.Logger, sp *spool.Spool) influx.Options {
	x := c.Influx
	tlsConfig, _, _ := c.influxTLS()
	splay, _ := c.parseSplay(x.Splay)
	return influx.Options{
		Logger: log, Name: "influx", URLs: x.URL,
		Database: x.Database, RetentionPolicy: x.RetentionPolicy, Username: x.Username, Password: x.Password,
		Org: x.Org, Bucket: x.Bucket, Token: x.Token,
		TLS: tlsConfig, Gzip: x.Gzip, UserAgent: "picket/" + Version,
		Host: c.host(), Spool: sp, Splay: splay, ReplayRate: x.ReplayRate,
		BatchBytes: int(x.BatchBytes), BatchInterval: x.BatchInterval, Timeout: x.Timeout,
		BackoffMin: x.BackoffMin, BackoffMax: x.BackoffMax,
		// Half the shutdown bound sends what was read; the rest closes the spool.
		DrainTimeout: c.ShutdownTimeout / 2,
	}
}
