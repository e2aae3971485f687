package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInfluxSecrets: the password and the token come from their option, their file
// (trimmed) or the environment; an error about them names the option and the file, never
// what they hold.
func TestInfluxSecrets(t *testing.T) {
	const secret = "s3cr3t-Vq7"
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "  "+secret+"\n")
	empty := write("empty", "\n")
	v1 := []string{"run", "--influx.url", "http://h:8086", "--influx.database", "db", "--influx.username", "u"}
	v2 := []string{"run", "--influx.url", "http://h:8086", "--influx.bucket", "b"}
	for _, tc := range []struct {
		name     string
		args     []string
		env      map[string]string
		password string
		token    string
		want     string // in the error; "" for none
	}{
		{name: "password file", args: append(v1, "--influx.password-file", good), password: secret},
		{name: "password env", args: v1, env: map[string]string{"PICKET_INFLUX_PASSWORD": secret}, password: secret},
		{name: "token file", args: append(v2, "--influx.token-file", good), token: secret},
		{name: "token env", args: v2, env: map[string]string{"PICKET_INFLUX_TOKEN": secret}, token: secret},
		{name: "password and its file", args: append(v1, "--influx.password", secret, "--influx.password-file", good), want: "--influx.password-file: --influx.password is set too"},
		{name: "empty token file", args: append(v2, "--influx.token-file", empty), want: "--influx.token-file: " + empty + " is empty"},
		{name: "password without a user", args: []string{"run", "--influx.url", "http://h:8086", "--influx.database", "db", "--influx.password", secret}, want: "--influx.password: needs --influx.username"},
		{name: "token with a database", args: append(v1, "--influx.token", secret), want: "--influx.token: goes with --influx.bucket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cli, _, err := parse(append(tc.args, "--config", writeConfig(t, "")), &bytes.Buffer{}, &bytes.Buffer{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			case err != nil:
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows the secret: %v", err)
				}
				return
			}
			if cli.Influx.Password != tc.password || cli.Influx.Token != tc.token {
				t.Errorf("password %q token %q, want %q %q", cli.Influx.Password, cli.Influx.Token, tc.password, tc.token)
			}
		})
	}
}
