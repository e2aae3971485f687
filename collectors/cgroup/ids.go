package cgroup

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Lookup searches the hierarchy once for every cgroup in ids and returns the paths of
// those it found (remembering them, as Path does). It is for a probe that reports many
// cgroups at a time (run-queue latency: every cgroup whose tasks ran), where a search per
// id would walk the hierarchy again for each. complete is false when the search could
// not see the whole hierarchy (the root unreadable, a directory that could not be read,
// more than maxWalk cgroups): an id not found may exist then. When it is true, an id not
// found had no directory when the search passed: its cgroup is gone, or was created after
// the search began.
func (r *Resolver) Lookup(ids []uint64) (paths map[uint64]string, complete bool) {
	paths = make(map[uint64]string, len(ids))
	if len(ids) == 0 {
		return paths, true
	}
	want := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	complete = true
	visited := 0
	errStop := errors.New("stop")
	err := filepath.WalkDir(r.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// A cgroup removed while we walk is no gap; anything else is.
			if path == r.dir || !errors.Is(err, fs.ErrNotExist) {
				complete = false
			}
			if path == r.dir {
				return err
			}
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		if visited++; visited > maxWalk {
			complete = false
			return errStop
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || !want[st.Ino] {
			return nil
		}
		rel, _ := filepath.Rel(r.dir, path)
		p := "/" + filepath.ToSlash(rel)
		if rel == "." {
			p = "/"
		}
		paths[st.Ino] = p
		if len(paths) == len(want) {
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		complete = false
	}
	for id, p := range paths {
		r.remember(id, p)
	}
	return paths, complete
}

// Alive reports whether the cgroup with id is still at path (as Path or Lookup returned
// it): false once it is removed, renamed, or removed and made again (a new cgroup at the
// same path has a new id).
func (r *Resolver) Alive(path string, id uint64) bool {
	info, err := os.Stat(filepath.Join(r.dir, filepath.FromSlash(path)))
	if err != nil {
		return false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Ino == id
}
