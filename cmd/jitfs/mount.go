package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"go.opentelemetry.io/otel/attribute"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/jitfs"
	"github.com/jitfs/jitfs/prefetch"
	"github.com/jitfs/jitfs/telemetry"
	"github.com/jitfs/jitfs/trace"
)

// defaultOpTimeout is how long a FUSE operation waits on GCS before its
// caller gets EIO: two stalled attempts (--gcs-attempt-timeout) and their
// retries fit in it, a render on a dead link fails in minutes, not never.
const defaultOpTimeout = 2 * time.Minute

// mountConfig is everything needed to serve one mount.
type mountConfig struct {
	bucket, prefix string
	mountpoint     string
	cacheDir       string
	cacheSize      int64
	endpoint       string
	metadataTTL    time.Duration
	passthrough    bool
	allowOther     bool
	debugFUSE      bool
	attemptTimeout time.Duration
	opTimeout      time.Duration
	strictVerify   bool
	traceFile      string
	socket         string // "" = the mount's default; "none" = no hook API
	socketGroup    string
	prefetchers    int
	log            *slog.Logger
	// tel exports this process's metrics; nil records none.
	tel *telemetry.Telemetry
}

// mounted is a serving mount and what it owns.
type mounted struct {
	cfg   mountConfig
	gcs   *gcs.Client
	cache *cache.Cache
	fs    *jitfs.FS
	srv   *fuse.Server
	rec   *trace.Recorder
	eng   *prefetch.Engine
	ops   *telemetry.Metrics // records operations as they happen
	met   *telemetry.Metrics // observes the counters at collection
	hooks *hooks.Server
}

