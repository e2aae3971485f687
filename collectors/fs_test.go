package collectors

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picket-agent/picket/agent/metric"
	"golang.org/x/sys/unix"
)

// The golden cases cannot statfs their fixture mounts: the paths are the fixture host's,
// and a real answer would change with this machine's disks. testOptions sets
// Options.statfs for a case with a statfs.txt, which answers for its mounts; TestHost,
// rooted at /, still calls the real statfs.

// fakeErrnos are the errors a statfs.txt line can name.
var fakeErrnos = map[string]unix.Errno{"EACCES": unix.EACCES, "EIO": unix.EIO, "ENOENT": unix.ENOENT, "ESTALE": unix.ESTALE}

// readFakeStatfs reads a case's statfs answers, one mount a line: "mount-point frsize
// blocks bfree bavail files ffree" or "mount-point ERRNO" (the mount point escaped as in
// /proc/mounts). A mount point without a line gets ENOENT; a missing file has no lines.
func readFakeStatfs(name string) (func(string, *unix.Statfs_t) error, error) {
	answers := map[string]func(*unix.Statfs_t) error{}
	f, err := os.Open(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
				continue
			}
			mp := unescapeMountField(fields[0])
			if len(fields) == 2 {
				errno, ok := fakeErrnos[fields[1]]
				if !ok {
					return nil, fmt.Errorf("%s: unknown errno %q", name, fields[1])
				}
				answers[mp] = func(*unix.Statfs_t) error { return errno }
				continue
			}
			if len(fields) != 7 {
				return nil, fmt.Errorf("%s: %q: want 7 fields", name, sc.Text())
			}
			var v [6]uint64
			for i := range v {
				if v[i], err = strconv.ParseUint(fields[i+1], 10, 64); err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
			}
			answers[mp] = func(st *unix.Statfs_t) error {
				*st = unix.Statfs_t{Frsize: int64(v[0]), Bsize: int64(v[0]), Blocks: v[1], Bfree: v[2], Bavail: v[3], Files: v[4], Ffree: v[5]}
				return nil
			}
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return func(path string, st *unix.Statfs_t) error {
		if a, ok := answers[path]; ok {
			return a(st)
		}
		return unix.ENOENT
	}, nil
}

// hangingStatfs answers every mount at once except one, whose calls block until release
// is closed.
type hangingStatfs struct {
	hang     string
	release  chan struct{}
	returned chan struct{} // receives once per hung call that returned

	mu    sync.Mutex
	calls map[string]int
}

func (h *hangingStatfs) statfs(path string, st *unix.Statfs_t) error {
	h.mu.Lock()
	h.calls[path]++
	h.mu.Unlock()
	if path == h.hang {
		<-h.release
		defer func() { h.returned <- struct{}{} }()
	}
	*st = unix.Statfs_t{Frsize: 4096, Blocks: 100, Bfree: 50, Bavail: 40, Files: 10, Ffree: 5}
	return nil
}

func (h *hangingStatfs) count(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[path]
}

// mountsWithSamples returns the mount points that got a size_bytes sample.
func mountsWithSamples(samples []metric.Sample) map[string]bool {
	m := map[string]bool{}
	for _, s := range samples {
		if s.Field == "size_bytes" {
			m[s.Labels[0].Value] = true
		}
	}
	return m
}

