package jitfs

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/jitfs/jitfs/namespace"
	"github.com/jitfs/jitfs/trace"
)

// dirNode is a "/"-delimited prefix: a thin adapter of one directory of the
// namespace, which holds the listing (and outlives the kernel's inode).
type dirNode struct {
	fs.Inode
	f     *FS
	path  string // relative to the mount root, "" for the root
	ino   uint64
	mtime time.Time
}

var (
	_ = (fs.NodeLookuper)((*dirNode)(nil))
	_ = (fs.NodeReaddirer)((*dirNode)(nil))
	_ = (fs.NodeGetattrer)((*dirNode)(nil))
	_ = (fs.NodeOpendirer)((*dirNode)(nil))
	_ = (fs.NodeStatfser)((*dirNode)(nil))
)

// prefix is the directory's object prefix, for traces and logs.
func (d *dirNode) prefix() string { return d.f.ns.ObjectPrefix(d.path) }

func (d *dirNode) Opendir(ctx context.Context) syscall.Errno { return 0 }

func (d *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if d.f.observing() {
		d.f.done(ctx, time.Now(), trace.OpGetattr, 0, func() trace.Event {
			return trace.Event{Op: trace.OpGetattr, Path: d.f.mountPath(d.prefix()), Dir: true}
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
		ev := trace.Event{Op: trace.OpLookup, Path: d.f.mountPath(d.prefix() + name)}
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
	if !namespace.ValidName(name) {
		return nil, syscall.ENOENT
	}
	ctx, cancel := f.opContext(ctx)
	defer cancel()
	e, err := f.ns.LookupIn(ctx, d.path, name)
	switch {
	case err == nil:
		return d.child(ctx, e, out), 0
	case errors.Is(err, namespace.ErrNotExist):
		return nil, syscall.ENOENT
	case ctx.Err() != nil:
		return nil, f.waitErrno(ctx, "lookup", "prefix", d.prefix(), "name", name)
	default:
		return nil, f.errno(ctx, err, "lookup", "prefix", d.prefix(), "name", name)
	}
}

func (d *dirNode) child(ctx context.Context, e namespace.Entry, out *fuse.EntryOut) *fs.Inode {
	f := d.f
	t := f.KernelTimeout()
	out.SetEntryTimeout(t)
	out.SetAttrTimeout(t)
	if ch := d.GetChild(e.Name()); ch != nil {
		switch n := ch.Operations().(type) {
		case *dirNode:
			if e.IsDir {
				f.setAttr(&out.Attr, n.ino, syscall.S_IFDIR|0o555, 4096, n.mtime)
				return ch
			}
		case *fileNode:
			if !e.IsDir {
				if n.repin(e.Attrs) {
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
	if e.IsDir {
		n := &dirNode{f: f, path: e.Path, ino: e.Ino, mtime: d.mtime}
		f.setAttr(&out.Attr, n.ino, syscall.S_IFDIR|0o555, 4096, n.mtime)
		return d.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFDIR, Ino: e.Ino})
	}
	n := &fileNode{f: f, ino: e.Ino, attrs: e.Attrs}
	n.fillAttr(&out.Attr)
	return d.NewInode(ctx, n, fs.StableAttr{Mode: syscall.S_IFREG, Ino: e.Ino})
}

func (d *dirNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if !d.f.observing() {
		ds, _, errno := d.readdir(ctx)
		return ds, errno
	}
	start := time.Now()
	ds, n, errno := d.readdir(ctx)
	d.f.done(ctx, start, trace.OpReaddir, errno, func() trace.Event {
		return trace.Event{Op: trace.OpReaddir, Path: d.f.mountPath(d.prefix()), N: int64(n), Dir: true}
	})
	return ds, errno
}

func (d *dirNode) readdir(ctx context.Context) (fs.DirStream, int, syscall.Errno) {
	ctx, cancel := d.f.opContext(ctx)
	defer cancel()
	ents, err := d.f.ns.ListDir(ctx, d.path)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, d.f.waitErrno(ctx, "readdir", "prefix", d.prefix())
		}
		return nil, 0, d.f.errno(ctx, err, "readdir", "prefix", d.prefix())
	}
	list := make([]fuse.DirEntry, len(ents))
	for i, e := range ents {
		mode := uint32(syscall.S_IFREG)
		if e.IsDir {
			mode = syscall.S_IFDIR
		}
		list[i] = fuse.DirEntry{Name: e.Name(), Mode: mode, Ino: e.Ino}
	}
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
