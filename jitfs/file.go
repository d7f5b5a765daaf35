package jitfs

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/gcs"
)

// fileNode is one object, pinned to one generation.
type fileNode struct {
	fs.Inode
	f   *FS
	ino uint64

	// mu guards attrs and the open-mode count. Kernel FUSE passthrough
	// cannot mix passthrough and cached opens of one inode, so passthrough
	// is used only while no cached-mode handle is open.
	mu       sync.Mutex
	attrs    gcs.Attrs
	cachedIO int
}

var (
	_ = (fs.NodeOpener)((*fileNode)(nil))
	_ = (fs.NodeGetattrer)((*fileNode)(nil))
	_ = (fs.NodeReader)((*fileNode)(nil))
	_ = (fs.NodeReleaser)((*fileNode)(nil))
)

func (n *fileNode) pinned() gcs.Attrs {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.attrs
}

// repin moves the node to a newer generation (TTL mode only); open handles
// keep reading the generation they opened.
func (n *fileNode) repin(a gcs.Attrs) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if a.Generation == n.attrs.Generation {
		return false
	}
	n.attrs = a
	return true
}

func (n *fileNode) fillAttr(out *fuse.Attr) {
	a := n.pinned()
	n.f.setAttr(out, n.ino, syscall.S_IFREG|0o444, a.Size, a.Updated)
}

func (n *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fillAttr(&out.Attr)
	out.SetTimeout(n.f.KernelTimeout())
	return 0
}

// handle is an open file.
type handle struct {
	n       *fileNode
	h       *cache.Handle
	backing *os.File // set when the kernel reads through passthrough
}

var (
	_ = (fs.FilePassthroughFder)((*handle)(nil))
	_ = (fs.FileReleaser)((*handle)(nil))
)

// PassthroughFd is asked by go-fuse once per open.
func (h *handle) PassthroughFd() (int, bool) {
	if h.backing == nil {
		return -1, false
	}
	return int(h.backing.Fd()), true
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	f := n.f
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	f.Stats.Opens.Add(1)
	a := n.pinned()
	m := cache.Meta{Bucket: f.opts.Remote.Bucket(), Name: a.Name, Gen: a.Generation, Size: a.Size,
		CRC32C: a.CRC32C, HasCRC32C: a.HasCRC32C}
	ch, err := f.opts.Cache.Open(m, f.opts.Remote)
	if err != nil {
		return nil, 0, f.errno(err, "open", "object", m.String())
	}
	h := &handle{n: n, h: ch}
	n.mu.Lock()
	if f.opts.Passthrough && n.cachedIO == 0 {
		if bf, ok := ch.BackingFile(); ok {
			h.backing = bf
			f.Stats.PassthroughOpens.Add(1)
		}
	}
	if h.backing == nil {
		n.cachedIO++
	}
	n.mu.Unlock()
	// Content never changes under a pinned generation: keep the kernel's
	// page cache across opens (renderers re-open textures several times).
	return h, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h, ok := fh.(*handle)
	if !ok {
		return nil, syscall.EBADF
	}
	n.f.Stats.Reads.Add(1)
	if h.backing != nil {
		// The kernel normally reads the backing file itself; if it asks
		// us anyway (passthrough refused), read the verified file.
		k, err := h.backing.ReadAt(dest, off)
		if err != nil && !errors.Is(err, ioEOF) {
			return nil, n.f.errno(err, "read", "object", h.h.Meta().String(), "offset", off, "length", len(dest))
		}
		return fuse.ReadResultData(dest[:k]), 0
	}
	k, err := h.h.ReadAt(ctx, dest, off)
	if err != nil {
		return nil, n.f.errno(err, "read", "object", h.h.Meta().String(), "offset", off, "length", len(dest))
	}
	return fuse.ReadResultData(dest[:k]), 0
}

func (n *fileNode) Release(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	if h, ok := fh.(*handle); ok {
		return h.Release(ctx)
	}
	return 0
}

// Release ends the open: the cache may evict the object again.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.n.mu.Lock()
	if h.backing != nil {
		h.backing.Close()
		h.backing = nil
	} else {
		h.n.cachedIO--
	}
	h.n.mu.Unlock()
	h.h.Close()
	return 0
}
