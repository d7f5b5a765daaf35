package output

import (
	"context"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/jitfs/jitfs/gcs"
)

// mkdirAllLocked returns the directory node for rel, creating missing
// ones (not yet listed, so GCS entries still merge in).
func (a *Area) mkdirAllLocked(rel string) *node {
	n := a.root
	if rel == "." || rel == "" {
		return n
	}
	for _, c := range strings.Split(rel, "/") {
		k := n.kids[c]
		if k == nil || !k.isDir() {
			nk := &node{name: c, parent: n, kids: map[string]*node{}, mtime: time.Now()}
			if k != nil {
				// A file and a directory of one name: GCS allows it, a
				// file system does not; the directory wins.
				nk.file, nk.obj = k.file, k.obj
			}
			n.kids[c] = nk
			k = nk
		}
		n = k
	}
	return n
}

// listDir merges the GCS listing of directory n once. Listings run
// without the lock; concurrent callers wait for the one running.
func (a *Area) listDir(ctx context.Context, n *node) error {
	a.mu.Lock()
	for !n.listed {
		if a.closed {
			a.mu.Unlock()
			return ErrClosed
		}
		if ch := n.listing; ch != nil {
			a.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
			a.mu.Lock()
			continue
		}
		ch := make(chan struct{})
		n.listing = ch
		prefix := a.objectName(n.rel())
		if prefix != "" && !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		a.mu.Unlock()
		var pages []gcs.Page
		var err error
		for token := ""; ; {
			var p gcs.Page
			// Detached from the caller: a listing a cancelled lookup started
			// still serves the next one.
			p, err = a.opts.Remote.ListPage(a.ctx, prefix, token, 0)
			if err != nil {
				break
			}
			pages = append(pages, p)
			if token = p.Next; token == "" {
				break
			}
		}
		a.mu.Lock()
		n.listing = nil
		close(ch)
		if err != nil {
			a.mu.Unlock()
			return fmt.Errorf("output: list gs://%s/%s: %w", a.opts.Bucket, prefix, err)
		}
		a.mergeLocked(n, prefix, pages)
		n.listed = true
	}
	a.mu.Unlock()
	return nil
}

// mergeLocked adds what GCS holds under n to it. What the area knows
// locally (staged files, its own uploads, pending deletes) wins.
func (a *Area) mergeLocked(n *node, prefix string, pages []gcs.Page) {
	if !n.isDir() {
		return
	}
	for _, p := range pages {
		for _, pre := range p.Prefixes {
			name := strings.TrimSuffix(strings.TrimPrefix(pre, prefix), "/")
			if checkRel(name) != nil || strings.Contains(name, "/") || name == "" {
				continue
			}
			k := n.kids[name]
			if k == nil {
				n.kids[name] = &node{name: name, parent: n, kids: map[string]*node{}, mtime: time.Now()}
			} else if !k.isDir() && k.file == nil {
				k.kids = map[string]*node{}
			}
		}
		for i := range p.Objects {
			o := p.Objects[i]
			name := strings.TrimPrefix(o.Name, prefix)
			if name == "" || checkRel(name) != nil || strings.Contains(name, "/") {
				continue
			}
			if a.tombedLocked(o.Name, o.Generation) {
				continue
			}
			k := n.kids[name]
			if k == nil {
				n.kids[name] = &node{name: name, parent: n, obj: &o, mtime: o.Updated}
			} else if k.obj == nil && k.file == nil && !k.isDir() {
				k.obj = &o
			}
		}
	}
}

func (a *Area) tombedLocked(object string, gen int64) bool {
	for _, t := range a.tombs {
		if !t.done && a.objectName(t.rec.Name) == object && t.rec.Gen == gen {
			return true
		}
	}
	return false
}

// lookup returns the node at rel, listing directories on the way.
func (a *Area) lookup(ctx context.Context, rel string) (*node, error) {
	if err := checkRel(rel); err != nil {
		return nil, err
	}
	n := a.root
	if rel == "" {
		return n, nil
	}
	for _, c := range strings.Split(rel, "/") {
		if err := a.listDir(ctx, n); err != nil {
			return nil, err
		}
		a.mu.Lock()
		if !n.isDir() {
			a.mu.Unlock()
			return nil, ErrNotDir
		}
		k := n.kids[c]
		if k == nil || !k.present() {
			a.mu.Unlock()
			return nil, ErrNotExist
		}
		a.mu.Unlock()
		n = k
	}
	return n, nil
}

// parentOf returns the listed directory that holds rel, and rel's base.
func (a *Area) parentOf(ctx context.Context, rel string) (*node, string, error) {
	if err := checkRel(rel); err != nil || rel == "" {
		return nil, "", fmt.Errorf("%w: %q", ErrInvalid, rel)
	}
	dir, base := path.Split(rel)
	p, err := a.lookup(ctx, strings.TrimSuffix(dir, "/"))
	if err != nil {
		return nil, "", err
	}
	if !p.isDir() {
		return nil, "", ErrNotDir
	}
	if err := a.listDir(ctx, p); err != nil {
		return nil, "", err
	}
	return p, base, nil
}

// Info describes a file or directory.
type Info struct {
	IsDir bool
	Size  int64
	Mode  uint32 // permission bits
	Mtime time.Time
	// State is "" for a durable or pre-existing object and a directory,
	// else the staged file's state (open, queued, uploading, retrying,
	// failed, interrupted).
	State string
}

