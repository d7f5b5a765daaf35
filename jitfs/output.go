package jitfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/output"
)

// OutputOptions configures the FUSE front end of an output area.
type OutputOptions struct {
	Area *output.Area
	// UID and GID own every file (default: the daemon's).
	UID, GID uint32
	// StagingBudget is reported as the file system's size by statfs.
	StagingBudget int64
	Logger        *slog.Logger
}

// OutputFS serves an output.Area: a read-write tree whose every
// operation is one call into the area, addressed by path. The area owns
// the namespace; the kernel's inode tree only mirrors it.
type OutputFS struct {
	opts OutputOptions
	log  *slog.Logger
	root *outNode
}

// NewOutput builds the front end; mount it with Mount.
func NewOutput(opts OutputOptions) (*OutputFS, error) {
	if opts.Area == nil {
		return nil, errors.New("jitfs: output area is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	o := &OutputFS{opts: opts, log: opts.Logger}
	o.root = &outNode{o: o}
	return o, nil
}

// outputTimeout is how long the kernel may cache entries and attributes.
// Every change goes through this mount, which the kernel sees, so this
// only bounds how long objects written to the prefix by others stay
// unseen.
const outputTimeout = time.Second

// Mount mounts the output area at dir, read-write.
func (o *OutputFS) Mount(dir string, mo MountOptions) (*fuse.Server, error) {
	t := outputTimeout
	opts := &fs.Options{
		EntryTimeout: &t,
		AttrTimeout:  &t,
		UID:          o.opts.UID,
		GID:          o.opts.GID,
		MountOptions: fuse.MountOptions{
			FsName:        mo.FsName,
			Name:          "jitfs",
			AllowOther:    mo.AllowOther,
			DirectMount:   true,
			MaxWrite:      1 << 20,
			MaxBackground: 64,
			Debug:         mo.Debug,
			DisableXAttrs: true,
			Options:       []string{"rw", "default_permissions"},
		},
	}
	srv, err := fs.Mount(dir, o.root, opts)
	if err != nil {
		return nil, fmt.Errorf("jitfs: mount %s: %w", dir, err)
	}
	return srv, nil
}

// outNode is a file or directory of an output area, known by its path.
type outNode struct {
	fs.Inode
	o *OutputFS
}

var (
	_ = (fs.NodeLookuper)((*outNode)(nil))
	_ = (fs.NodeGetattrer)((*outNode)(nil))
	_ = (fs.NodeSetattrer)((*outNode)(nil))
	_ = (fs.NodeReaddirer)((*outNode)(nil))
	_ = (fs.NodeOpener)((*outNode)(nil))
	_ = (fs.NodeCreater)((*outNode)(nil))
	_ = (fs.NodeMkdirer)((*outNode)(nil))
	_ = (fs.NodeRmdirer)((*outNode)(nil))
	_ = (fs.NodeUnlinker)((*outNode)(nil))
	_ = (fs.NodeRenamer)((*outNode)(nil))
	_ = (fs.NodeStatfser)((*outNode)(nil))

	_ = (fs.FileReader)((*outHandle)(nil))
	_ = (fs.FileWriter)((*outHandle)(nil))
	_ = (fs.FileFlusher)((*outHandle)(nil))
	_ = (fs.FileReleaser)((*outHandle)(nil))
	_ = (fs.FileFsyncer)((*outHandle)(nil))
	_ = (fs.FileGetattrer)((*outHandle)(nil))
)

func (n *outNode) area() *output.Area { return n.o.opts.Area }

// rel is the node's path in the area, as of now (renames move it).
func (n *outNode) rel() string { return n.Path(n.Root()) }

func (n *outNode) child(name string) string { return path.Join(n.rel(), name) }

func (o *OutputFS) fill(a *fuse.Attr, info output.Info) {
	if info.IsDir {
		a.Mode = syscall.S_IFDIR | info.Mode
		a.Nlink = 2
	} else {
		a.Mode = syscall.S_IFREG | info.Mode
		a.Nlink = 1
	}
	a.Size = uint64(info.Size)
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = 1 << 16
	a.Uid, a.Gid = o.opts.UID, o.opts.GID
	mt := info.Mtime
	a.SetTimes(&mt, &mt, &mt)
}

func (n *outNode) newChild(ctx context.Context, info output.Info, out *fuse.EntryOut) *fs.Inode {
	n.o.fill(&out.Attr, info)
	out.SetEntryTimeout(outputTimeout)
	out.SetAttrTimeout(outputTimeout)
	mode := uint32(syscall.S_IFREG)
	if info.IsDir {
		mode = syscall.S_IFDIR
	}
	return n.NewInode(ctx, &outNode{o: n.o}, fs.StableAttr{Mode: mode})
}

func (n *outNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	info, err := n.area().Stat(ctx, n.child(name))
	if err != nil {
		return nil, n.o.errno(err, "lookup", "path", n.child(name))
	}
	return n.newChild(ctx, info, out), 0
}

func (n *outNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*outHandle); ok {
		n.o.fill(&out.Attr, h.h.Info())
		out.SetTimeout(outputTimeout)
		return 0
	}
	info, err := n.area().Stat(ctx, n.rel())
	if err != nil {
		return n.o.errno(err, "getattr", "path", n.rel())
	}
	n.o.fill(&out.Attr, info)
	out.SetTimeout(outputTimeout)
	return 0
}

// Setattr honours size changes. Modes, owners and times are accepted and
// not kept: GCS objects have none of them, and renderers and cp -p set
// them on outputs as a matter of course.
func (n *outNode) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		var err error
		if h, ok := fh.(*outHandle); ok && h.h.Writable() {
			err = h.h.Truncate(ctx, int64(size))
		} else {
			err = n.area().Truncate(ctx, n.rel(), int64(size))
		}
		if err != nil {
			return n.o.errno(err, "truncate", "path", n.rel(), "size", size)
		}
	}
	return n.Getattr(ctx, fh, out)
}

