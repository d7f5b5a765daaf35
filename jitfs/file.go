package jitfs

import (
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/trace"

	"go.opentelemetry.io/otel/attribute"
	oteltrace "go.opentelemetry.io/otel/trace"
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
	// resets is the cache object's Resets when the last open was answered:
	// an open that finds it moved drops the kernel's pages of the file.
	resets int64
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
	if n.f.observing() {
		n.f.done(ctx, time.Now(), trace.OpGetattr, 0, func() trace.Event {
			a := n.pinned()
			return trace.Event{Op: trace.OpGetattr, Path: n.f.mountPath(a.Name), Size: a.Size}
		})
	}
	out.SetTimeout(n.f.KernelTimeout())
	return 0
}

// handle is an open file.
type handle struct {
	n       *fileNode
	h       *cache.Handle
	backing *os.File // set when the kernel reads through passthrough
	id      uint64   // the trace's handle number
	path    string   // the mount path, when tracing
}

var (
	_ = (fs.FilePassthroughFder)((*handle)(nil))
	_ = (fs.FileFlusher)((*handle)(nil))
	_ = (fs.FileReleaser)((*handle)(nil))
)

// PassthroughFd is asked by go-fuse once per open.
func (h *handle) PassthroughFd() (int, bool) {
	if h.backing == nil {
		return -1, false
	}
	h.n.f.Stats.PassthroughOpens.Add(1)
	if hk := h.n.f.hooks.Load(); hk != nil && hk.passthroughGranted != nil {
		hk.passthroughGranted()
	}
	return int(h.backing.Fd()), true
}

func (n *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if !n.f.observing() {
		return n.open(ctx, flags)
	}
	start := time.Now()
	fh, fl, errno := n.open(ctx, flags)
	n.f.done(ctx, start, trace.OpOpen, errno, func() trace.Event {
		a := n.pinned()
		ev := trace.Event{Op: trace.OpOpen, Path: n.f.mountPath(a.Name), Size: a.Size}
		// The handle's number and path pair its reads and release with
		// this open in the trace.
		if h, ok := fh.(*handle); ok {
			h.id = n.f.fh.Add(1)
			h.path = ev.Path
			ev.Fh = h.id
		}
		return ev
	})
	return fh, fl, errno
}

func (n *fileNode) open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
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
		return nil, 0, f.errno(ctx, err, "open", "object", m.String())
	}
	if c, ok := fuse.FromContext(ctx); ok && ch.MayServeUnchecked() {
		ch.SetReader(c.Pid, readerName(c.Pid))
	}
	// Who asked, for the cache's record of reads waiting on fetches: the
	// opening process (a file's reads come from whoever opened it), named
	// once here rather than in every read's context.
	who := cache.Asker{Job: f.opts.Job, Task: f.opts.Task}
	if c, ok := fuse.FromContext(ctx); ok {
		who.PID = int(c.Pid)
	}
	ch.SetAsker(who)
	h := &handle{n: n, h: ch}
	if f.opts.Passthrough {
		// Fetched whole and being written or checked: a moment's wait
		// buys passthrough for the whole life of this open.
		ch.AwaitLocal(ctx, awaitLocalMax)
	}
	n.mu.Lock()
	if f.opts.Passthrough && n.cachedIO == 0 {
		if bf, ok := ch.BackingFile(); ok {
			h.backing = bf
		}
	}
	// go-fuse keeps one backing id per inode and hands it to every open
	// while any passthrough open lives, even one we counted as cached
	// here; over-counting cachedIO only ever withholds passthrough, which
	// is the safe direction (the kernel refuses mixed modes).
	if h.backing == nil {
		n.cachedIO++
	}
	// Content never changes under a pinned generation: keep the kernel's
	// page cache across opens (renderers re-open textures several times),
	// unless bytes of the object were found wrong since the last open. The
	// pages an earlier reader was served before the check may be those
	// bytes; without KEEP_CACHE the kernel drops them at this open.
	keep := uint32(fuse.FOPEN_KEEP_CACHE)
	if r := ch.Resets(); r != n.resets {
		n.resets, keep = r, 0
	}
	n.mu.Unlock()
	if obs := f.onOpen.Load(); obs != nil {
		// The namespace's prefix: a shared Namespace's FS has no Prefix of its own.
		(*obs)(strings.TrimPrefix(a.Name, f.ns.Prefix()))
	}
	return h, keep, 0
}