func (a *Area) infoLocked(n *node) Info {
	switch {
	case n.isDir():
		return Info{IsDir: true, Mode: 0o755, Mtime: n.mtime}
	case n.file != nil:
		return a.fileInfoLocked(n.file, n.mtime)
	case n.obj != nil:
		return Info{Size: n.obj.Size, Mode: 0o644, Mtime: n.obj.Updated}
	}
	return Info{}
}

func (a *Area) fileInfoLocked(f *sfile, mtime time.Time) Info {
	mode := f.rec.Mode & 0o777
	if mode == 0 {
		mode = 0o644
	}
	return Info{Size: f.size.Load(), Mode: mode, Mtime: mtime, State: f.stateLocked()}
}

func (f *sfile) stateLocked() string {
	switch {
	case f.rec.State == stateOpen && f.commitErr != "":
		return StateFailed
	case f.rec.State == stateOpen:
		return StateOpen
	case f.rec.State == stateInterrupted:
		return StateInterrupted
	case f.rec.State == stateCutShort:
		return StateCutShort
	case f.up == stateDurable:
		return ""
	case f.up == "":
		return StateQueued
	}
	return f.up
}

// Stat describes rel.
func (a *Area) Stat(ctx context.Context, rel string) (Info, error) {
	n, err := a.lookup(ctx, rel)
	if err != nil {
		return Info{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !n.present() && n != a.root {
		return Info{}, ErrNotExist
	}
	return a.infoLocked(n), nil
}

// DirEntry is one name of a directory listing.
type DirEntry struct {
	Name string
	Info
}

// ReadDir lists a directory: what GCS holds under it merged with what was
// written here.
func (a *Area) ReadDir(ctx context.Context, rel string) ([]DirEntry, error) {
	n, err := a.lookup(ctx, rel)
	if err != nil {
		return nil, err
	}
	if err := a.listDir(ctx, n); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !n.isDir() {
		return nil, ErrNotDir
	}
	out := make([]DirEntry, 0, len(n.kids))
	for name, k := range n.kids {
		if k.present() {
			out = append(out, DirEntry{Name: name, Info: a.infoLocked(k)})
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

// Mkdir creates a directory. GCS has no directories: an empty one lives
// in the daemon's memory only, and a directory exists in GCS while it
// holds an object.
func (a *Area) Mkdir(ctx context.Context, rel string) error {
	p, base, err := a.parentOf(ctx, rel)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if k := p.kids[base]; k != nil && k.present() {
		return ErrExist
	}
	p.kids[base] = &node{name: base, parent: p, kids: map[string]*node{}, listed: false, mtime: time.Now()}
	return nil
}

// Rmdir removes an empty directory.
func (a *Area) Rmdir(ctx context.Context, rel string) error {
	n, err := a.lookup(ctx, rel)
	if err != nil {
		return err
	}
	if n == a.root {
		return ErrInvalid
	}
	if !n.isDir() {
		return ErrNotDir
	}
	if err := a.listDir(ctx, n); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range n.kids {
		if k.present() {
			return ErrNotEmpty
		}
	}
	n.kids = nil
	a.pruneLocked(n)
	return nil
}

// pruneLocked removes n from its parent once nothing is left of it.
func (a *Area) pruneLocked(n *node) {
	if n.parent != nil && !n.present() && n.parent.kids[n.name] == n {
		delete(n.parent.kids, n.name)
	}
}

// Unlink removes a file: its staged version is dropped and its object is
// deleted from GCS (journalled first, so a restart finishes the delete).
func (a *Area) Unlink(ctx context.Context, rel string) error {
	p, base, err := a.parentOf(ctx, rel)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	n := p.kids[base]
	switch {
	case n == nil || !n.present():
		return ErrNotExist
	case n.isDir():
		return ErrIsDir
	}
	if n.obj != nil {
		if err := a.addTombLocked(rel, n.obj.Generation); err != nil {
			return err
		}
		n.obj = nil
	}
	if n.file != nil {
		if err := a.unlinkStagedLocked(n.file); err != nil {
			return err
		}
	}
	a.pruneLocked(n)
	return nil
}

// unlinkStagedLocked forgets a staged file: its record goes first, its
// data when the last handle closes.
func (a *Area) unlinkStagedLocked(f *sfile) error {
	if err := a.j.drop(f.id); err != nil {
		return err
	}
	if f.cancel != nil {
		f.cancel()
	}
	if f.node != nil && f.node.file == f {
		f.node.file = nil
	}
	f.node = nil
	f.open.Store(false)
	a.dropDataIfUnusedLocked(f)
	a.notifyLocked()
	return nil
}

// dropDataIfUnusedLocked deletes the bytes of a file the namespace no
// longer holds (durable or unlinked) once no handle reads them.
func (a *Area) dropDataIfUnusedLocked(f *sfile) {
	if f.node != nil || f.handles > 0 || f.data == nil {
		return
	}
	f.data.Close()
	f.data = nil
	os.Remove(a.j.dataPath(f.id))
	a.space.release(f.size.Load())
	delete(a.files, f.id)
}

func (a *Area) addTombLocked(rel string, gen int64) error {
	id := a.nextID
	a.nextID++
	t := &tomb{rec: record{ID: id, Kind: kindDelete, Name: rel, Gen: gen}}
	if err := a.j.put(&t.rec); err != nil {
		return err
	}
	a.tombs[id] = t
	a.enqueueLocked(work{t: t})
	return nil
}