func (n *outNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	ents, err := n.area().ReadDir(ctx, n.rel())
	if err != nil {
		return nil, n.o.errno(err, "readdir", "path", n.rel())
	}
	out := make([]fuse.DirEntry, len(ents))
	for i, e := range ents {
		mode := uint32(syscall.S_IFREG)
		if e.IsDir {
			mode = syscall.S_IFDIR
		}
		out[i] = fuse.DirEntry{Name: e.Name, Mode: mode}
	}
	return fs.NewListDirStream(out), 0
}

func openFlags(flags, mode uint32) output.OpenFlags {
	acc := flags & syscall.O_ACCMODE
	return output.OpenFlags{Write: acc == syscall.O_WRONLY || acc == syscall.O_RDWR, Create: flags&syscall.O_CREAT != 0,
		Exclusive: flags&syscall.O_EXCL != 0, Truncate: flags&syscall.O_TRUNC != 0, Mode: mode & 0o777}
}

func (n *outNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	h, err := n.area().Open(ctx, n.rel(), openFlags(flags&^syscall.O_CREAT, 0))
	if err != nil {
		return nil, 0, n.o.errno(err, "open", "path", n.rel())
	}
	return &outHandle{h: h, o: n.o, rel: n.rel()}, 0, 0
}

func (n *outNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	rel := n.child(name)
	fl := openFlags(flags, mode)
	fl.Create, fl.Write = true, true
	h, err := n.area().Open(ctx, rel, fl)
	if err != nil {
		return nil, nil, 0, n.o.errno(err, "create", "path", rel)
	}
	ch := n.newChild(ctx, h.Info(), out)
	return ch, &outHandle{h: h, o: n.o, rel: rel}, 0, 0
}

func (n *outNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	rel := n.child(name)
	if err := n.area().Mkdir(ctx, rel); err != nil {
		return nil, n.o.errno(err, "mkdir", "path", rel)
	}
	return n.newChild(ctx, output.Info{IsDir: true, Mode: 0o755, Mtime: time.Now()}, out), 0
}

