package agent

import (
	"errors"
	"testing"
)

// FuzzParseConfig: any bytes give a config or a ConfigError naming the file, never a panic.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		"", "interval: 10s\n", "path:\n  procfs: /x\n", "- a\n", "a: [1, {b: c}]\n", "a: &x 1\nb: *x\n",
		"collector.cpu: false\ncollector:\n  cpu: true\n", "? [a]\n: b\n", "a:\n  b:\n    c: ~\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig("fuzz.yaml", data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.File != "fuzz.yaml" {
				t.Fatalf("error %v does not name the file", err)
			}
			return
		}
		for k, e := range c.entries {
			if k == "" || e.line <= 0 {
				t.Fatalf("entry %q has line %d", k, e.line)
			}
		}
	})
}
