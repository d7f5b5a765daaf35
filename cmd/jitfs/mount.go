package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize/english"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/telemetry"

	"github.com/spf13/pflag"
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
	speculate      daemon.Speculation
	zone           gcs.ZoneOptions
	log            *slog.Logger
	// tel exports this process's metrics; nil records none.
	tel *telemetry.Telemetry
}

// mounted is a serving scene mount and the command line's configuration
// it was started from.
type mounted struct {
	*daemon.Scene
	cfg mountConfig // its mountpoint made absolute
	gcs *gcs.Client // the mount's client, for `jitfs demo`'s counts
}

// scene is the daemon's configuration for these flags.
func (c mountConfig) scene() daemon.SceneConfig {
	return daemon.SceneConfig{Bucket: c.bucket, Prefix: c.prefix, Mountpoint: c.mountpoint, CacheDir: c.cacheDir, CacheSize: c.cacheSize,
		Endpoint: c.endpoint, AttemptTimeout: c.attemptTimeout, MetadataTTL: c.metadataTTL, OpTimeout: c.opTimeout,
		Passthrough: c.passthrough, AllowOther: c.allowOther, DebugFUSE: c.debugFUSE, StrictVerify: c.strictVerify,
		TraceFile: c.traceFile, Socket: c.socket, SocketGroup: c.socketGroup, PrefetchWorkers: c.prefetchers, Speculate: c.speculate, Zone: c.zone, Log: c.log, Telemetry: c.tel}
}

func runMount(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("mount")
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
	spec := speculateFlag(fl)
	zf := zoneFlags(fl)
	metricsAddr := fl.String("metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. :9464); OTLP export follows the standard OTEL_EXPORTER_OTLP_* variables (docs/metrics.md)")
	configFlag(fl)
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	if err := applyConfig(fl, os.Getenv, stderr); err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: want gs://BUCKET[/PREFIX] MOUNTPOINT, got %s", errUsage, english.Plural(len(pos), "argument", ""))
	}
	cfg := mountConfig{mountpoint: pos[1], cacheDir: *cacheDir, endpoint: *endpoint, metadataTTL: *ttl,
		passthrough: *passthrough, allowOther: *allowOther, debugFUSE: *debugFUSE, attemptTimeout: *attemptTimeout,
		opTimeout: *opTimeout, traceFile: *traceFile, socket: *socket, socketGroup: *socketGroup, prefetchers: *prefetchers}
	if cfg.speculate, err = daemon.ParseSpeculation(*spec); err != nil {
		return fmt.Errorf("%w: --speculate: %v", errUsage, err)
	}
	if cfg.bucket, cfg.prefix, err = parseGSURL(pos[0]); err != nil {
		return err
	}
	if cfg.zone, err = zf.options(); err != nil {
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
	if m.Hooks != nil {
		fmt.Fprintf(stdout, "jitfs: hook API at %s (export %s=%s)\n", m.Hooks.SocketPath(), hooks.EnvSocket, shellQuote(m.Hooks.SocketPath()))
	}
	notifyReady(cfg.log)
	defer notifyStopping()

	unmounted := make(chan struct{})
	go func() { m.Server.Wait(); close(unmounted) }()
	select {
	case <-ctx.Done():
		cfg.log.Info("signal received; unmounting", "mountpoint", m.cfg.mountpoint)
	case <-unmounted:
		cfg.log.Info("unmounted externally", "mountpoint", m.cfg.mountpoint)
	}
	return m.Close()
}

// startMount starts a scene mount (see daemon.StartScene).
func startMount(ctx context.Context, cfg mountConfig) (*mounted, error) {
	s, err := daemon.StartScene(ctx, cfg.scene())
	if err != nil {
		return nil, err
	}
	cfg.mountpoint, cfg.log = s.Config.Mountpoint, s.Config.Log
	return &mounted{Scene: s, cfg: cfg, gcs: s.GCS}, nil
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

// buildVersion is the module version the binary was built from.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// zoneFlag is the zone cache's flags, shared by the commands that read
// from GCS.
type zoneFlag struct {
	url, tokenFile *string
	timeout        *time.Duration
}

func zoneFlags(fl *pflag.FlagSet) zoneFlag {
	return zoneFlag{
		url: fl.String("zone-cache", "", "read object data through this zone cache (http://HOST:PORT, deploy/zone-cache; docs/zone.md); "+
			"listings and stats still go to GCS, and a zone cache that is down or slow is bypassed"),
		tokenFile: fl.String("zone-token-file", "", "file holding the token the zone cache's front door asks for (its --token-file)"),
		timeout:   fl.Duration("zone-timeout", 5*time.Second, "read from GCS directly when the zone cache has not answered, or its answer has stalled, for this long"),
	}
}

func (z zoneFlag) options() (gcs.ZoneOptions, error) {
	o := gcs.ZoneOptions{URL: *z.url, Timeout: *z.timeout}
	if o.URL == "" {
		if *z.tokenFile != "" {
			return o, fmt.Errorf("%w: --zone-token-file without --zone-cache", errUsage)
		}
		return o, nil
	}
	if *z.timeout <= 0 {
		return o, fmt.Errorf("%w: --zone-timeout must be positive", errUsage)
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return o, fmt.Errorf("%w: --zone-cache %q: want http://HOST:PORT", errUsage, o.URL)
	}
	if *z.tokenFile != "" {
		b, err := os.ReadFile(*z.tokenFile)
		if err != nil {
			return o, fmt.Errorf("--zone-token-file: %w", err)
		}
		if o.Token = strings.TrimSpace(string(b)); o.Token == "" {
			return o, fmt.Errorf("--zone-token-file %s is empty", *z.tokenFile)
		}
	}
	return o, nil
}

// speculateFlag is --speculate, shared by the commands that serve mounts.
func speculateFlag(fl *pflag.FlagSet) *string {
	return fl.String("speculate", daemon.SpeculationKinds, "fetch ahead of readers that send no hooks: a comma-separated list of "+
		"siblings (the next files of a directory read in listing order), sequences (the next frames of a file sequence), "+
		"coopen (the files learned to open with the one opened), metadata (listings ahead of a walk); all, or none")
}
