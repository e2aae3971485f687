package collectors

import (
	"context"
	"errors"
	"testing"

	"github.com/picket-agent/picket/agent/metric"
)

func TestParseProcStat(t *testing.T) {
	const tail = " 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 13 0 100 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
	for _, tc := range []struct {
		name    string
		in      string
		state   byte
		threads int64
		wantErr string
	}{
		{name: "realistic", in: "1 (process_api) S" + tail, state: 'S', threads: 13},
		{name: "parentheses and spaces in the name", in: "11 (a) (b c) R" + tail, state: 'R', threads: 13},
		{name: "name ends in a parenthesis", in: "11 (x)) Z" + tail, state: 'Z', threads: 13},
		{name: "only the fields needed", in: "4 (kworker/0:1) I 2 0 0 0 -1 69238880 0 0 0 0 0 0 0 0 20 0 1\n", state: 'I', threads: 1},
		{name: "empty", in: "", wantErr: "empty file"},
		{name: "truncated", in: "1 (process_api) S 0 0 0", wantErr: "no newline at end"},
		{name: "truncated after name", in: "1 (process_api)\n", wantErr: "0 fields after the command name, want at least 18"},
		{name: "truncated in fields", in: "1 (process_api) S 0 0 0\n", wantErr: "4 fields after the command name"},
		{name: "truncated in name", in: "1 (process\n", wantErr: "no ')'"},
		{name: "garbage", in: "hello world\n", wantErr: "no ')'"},
		{name: "newline only", in: "\n", wantErr: "no ')'"},
		{name: "long state", in: "1 (x) Sx" + tail, wantErr: "state \"Sx\" is not one letter"},
		{name: "threads not a number", in: "1 (x) S 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 abc 0\n", wantErr: "num_threads: strconv.ParseUint"},
		{name: "threads negative", in: "1 (x) S 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 -1 0\n", wantErr: "num_threads: strconv.ParseUint"},
		{name: "threads too many", in: "1 (x) S 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 99999999999 0\n", wantErr: "value out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, threads, err := parseProcStat([]byte(tc.in))
			checkErr(t, err, tc.wantErr)
			if state != tc.state || threads != tc.threads {
				t.Errorf("got %q %d, want %q %d", state, threads, tc.state, tc.threads)
			}
		})
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("1 (process_api) S 0 0 0 0 -1 4194560 36203 299474 0 151 37 192 619 406 20 0 13 0 25 42774528\n"))
	f.Add([]byte("11 (a) (b c) R 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 2\n"))
	f.Add([]byte("1 (x)"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, in []byte) {
		_, threads, err := parseProcStat(in)
		if err == nil && threads < 0 {
			t.Errorf("%q: %d threads", in, threads)
		}
	})
}

// TestProcessesCanceled checks that a scan stops when ctx is done and adds no partial
// counts, while the limits read before it are kept.
func TestProcessesCanceled(t *testing.T) {
	c, err := newProcesses(testOptions("testdata/processes/states"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := metric.NewSink("processes")
	err = c.Collect(ctx, s)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	var fields []string
	for _, x := range s.Samples() {
		fields = append(fields, x.Field)
	}
	if len(fields) != 2 || fields[0] != "pid_max" || fields[1] != "threads_max" {
		t.Errorf("samples %v, want only pid_max and threads_max", fields)
	}
}

func BenchmarkProcessesHost(b *testing.B) {
	c, err := newProcesses(testOptions("/"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Collect(ctx, metric.NewSink("processes")); err != nil {
			b.Fatal(err)
		}
	}
}
