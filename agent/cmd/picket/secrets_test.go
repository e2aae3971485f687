package main

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// secret stands for a Hosted Graphite API key carried in the prefix.
const secret = "0f1e2d3c-secret-api-key"

// TestPrefixNeverLogged: a prefix that carries an API key appears in no log line, error or
// file picket writes, whatever happens to the connection: refused, accepted and never read
// (the ack timeout error), accepted and read. It reaches the Graphite peer, where it belongs.
func TestPrefixNeverLogged(t *testing.T) {
	prefixFile := filepath.Join(t.TempDir(), "prefix")
	if err := os.WriteFile(prefixFile, []byte(secret+".hosts\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused := freeAddr(t)
	stalled, _ := listen(t, false)
	reading, received := listen(t, true)

	logged := func(want string) func(log []byte) bool {
		return func(log []byte) bool { return bytes.Contains(log, []byte(want)) }
	}
	for _, tc := range []struct {
		name, addr string
		// happened tells from picket's log that the scenario has played out.
		happened func(log []byte) bool
	}{
		{"refused", refused, logged("connection refused")},
		{"stalled", stalled, logged("and the peer has read none")},
		{"reading", reading, func([]byte) bool { return bytes.Contains(received.Bytes(), []byte(secret+".hosts.")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spoolDir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, "run", "--config", emptyConfig(t),
				"--interval", "1s", "--log.level", "debug", "--prefix-file", prefixFile,
				"--graphite.address", tc.addr, "--graphite.ack-timeout", "1s",
				"--graphite.backoff-min", "100ms", "--graphite.backoff-max", "200ms",
				"--shutdown-timeout", "2s", "--spool.dir", spoolDir)
			var out syncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(30 * time.Second); !tc.happened(out.Bytes()); {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatalf("the scenario did not play out; picket's log:\n%s", out.Bytes())
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			if bytes.Contains(out.Bytes(), []byte(secret)) {
				t.Errorf("the API key is in picket's output:\n%s", out.Bytes())
			}
			filepath.WalkDir(spoolDir, func(path string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				if b, err := os.ReadFile(path); err != nil || bytes.Contains(b, []byte(secret)) {
					t.Errorf("%s holds the API key (or cannot be read: %v)", path, err)
				}
				return nil
			})
		})
	}
}

// freeAddr returns a 127.0.0.1 address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// listen accepts connections on 127.0.0.1 until the test ends; when read is set it keeps
// everything received in the returned buffer.
func listen(t *testing.T, read bool) (string, *syncBuffer) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var got syncBuffer
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			if read {
				go io.Copy(&got, c)
			}
		}
	}()
	return l.Addr().String(), &got
}