func runMount(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("mount", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cacheDir := fl.String("cache-dir", "/var/cache/jitfs", "local-SSD cache directory, shared by restarts of the daemon")
	cacheSize := fl.String("cache-size", "10GiB", "byte budget of the cache (e.g. 300GiB)")
	endpoint := fl.String("endpoint", "", "GCS API endpoint of an emulator (anonymous); default: STORAGE_EMULATOR_HOST, else Google Cloud Storage with Application Default Credentials")
	ttl := fl.Duration("metadata-ttl", 0, "re-list directories and re-pin generations after this long (0: pin for the mount's lifetime)")
	passthrough := fl.Bool("passthrough", true, "let the kernel read fully cached files directly (FUSE passthrough, kernel >= 6.9)")
	allowOther := fl.Bool("allow-other", true, "let every user on the node read the mount (renderers rarely run as the daemon's user)")
	debugFUSE := fl.Bool("debug-fuse", false, "log every FUSE request")
	attemptTimeout := fl.Duration("gcs-attempt-timeout", 60*time.Second, "abandon and retry one GCS request attempt (read, stat, listing page) after this long (a stalled connection)")
	opTimeout := fl.Duration("op-timeout", defaultOpTimeout, "fail a lookup, directory read or file read with EIO after it has waited this long on GCS (0: wait as long as GCS retries take)")
	verify := fl.String("verify", "streaming", "when large objects are checked against their CRC32C: streaming (served as they arrive, checked when complete; see docs/integrity.md) or strict (no byte served before the whole object is checked)")
	logFormat := fl.String("log-format", "text", "log format: text or json")
	logLevel := fl.String("log-level", "info", "log level: debug, info, warn or error")
	traceFile := fl.String("trace", "", "record every operation the mount serves to this file (zstd JSON Lines; see docs/trace-format.md)")
	socket := fl.String("socket", "", "Unix socket of the hook API (jitfs.prefetch/v1); default: "+hooks.DefaultSocketDir+"/<mountpoint>.sock; \"none\" disables it")
	socketGroup := fl.String("socket-group", "", "group (name or gid) allowed to use the hook socket (mode 0660)")
	prefetchers := fl.Int("prefetch-workers", 32, "files prefetched at once (prefetch has its own fetch budget and never takes a blocked read's)")
	metricsAddr := fl.String("metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. :9464); OTLP export follows the standard OTEL_EXPORTER_OTLP_* variables (docs/metrics.md)")
	pos, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: want gs://BUCKET[/PREFIX] MOUNTPOINT, got %d arguments", errUsage, len(pos))
	}
	cfg := mountConfig{mountpoint: pos[1], cacheDir: *cacheDir, endpoint: *endpoint, metadataTTL: *ttl,
		passthrough: *passthrough, allowOther: *allowOther, debugFUSE: *debugFUSE, attemptTimeout: *attemptTimeout,
		opTimeout: *opTimeout, traceFile: *traceFile, socket: *socket, socketGroup: *socketGroup, prefetchers: *prefetchers}
	if cfg.bucket, cfg.prefix, err = parseGSURL(pos[0]); err != nil {
		return err
	}
	if cfg.cacheSize, err = parseSize(*cacheSize); err != nil {
		return err
	}
	switch *verify {
	case "streaming":
	case "strict":
		cfg.strictVerify = true
	default:
		return fmt.Errorf("%w: --verify %q: want streaming or strict", errUsage, *verify)
	}
	if cfg.log, err = newLogger(stderr, *logFormat, *logLevel); err != nil {
		return err
	}
	if cfg.metadataTTL < 0 {
		return fmt.Errorf("%w: --metadata-ttl must not be negative", errUsage)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if cfg.tel, err = startTelemetry(ctx, *metricsAddr, cfg.log); err != nil {
		return err
	}
	defer stopTelemetry(cfg.tel)
	m, err := startMount(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "jitfs: serving gs://%s/%s at %s (cache %s, budget %s)\n", cfg.bucket, cfg.prefix, m.cfg.mountpoint, cfg.cacheDir, *cacheSize)
	if m.hooks != nil {
		fmt.Fprintf(stdout, "jitfs: hook API at %s (export %s=%s)\n", m.hooks.SocketPath(), hooks.EnvSocket, m.hooks.SocketPath())
	}

	unmounted := make(chan struct{})
	go func() { m.srv.Wait(); close(unmounted) }()
	select {
	case <-ctx.Done():
		cfg.log.Info("signal received; unmounting", "mountpoint", m.cfg.mountpoint)
	case <-unmounted:
		cfg.log.Info("unmounted externally", "mountpoint", m.cfg.mountpoint)
	}
	return m.Close()
}

// startMount checks everything that can be checked before mounting, so a
// bad bucket, credentials or mountpoint is one line and a non-zero exit.
func startMount(ctx context.Context, cfg mountConfig) (*mounted, error) {
	mp, err := checkMountpoint(cfg.mountpoint, cfg.log)
	if err != nil {
		return nil, err
	}
	cfg.mountpoint = mp
	// The trace file is opened first, so a bad path fails before anything
	// else starts; a mount that fails later removes it again.
	var rec *trace.Recorder
	if cfg.traceFile != "" {
		if rec, err = openTrace(cfg, mp); err != nil {
			return nil, err
		}
	}
	ok := false
	defer func() {
		if !ok && rec != nil {
			rec.Close()
			os.Remove(cfg.traceFile)
		}
	}()
	// The instruments exist before the clients that record into them; the
	// snapshot callback is registered once the mount is up.
	tel, met, err := operationMetrics(cfg.tel)
	if err != nil {
		return nil, err
	}
	gc, err := openBucket(ctx, gcs.Options{Bucket: cfg.bucket, Endpoint: cfg.endpoint, AttemptTimeout: cfg.attemptTimeout, Metrics: met})
	if err != nil {
		return nil, err
	}
	c, err := cache.New(cache.Options{Dir: cfg.cacheDir, Budget: cfg.cacheSize, Strict: cfg.strictVerify, Logger: cfg.log})
	if err != nil {
		gc.Close()
		return nil, err
	}
	f, err := jitfs.New(jitfs.Options{Remote: gc, Cache: c, Prefix: cfg.prefix, MetadataTTL: cfg.metadataTTL, OpTimeout: cfg.opTimeout,
		Passthrough: cfg.passthrough, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Logger: cfg.log, Trace: rec, Metrics: met, Tracer: fuseTracer(tel)})
	if err != nil {
		c.Close()
		gc.Close()
		return nil, err
	}
	srv, err := f.Mount(mp, jitfs.MountOptions{FsName: "gs://" + cfg.bucket + "/" + cfg.prefix,
		AllowOther: cfg.allowOther, Debug: cfg.debugFUSE})
	if err != nil {
		f.Close()
		c.Close()
		gc.Close()
		return nil, err
	}
	cfg.log.Info("mounted", "bucket", cfg.bucket, "prefix", cfg.prefix, "mountpoint", mp,
		"cache_dir", cfg.cacheDir, "budget_bytes", cfg.cacheSize, "passthrough", cfg.passthrough)
	m := &mounted{cfg: cfg, gcs: gc, cache: c, fs: f, srv: srv, rec: rec, ops: met}
	if cfg.socket != "none" {
		if err := m.startHooks(); err != nil {
			m.Close()
			return nil, err
		}
	}
	if m.met, err = telemetry.New(tel.Meters, m.snapshot, attribute.String("mountpoint", mp)); err != nil {
		m.Close()
		return nil, err
	}
	ok = true
	return m, nil
}

// startHooks starts the prefetch engine and the hook API socket.
func (m *mounted) startHooks() error {
	eng, err := prefetch.New(prefetch.Options{Resolver: m.fs, Cache: m.cache, Source: m.gcs,
		Workers: m.cfg.prefetchers, Logger: m.cfg.log})
	if err != nil {
		return err
	}
	hs, err := hooks.NewServer(hooks.ServerOptions{Mountpoint: m.cfg.mountpoint, Backend: eng, SocketPath: m.cfg.socket,
		SocketGroup: m.cfg.socketGroup, Logger: m.cfg.log, Metrics: m.ops})
	if err != nil {
		eng.Close()
		return err
	}
	m.eng, m.hooks = eng, hs
	m.fs.SetOpenObserver(eng.Observe)
	go func() {
		if err := hs.Serve(); err != nil {
			m.cfg.log.Error("hook API stopped", "socket", hs.SocketPath(), "err", err)
		}
	}()
	m.cfg.log.Info("hook API listening", "socket", hs.SocketPath())
	return nil
}

// startTelemetry sets up this process's metrics (and traces, when the
// OTEL_* variables ask for them).
func startTelemetry(ctx context.Context, metricsAddr string, log *slog.Logger) (*telemetry.Telemetry, error) {
	tel, err := telemetry.Setup(ctx, telemetry.Options{MetricsAddr: metricsAddr, Version: buildVersion(), Log: log})
	if err != nil {
		return nil, err
	}
	if tel.MetricsURL != "" {
		log.Info("metrics", "url", tel.MetricsURL)
	}
	return tel, nil
}

// stopTelemetry flushes the exporters, bounded so a dead collector cannot
// hold up the exit.
func stopTelemetry(tel *telemetry.Telemetry) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tel.Shutdown(ctx)
}

