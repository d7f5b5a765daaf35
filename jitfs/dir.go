package jitfs

import (
	"context"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/trace"
)

// entry is one name in a directory, pinned when first seen.
type entry struct {
	ino   uint64
	isDir bool
	attrs gcs.Attrs // files only
}

type listState int

const (
	listNone listState = iota
	listRunning
	listDone
)

// dirNode is a "/"-delimited prefix.
type dirNode struct {
	fs.Inode
	f      *FS
	prefix string // "" for the bucket root, else ends in "/"
	ino    uint64
	mtime  time.Time

	// mu guards the listing state. INVARIANT: once in entries, a name keeps
	// its generation until a TTL re-list replaces the map.
	mu        sync.Mutex
	state     listState
	entries   map[string]*entry
	firstPage chan struct{} // closed when the first page (or an error) is in
	finished  chan struct{} // closed when the listing ends
	listErr   error
	listedAt  time.Time
}

var (
	_ = (fs.NodeLookuper)((*dirNode)(nil))
	_ = (fs.NodeReaddirer)((*dirNode)(nil))
	_ = (fs.NodeGetattrer)((*dirNode)(nil))
	_ = (fs.NodeOpendirer)((*dirNode)(nil))
)

func (f *FS) newDir(prefix string, mtime time.Time) *dirNode {
	return &dirNode{f: f, prefix: prefix, ino: f.nextIno(), mtime: mtime, entries: map[string]*entry{}}
}

// startList begins listing the directory if it is not listed (or its TTL
// ran out) and returns the channels to wait on.
func (d *dirNode) startList() (first, finished chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ttl := d.f.opts.MetadataTTL
	if d.state == listDone && (d.listErr != nil || (ttl > 0 && time.Since(d.listedAt) > ttl)) {
		d.state = listNone
	}
	if d.state == listNone {
		d.state = listRunning
		d.listErr = nil
		d.firstPage = make(chan struct{})
		d.finished = make(chan struct{})
		go d.list(d.firstPage, d.finished)
	}
	return d.firstPage, d.finished
}

// list runs detached from any one request: a listing that a cancelled
// lookup started still completes for the next one.
func (d *dirNode) list(first, finished chan struct{}) {
	ctx := context.Background()
	f := d.f
	fresh := map[string]*entry{}
	token := ""
	var err error
	for page := 0; ; page++ {
		var p gcs.Page
		p, err = f.opts.Remote.ListPage(ctx, d.prefix, token, f.opts.ListPageSize)
		if err != nil {
			break
		}
		d.mu.Lock()
		for _, pre := range p.Prefixes {
			name := strings.TrimSuffix(strings.TrimPrefix(pre, d.prefix), "/")
			if validName(name) {
				d.mergeLocked(fresh, name, &entry{isDir: true})
			}
		}
		for _, a := range p.Objects {
			name := strings.TrimPrefix(a.Name, d.prefix)
			if validName(name) {
				d.mergeLocked(fresh, name, &entry{attrs: a})
			}
		}
		if page == 0 {
			close(first)
		}
		d.mu.Unlock()
		if p.Next == "" {
			break
		}
		token = p.Next
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.listErr = err
		select {
		case <-first:
		default:
			close(first)
		}
	} else {
		if d.f.opts.MetadataTTL == 0 {
			// Without a TTL nothing once seen is forgotten: keep names a
			// direct lookup pinned that the listing did not return.
			for name, e := range d.entries {
				if _, ok := fresh[name]; !ok {
					fresh[name] = e
				}
			}
		}
		d.entries = fresh
	}
	d.listedAt = time.Now()
	d.state = listDone
	close(finished)
}

// mergeLocked adds a listed name to the listing being built, keeping an
// entry already pinned (by an earlier listing or a direct lookup) when it
// is still the same kind and, without a TTL, the same generation.
func (d *dirNode) mergeLocked(fresh map[string]*entry, name string, e *entry) {
	if prev, ok := fresh[name]; ok {
		// A prefix and an object of the same name: the directory wins,
		// as in every POSIX view of a bucket.
		if prev.isDir {
			return
		}
	}
	if old, ok := d.entries[name]; ok && old.isDir == e.isDir {
		if e.isDir || d.f.opts.MetadataTTL == 0 || old.attrs.Generation == e.attrs.Generation {
			fresh[name] = old
			return
		}
		e.ino = old.ino // new generation, same path
	}
	if e.ino == 0 {
		e.ino = d.f.nextIno()
	}
	fresh[name] = e
	// Visible at once to lookups that do not wait for the whole listing.
	if _, ok := d.entries[name]; !ok {
		d.entries[name] = e
	}
}

func validName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.Contains(n, "/")
}

func (d *dirNode) Opendir(ctx context.Context) syscall.Errno { return 0 }

func (d *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if d.f.observing() {
		d.f.done(ctx, time.Now(), trace.OpGetattr, 0, func() trace.Event {
			return trace.Event{Op: trace.OpGetattr, Path: d.f.mountPath(d.prefix), Dir: true}
		})
	}
	d.f.setAttr(&out.Attr, d.ino, syscall.S_IFDIR|0o555, 4096, d.mtime)
	out.Nlink = 2
	out.SetTimeout(d.f.KernelTimeout())
	return 0
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !d.f.observing() {
		return d.lookup(ctx, name, out)
	}
	start := time.Now()
	in, errno := d.lookup(ctx, name, out)
	d.f.done(ctx, start, trace.OpLookup, errno, func() trace.Event {
		ev := trace.Event{Op: trace.OpLookup, Path: d.f.mountPath(d.prefix + name)}
		if errno == 0 {
			ev.Size = int64(out.Attr.Size)
			ev.Dir = out.Attr.Mode&syscall.S_IFDIR != 0
		}
		return ev
	})
	return in, errno
}

