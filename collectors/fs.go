package collectors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"golang.org/x/sys/unix"
)

var fsSeries = []Series{
	{Path: "fs.<mount>.size_bytes", Kind: metric.Gauge, Unit: "bytes", Help: "size of the filesystem"},
	{Path: "fs.<mount>.free_bytes", Kind: metric.Gauge, Unit: "bytes", Help: "free space, the blocks reserved for root included"},
	{Path: "fs.<mount>.avail_bytes", Kind: metric.Gauge, Unit: "bytes", Help: "free space unprivileged users can write to"},
	{Path: "fs.<mount>.files", Kind: metric.Gauge, Help: "inodes"},
	{Path: "fs.<mount>.files_free", Kind: metric.Gauge, Help: "free inodes"},
	{Path: "fs.<mount>.readonly", Kind: metric.Gauge, Help: "1 when mounted read-only, else 0"},
}

// fsStatfsTimeout bounds one tick's wait for statfs: a dead NFS server makes the call
// block in the kernel, where no context reaches it.
const fsStatfsTimeout = time.Second

type fsCollector struct {
	// mountFiles are tried in order: init's mount table is the host's even when picket
	// runs in a container with the host's /proc; self is the fallback where 1 is not
	// readable.
	mountFiles                []string
	mountExclude, typeExclude *regexp.Regexp
	// rootFS prefixes each mount point for statfs; the label stays the mount point.
	rootFS string

	statfs  func(path string, st *unix.Statfs_t) error
	timeout time.Duration
	// stuck holds, by mount point, the statfs calls that outlived their deadline and had
	// not returned at the last look. Such a mount gets no new call, so a hung server costs
	// one goroutine, not one per tick. Only Collect touches the map, and the agent never
	// runs it twice at once.
	stuck map[string]*statfsCall
}

// statfsCall is one statfs running in its own goroutine; done is closed when it returns.
type statfsCall struct {
	done chan struct{}
	st   unix.Statfs_t
	err  error
}

func newFS(o Options) (Collector, error) {
	me, err := compileFilterPattern("collector.fs.mount-points-exclude", o.FSMountExclude)
	if err != nil {
		return nil, err
	}
	te, err := compileFilterPattern("collector.fs.fs-types-exclude", o.FSTypeExclude)
	if err != nil {
		return nil, err
	}
	statfs := o.statfs
	if statfs == nil {
		statfs = unix.Statfs
	}
	return &fsCollector{
		rootFS:       o.RootFS,
		mountFiles:   []string{filepath.Join(o.ProcFS, "1", "mounts"), filepath.Join(o.ProcFS, "self", "mounts")},
		mountExclude: me,
		typeExclude:  te,
		statfs:       statfs,
		timeout:      fsStatfsTimeout,
		stuck:        map[string]*statfsCall{},
	}, nil
}