func (n *outNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	rel := n.child(name)
	return n.o.errno(n.area().Rmdir(ctx, rel), "rmdir", "path", rel)
}

func (n *outNode) Unlink(ctx context.Context, name string) syscall.Errno {
	rel := n.child(name)
	return n.o.errno(n.area().Unlink(ctx, rel), "unlink", "path", rel)
}

// renameNoReplace is renameat2's RENAME_NOREPLACE.
const renameNoReplace = 0x1

func (n *outNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	from := n.child(name)
	to := path.Join(newParent.EmbeddedInode().Path(n.Root()), newName)
	if flags&^renameNoReplace != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE, RENAME_WHITEOUT: no use for outputs
	}
	return n.o.errno(n.area().Rename(ctx, from, to, flags&renameNoReplace != 0), "rename", "from", from, "to", to)
}

func (n *outNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	st := n.area().Status(^uint64(0))
	const bs = 4096
	out.Bsize, out.Frsize = bs, bs
	out.Blocks = uint64(st.StagingBudget / bs)
	free := max(st.StagingBudget-st.StagedBytes, 0) / bs
	out.Bfree, out.Bavail = uint64(free), uint64(free)
	out.NameLen = 255
	return 0
}

// outHandle is an open file of an output area.
type outHandle struct {
	h   *output.Handle
	o   *OutputFS
	rel string // as opened, for log lines
}

func (h *outHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.h.ReadAt(ctx, dest, off)
	if err != nil {
		return nil, h.o.errno(err, "read", "path", h.rel, "offset", off, "length", len(dest))
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *outHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := h.h.WriteAt(ctx, data, off)
	if err != nil {
		return uint32(n), h.o.errno(err, "write", "path", h.rel, "offset", off, "length", len(data))
	}
	return uint32(n), 0
}

func (h *outHandle) Flush(ctx context.Context) syscall.Errno {
	return h.o.errno(h.h.Flush(), "close", "path", h.rel)
}

func (h *outHandle) Release(ctx context.Context) syscall.Errno {
	return h.o.errno(h.h.Release(), "release", "path", h.rel)
}

func (h *outHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return h.o.errno(h.h.Fsync(), "fsync", "path", h.rel)
}

func (h *outHandle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	h.o.fill(&out.Attr, h.h.Info())
	out.SetTimeout(outputTimeout)
	return 0
}

// errno is the output area's one mapping from errors to errnos. Expected
// outcomes (a missing name, a full staging area the area already logged)
// are not logged again; anything else is logged once with the original
// error.
func (o *OutputFS) errno(err error, op string, attrs ...any) syscall.Errno {
	if err == nil {
		return 0
	}
	quiet := map[error]syscall.Errno{
		output.ErrNotExist: syscall.ENOENT, output.ErrExist: syscall.EEXIST, output.ErrNotEmpty: syscall.ENOTEMPTY,
		output.ErrIsDir: syscall.EISDIR, output.ErrNotDir: syscall.ENOTDIR, output.ErrNoSpace: syscall.ENOSPC,
		output.ErrInvalid: syscall.EINVAL, output.ErrNameLen: syscall.ENAMETOOLONG, output.ErrReadOnly: syscall.EBADF,
		output.ErrCrossDir: syscall.EXDEV, output.ErrRemoteGen: syscall.EAGAIN,
	}
	for sentinel, e := range quiet {
		if errors.Is(err, sentinel) {
			return e
		}
	}
	var e syscall.Errno
	switch {
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.As(err, &e):
		// From the staging disk: ENOSPC, EIO, EDQUOT reach the writer as
		// they are; a network errno from an upload is EIO (fileErrno).
		if !fileErrno[e] {
			e = syscall.EIO
		}
	case errors.Is(err, gcs.ErrNotFound):
		e = syscall.EIO
	default:
		e = syscall.EIO
	}
	o.log.LogAttrs(context.Background(), slog.LevelError, "jitfs: output "+op+" failed",
		append([]slog.Attr{slog.String("errno", e.Error()), slog.Any("err", err)}, toAttrs(attrs)...)...)
	return e
}
