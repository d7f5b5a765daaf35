package jitfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/namespace"
	"github.com/jitfs/jitfs/telemetry"
	"github.com/jitfs/jitfs/trace"

	oteltrace "go.opentelemetry.io/otel/trace"
)

// Remote is what the filesystem needs of the bucket. *gcs.Client fits.
type Remote interface {
	cache.Source
	Bucket() string
	Stat(ctx context.Context, name string) (gcs.Attrs, error)
	ListPage(ctx context.Context, prefix, token string, pageSize int) (gcs.Page, error)
}

// Options configures a filesystem.
type Options struct {
	Remote Remote
	Cache  *cache.Cache
	// Namespace, when set, is the snapshot the mount serves (several
	// mounts may serve one); its prefix, TTL and page size are its own and
	// Prefix, MetadataTTL and ListPageSize must be left zero. The caller
	// closes it. Nil: New makes one from those three options.
	Namespace *namespace.Namespace
	// Prefix is the object prefix shown at the mount root ("" or "a/b/").
	Prefix string
	// MetadataTTL re-lists a directory and may re-pin generations after this
	// long; 0 pins everything for the mount's lifetime.
	MetadataTTL time.Duration
	// OpTimeout bounds how long one FUSE operation (a lookup, a directory
	// read, a file read) waits on GCS; past it the caller gets EIO and the
	// daemon logs the operation, so a render fails fast instead of hanging
	// a node on a stalled link. The fetch or listing it waited on carries
	// on for later callers. 0: no bound.
	OpTimeout time.Duration
	// Passthrough hands fully cached files to the kernel (FUSE passthrough).
	Passthrough bool
	// ListPageSize is the listing page size (default 1000).
	ListPageSize int
	// ListAhead is namespace.Options.ListAhead for the namespace New
	// makes (Remote must then list flat, as *gcs.Client does); 0 is off.
	ListAhead int
	// UID and GID own every file (default: the daemon's).
	UID, GID uint32
	Logger   *slog.Logger
	// Trace, when set, records every operation the mount serves. The
	// recorder never blocks, so tracing cannot slow a render down by more
	// than the cost of building each event.
	Trace *trace.Recorder
	// Metrics, when set, records every operation's result and latency.
	Metrics *telemetry.Metrics
	// Job and Task name whom the mount serves (a node daemon's task), so
	// the reads it blocks and the fetches they start say who asked in the
	// cache's record of what is in flight (cache.Cache.Now). Empty: a
	// mount of its own, whose reads name only the reading process.
	Job, Task string
	// Tracer, when set, makes a span per read that reaches the daemon;
	// cache fills link to it, so a slow frame can be followed from the
	// renderer's read to the GCS request. Nil (tracing off) costs the read
	// path nothing, not even the context a no-op span would need.
	Tracer oteltrace.Tracer
}