// Collect statfs's every real mount at once and waits for them until the earlier of ctx's
// deadline and the per-mount timeout. A mount that has not answered by then is reported
// and left alone until its call returns; the others' samples are kept.
func (c *fsCollector) Collect(ctx context.Context, s *metric.Sink) error {
	for mp, call := range c.stuck {
		select {
		case <-call.done:
			delete(c.stuck, mp)
		default:
		}
	}
	// A bad line in the mount table still leaves the mounts read before it.
	mounts, err := c.readMounts()
	errs := []error{err}
	if err := ctx.Err(); err != nil {
		return errors.Join(append(errs, fmt.Errorf("statfs skipped: %w", err))...)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	calls := make([]*statfsCall, len(mounts))
	for i, m := range mounts {
		if c.stuck[m.point] == nil {
			calls[i] = c.start(filepath.Join(c.rootFS, m.point))
		}
	}
	for i, m := range mounts {
		call := calls[i]
		if call == nil || !waitStatfs(ctx, call) {
			if call != nil {
				c.stuck[m.point] = call
			}
			errs = append(errs, fmt.Errorf("statfs %s: timed out, skipped until it answers", m.point))
			continue
		}
		if call.err != nil {
			errs = append(errs, fmt.Errorf("statfs %s: %w", m.point, call.err))
			continue
		}
		// Block counts are in fragment-size units; f_bsize is only the preferred I/O
		// size, equal to it on most filesystems but not all.
		bs := float64(call.st.Frsize)
		if bs == 0 {
			bs = float64(call.st.Bsize)
		}
		ro := 0.0
		if m.readonly {
			ro = 1
		}
		l := []metric.Label{{Key: "mount", Value: m.point}}
		s.Gauge("size_bytes", float64(call.st.Blocks)*bs, l...)
		s.Gauge("free_bytes", float64(call.st.Bfree)*bs, l...)
		s.Gauge("avail_bytes", float64(call.st.Bavail)*bs, l...)
		s.Gauge("files", float64(call.st.Files), l...)
		s.Gauge("files_free", float64(call.st.Ffree), l...)
		s.Gauge("readonly", ro, l...)
	}
	return errors.Join(errs...)
}

func (c *fsCollector) start(path string) *statfsCall {
	call := &statfsCall{done: make(chan struct{})}
	go func() {
		call.err = c.statfs(path, &call.st)
		close(call.done)
	}()
	return call
}

// waitStatfs reports whether call returned before ctx ended. A call that returns at the
// same moment counts as answered.
func waitStatfs(ctx context.Context, call *statfsCall) bool {
	select {
	case <-call.done:
		return true
	case <-ctx.Done():
	}
	select {
	case <-call.done:
		return true
	default:
		return false
	}
}

// readMounts returns the mounts to statfs: the last mount on each mount point (the one
// visible there, which hides any below it or bound to the same point), minus excluded
// mount points and filesystem types.
func (c *fsCollector) readMounts() ([]fsMount, error) {
	var (
		all        []fsMount
		err, first error
	)
	for i, name := range c.mountFiles {
		all, err = readProcFile(name, parseMounts)
		if i == 0 {
			first = err
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
			break
		}
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		// Init's table is the one that matters; say why it could not be read.
		return nil, first
	}
	at := make(map[string]int, len(all))
	uniq := all[:0]
	for _, m := range all {
		if i, ok := at[m.point]; ok {
			uniq[i] = m
			continue
		}
		at[m.point] = len(uniq)
		uniq = append(uniq, m)
	}
	kept := uniq[:0]
	for _, m := range uniq {
		if c.mountExclude != nil && c.mountExclude.MatchString(m.point) {
			continue
		}
		if c.typeExclude != nil && c.typeExclude.MatchString(m.fstype) {
			continue
		}
		kept = append(kept, m)
	}
	return kept, err
}

// fsMount is one line of /proc/<pid>/mounts.
type fsMount struct {
	point, fstype string
	readonly      bool
}

// parseMounts parses /proc/<pid>/mounts ("device mountpoint fstype options dump pass").
// It returns the lines parsed before the first bad one with the error.
func parseMounts(r io.Reader) ([]fsMount, error) {
	var ms []fsMount
	err := scanLines(r, func(line []byte) error {
		fields := strings.Fields(string(line))
		if len(fields) < 4 {
			return fmt.Errorf("%d fields, want at least 4", len(fields))
		}
		m := fsMount{point: unescapeMountField(fields[1]), fstype: fields[2]}
		for o := range strings.SplitSeq(fields[3], ",") {
			if o == "ro" {
				m.readonly = true
				break
			}
		}
		ms = append(ms, m)
		return nil
	})
	return ms, err
}

// unescapeMountField undoes the kernel's escaping of space, tab, newline and backslash in
// a mount table field as a backslash and three octal digits ("/mnt/my\040disk").
func unescapeMountField(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	octal := func(c byte) bool { return '0' <= c && c <= '7' }
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		// Three octal digits make at most \377: a first digit above 3 is not an escape.
		if s[i] == '\\' && i+3 < len(s) && '0' <= s[i+1] && s[i+1] <= '3' && octal(s[i+2]) && octal(s[i+3]) {
			b = append(b, (s[i+1]-'0')<<6|(s[i+2]-'0')<<3|(s[i+3]-'0'))
			i += 3
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}