func (n *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h, ok := fh.(*handle)
	if !ok {
		return nil, syscall.EBADF
	}
	n.f.Stats.Reads.Add(1)
	if tr := n.f.opts.Tracer; tr != nil {
		var span oteltrace.Span
		ctx, span = tr.Start(ctx, "jitfs.fuse.read", oteltrace.WithAttributes(attribute.String("gcs.object", h.h.Meta().Name),
			attribute.Int64("offset", off), attribute.Int("length", len(dest))))
		defer span.End()
	}
	if !n.f.observing() {
		k, _, errno := n.read(ctx, h, dest, off)
		if errno != 0 {
			return nil, errno
		}
		return fuse.ReadResultData(dest[:k]), 0
	}
	start := time.Now()
	k, info, errno := n.read(ctx, h, dest, off)
	n.f.done(ctx, start, trace.OpRead, errno, func() trace.Event {
		return trace.Event{Op: trace.OpRead, Path: h.path, Fh: h.id, Off: off, Len: int64(len(dest)),
			N: int64(k), Cache: info.Outcome.String(), Fetched: info.Fetched}
	})
	if errno != 0 {
		return nil, errno
	}
	return fuse.ReadResultData(dest[:k]), 0
}

func (n *fileNode) read(ctx context.Context, h *handle, dest []byte, off int64) (int, cache.ReadInfo, syscall.Errno) {
	if h.backing != nil {
		// The kernel normally reads the backing file itself; if it asks
		// us anyway (passthrough refused), read the verified file.
		k, err := h.backing.ReadAt(dest, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, cache.ReadInfo{}, n.f.errno(ctx, err, "read", "object", h.h.Meta().String(), "offset", off, "length", len(dest))
		}
		return k, cache.ReadInfo{Outcome: cache.Hit}, 0
	}
	ctx, cancel := n.f.opContext(ctx)
	defer cancel()
	k, info, err := h.h.ReadAtInfo(ctx, dest, off)
	if err != nil {
		// The cache returns the context's error; its cause says whether
		// the reader left or the deadline passed.
		err = withCause(ctx, err)
		return 0, info, n.f.errno(ctx, err, "read", "object", h.h.Meta().String(), "offset", off, "length", len(dest))
	}
	return k, info, 0
}

func (n *fileNode) Release(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	if h, ok := fh.(*handle); ok {
		return h.Release(ctx)
	}
	return 0
}

// awaitLocalMax bounds how long an open waits for a fetched object's last
// writes and check (a slow or failing cache disk must not stall opens).
const awaitLocalMax = 2 * time.Second

// Flush answers ENOSYS: a read-only file has nothing to flush, and the
// kernel, told so once, stops sending FLUSH on every close of the mount
// (a round trip to the daemon saved per open).
func (h *handle) Flush(ctx context.Context) syscall.Errno { return syscall.ENOSYS }

// Release ends the open: the cache may evict the object again.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	if h.n.f.observing() {
		h.n.f.done(ctx, time.Now(), trace.OpRelease, 0, func() trace.Event {
			return trace.Event{Op: trace.OpRelease, Path: h.path, Fh: h.id}
		})
	}
	h.n.mu.Lock()
	cached := h.backing == nil
	if cached {
		h.n.cachedIO--
	} else {
		h.backing = nil // the cache object's, not ours to close
	}
	h.n.mu.Unlock()
	h.h.Close()
	// From here until go-fuse has finished this release, a new open of the
	// inode may be given passthrough. That is safe only because go-fuse
	// (third_party/go-fuse, JITFS-PATCH.md) drops a backing reference at
	// release only for handles whose open took one; upstream v2.12.1 drops
	// one for this cached handle too and closes the new open's backing id.
	if hk := h.n.f.hooks.Load(); cached && hk != nil && hk.cachedReleased != nil {
		hk.cachedReleased()
	}
	return 0
}

// readerName names a process for the log: "pid 4242 (blender)".
func readerName(pid uint32) string {
	comm, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/comm")
	if err != nil {
		return "pid " + strconv.FormatUint(uint64(pid), 10)
	}
	return "pid " + strconv.FormatUint(uint64(pid), 10) + " (" + strings.TrimSpace(string(comm)) + ")"
}
