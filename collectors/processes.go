package collectors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/picket-agent/picket/agent/metric"
)

var processesSeries = []Series{
	{Path: "processes.running", Kind: metric.Gauge, Help: "processes running or runnable (state R in /proc/<pid>/stat)"},
	{Path: "processes.sleeping", Kind: metric.Gauge, Help: "processes in interruptible sleep (S)"},
	{Path: "processes.disk_sleep", Kind: metric.Gauge, Help: "processes in uninterruptible sleep, usually waiting for I/O (D)"},
	{Path: "processes.zombie", Kind: metric.Gauge, Help: "processes that exited and were not reaped by their parent (Z)"},
	{Path: "processes.stopped", Kind: metric.Gauge, Help: "processes stopped by a signal (T)"},
	{Path: "processes.tracing_stop", Kind: metric.Gauge, Help: "processes stopped by a debugger (t)"},
	{Path: "processes.dead", Kind: metric.Gauge, Help: "processes being torn down (X, x before Linux 4.14)"},
	{Path: "processes.idle", Kind: metric.Gauge, Help: "idle kernel threads (I)"},
	{Path: "processes.parked", Kind: metric.Gauge, Help: "parked kernel threads, e.g. of an offline CPU (P)"},
	{Path: "processes.total", Kind: metric.Gauge, Help: "all processes, whatever their state; states of old kernels (K, W) count only here"},
	{Path: "processes.threads", Kind: metric.Gauge, Help: "threads of all processes together (num_threads)"},
	{Path: "processes.pid_max", Kind: metric.Gauge, Help: "one above the highest PID the kernel hands out, to processes and threads alike (/proc/sys/kernel/pid_max)"},
	{Path: "processes.threads_max", Kind: metric.Gauge, Help: "the most threads the kernel allows at once (/proc/sys/kernel/threads-max)"},
}

// processStates are the fields for the state letters of /proc/<pid>/stat, indexed by
// processState.
var processStates = [...]string{"running", "sleeping", "disk_sleep", "zombie", "stopped", "tracing_stop", "dead", "idle", "parked"}

// processState returns the index in processStates of a state letter, or -1 for a letter
// of an old kernel (K wakekill, W waking) or an unknown one.
func processState(letter byte) int {
	switch letter {
	case 'R':
		return 0
	case 'S':
		return 1
	case 'D':
		return 2
	case 'Z':
		return 3
	case 'T':
		return 4
	case 't':
		return 5
	case 'X', 'x':
		return 6
	case 'I':
		return 7
	case 'P':
		return 8
	}
	return -1
}

// maxProcStat is more than a /proc/<pid>/stat line can be: 52 numbers of at most 20
// digits and a command name of at most 64 bytes.
const maxProcStat = 4096

type processesCollector struct {
	proc               string
	pidMax, threadsMax string
	// buf holds one /proc/<pid>/stat at a time, reused for every process of every tick.
	buf []byte
}

func newProcesses(o Options) (Collector, error) {
	return &processesCollector{
		proc:       o.ProcFS,
		pidMax:     filepath.Join(o.ProcFS, "sys", "kernel", "pid_max"),
		threadsMax: filepath.Join(o.ProcFS, "sys", "kernel", "threads-max"),
		buf:        make([]byte, maxProcStat),
	}, nil
}

func (c *processesCollector) Collect(ctx context.Context, s *metric.Sink) error {
	return errors.Join(
		addUintGauge(s, "pid_max", c.pidMax),
		addUintGauge(s, "threads_max", c.threadsMax),
		c.scan(ctx, s),
	)
}

