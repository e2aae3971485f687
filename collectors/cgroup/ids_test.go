package cgroup

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLookup: one search finds every id asked for, at any depth, the root as "/"; an id
// with no directory is left out of a complete search; an unreadable root is incomplete.
func TestLookup(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/b/c", "a/d", "e"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "a", "cpu.shares"), []byte("1024\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ids := map[string]uint64{"/": inode(t, root)}
	for _, d := range []string{"a/b/c", "a/d", "e"} {
		ids["/"+d] = inode(t, filepath.Join(root, d))
	}
	const gone = 1 << 60
	r := NewResolver(root)
	paths, complete := r.Lookup([]uint64{ids["/"], ids["/a/b/c"], ids["/e"], gone})
	if !complete || len(paths) != 3 || paths[ids["/"]] != "/" || paths[ids["/a/b/c"]] != "/a/b/c" || paths[ids["/e"]] != "/e" {
		t.Errorf("Lookup = %v, %v", paths, complete)
	}
	// What Lookup found is remembered: Path needs no search for it.
	if p := r.Path(ids["/a/b/c"], nil, false); p != "/a/b/c" {
		t.Errorf("Path after Lookup = %q", p)
	}
	if paths, complete := r.Lookup(nil); len(paths) != 0 || !complete {
		t.Errorf("Lookup(nil) = %v, %v", paths, complete)
	}
	if paths, complete := NewResolver(filepath.Join(root, "missing")).Lookup([]uint64{ids["/e"]}); len(paths) != 0 || complete {
		t.Errorf("Lookup under a missing root = %v, %v; want incomplete", paths, complete)
	}
}

// TestAlive: a cgroup is alive at its path until removed, renamed, or replaced by a new
// one of the same name.
func TestAlive(t *testing.T) {
	root := t.TempDir()
	r := NewResolver(root)
	mk := func(name string) uint64 {
		t.Helper()
		if err := os.Mkdir(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
		return inode(t, filepath.Join(root, name))
	}
	a := mk("a")
	if !r.Alive("/a", a) {
		t.Error("a new cgroup is not alive")
	}
	if r.Alive("/", a) {
		t.Error("alive at the wrong path")
	}
	// Made again: the new directory exists before the old one goes, so its inode differs
	// on any filesystem (cgroupfs never reuses ids; tmpfs and ext4 reuse inode numbers).
	b := mk("b")
	if err := os.Remove(filepath.Join(root, "a")); err != nil {
		t.Fatal(err)
	}
	if r.Alive("/a", a) {
		t.Error("alive after removal")
	}
	if err := os.Rename(filepath.Join(root, "b"), filepath.Join(root, "a")); err != nil {
		t.Fatal(err)
	}
	if r.Alive("/a", a) || !r.Alive("/a", b) || r.Alive("/b", b) {
		t.Error("a cgroup made again at the same path counts as the old one, or a renamed one where it was")
	}
}
