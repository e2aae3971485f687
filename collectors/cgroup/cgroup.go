// Package cgroup turns the cgroup ids that eBPF probes report into paths, and paths into
// what they say of Kubernetes. A cgroup's id is the inode number of its directory in its
// hierarchy, and each hierarchy numbers its own: on a cgroup v1 (or hybrid) host the
// memory controller's ids belong to the memory hierarchy, the cpu controller's to the cpu
// one; on a v2 host all belong to the unified hierarchy.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// ErrNoController means the kernel has no such controller, or it is disabled.
var ErrNoController = errors.New("cgroup controller not available")

// Hierarchy is the cgroup hierarchy that holds a controller.
type Hierarchy struct {
	// Dir is where it is mounted: <sysfs>/fs/cgroup/memory on v1, <sysfs>/fs/cgroup (or
	// <sysfs>/fs/cgroup/unified on a hybrid host) on v2.
	Dir string
	// V1 says it is a cgroup v1 hierarchy.
	V1 bool
}

// Find returns the hierarchy of controller ("memory", "cpu"), reading <procfs>/cgroups
// (hierarchy id 0 means the controller is on v2) and looking under <sysfs>/fs/cgroup,
// where systemd and container runtimes mount the hierarchies.
func Find(procfs, sysfs, controller string) (Hierarchy, error) {
	f, err := os.Open(filepath.Join(procfs, "cgroups"))
	if err != nil {
		return Hierarchy{}, err
	}
	defer f.Close()
	id, err := parseCgroups(f, controller)
	if err != nil {
		return Hierarchy{}, fmt.Errorf("%s: %w", f.Name(), err)
	}
	base := filepath.Join(sysfs, "fs", "cgroup")
	if id == 0 {
		for _, dir := range []string{base, filepath.Join(base, "unified")} {
			if _, err := os.Stat(filepath.Join(dir, "cgroup.controllers")); err == nil {
				return Hierarchy{Dir: dir}, nil
			}
		}
		return Hierarchy{}, fmt.Errorf("%s is on cgroup v2, but no v2 hierarchy is mounted at %s or %s/unified", controller, base, base)
	}
	// A v1 controller has its own mount, or shares one with others ("cpu,cpuacct").
	entries, err := os.ReadDir(base)
	if err != nil {
		return Hierarchy{}, fmt.Errorf("%s is on cgroup v1, but %w", controller, err)
	}
	for _, e := range entries {
		if e.IsDir() && slices.Contains(strings.Split(e.Name(), ","), controller) {
			return Hierarchy{Dir: filepath.Join(base, e.Name()), V1: true}, nil
		}
	}
	return Hierarchy{}, fmt.Errorf("%s is on cgroup v1, but its hierarchy is not mounted under %s", controller, base)
}

// parseCgroups returns the hierarchy id of controller in a /proc/cgroups.
func parseCgroups(r io.Reader, controller string) (int, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[0] != controller {
			continue
		}
		id, err := strconv.Atoi(f[1])
		if err != nil {
			return 0, fmt.Errorf("hierarchy of %s: %w", controller, err)
		}
		if f[3] != "1" {
			return 0, fmt.Errorf("%s: %w (disabled)", controller, ErrNoController)
		}
		return id, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: %w", controller, ErrNoController)
}

// Resolver turns cgroup ids of one hierarchy into paths below its root ("/a/b", "/" for
// the root), remembering what it found. It is safe for concurrent use.
type Resolver struct {
	dir string
	mu  sync.Mutex
	// cache maps ids to paths; cleared when it reaches maxCache, so it stays bounded on
	// hosts that create cgroups without end (a container per job).
	cache map[uint64]string
}

const (
	maxCache = 1024
	// maxWalk bounds the directories one lookup visits.
	maxWalk = 1 << 16
)

// NewResolver returns a Resolver for the hierarchy mounted at dir.
func NewResolver(dir string) *Resolver {
	return &Resolver{dir: dir, cache: map[uint64]string{}}
}

