package output

import (
	"context"
	"time"

	"github.com/jitfs/jitfs/gcs"
)

// Rename moves a file or directory. A file's staged bytes are renamed in
// the journal; an uploaded object is staged again under its new name and
// the old one deleted. Renaming over an existing file replaces it.
func (a *Area) Rename(ctx context.Context, from, to string, noReplace bool) error {
	sp, sbase, err := a.parentOf(ctx, from)
	if err != nil {
		return err
	}
	dp, dbase, err := a.parentOf(ctx, to)
	if err != nil {
		return err
	}
	// A destination directory must be known to be empty, and a directory
	// being moved must be known to hold no uploaded objects: list them.
	if n, err := a.lookup(ctx, to); err == nil && n.isDir() {
		if err := a.listDir(ctx, n); err != nil {
			return err
		}
	}
	src, err := a.lookup(ctx, from)
	if err != nil {
		return err
	}
	if src.isDir() {
		if err := a.listTree(ctx, src); err != nil {
			return err
		}
	} else {
		a.mu.Lock()
		remoteOnly := src.file == nil && src.obj != nil
		var obj gcs.Attrs
		if remoteOnly {
			obj = *src.obj
		}
		a.mu.Unlock()
		if remoteOnly {
			return a.renameRemote(ctx, sp, sbase, dp, dbase, to, obj, noReplace)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := sp.kids[sbase]
	if s == nil || !s.present() {
		return ErrNotExist
	}
	d := dp.kids[dbase]
	if d == s {
		return nil
	}
	if d != nil && d.present() {
		if noReplace {
			return ErrExist
		}
		if s.isDir() != d.isDir() {
			if d.isDir() {
				return ErrIsDir
			}
			return ErrNotDir
		}
		if d.isDir() {
			for _, k := range d.kids {
				if k.present() {
					return ErrNotEmpty
				}
			}
		}
	}
	if s.isDir() {
		for p := dp; p != nil; p = p.parent {
			if p == s {
				return ErrInvalid // into its own subtree
			}
		}
		if treeHasObjects(s) {
			return ErrCrossDir
		}
		delete(sp.kids, sbase)
		s.name, s.parent = dbase, dp
		dp.kids[dbase] = s
		return a.rejournalTreeLocked(s)
	}
	if s.file == nil {
		return ErrNotExist // it became remote-only meanwhile; the caller may retry
	}
	f := s.file
	rec := f.rec
	rec.Name = to
	if err := a.j.put(&rec); err != nil {
		return err
	}
	f.rec = rec
	if f.cancel != nil {
		f.cancel()
	}
	if d != nil && d.file != nil {
		if err := a.unlinkStagedLocked(d.file); err != nil {
			a.log.Error("output: rename: dropping the replaced file", "path", to, "err", err)
		}
	}
	if s.obj != nil {
		// The old name's object goes; the bytes live on under the new one.
		if err := a.addTombLocked(from, s.obj.Generation); err != nil {
			a.log.Error("output: rename: journal the delete of the old object", "path", from, "err", err)
		}
		s.obj = nil
	}
	s.file = nil
	a.pruneLocked(s)
	if d == nil || d.isDir() {
		d = &node{name: dbase, parent: dp}
		dp.kids[dbase] = d
	}
	d.file, f.node, d.mtime = f, d, s.mtime
	if f.rec.State == stateClosed {
		a.enqueueLocked(work{f: f})
	}
	a.notifyLocked()
	return nil
}

func treeHasObjects(n *node) bool {
	if n.obj != nil {
		return true
	}
	for _, k := range n.kids {
		if treeHasObjects(k) {
			return true
		}
	}
	return false
}

func (a *Area) rejournalTreeLocked(n *node) error {
	if n.file != nil {
		f := n.file
		rec := f.rec
		rec.Name = n.rel()
		if err := a.j.put(&rec); err != nil {
			return err
		}
		f.rec = rec
		if f.cancel != nil {
			f.cancel()
		}
		if f.rec.State == stateClosed {
			a.enqueueLocked(work{f: f})
		}
	}
	for _, k := range n.kids {
		if err := a.rejournalTreeLocked(k); err != nil {
			return err
		}
	}
	return nil
}

// listTree lists every directory under n.
func (a *Area) listTree(ctx context.Context, n *node) error {
	if err := a.listDir(ctx, n); err != nil {
		return err
	}
	a.mu.Lock()
	var dirs []*node
	for _, k := range n.kids {
		if k.isDir() {
			dirs = append(dirs, k)
		}
	}
	a.mu.Unlock()
	for _, d := range dirs {
		if err := a.listTree(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// renameRemote renames a file that exists only in GCS: its bytes are
// downloaded into staging under the new name (and uploaded from there),
// and the old object is deleted.
func (a *Area) renameRemote(ctx context.Context, sp *node, sbase string, dp *node, dbase, to string, obj gcs.Attrs, noReplace bool) error {
	f, err := a.download(ctx, obj, to)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := sp.kids[sbase]
	if s == nil || s.file != nil || s.obj == nil || s.obj.Generation != obj.Generation {
		a.discardLocked(f)
		return ErrRemoteGen
	}
	d := dp.kids[dbase]
	if d != nil && d.present() {
		if noReplace {
			a.discardLocked(f)
			return ErrExist
		}
		if d.isDir() {
			a.discardLocked(f)
			return ErrIsDir
		}
	}
	f.rec.State = stateClosed
	if err := a.j.put(&f.rec); err != nil {
		a.discardLocked(f)
		return err
	}
	if d != nil && d.file != nil {
		a.unlinkStagedLocked(d.file)
	}
	if err := a.addTombLocked(s.rel(), obj.Generation); err != nil {
		a.log.Error("output: rename: journal the delete of the old object", "path", s.rel(), "err", err)
	}
	s.obj = nil
	a.pruneLocked(s)
	if d == nil || d.isDir() {
		d = &node{name: dbase, parent: dp, mtime: obj.Updated}
		dp.kids[dbase] = d
	}
	d.file, f.node = f, d
	a.files[f.id] = f
	f.closedAt = time.Now()
	a.enqueueLocked(work{f: f})
	return nil
}
