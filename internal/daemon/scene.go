package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"go.opentelemetry.io/otel/attribute"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/jitfs"
	"github.com/jitfs/jitfs/prefetch"
	"github.com/jitfs/jitfs/speculate"
	"github.com/jitfs/jitfs/telemetry"
	"github.com/jitfs/jitfs/trace"
)

// SceneConfig is everything needed to serve one scene mount. Zero values
// are the packages' own defaults, not the jitfs command's flag defaults
// (which cmd/jitfs fills in).
type SceneConfig struct {
	// Bucket and Prefix ("" or ending in "/") are what the mount serves.
	Bucket, Prefix string
	// Mountpoint is an existing directory; a dead mount left there by a
	// killed daemon is mounted over (as root) or detached.
	Mountpoint string
	CacheDir   string
	CacheSize  int64
	// Endpoint is a GCS emulator's address ("" for Google Cloud Storage).
	Endpoint string
	// GCS, when set, is the client the mount reads through instead of one
	// opened at Endpoint (and checked) by StartScene: a test counts its
	// requests. Close leaves it open for its owner.
	GCS *gcs.Client
	// AttemptTimeout bounds one GCS request attempt of the client that
	// StartScene opens.
	AttemptTimeout time.Duration
	// Zone sends the client's object reads through a zone cache.
	Zone        gcs.ZoneOptions
	MetadataTTL time.Duration
	OpTimeout   time.Duration
	Passthrough bool
	AllowOther  bool
	DebugFUSE   bool
	// StrictVerify serves no byte of a large object before all of it is
	// checked against its CRC32C.
	StrictVerify bool
	// TraceFile, when set, records every operation the mount serves.
	TraceFile string
	// Socket is the hook API's Unix socket: "" for the mountpoint's
	// default, "none" for neither the hook API nor the prefetch engine
	// behind it.
	Socket          string
	SocketGroup     string
	PrefetchWorkers int
	// Speculate fetches ahead of readers that send no hooks (package
	// speculate): the kinds turned on.
	Speculate Speculation
	// Log receives the daemon's log lines; nil discards them.
	Log *slog.Logger
	// Telemetry is the process's metrics and traces; nil records none.
	Telemetry *telemetry.Telemetry
}

// Scene is a serving scene mount and what it owns. Its fields are set by
// StartScene and read-only after.
type Scene struct {
	// Config is the configuration it was started with, its Mountpoint
	// made absolute and its Log set.
	Config SceneConfig
	GCS    *gcs.Client
	Cache  *cache.Cache
	FS     *jitfs.FS
	Server *fuse.Server
	// Engine and Hooks are nil when Config.Socket is "none".
	Engine *prefetch.Engine
	Hooks  *hooks.Server
	// Spec is nil when Config.Speculate turns nothing on.
	Spec *speculate.Speculator

	ownGCS bool               // StartScene opened GCS, so Close closes it
	rec    *trace.Recorder    // nil without a trace file
	ops    *telemetry.Metrics // records operations as they happen
	met    *telemetry.Metrics // observes the counters at collection
	closed closeOnce
}

