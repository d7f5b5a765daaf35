package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	sdaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/jitfs/jitfs/internal/daemon"
)

// runDaemon is `jitfs daemon`: the node agent. It serves every task's
// mounts and output areas from one process over one cache.
func runDaemon(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("daemon")
	cacheDir := fl.String("cache-dir", "/var/cache/jitfs", "the node's local-SSD cache: one byte budget and one eviction order across every job")
	cacheSize := fl.String("cache-size", "10GiB", "byte budget of the cache (e.g. 300GiB)")
	of := addOutputFlags(fl, "staging root: each output prefix gets its own directory under it, so a retried task resumes what its predecessor staged (default "+defaultStagingRoot+")")
	socket := fl.String("socket", daemon.DefaultNodeSocket, "control socket that jitfs run attaches through; each task's hook socket is made beside it")
	socketGroup := fl.String("socket-group", "", "group (name or gid) allowed to use the control and hook sockets (mode 0660)")
	endpoint := fl.String("endpoint", "", "GCS API endpoint of an emulator (anonymous); default: STORAGE_EMULATOR_HOST, else Google Cloud Storage with Application Default Credentials")
	jobGrace := fl.Duration("job-grace", daemon.DefaultJobGrace, "how long a job's snapshot and pins outlive its last task on the node")
	passthrough := fl.Bool("passthrough", true, "let the kernel read fully cached files directly (FUSE passthrough, kernel >= 6.9)")
	allowOther := fl.Bool("allow-other", true, "let every user on the node use the task mounts")
	attemptTimeout := fl.Duration("gcs-attempt-timeout", 60*time.Second, "abandon and retry one GCS request attempt after this long")
	opTimeout := fl.Duration("op-timeout", defaultOpTimeout, "fail a lookup, directory read or file read with EIO after it has waited this long on GCS (0: no bound)")
	verify := fl.String("verify", "streaming", "streaming or strict (see jitfs mount --help and docs/integrity.md)")
	prefetchers := fl.Int("prefetch-workers", 32, "files each job's prefetch engine fetches at once")
	spec := speculateFlag(fl)
	zf := zoneFlags(fl)
	learnPrefix := fl.String("learn-prefix", "", "gs://BUCKET/PREFIX where jobs' frame and co-open learning is shared with the other nodes, so a node's first frame of a job is prefetched from what others saw (empty: not shared; docs/learn-shared.md)")
	metricsAddr := fl.String("metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (empty: none)")
	nf := addNomadFlags(fl)
	logFormat := fl.String("log-format", "text", "log format: text or json")
	logLevel := fl.String("log-level", "info", "log level: debug, info, warn or error")
	configFlag(fl)
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	if err := applyConfig(fl, os.Getenv, stderr); err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: jitfs daemon takes no arguments (got %q)", errUsage, pos)
	}
	csize, err := parseSize(*cacheSize)
	if err != nil {
		return err
	}
	if *jobGrace <= 0 {
		return fmt.Errorf("%w: --job-grace must be positive", errUsage)
	}
	var strict bool
	switch *verify {
	case "streaming":
	case "strict":
		strict = true
	default:
		return fmt.Errorf("%w: --verify %q: want streaming or strict", errUsage, *verify)
	}
	sp, err := daemon.ParseSpeculation(*spec)
	if err != nil {
		return fmt.Errorf("%w: --speculate: %v", errUsage, err)
	}
	zone, err := zf.options()
	if err != nil {
		return err
	}
	var learnBucket, learnPfx string
	if *learnPrefix != "" {
		if learnBucket, learnPfx, err = parseGSURL(*learnPrefix); err != nil {
			return fmt.Errorf("--learn-prefix: %w", err)
		}
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	var ocfg daemon.OutputConfig
	if err := of.apply(&ocfg); err != nil {
		return err
	}
	var acfg daemon.AffinityConfig
	if err := nf.apply(&acfg); err != nil {
		return err
	}
	staging := *of.stagingDir
	if staging == "" {
		staging = defaultStagingRoot
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tel, err := startTelemetry(ctx, *metricsAddr, log)
	if err != nil {
		return err
	}
	defer stopTelemetry(tel)
	n, err := daemon.StartNode(ctx, daemon.NodeConfig{CacheDir: *cacheDir, CacheSize: csize, StagingDir: staging, StagingSize: ocfg.StagingSize,
		Socket: *socket, SocketGroup: *socketGroup, Endpoint: *endpoint, AttemptTimeout: *attemptTimeout, OpTimeout: *opTimeout,
		JobGrace: *jobGrace, Passthrough: *passthrough, AllowOther: *allowOther, StrictVerify: strict, PrefetchWorkers: *prefetchers,
		Speculate: sp, Zone: zone, LearnBucket: learnBucket, LearnPrefix: learnPfx, Output: ocfg, Affinity: acfg, Log: log, Telemetry: tel})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "jitfs: node daemon serving at %s (cache %s, budget %s; staging %s)\n", n.Socket(), *cacheDir, *cacheSize, staging)
	notifyReady(log)
	<-ctx.Done()
	log.Info("signal received; detaching every task and stopping")
	notifyStopping()
	return n.Close()
}

// notifyReady tells systemd (Type=notify units) that the daemon serves:
// its mount is up and its sockets answer, so what depends on it starts
// only now, and agents need not wait for a log line. Outside systemd
// ($NOTIFY_SOCKET unset) it does nothing.
func notifyReady(log *slog.Logger) {
	if _, err := sdaemon.SdNotify(false, sdaemon.SdNotifyReady); err != nil {
		log.Warn("sd_notify READY failed", "err", err)
	}
}

// notifyStopping tells systemd the daemon is stopping (unmounting,
// flushing), so a stop that takes a while is not taken for a hang.
func notifyStopping() { _, _ = sdaemon.SdNotify(false, sdaemon.SdNotifyStopping) }