// Path returns the path of the cgroup with id. names are the names of the cgroup and its
// ancestors as a probe copied them in the kernel, leaf first, the root left out; complete
// says they reach the root, no name cut. A complete set is the path, whatever became of
// the cgroup since. Otherwise the cache or a search of the hierarchy (directories whose
// inode is id) supplies the path, and for a cgroup gone by then the result is the names
// known under "/...": "/.../b/c". Id 0 means the id is unknown: nothing is remembered or
// searched for it.
func (r *Resolver) Path(id uint64, names []string, complete bool) string {
	if complete {
		p := join(names)
		if id != 0 {
			r.remember(id, p)
		}
		return p
	}
	if id != 0 {
		r.mu.Lock()
		p, ok := r.cache[id]
		r.mu.Unlock()
		if ok {
			return p
		}
		// Lookup remembers what it finds.
		if p, ok := r.find(id); ok {
			return p
		}
	}
	if len(names) == 0 {
		return "/..."
	}
	return "/..." + join(names)
}

func (r *Resolver) remember(id uint64, p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= maxCache {
		clear(r.cache)
	}
	r.cache[id] = p
}

// join turns names, leaf first, into a path from the root.
func join(names []string) string {
	var b strings.Builder
	for i := len(names) - 1; i >= 0; i-- {
		b.WriteByte('/')
		b.WriteString(names[i])
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// find searches the hierarchy for the directory whose inode is id.
func (r *Resolver) find(id uint64) (string, bool) {
	paths, _ := r.Lookup([]uint64{id})
	p, ok := paths[id]
	return p, ok
}

// ID returns the id of the cgroup at path (as Path returns it) now, 0 if there is none.
func (r *Resolver) ID(path string) uint64 {
	if strings.HasPrefix(path, "/...") {
		return 0
	}
	info, err := os.Stat(filepath.Join(r.dir, filepath.FromSlash(path)))
	if err != nil {
		return 0
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

var (
	// podSegment is a pod's cgroup: "pod<uid>" (cgroupfs driver) or
	// "kubepods-<qos>-pod<uid with _ for ->.slice" (systemd driver). Static pods have a
	// 32-hex-digit UID (a hash of the manifest) rather than a UUID.
	podSegment = regexp.MustCompile(`^(?:[a-z0-9]+(?:-[a-z0-9]+)*-)?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})(?:\.slice)?$`)
	// containerSegment is a container's cgroup below its pod: the 64-hex-digit ID alone
	// (cgroupfs), or in a runtime's scope ("cri-containerd-<id>.scope", "crio-<id>.scope",
	// "docker-<id>.scope").
	containerSegment = regexp.MustCompile(`^(?:[a-z0-9]+(?:-[a-z0-9]+)*-)?([0-9a-f]{64})(?:\.scope)?$`)
)

// Kubernetes returns the pod UID and container ID that a cgroup path names, "" for what
// it does not name (a pod's own cgroup has no container; a path outside kubepods, neither).
// A pod's cgroup counts only under kubepods: below a node whose name holds "kubepods"
// ("kubepods", "kubepods.slice", kind's "kubelet-kubepods.slice"), or itself named so by
// the systemd driver ("kubepods-burstable-pod<uid>.slice", enough for a path known only
// in part: "/.../kubepods-…-pod<uid>.slice/…"); a "pod<uid>" elsewhere is someone else's.
// The UID comes back in its usual dashed form.
func Kubernetes(path string) (podUID, containerID string) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	kubepods := false
	for i, s := range segs {
		m := podSegment.FindStringSubmatch(s)
		if m == nil || !(kubepods || strings.Contains(s, "kubepods")) {
			kubepods = kubepods || strings.Contains(s, "kubepods")
			continue
		}
		podUID = strings.ReplaceAll(m[1], "_", "-")
		if i+1 < len(segs) {
			if c := containerSegment.FindStringSubmatch(segs[i+1]); c != nil {
				containerID = c[1]
			}
		}
		return podUID, containerID
	}
	return "", ""
}