func TestFSStuckMount(t *testing.T) {
	t.Parallel()
	c, err := newFS(testOptions("testdata/fs/real"))
	if err != nil {
		t.Fatal(err)
	}
	fc := c.(*fsCollector)
	h := &hangingStatfs{hang: "/home", release: make(chan struct{}), returned: make(chan struct{}, 1), calls: map[string]int{}}
	fc.statfs = h.statfs
	// Long enough that the mounts which answer at once do so under -race on a busy machine.
	fc.timeout = 500 * time.Millisecond
	const want = "statfs /home: timed out, skipped until it answers"

	collect := func() ([]metric.Sample, error) {
		s := metric.NewSink("fs")
		err := c.Collect(context.Background(), s)
		return s.Samples(), err
	}

	for tick := 1; tick <= 3; tick++ {
		samples, err := collect()
		if err == nil || err.Error() != want {
			t.Fatalf("tick %d: error %v, want %q", tick, err, want)
		}
		got := mountsWithSamples(samples)
		if got["/home"] || !got["/"] || !got["/data"] {
			t.Fatalf("tick %d: samples for %v, want all but /home", tick, got)
		}
		if n := h.count("/home"); n != 1 {
			t.Fatalf("tick %d: %d statfs calls on the hung mount, want 1", tick, n)
		}
		if n := h.count("/"); n != tick {
			t.Fatalf("tick %d: %d statfs calls on /, want %d", tick, n, tick)
		}
	}

	close(h.release)
	<-h.returned
	// The goroutine closes done just after the fake returns; give it that moment.
	deadline := time.Now().Add(5 * time.Second)
	for {
		samples, err := collect()
		if err == nil {
			if !mountsWithSamples(samples)["/home"] {
				t.Fatal("/home answered but has no samples")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/home still skipped after its statfs returned: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := h.count("/home"); n != 2 {
		t.Errorf("%d statfs calls on /home after it answered, want 2", n)
	}
	if len(fc.stuck) != 0 {
		t.Errorf("stuck set still holds %d mounts", len(fc.stuck))
	}
}

func TestFSContextDeadline(t *testing.T) {
	t.Parallel()
	c, err := newFS(testOptions("testdata/fs/real"))
	if err != nil {
		t.Fatal(err)
	}
	fc := c.(*fsCollector)
	h := &hangingStatfs{hang: "/home", release: make(chan struct{}), returned: make(chan struct{}, 1), calls: map[string]int{}}
	defer close(h.release)
	fc.statfs = h.statfs
	fc.timeout = time.Minute

	// The tick's deadline is shorter than the per-mount timeout: it wins.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = c.Collect(ctx, metric.NewSink("fs"))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Collect took %v with a 50ms deadline", took)
	}
	if err == nil || !strings.Contains(err.Error(), "statfs /home: timed out") {
		t.Errorf("error %v, want /home timed out", err)
	}

	// A tick whose deadline has already passed starts no statfs at all.
	err = c.Collect(ctx, metric.NewSink("fs"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want deadline exceeded", err)
	}
	if n := h.count("/"); n != 1 {
		t.Errorf("%d statfs calls on / after an expired tick, want 1", n)
	}
}

func TestFSFilters(t *testing.T) {
	t.Parallel()
	table := "" +
		"/dev/sda1 / ext4 rw 0 0\n" +
		"/dev/sda2 /home ext4 rw 0 0\n" +
		"/dev/sda3 /sysroot ext4 rw 0 0\n" +
		"tmpfs /dev/shm tmpfs rw 0 0\n" +
		"proc /proc proc rw 0 0\n" +
		"systemd-1 /proc/sys/fs/binfmt_misc autofs rw 0 0\n" +
		"tmpfs /run tmpfs rw 0 0\n" +
		"tmpfs /run/credentials tmpfs rw 0 0\n" +
		"none /run/credentials/getty@tty1.service ramfs ro 0 0\n" +
		"/dev/sda1 /var/lib/docker ext4 rw 0 0\n" +
		"overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0\n" +
		"/dev/sda1 /var/lib/kubelet/pods/x/volumes/y ext4 rw 0 0\n" +
		"lxcfs /var/lib/lxcfs fuse.lxcfs rw 0 0\n" +
		"sshfs#me@host: /mnt/remote fuse.sshfs rw 0 0\n" +
		"/dev/loop3 /snap/core/1 squashfs ro 0 0\n" +
		"/dev/sr0 /media/cdrom iso9660 ro 0 0\n"
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "proc", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc", "1", "mounts"), []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name                string
		mountExclude, types string
		want                []string
	}{
		{"defaults", DefaultFSMountExclude, DefaultFSTypeExclude, []string{"/", "/home", "/sysroot", "/run", "/run/credentials", "/var/lib/docker", "/mnt/remote"}},
		{"none", "", "", []string{"/", "/home", "/sysroot", "/dev/shm", "/proc", "/proc/sys/fs/binfmt_misc", "/run", "/run/credentials", "/run/credentials/getty@tty1.service", "/var/lib/docker", "/var/lib/docker/overlay2/abc/merged", "/var/lib/kubelet/pods/x/volumes/y", "/var/lib/lxcfs", "/mnt/remote", "/snap/core/1", "/media/cdrom"}},
		{"custom", `^/(home|run)`, `^(ext4|tmpfs)$`, []string{"/proc", "/proc/sys/fs/binfmt_misc", "/var/lib/docker/overlay2/abc/merged", "/var/lib/lxcfs", "/mnt/remote", "/snap/core/1", "/media/cdrom"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(root)
			o.FSMountExclude, o.FSTypeExclude = tc.mountExclude, tc.types
			c, err := newFS(o)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := c.(*fsCollector).readMounts()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				got = append(got, m.point)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("kept %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestFSBadPattern(t *testing.T) {
	t.Parallel()
	o := testOptions("testdata/fs/real")
	o.FSMountExclude = `^/(dev`
	if _, err := newFS(o); err == nil || !strings.HasPrefix(err.Error(), "collector.fs.mount-points-exclude: error parsing regexp: ") {
		t.Errorf("bad mount pattern: error %v", err)
	}
	o = testOptions("testdata/fs/real")
	o.FSTypeExclude = `*tmpfs`
	if _, err := newFS(o); err == nil || !strings.HasPrefix(err.Error(), "collector.fs.fs-types-exclude: error parsing regexp: ") {
		t.Errorf("bad type pattern: error %v", err)
	}
}

func TestParseMounts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     []fsMount
		err      string
	}{
		{name: "empty", err: "empty file"},
		{
			name: "real",
			in:   "/dev/sda1 / ext4 rw,relatime 0 0\n/dev/sdb1 /mnt/backup\\040disk ext4 ro,nosuid 0 0\n",
			want: []fsMount{{point: "/", fstype: "ext4"}, {point: "/mnt/backup disk", fstype: "ext4", readonly: true}},
		},
		{
			name: "ro only as a whole option",
			in:   "/dev/sda1 /a xfs rw,errors=remount-ro 0 0\nx /b ext4 nosuid,ro 0 0\n",
			want: []fsMount{{point: "/a", fstype: "xfs"}, {point: "/b", fstype: "ext4", readonly: true}},
		},
		{
			name: "no dump and pass",
			in:   "/dev/sda1 / ext4 rw\n",
			want: []fsMount{{point: "/", fstype: "ext4"}},
		},
		{
			name: "truncated",
			in:   "/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 /da",
			want: []fsMount{{point: "/", fstype: "ext4"}},
			err:  "line 2: no newline at end: file truncated",
		},
		{
			name: "short line",
			in:   "/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 /data\n",
			want: []fsMount{{point: "/", fstype: "ext4"}},
			err:  "line 2: 2 fields, want at least 4",
		},
		{
			name: "garbage",
			in:   "\x00\x01\xff\n",
			err:  "line 1: 1 fields, want at least 4",
		},
		{
			name: "blank line",
			in:   "/dev/sda1 / ext4 rw 0 0\n\n",
			want: []fsMount{{point: "/", fstype: "ext4"}},
			err:  "line 2: 0 fields, want at least 4",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMounts(strings.NewReader(tc.in))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			checkErr(t, err, tc.err)
		})
	}
}

func TestUnescapeMountField(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/":                   "/",
		`/mnt/my\040disk`:     "/mnt/my disk",
		`/a\011b\012c\134d`:   "/a\tb\nc\\d",
		`/odd\04`:             `/odd\04`,
		`/not\999octal`:       `/not\999octal`,
		`/too\400big`:         `/too\400big`,
		`\`:                   `\`,
		`/trailing\040`:       "/trailing ",
		`/double\134\040both`: `/double\ both`,
	} {
		if got := unescapeMountField(in); got != want {
			t.Errorf("unescapeMountField(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseMounts(f *testing.F) {
	for _, s := range []string{"", "/dev/sda1 / ext4 rw 0 0\n", `x /a\040b tmpfs ro 0 0`, "\x00\xff", `a \ b c`, `a \12 b c`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ms, err := parseMounts(strings.NewReader(in))
		for _, m := range ms {
			if m.point == "" || m.fstype == "" {
				t.Errorf("empty field in %+v (err %v)", m, err)
			}
		}
	})
}