// StartScene checks everything that can be checked before mounting, so a
// bad bucket, credentials or mountpoint is one error, then mounts and
// serves the hook API.
func StartScene(ctx context.Context, cfg SceneConfig) (*Scene, error) {
	cfg.Log = orDiscard(cfg.Log)
	mp, err := checkMountpoint(cfg.Mountpoint, cfg.Log)
	hidden := hiddenFiles(mp)
	if err != nil {
		return nil, err
	}
	cfg.Mountpoint = mp
	s := &Scene{Config: cfg}
	// The trace file is opened first, so a bad path fails before anything
	// else starts; a mount that fails later removes it again.
	if cfg.TraceFile != "" {
		if s.rec, err = openTrace(cfg); err != nil {
			return nil, err
		}
	}
	ok := false
	defer func() {
		if !ok && s.rec != nil {
			s.rec.Close()
			os.Remove(cfg.TraceFile)
		}
	}()
	// The instruments exist before the clients that record into them; the
	// snapshot callback is registered once the mount is up.
	mountAttr := attribute.String("mountpoint", mp)
	tel, met, err := operationMetrics(cfg.Telemetry, mountAttr)
	if err != nil {
		return nil, err
	}
	s.ops = met
	s.GCS, s.ownGCS = cfg.GCS, cfg.GCS == nil
	if s.ownGCS {
		if s.GCS, err = openBucket(ctx, gcs.Options{Bucket: cfg.Bucket, Endpoint: cfg.Endpoint, AttemptTimeout: cfg.AttemptTimeout, Metrics: met,
			Zone: cfg.Zone, Logger: cfg.Log}); err != nil {
			return nil, err
		}
	}
	closeGCS := func() {
		if s.ownGCS {
			s.GCS.Close()
		}
	}
	s.Cache, err = cache.New(cache.Options{Dir: cfg.CacheDir, Budget: cfg.CacheSize, Strict: cfg.StrictVerify, KeepOpen: keepOpen, Logger: cfg.Log})
	if err != nil {
		closeGCS()
		return nil, err
	}
	s.FS, err = jitfs.New(jitfs.Options{Remote: s.GCS, Cache: s.Cache, Prefix: cfg.Prefix, MetadataTTL: cfg.MetadataTTL, OpTimeout: cfg.OpTimeout,
		Passthrough: cfg.Passthrough, ListAhead: cfg.Speculate.listAhead(), UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Logger: cfg.Log, Trace: s.rec, Metrics: met, Tracer: fuseTracer(tel)})
	if err != nil {
		s.Cache.Close()
		closeGCS()
		return nil, err
	}
	s.Server, err = s.FS.Mount(mp, jitfs.MountOptions{FsName: "gs://" + cfg.Bucket + "/" + cfg.Prefix,
		AllowOther: cfg.AllowOther, Debug: cfg.DebugFUSE})
	if err != nil {
		s.FS.Close()
		s.Cache.Close()
		closeGCS()
		return nil, err
	}
	s.Spec = cfg.Speculate.start(s.FS.Namespace(), s.Cache, s.GCS, cfg.Bucket, coopenFile(cfg.CacheDir, cfg.Bucket, cfg.Prefix), "", cfg.Log)
	s.FS.SetOpenObserver(observer(nil, s.Spec))
	cfg.Log.Info("mounted", "bucket", cfg.Bucket, "prefix", cfg.Prefix, "mountpoint", mp,
		"cache_dir", cfg.CacheDir, "budget_bytes", cfg.CacheSize, "passthrough", cfg.Passthrough)
	warnHidden(hidden, mp, cfg.Log)
	used, budget := s.Cache.Used()
	warnCacheSize(cfg.CacheDir, budget, used, cfg.Log)
	if cfg.Socket != "none" {
		if err := s.startHooks(); err != nil {
			s.Close()
			return nil, err
		}
	}
	if s.met, err = telemetry.New(tel.Meters, s.snapshot, mountAttr); err != nil {
		s.Close()
		return nil, err
	}
	ok = true
	return s, nil
}

// startHooks starts the prefetch engine and the hook API socket.
func (s *Scene) startHooks() error {
	cfg := s.Config
	eng, err := prefetch.New(prefetch.Options{Resolver: s.FS, Cache: s.Cache, Source: s.GCS,
		Workers: cfg.PrefetchWorkers, Logger: cfg.Log})
	if err != nil {
		return err
	}
	// UDIM tiles are found in the namespace, not by reading the directory
	// back through the kernel and this same daemon.
	hs, err := hooks.NewServer(hooks.ServerOptions{Mountpoint: cfg.Mountpoint, Backend: withSpeculation(eng, s.Spec, s.GCS,
		nowScope{c: s.Cache, bucket: cfg.Bucket, prefix: s.FS.Namespace().Prefix()}), SocketPath: cfg.Socket,
		SocketGroup: cfg.SocketGroup, Logger: cfg.Log, Metrics: s.ops, ListDir: s.FS.ListDir})
	if err != nil {
		eng.Close()
		return err
	}
	s.Engine, s.Hooks = eng, hs
	s.FS.SetOpenObserver(observer(eng, s.Spec))
	serveHooks(hs, cfg.Log)
	cfg.Log.Info("hook API listening", "socket", hs.SocketPath())
	return nil
}

// serveHooks serves the hook API until it is closed.
func serveHooks(hs *hooks.Server, log *slog.Logger) {
	go func() {
		if err := hs.Serve(); err != nil {
			log.Error("hook API stopped", "socket", hs.SocketPath(), "err", err)
		}
	}()
}

// snapshot is the mount's counters for the metrics' observable instruments.
func (s *Scene) snapshot() telemetry.Snapshot {
	snap := cacheSnapshot(s.Cache)
	gs := &s.GCS.Stats
	snap.GCSRetries, snap.GCSBytes = gs.Retries.Load(), gs.BytesRead.Load()
	if s.Engine != nil {
		st := s.Engine.Status()
		snap.PrefetchQueue, snap.PrefetchInFlight, snap.Pinned = st.QueueDepth, st.InFlight, st.PinnedBytes
	}
	addSpeculation(&snap, s.Spec)
	addListAhead(&snap, s.FS.Namespace())
	return snap
}