// Validate checks and fills in defaults.
func (o *Options) Validate() error {
	if o.Remote == nil || o.Cache == nil {
		return errors.New("jitfs: Remote and Cache are required")
	}
	if o.Namespace != nil && (o.Prefix != "" || o.MetadataTTL != 0 || o.ListPageSize != 0 || o.ListAhead != 0) {
		return errors.New("jitfs: Prefix, MetadataTTL, ListPageSize and ListAhead belong to the Namespace given")
	}
	if o.Prefix != "" && !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if strings.HasPrefix(o.Prefix, "/") || strings.Contains(o.Prefix, "//") {
		return fmt.Errorf("jitfs: invalid prefix %q", o.Prefix)
	}
	if o.ListPageSize <= 0 {
		o.ListPageSize = 1000
	}
	if o.OpTimeout < 0 {
		return fmt.Errorf("jitfs: negative operation timeout %v", o.OpTimeout)
	}
	if o.MetadataTTL < 0 {
		return fmt.Errorf("jitfs: negative metadata TTL %v", o.MetadataTTL)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Stats are cumulative counters of the filesystem layer.
type Stats struct {
	// Lookups counts the kernel's lookups (the namespace counts what they
	// cost: listings, direct lookups, absent names).
	Lookups      atomic.Int64
	Opens, Reads atomic.Int64
	// PassthroughOpens counts opens for which jitfs handed the kernel a
	// backing file. The kernel can still refuse it (then reads reach
	// jitfs and are served from the same verified file).
	PassthroughOpens atomic.Int64
	Errors           atomic.Int64
}

// FS is one mounted bucket prefix.
type FS struct {
	opts  Options
	log   *slog.Logger
	root  *dirNode
	start time.Time
	// ns holds the listings and generation pins; the nodes only adapt it.
	ns    *namespace.Namespace
	ownNS bool // made by New, closed by Close
	// mnt is the absolute mountpoint, the root of traced paths.
	mnt string
	// fh numbers open handles so a trace can pair reads with their open.
	fh atomic.Uint64
	// onOpen, when set, hears of every successful open (the prefetch
	// engine learns frames from it).
	onOpen atomic.Pointer[func(rel string)]
	// hooks lets internal tests hold a request at a point where a race
	// lives, to replay that race deterministically. Nil outside tests.
	hooks atomic.Pointer[testHooks]

	Stats Stats
}

// testHooks are the points where internal tests can hold a request.
type testHooks struct {
	// cachedReleased runs in a cached-mode handle's release, after the
	// handle stopped counting against passthrough and before go-fuse
	// finishes the release (the window of the passthrough backing race).
	cachedReleased func()
	// passthroughGranted runs when go-fuse asks for a handle's backing fd
	// and gets one (go-fuse holds its backing lock meanwhile).
	passthroughGranted func()
	// releaseDone runs after go-fuse has finished a RELEASE, its
	// backing-id bookkeeping included: a fence for a test.
	releaseDone func()
}

// releaseFence wraps go-fuse's raw filesystem so that internal tests hear
// when a RELEASE is wholly done; go-fuse itself offers no such signal.
type releaseFence struct {
	fuse.RawFileSystem
	f *FS
}

func (r releaseFence) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	r.RawFileSystem.Release(cancel, in)
	if hk := r.f.hooks.Load(); hk != nil && hk.releaseDone != nil {
		hk.releaseDone()
	}
}

// New builds the filesystem; mount it with Mount.
func New(opts Options) (*FS, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	f := &FS{opts: opts, log: opts.Logger, start: time.Now(), ns: opts.Namespace}
	if f.ns == nil {
		ns, err := namespace.New(namespace.Options{Remote: opts.Remote, Prefix: opts.Prefix,
			TTL: opts.MetadataTTL, PageSize: opts.ListPageSize, ListAhead: opts.ListAhead})
		if err != nil {
			return nil, fmt.Errorf("jitfs: %w", err)
		}
		f.ns, f.ownNS = ns, true
	}
	f.root = &dirNode{f: f, ino: namespace.RootIno, mtime: f.start}
	return f, nil
}

// Close releases the filesystem's background resources (the namespace New
// made). Call it after the server has unmounted.
func (f *FS) Close() {
	if f.ownNS {
		f.ns.Close()
	}
}

// Namespace is the snapshot the filesystem serves.
func (f *FS) Namespace() *namespace.Namespace { return f.ns }

// SetOpenObserver makes fn hear the mount-relative path of every
// successful open. fn runs on the read path and must not block.
func (f *FS) SetOpenObserver(fn func(rel string)) { f.onOpen.Store(&fn) }

// Root returns the root node, for fs.Mount.
func (f *FS) Root() fs.InodeEmbedder { return f.root }

// KernelTimeout is how long the kernel may cache entries and attributes.
func (f *FS) KernelTimeout() time.Duration {
	if ttl := f.ns.TTL(); ttl > 0 {
		return ttl
	}
	return 24 * time.Hour
}

// MountOptions are the go-fuse options jitfs mounts with.
type MountOptions struct {
	FsName     string
	AllowOther bool
	Debug      bool

	// testFence wraps the raw filesystem in releaseFence (internal tests).
	testFence bool
}

// Mount mounts f at dir and returns the running server.
func (f *FS) Mount(dir string, mo MountOptions) (*fuse.Server, error) {
	t := f.KernelTimeout()
	opts := &fs.Options{
		EntryTimeout:    &t,
		AttrTimeout:     &t,
		NegativeTimeout: &t,
		UID:             f.opts.UID,
		GID:             f.opts.GID,
		MountOptions: fuse.MountOptions{
			FsName:        mo.FsName,
			Name:          "jitfs",
			AllowOther:    mo.AllowOther,
			DirectMount:   true,
			MaxReadAhead:  1 << 20,
			MaxWrite:      1 << 20,
			MaxBackground: 64,
			Debug:         mo.Debug,
			// The tree is immutable per snapshot: let the kernel keep
			// symlink targets and pages, and ask for no xattrs.
			DisableXAttrs: true,
			Options:       []string{"ro", "default_permissions"},
		},
	}
	if abs, err := filepath.Abs(dir); err == nil {
		f.mnt = abs
	} else {
		f.mnt = dir
	}
	// fs.Mount, spelled out so internal tests can fence RELEASE.
	var raw fuse.RawFileSystem = fs.NewNodeFS(f.root, opts)
	if mo.testFence {
		raw = releaseFence{RawFileSystem: raw, f: f}
	}
	srv, err := fuse.NewServer(raw, dir, &opts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("jitfs: mount %s: %w", dir, err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		_ = srv.Unmount()
		return nil, fmt.Errorf("jitfs: mount %s: %w", dir, err)
	}
	return srv, nil
}

// observing reports whether operations need timing, for the trace or the
// metrics; callers skip the clock and path work otherwise.
func (f *FS) observing() bool { return f.opts.Trace != nil || f.opts.Metrics != nil }

// done reports one finished operation to the metrics and the trace. The
// trace event is built only when tracing: its paths cost allocations that
// the metrics alone do not need (ev does not escape, so neither does it).
func (f *FS) done(ctx context.Context, start time.Time, op trace.Op, errno syscall.Errno, ev func() trace.Event) {
	f.opts.Metrics.FUSE(ctx, string(op), start, errno)
	if f.opts.Trace != nil {
		f.record(ctx, start, ev(), errno)
	}
}

// mountPath turns an object name or prefix into the path a process sees.
func (f *FS) mountPath(name string) string {
	rel := strings.TrimSuffix(strings.TrimPrefix(name, f.ns.Prefix()), "/")
	if rel == "" {
		return f.mnt
	}
	return f.mnt + "/" + rel
}

// record completes ev with timing, caller and result, and queues it.
func (f *FS) record(ctx context.Context, start time.Time, ev trace.Event, errno syscall.Errno) {
	rec := f.opts.Trace
	ev.T = rec.Since(start)
	ev.Dur = time.Since(start).Seconds()
	if c, ok := fuse.FromContext(ctx); ok {
		ev.Pid = int(c.Pid)
	}
	if errno != 0 {
		ev.Err = unix.ErrnoName(errno)
		if ev.Err == "" {
			ev.Err = errno.Error()
		}
	}
	rec.Record(ev)
}

func (f *FS) setAttr(a *fuse.Attr, ino uint64, mode uint32, size int64, mtime time.Time) {
	a.Ino = ino
	a.Mode = mode
	a.Size = uint64(size)
	a.Blocks = (uint64(size) + 511) / 512
	a.Blksize = 1 << 16
	a.Nlink = 1
	a.Uid, a.Gid = f.opts.UID, f.opts.GID
	a.SetTimes(&mtime, &mtime, &mtime)
}