func (d *dirNode) lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	f := d.f
	f.Stats.Lookups.Add(1)
	if !validName(name) {
		return nil, syscall.ENOENT
	}
	ctx, cancel := f.opContext(ctx)
	defer cancel()
	first, finished := d.startList()
	select {
	case <-first:
	case <-ctx.Done():
		return nil, f.waitErrno(ctx, "lookup", "prefix", d.prefix, "name", name)
	}
	d.mu.Lock()
	e := d.entries[name]
	done := d.state == listDone
	err := d.listErr
	d.mu.Unlock()
	if e == nil {
		select {
		case <-finished:
			done = true
		default:
		}
		if done {
			if err != nil {
				return nil, f.errno(err, "list", "prefix", d.prefix)
			}
			f.Stats.NegativeLookups.Add(1)
			return nil, syscall.ENOENT
		}
		var errno syscall.Errno
		if e, errno = d.lookupDirect(ctx, name); errno != 0 {
			return nil, errno
		}
	}
	return d.child(ctx, name, e, out), 0
}

// lookupDirect answers one name in a directory whose listing has more
// pages to go: a stat of the object and a one-item listing of the prefix.
func (d *dirNode) lookupDirect(ctx context.Context, name string) (*entry, syscall.Errno) {
	f := d.f
	full := d.prefix + name
	if _, ok := f.neg.Get(full); ok {
		f.Stats.NegativeLookups.Add(1)
		return nil, syscall.ENOENT
	}
	f.Stats.DirectLookups.Add(1)
	var e *entry
	p, err := f.opts.Remote.ListPage(ctx, full+"/", "", 1)
	if err != nil {
		return nil, f.errno(withCause(ctx, err), "lookup", "prefix", full+"/")
	}
	if len(p.Objects) > 0 || len(p.Prefixes) > 0 {
		e = &entry{isDir: true}
	} else {
		a, err := f.opts.Remote.Stat(ctx, full)
		switch {
		case err == nil:
			e = &entry{attrs: a}
		case errorsIsNotFound(err):
			f.neg.Set(full, struct{}{}, 1)
			f.Stats.NegativeLookups.Add(1)
			return nil, syscall.ENOENT
		default:
			return nil, f.errno(withCause(ctx, err), "lookup", "object", full)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.entries[name]; ok {
		return old, 0 // the listing pinned it meanwhile
	}
	e.ino = f.nextIno()
	d.entries[name] = e
	return e, 0
}

func (d *dirNode) child(ctx context.Context, name string, e *entry, out *fuse.EntryOut) *fs.Inode {
	f := d.f
	t := f.KernelTimeout()
	out.SetEntryTimeout(t)
	out.SetAttrTimeout(t)
	if ch := d.GetChild(name); ch != nil {
		switch n := ch.Operations().(type) {
		case *dirNode:
			if e.isDir {
				f.setAttr(&out.Attr, n.ino, syscall.S_IFDIR|0o555, 4096, n.mtime)
				return ch
			}
		case *fileNode:
			if !e.isDir {
				if n.repin(e.attrs) {
					// A TTL re-list found a new generation: drop the
					// kernel's pages of the old one. Notifying from inside
					// an operation could deadlock, so do it after.
					go ch.NotifyContent(0, 0)
				}
				n.fillAttr(&out.Attr)
				return ch
			}
		}
	}
	if e.isDir {
		n := f.newDir(d.prefix+name+"/", d.mtime)
		n.ino = e.ino
		f.setAttr(&out.Attr, n.ino, syscall.S_IFDIR|0o555, 4096, n.mtime)
		return d.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: e.ino})
	}
	n := &fileNode{f: f, ino: e.ino, attrs: e.attrs}
	n.fillAttr(&out.Attr)
	return d.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFREG, Ino: e.ino})
}

func (d *dirNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if !d.f.observing() {
		ds, _, errno := d.readdir(ctx)
		return ds, errno
	}
	start := time.Now()
	ds, n, errno := d.readdir(ctx)
	d.f.done(ctx, start, trace.OpReaddir, errno, func() trace.Event {
		return trace.Event{Op: trace.OpReaddir, Path: d.f.mountPath(d.prefix), N: int64(n), Dir: true}
	})
	return ds, errno
}

func (d *dirNode) readdir(ctx context.Context) (fs.DirStream, int, syscall.Errno) {
	ctx, cancel := d.f.opContext(ctx)
	defer cancel()
	_, finished := d.startList()
	select {
	case <-finished:
	case <-ctx.Done():
		return nil, 0, d.f.waitErrno(ctx, "readdir", "prefix", d.prefix)
	}
	d.mu.Lock()
	if d.listErr != nil {
		err := d.listErr
		d.mu.Unlock()
		return nil, 0, d.f.errno(err, "readdir", "prefix", d.prefix)
	}
	list := make([]fuse.DirEntry, 0, len(d.entries))
	for name, e := range d.entries {
		mode := uint32(syscall.S_IFREG)
		if e.isDir {
			mode = syscall.S_IFDIR
		}
		list = append(list, fuse.DirEntry{Name: name, Mode: mode, Ino: e.ino})
	}
	d.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return fs.NewListDirStream(list), len(list), 0
}

func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	used, budget := d.f.opts.Cache.Used()
	const bs = 4096
	out.Bsize = bs
	out.Frsize = bs
	out.Blocks = uint64(budget / bs)
	out.Bfree = uint64(max(0, budget-used) / bs)
	out.Bavail = out.Bfree
	out.NameLen = 1024
	return 0
}