// cacheSnapshot is a cache's counters, as a mount and the node daemon
// report them.
func cacheSnapshot(c *cache.Cache) telemetry.Snapshot {
	cs := &c.Stats
	used, budget := c.Used()
	snap := telemetry.Snapshot{
		HitBytes: cs.HitBytes.Load(), MissBytes: cs.MissBytes.Load(),
		Hits: cs.Hits.Load(), Misses: cs.Misses.Load(), Partials: cs.Partials.Load(),
		FetchedReadAhead: cs.ReadAheadBytes.Load(), FetchedPrefetch: cs.PrefetchedBytes.Load(),
		FetchedSpeculation: cs.SpeculatedBytes.Load(),
		Evictions:          cs.Evictions.Load(), EvictedBytes: cs.EvictedBytes.Load(),
		CacheUsed: used, CacheBudget: budget,
		MemoryHitBytes: cs.MemoryHitBytes.Load(), MemoryHeld: cs.MemoryBytes.Load(),
		ChecksumMismatches: cs.ChecksumMismatches.Load(), DiskErrors: cs.DiskErrors.Load(),
		LateMismatches: cs.LateMismatches.Load(), PrefetchWasted: cs.WastedPrefetchBytes.Load(),
	}
	// Every fetch counts in FetchedBytes; what neither read-ahead nor the
	// engine fetched, a reader waited for.
	snap.FetchedRead = max(0, cs.FetchedBytes.Load()-snap.FetchedReadAhead-snap.FetchedPrefetch-snap.FetchedSpeculation)
	return snap
}

// openTrace starts recording to cfg.TraceFile. The file is created before
// mounting so that a bad path fails the mount rather than losing the trace.
func openTrace(cfg SceneConfig) (*trace.Recorder, error) {
	out, err := os.OpenFile(cfg.TraceFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	host, _ := os.Hostname()
	rec, err := trace.NewRecorder(out, trace.Header{Source: "mount", Root: cfg.Mountpoint, Bucket: cfg.Bucket, Prefix: cfg.Prefix,
		Host: host, Cmd: os.Args}, trace.RecorderOptions{})
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("trace %s: %w", cfg.TraceFile, err)
	}
	return rec, nil
}

// Close unmounts and releases the cache. Open files make a plain unmount
// fail; the mount is then detached so the daemon can exit and the cache
// lock is released for a successor. Later calls return the first's result.
func (s *Scene) Close() error {
	return s.closed.do(s.close)
}

func (s *Scene) close() error {
	var errs []error
	s.met.Close()
	// The engine resolves paths through the mount: stop it (and the
	// socket feeding it) before unmounting.
	if s.Hooks != nil {
		if err := s.Hooks.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.Engine != nil {
		s.Engine.Close()
	}
	if s.Spec != nil {
		s.Spec.Close()
	}
	if err := unmount(s.Server, s.Config.Mountpoint, s.Config.Log); err != nil {
		errs = append(errs, err)
	}
	s.FS.Close()
	if s.rec != nil {
		err := s.rec.Close()
		s.Config.Log.Info("trace written", "file", s.Config.TraceFile, "events", s.rec.Events(), "dropped", s.rec.Dropped())
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.Cache.Close(); err != nil {
		errs = append(errs, err)
	}
	if s.ownGCS {
		if err := s.GCS.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// operationMetrics is the telemetry a daemon records into (no-op when the
// caller set none up) and its instruments for operations as they happen,
// whose series carry attrs: the same mountpoint (or node) as the daemon's
// observed series, so the mounts of one process are told apart.
func operationMetrics(tel *telemetry.Telemetry, attrs ...attribute.KeyValue) (*telemetry.Telemetry, *telemetry.Metrics, error) {
	if tel == nil {
		tel = telemetry.Noop()
	}
	met, err := telemetry.New(tel.Meters, nil, attrs...)
	return tel, met, err
}

// openBucket creates the GCS client and checks the bucket, so a bad bucket
// or credentials fail the start with one line.
func openBucket(ctx context.Context, opts gcs.Options) (*gcs.Client, error) {
	gc, err := gcs.New(ctx, opts)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = gc.CheckBucket(cctx)
	cancel()
	if err != nil {
		gc.Close()
		return nil, fmt.Errorf("cannot use gs://%s: %w", opts.Bucket, err)
	}
	return gc, nil
}

// fuseTracer is the tracer for the FUSE read path: nil unless spans are
// exported.
func fuseTracer(tel *telemetry.Telemetry) oteltrace.Tracer {
	if !tel.Tracing {
		return nil
	}
	return tel.Tracers.Tracer("github.com/jitfs/jitfs/jitfs")
}

// keepOpen is how many recently closed cache objects keep their files
// open (two descriptors each): a frame's textures, libraries and caches
// reopened by the next frame cost no system call in the daemon.
const keepOpen = 4096