// operationMetrics is the telemetry a daemon records into (no-op when the
// caller set none up) and its instruments for operations as they happen.
func operationMetrics(tel *telemetry.Telemetry) (*telemetry.Telemetry, *telemetry.Metrics, error) {
	if tel == nil {
		tel = telemetry.Noop()
	}
	met, err := telemetry.New(tel.Meters, nil)
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

// unmount unmounts a FUSE server; open files make a plain unmount fail,
// and then the mount is detached so the daemon can exit. After a clean
// unmount it waits for requests already read from the device to finish
// (and be traced or journalled) before the caller closes what they use.
func unmount(srv *fuse.Server, mountpoint string, log *slog.Logger) error {
	if err := srv.Unmount(); err != nil {
		log.Warn("unmount busy; detaching lazily", "mountpoint", mountpoint, "err", err)
		if err := syscall.Unmount(mountpoint, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", mountpoint, err)
		}
		detachDead(mountpoint, log)
		return nil
	}
	srv.Wait()
	detachDead(mountpoint, log)
	return nil
}

// fuseTracer is the tracer for the FUSE read path: nil unless spans are
// exported.
func fuseTracer(tel *telemetry.Telemetry) oteltrace.Tracer {
	if !tel.Tracing {
		return nil
	}
	return tel.Tracers.Tracer("github.com/jitfs/jitfs/jitfs")
}

// buildVersion is the module version the binary was built from.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// snapshot is the mount's counters for the metrics' observable instruments.
func (m *mounted) snapshot() telemetry.Snapshot {
	cs, gs := &m.cache.Stats, &m.gcs.Stats
	used, budget := m.cache.Used()
	s := telemetry.Snapshot{
		HitBytes: cs.HitBytes.Load(), MissBytes: cs.MissBytes.Load(),
		Hits: cs.Hits.Load(), Misses: cs.Misses.Load(), Partials: cs.Partials.Load(),
		FetchedReadAhead: cs.ReadAheadBytes.Load(), FetchedPrefetch: cs.PrefetchedBytes.Load(),
		Evictions: cs.Evictions.Load(), EvictedBytes: cs.EvictedBytes.Load(),
		CacheUsed: used, CacheBudget: budget,
		MemoryHitBytes: cs.MemoryHitBytes.Load(), MemoryHeld: cs.MemoryBytes.Load(),
		ChecksumMismatches: cs.ChecksumMismatches.Load(), DiskErrors: cs.DiskErrors.Load(),
		LateMismatches: cs.LateMismatches.Load(),
		GCSRetries:     gs.Retries.Load(), GCSBytes: gs.BytesRead.Load(),
		PrefetchWasted: cs.WastedPrefetchBytes.Load(),
	}
	// Every fetch counts in FetchedBytes; what neither read-ahead nor the
	// engine fetched, a reader waited for.
	s.FetchedRead = max(0, cs.FetchedBytes.Load()-s.FetchedReadAhead-s.FetchedPrefetch)
	if m.eng != nil {
		st := m.eng.Status()
		s.PrefetchQueue, s.PrefetchInFlight, s.Pinned = st.QueueDepth, st.InFlight, st.PinnedBytes
	}
	return s
}

// openTrace starts recording to cfg.traceFile. The file is created before
// mounting so that a bad path fails the mount rather than losing the trace.
func openTrace(cfg mountConfig, mp string) (*trace.Recorder, error) {
	out, err := os.OpenFile(cfg.traceFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	host, _ := os.Hostname()
	rec, err := trace.NewRecorder(out, trace.Header{Source: "mount", Root: mp, Bucket: cfg.bucket, Prefix: cfg.prefix,
		Host: host, Cmd: os.Args}, trace.RecorderOptions{})
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("trace %s: %w", cfg.traceFile, err)
	}
	return rec, nil
}

// Close unmounts and releases the cache. Open files make a plain unmount
// fail; after retrying, the mount is detached so the daemon can exit and the
// cache lock is released for a successor.
func (m *mounted) Close() error {
	var errs []error
	m.met.Close()
	// The engine resolves paths through the mount: stop it (and the
	// socket feeding it) before unmounting.
	if m.hooks != nil {
		if err := m.hooks.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if m.eng != nil {
		m.eng.Close()
	}
	if err := unmount(m.srv, m.cfg.mountpoint, m.cfg.log); err != nil {
		errs = append(errs, err)
	}
	m.fs.Close()
	if m.rec != nil {
		err := m.rec.Close()
		m.cfg.log.Info("trace written", "file", m.cfg.traceFile, "events", m.rec.Events(), "dropped", m.rec.Dropped())
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := m.cache.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := m.gcs.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkMountpoint resolves the mountpoint and refuses a missing, non-
// directory or busy one. A dead FUSE mount left by a killed daemon is
// detached, so a restart needs no manual clean-up.
func checkMountpoint(dir string, log *slog.Logger) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	if deadMount(abs) && os.Geteuid() == 0 {
		// A killed daemon's mount. Detaching it first would show readers
		// the bare directory (ENOENT: a renderer may take a texture for
		// optional and render a wrong frame) until the new mount is up.
		// Mount on top of it instead: until then they get ENOTCONN, and
		// the dead mount is detached when this daemon stops. Older dead
		// mounts stacked beneath it by earlier crashes go now.
		for deadMount(abs) && mountsAt(abs) > 1 {
			if err := syscall.Unmount(abs, syscall.MNT_DETACH); err != nil {
				break
			}
		}
		if deadMount(abs) {
			log.Warn("mounting over a dead FUSE mount left by an earlier daemon; it is detached when this daemon stops", "mountpoint", abs)
			return abs, nil
		}
	}
	if deadMount(abs) {
		// Without root, fusermount cannot mount over it: detach it.
		log.Warn("detaching a dead FUSE mount left by an earlier daemon", "mountpoint", abs)
		if uerr := syscall.Unmount(abs, syscall.MNT_DETACH); uerr != nil {
			return "", fmt.Errorf("mountpoint %s holds a dead mount that cannot be detached: %w", abs, uerr)
		}
	}
	_, err = os.Stat(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("mountpoint %s does not exist", abs)
		}
		return "", fmt.Errorf("mountpoint %s: %w", abs, err)
	}
	st, _ := os.Stat(abs)
	if !st.IsDir() {
		return "", fmt.Errorf("mountpoint %s is not a directory", abs)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err == nil {
		abs = real
	}
	if busy, err := isMountpoint(abs); err == nil && busy {
		return "", fmt.Errorf("mountpoint %s is busy: something is already mounted there", abs)
	}
	return abs, nil
}

// deadMount reports whether dir is a FUSE mount whose daemon is gone.
// statfs is never answered from the kernel's attribute cache, so it tells a
// live mount from the dead one a killed daemon leaves.
func deadMount(dir string) bool {
	var sfs syscall.Statfs_t
	err := syscall.Statfs(dir, &sfs)
	return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED)
}

// mountsAt counts the mounts stacked at dir.
func mountsAt(dir string) int {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == dir {
			n++
		}
	}
	return n
}

// detachDead detaches the dead mounts left at dir once this daemon's own
// mount is gone (see checkMountpoint), so a stopped daemon leaves a plain
// directory.
func detachDead(dir string, log *slog.Logger) {
	for deadMount(dir) {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			log.Warn("cannot detach a dead FUSE mount", "mountpoint", dir, "err", err)
			return
		}
	}
}

func isMountpoint(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == dir {
			return true, nil
		}
	}
	return false, sc.Err()
}

func unescapeMountinfo(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