// scan counts every process in /proc by state, and their threads. Cut short by ctx or by
// a failed listing it adds nothing, as partial counts would look like real ones; a process
// whose stat cannot be parsed is left out and reported.
func (c *processesCollector) scan(ctx context.Context, s *metric.Sink) error {
	d, err := os.Open(c.proc)
	if err != nil {
		return procFileErr(c.proc, err)
	}
	defer d.Close()
	var (
		states         [len(processStates)]int
		total, threads int64
		bad            int
		firstBad       error
		badPID         int
	)
	for {
		// Batches keep memory flat on hosts with very many processes.
		names, err := d.Readdirnames(256)
		for _, name := range names {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("scanning %s: %w", c.proc, err)
			}
			if !isPID(name) {
				continue
			}
			state, n, err := c.readProcStat(filepath.Join(c.proc, name, "stat"))
			switch {
			case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH):
				// The process exited after the directory was listed.
				continue
			case err != nil:
				// The lowest PID's error is reported, so the message does not depend on
				// directory order.
				bad++
				if pid, _ := strconv.Atoi(name); firstBad == nil || pid < badPID {
					firstBad, badPID = err, pid
				}
				continue
			}
			total++
			threads += n
			if i := processState(state); i >= 0 {
				states[i]++
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return procFileErr(c.proc, err)
		}
	}
	for i, n := range states {
		s.Gauge(processStates[i], float64(n))
	}
	s.Gauge("total", float64(total))
	s.Gauge("threads", float64(threads))
	if bad > 0 {
		return fmt.Errorf("%d of %d processes unreadable, lowest PID: %w", bad, int64(bad)+total, firstBad)
	}
	return nil
}

// isPID reports whether a /proc entry is a process directory.
func isPID(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' {
			return false
		}
	}
	return true
}

// readProcStat reads one /proc/<pid>/stat into c.buf and parses it. It calls open and
// read directly: os.Open would also try to register every file with the network poller,
// a wasted system call per process per tick.
func (c *processesCollector) readProcStat(path string) (state byte, threads int64, err error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	n := 0
	for {
		m, err := syscall.Read(fd, c.buf[n:])
		if err != nil {
			return 0, 0, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
		if n == len(c.buf) {
			return 0, 0, fmt.Errorf("parsing %s: longer than %d bytes", path, len(c.buf))
		}
	}
	state, threads, err = parseProcStat(c.buf[:n])
	if err != nil {
		return 0, 0, fmt.Errorf("parsing %s: %w", path, err)
	}
	return state, threads, nil
}

// parseProcStat returns the state letter and thread count of a /proc/<pid>/stat line. It
// takes bytes, not a reader, because it runs for every process every tick on a reused
// buffer. procfs's Proc.Stat is not used: it scans all 52 fields with fmt and slices past
// the end of a line cut short after the command name.
func parseProcStat(b []byte) (state byte, threads int64, err error) {
	if len(b) == 0 {
		return 0, 0, errEmptyFile
	}
	if b[len(b)-1] != '\n' {
		return 0, 0, errNoNewline
	}
	// The command name is in parentheses and may itself hold ") " and spaces: the fields
	// start after the last ')'.
	r := bytes.LastIndexByte(b, ')')
	if r < 0 {
		return 0, 0, errors.New("no ')' after the command name")
	}
	rest := b[r+1:]
	// After the command name: state is the 1st field, num_threads the 18th (fields 3
	// and 20 of proc(5)).
	const stateField, threadsField = 0, 17
	var tok []byte
	for i := 0; i <= threadsField; i++ {
		tok, rest = nextProcField(rest)
		if tok == nil {
			return 0, 0, fmt.Errorf("%d fields after the command name, want at least %d", i, threadsField+1)
		}
		switch i {
		case stateField:
			if len(tok) != 1 {
				return 0, 0, fmt.Errorf("state %.10q is not one letter", tok)
			}
			state = tok[0]
		case threadsField:
			// Threads are bounded by pid_max, at most 2^22.
			n, err := strconv.ParseUint(string(tok), 10, 32)
			if err != nil {
				return 0, 0, fmt.Errorf("num_threads: %w", err)
			}
			threads = int64(n)
		}
	}
	return state, threads, nil
}

// nextProcField returns the first space-separated field of b and what follows it, or nil
// when b has no more fields.
func nextProcField(b []byte) (field, rest []byte) {
	b = bytes.TrimLeft(b, " \n")
	if len(b) == 0 {
		return nil, nil
	}
	if i := bytes.IndexAny(b, " \n"); i >= 0 {
		return b[:i], b[i:]
	}
	return b, nil
}
