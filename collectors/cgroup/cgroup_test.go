package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const procCgroups = `#subsys_name	hierarchy	num_cgroups	enabled
cpuset	3	1	1
cpu	1	1	1
cpuacct	2	1	1
memory	4	30	1
pids	0	1	1
hugetlb	0	1	0
`

func TestParseCgroups(t *testing.T) {
	for _, c := range []struct {
		name, text, controller string
		want                   int
		err                    error
	}{
		{"v1", procCgroups, "memory", 4, nil},
		{"v2", procCgroups, "pids", 0, nil},
		{"disabled", procCgroups, "hugetlb", 0, ErrNoController},
		{"absent", procCgroups, "rdma", 0, ErrNoController},
		{"empty", "", "memory", 0, ErrNoController},
		{"truncated", "#subsys_name\thierarchy\nmemory\t4\n", "memory", 0, ErrNoController},
		{"garbage", "memory x 1 1\n", "memory", 0, errors.New("any")},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseCgroups(strings.NewReader(c.text), c.controller)
			if (err != nil) != (c.err != nil) || (c.err == ErrNoController && !errors.Is(err, ErrNoController)) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if got != c.want {
				t.Errorf("got %d, want %d", got, c.want)
			}
		})
	}
}

// tree makes the files and directories named (a trailing / makes a directory) under a
// temporary root and returns it.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestFind(t *testing.T) {
	v1 := map[string]string{"proc/cgroups": procCgroups, "sys/fs/cgroup/memory/": "", "sys/fs/cgroup/cpu,cpuacct/": "", "sys/fs/cgroup/unified/cgroup.controllers": ""}
	v2 := map[string]string{"proc/cgroups": strings.ReplaceAll(procCgroups, "memory\t4", "memory\t0"), "sys/fs/cgroup/cgroup.controllers": "cpu memory pids"}
	hybridNoUnified := map[string]string{"proc/cgroups": v2["proc/cgroups"], "sys/fs/cgroup/": ""}
	for _, c := range []struct {
		name       string
		files      map[string]string
		controller string
		dir        string
		v1         bool
		err        bool
	}{
		{"v1 memory", v1, "memory", "sys/fs/cgroup/memory", true, false},
		{"v1 cpu shares a mount", v1, "cpu", "sys/fs/cgroup/cpu,cpuacct", true, false},
		{"hybrid v2 controller", v1, "pids", "sys/fs/cgroup/unified", false, false},
		{"v2", v2, "memory", "sys/fs/cgroup", false, false},
		{"v1 not mounted", v1, "cpuset", "", false, true},
		{"v2 not mounted", hybridNoUnified, "memory", "", false, true},
		{"no controller", v1, "rdma", "", false, true},
		{"no proc", map[string]string{"sys/": ""}, "memory", "", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := tree(t, c.files)
			h, err := Find(filepath.Join(root, "proc"), filepath.Join(root, "sys"), c.controller)
			if (err != nil) != c.err {
				t.Fatalf("err = %v, want error %v", err, c.err)
			}
			if err != nil {
				t.Log(err)
				return
			}
			if want := filepath.Join(root, c.dir); h.Dir != want || h.V1 != c.v1 {
				t.Errorf("got %+v, want dir %s v1 %v", h, want, c.v1)
			}
		})
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestResolver: complete kernel names are the path; otherwise the tree is searched by
// inode, found paths are cached (and survive the cgroup's removal), and a cgroup gone
// before anyone looked gets the names known under /...
func TestResolver(t *testing.T) {
	root := tree(t, map[string]string{"a/b/c/d/": "", "x/": ""})
	r := NewResolver(root)

	if got := r.Path(99, []string{"leaf", "mid", "top"}, true); got != "/top/mid/leaf" {
		t.Errorf("complete names: %s", got)
	}
	if got := r.Path(1, nil, true); got != "/" {
		t.Errorf("the root: %s", got)
	}
	if got := r.Path(99, nil, false); got != "/top/mid/leaf" {
		t.Errorf("cached: %s", got)
	}

	id := inode(t, filepath.Join(root, "a/b/c/d"))
	if got := r.Path(id, []string{"d", "c-cut"}, false); got != "/a/b/c/d" {
		t.Errorf("searched: %s", got)
	}
	if r.ID("/a/b/c/d") != id || r.ID("/nope") != 0 || r.ID("/.../d") != 0 {
		t.Error("ID")
	}
	if err := os.Remove(filepath.Join(root, "a/b/c/d")); err != nil {
		t.Fatal(err)
	}
	if got := r.Path(id, []string{"d"}, false); got != "/a/b/c/d" {
		t.Errorf("cached after removal: %s", got)
	}
	if got := r.Path(inode(t, root), nil, false); got != "/" {
		t.Errorf("root searched: %s", got)
	}
	if got := r.Path(1<<62, []string{"gone", "parent"}, false); got != "/.../parent/gone" {
		t.Errorf("gone: %s", got)
	}
	if got := r.Path(1<<62+1, nil, false); got != "/..." {
		t.Errorf("gone, no names: %s", got)
	}
	// Id 0 is "unknown" (the kernel log names cgroups without ids): never remembered.
	if got := r.Path(0, []string{"x"}, true); got != "/x" {
		t.Errorf("complete names, no id: %s", got)
	}
	if got := r.Path(0, []string{"y"}, false); got != "/.../y" {
		t.Errorf("no id, names in part: %s (remembered the id-less path before?)", got)
	}
}

func TestKubernetes(t *testing.T) {
	const (
		uid  = "0fb1c0e1-2c32-4a8f-8d7a-1a2b3c4d5e6f"
		uidU = "0fb1c0e1_2c32_4a8f_8d7a_1a2b3c4d5e6f"
		cid  = "4c01db0b339c04bd8a0c1e4d9e9d0e9c5a7b8f6e1d2c3b4a5968778695a4b3c2"
	)
	for _, c := range []struct{ name, path, pod, container string }{
		{"cgroupfs burstable", "/kubepods/burstable/pod" + uid + "/" + cid, uid, cid},
		{"cgroupfs guaranteed", "/kubepods/pod" + uid + "/" + cid, uid, cid},
		{"cgroupfs pod only", "/kubepods/besteffort/pod" + uid, uid, ""},
		{"systemd containerd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope", uid, cid},
		{"systemd guaranteed crio", "/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-" + cid + ".scope", uid, cid},
		{"systemd docker", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/docker-" + cid + ".scope", uid, cid},
		{"nested in kind", "/docker/" + cid + "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope", uid, cid},
		{"static pod", "/kubepods/burstable/pod0123456789abcdef0123456789abcdef/" + cid, "0123456789abcdef0123456789abcdef", cid},
		{"not kubernetes", "/system.slice/docker-" + cid + ".scope", "", ""},
		{"empty", "", "", ""},
		{"root", "/", "", ""},
		{"truncated uid", "/kubepods/burstable/pod0fb1c0e1-2c32/" + cid, "", ""},
		{"garbage container", "/kubepods/pod" + uid + "/not-a-container", uid, ""},
		{"pod outside kubepods", "/system.slice/pod" + uid + "/" + cid, "", ""},
		{"pod above kubepods", "/pod" + uid + "/kubepods/" + cid, "", ""},
		{"gone, names known", "/.../kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + cid + ".scope", uid, cid},
	} {
		t.Run(c.name, func(t *testing.T) {
			pod, container := Kubernetes(c.path)
			if pod != c.pod || container != c.container {
				t.Errorf("Kubernetes(%q) = %q, %q; want %q, %q", c.path, pod, container, c.pod, c.container)
			}
		})
	}
}

func FuzzKubernetes(f *testing.F) {
	f.Add("/kubepods/burstable/pod0fb1c0e1-2c32-4a8f-8d7a-1a2b3c4d5e6f/abc")
	f.Add("/kubepods.slice/kubepods-pod0fb1c0e1_2c32_4a8f_8d7a_1a2b3c4d5e6f.slice/x.scope")
	f.Fuzz(func(t *testing.T, path string) {
		pod, container := Kubernetes(path)
		if (pod == "" && container != "") || !strings.Contains(strings.ReplaceAll(path, "_", "-"), pod) {
			t.Errorf("Kubernetes(%q) = %q, %q", path, pod, container)
		}
	})
}
