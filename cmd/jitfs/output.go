package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"go.opentelemetry.io/otel/attribute"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/jitfs"
	"github.com/jitfs/jitfs/output"
	"github.com/jitfs/jitfs/telemetry"
)

// defaultStagingRoot holds one staging directory per output prefix.
const defaultStagingRoot = "/var/spool/jitfs"

// outputConfig is everything needed to serve one output area.
type outputConfig struct {
	bucket, prefix string
	mountpoint     string
	stagingDir     string
	stagingSize    int64
	spaceWait      time.Duration
	workers        int
	maxBackoff     time.Duration
	uploadDelay    time.Duration
	uploadCutShort bool
	endpoint       string
	allowOther     bool
	debugFUSE      bool
	socket         string // "" = the mount's default; "none" = no hook API
	socketGroup    string
	log            *slog.Logger
	// tel exports this process's metrics; nil records none.
	tel *telemetry.Telemetry
}

// outputMount is a serving output area and what it owns.
type outputMount struct {
	cfg   outputConfig
	gcs   *gcs.Client
	area  *output.Area
	fs    *jitfs.OutputFS
	srv   *fuse.Server
	hooks *hooks.Server
	met   *telemetry.Metrics
}

// stagingDirFor is the default staging directory of an output prefix: one
// per prefix, so a restarted daemon (or a re-run task) for the same
// outputs finds what is pending.
func stagingDirFor(root, bucket, prefix string) string {
	return filepath.Join(root, url.PathEscape(bucket+"/"+strings.TrimSuffix(prefix, "/")))
}

// outputFlags are the flags `jitfs output` and `jitfs run` share.
type outputFlags struct {
	stagingDir, stagingSize *string
	spaceWait               *time.Duration
	workers                 *int
	maxBackoff              *time.Duration
	uploadDelay             *time.Duration
	uploadCutShort          *bool
}

func addOutputFlags(fl *flag.FlagSet, stagingHelp string) outputFlags {
	return outputFlags{
		stagingDir:     fl.String("staging-dir", "", stagingHelp),
		stagingSize:    fl.String("staging-size", "10GiB", "bytes of outputs staged at most; a writer past it waits for uploads, then gets ENOSPC"),
		spaceWait:      fl.Duration("staging-wait", 60*time.Second, "how long a writer waits for staging space before ENOSPC"),
		workers:        fl.Int("upload-workers", 4, "uploads running at once"),
		maxBackoff:     fl.Duration("upload-max-backoff", 30*time.Second, "longest pause between attempts of an upload that keeps failing transiently"),
		uploadCutShort: fl.Bool("upload-cut-short", false, "upload a file even if a write to it failed with ENOSPC before it was closed (marked jitfs-cut-short=true); by default it stays staged, not uploaded, so a truncated frame is never published"),
		uploadDelay:    fl.Duration("upload-delay", 100*time.Millisecond, "hold a closed file this long before uploading it, so a rename right after close (temp file -> frame) uploads it once, under its final name"),
	}
}

func (f outputFlags) apply(cfg *outputConfig) error {
	var err error
	if cfg.stagingSize, err = parseSize(*f.stagingSize); err != nil {
		return err
	}
	if *f.spaceWait < 0 {
		return fmt.Errorf("%w: --staging-wait must not be negative", errUsage)
	}
	if *f.workers < 1 {
		return fmt.Errorf("%w: --upload-workers must be at least 1", errUsage)
	}
	if *f.maxBackoff <= 0 {
		return fmt.Errorf("%w: --upload-max-backoff must be positive", errUsage)
	}
	if *f.uploadDelay < 0 {
		return fmt.Errorf("%w: --upload-delay must not be negative", errUsage)
	}
	cfg.spaceWait, cfg.workers, cfg.maxBackoff, cfg.uploadDelay = *f.spaceWait, *f.workers, *f.maxBackoff, *f.uploadDelay
	cfg.uploadCutShort = *f.uploadCutShort
	if cfg.uploadDelay == 0 {
		cfg.uploadDelay = -1 // none (the area's zero value means its default)
	}
	return nil
}

func runOutput(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("output", flag.ContinueOnError)
	fl.SetOutput(stderr)
	of := addOutputFlags(fl, "journal and staged bytes, on local disk (default "+defaultStagingRoot+"/<escaped gs://BUCKET/PREFIX>)")
	endpoint := fl.String("endpoint", "", "GCS API endpoint of an emulator (anonymous); default: STORAGE_EMULATOR_HOST, else Google Cloud Storage with Application Default Credentials")
	allowOther := fl.Bool("allow-other", true, "let every user on the node use the mount (renderers rarely run as the daemon's user)")
	debugFUSE := fl.Bool("debug-fuse", false, "log every FUSE request")
	socket := fl.String("socket", "", "Unix socket of the hook API (flush, status); default: "+hooks.DefaultSocketDir+"/<mountpoint>.sock; \"none\" disables it")
	socketGroup := fl.String("socket-group", "", "group (name or gid) allowed to use the hook socket (mode 0660)")
	stopFlush := fl.Duration("stop-flush-timeout", 60*time.Second, "on SIGINT/SIGTERM, wait this long for pending uploads before unmounting (what is left stays staged for the next start)")
	logFormat := fl.String("log-format", "text", "log format: text or json")
	logLevel := fl.String("log-level", "info", "log level: debug, info, warn or error")
	metricsAddr := fl.String("metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. :9465); OTLP export follows the standard OTEL_EXPORTER_OTLP_* variables (docs/metrics.md)")
	pos, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: want gs://BUCKET[/PREFIX] MOUNTPOINT, got %d arguments", errUsage, len(pos))
	}
	cfg := outputConfig{mountpoint: pos[1], stagingDir: *of.stagingDir, endpoint: *endpoint, allowOther: *allowOther,
		debugFUSE: *debugFUSE, socket: *socket, socketGroup: *socketGroup}
	if cfg.bucket, cfg.prefix, err = parseGSURL(pos[0]); err != nil {
		return err
	}
	if err := of.apply(&cfg); err != nil {
		return err
	}
	if *stopFlush < 0 {
		return fmt.Errorf("%w: --stop-flush-timeout must not be negative", errUsage)
	}
	if cfg.stagingDir == "" {
		cfg.stagingDir = stagingDirFor(defaultStagingRoot, cfg.bucket, cfg.prefix)
	}
	if cfg.log, err = newLogger(stderr, *logFormat, *logLevel); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if cfg.tel, err = startTelemetry(ctx, *metricsAddr, cfg.log); err != nil {
		return err
	}
	defer stopTelemetry(cfg.tel)
	m, err := startOutput(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "jitfs: output area gs://%s/%s at %s (staging %s, budget %s)\n", cfg.bucket, cfg.prefix, m.cfg.mountpoint,
		cfg.stagingDir, *of.stagingSize)
	if m.hooks != nil {
		fmt.Fprintf(stdout, "jitfs: hook API at %s (jitfs flush --wait %s)\n", m.hooks.SocketPath(), m.cfg.mountpoint)
	}
	unmounted := make(chan struct{})
	go func() { m.srv.Wait(); close(unmounted) }()
	select {
	case <-ctx.Done():
		cfg.log.Info("signal received; flushing outputs, then unmounting", "mountpoint", m.cfg.mountpoint, "timeout", *stopFlush)
		stop() // a second signal ends the daemon the default way
		fctx, cancel := context.WithTimeout(context.Background(), *stopFlush)
		res := m.area.Flush(fctx, false)
		cancel()
		logFlush(cfg.log, m, res)
	case <-unmounted:
		cfg.log.Info("unmounted externally", "mountpoint", m.cfg.mountpoint)
	}
	return m.Close()
}

func logFlush(log *slog.Logger, m *outputMount, res output.FlushResult) {
	if res.Durable {
		log.Info("every output is durable", "mountpoint", m.cfg.mountpoint)
		return
	}
	for _, f := range res.NotDurable {
		log.Warn("output not durable; it stays staged for the next daemon", "path", filepath.Join(m.cfg.mountpoint, f.Path),
			"state", f.State, "bytes", f.Size, "err", f.Error)
	}
}

// snapshot is the area's counters for the metrics' observable instruments.
func (m *outputMount) snapshot() telemetry.Snapshot {
	st := m.area.Status(^uint64(0)) // no events: only the counters
	gs := &m.gcs.Stats
	s := telemetry.Snapshot{OutputStaged: st.StagedBytes, OutputUploaded: st.DurableBytes, OutputDurable: st.DurableFiles,
		OutputFailed: int64(st.Counts["failed"]), GCSRetries: gs.Retries.Load(), GCSBytes: gs.BytesRead.Load()}
	for state, n := range st.Counts {
		if state != output.StateFailed && state != output.StateInterrupted && state != output.StateCutShort && state != output.StateOpen {
			s.OutputPending += int64(n) // queued, uploading, retrying, deleting
		}
	}
	return s
}

// startOutput checks the bucket, opens the staging directory (recovering
// what a previous daemon left), mounts the area and serves its hook API.
func startOutput(ctx context.Context, cfg outputConfig) (*outputMount, error) {
	mp, err := checkMountpoint(cfg.mountpoint, cfg.log)
	if err != nil {
		return nil, err
	}
	cfg.mountpoint = mp
	tel, met, err := operationMetrics(cfg.tel)
	if err != nil {
		return nil, err
	}
	gc, err := openBucket(ctx, gcs.Options{Bucket: cfg.bucket, Endpoint: cfg.endpoint, Metrics: met})
	if err != nil {
		return nil, err
	}
	area, err := output.New(output.Options{Metrics: met, Remote: gc, Bucket: cfg.bucket, Prefix: cfg.prefix, StagingDir: cfg.stagingDir,
		StagingBytes: cfg.stagingSize, SpaceWait: cfg.spaceWait, Workers: cfg.workers, MaxBackoff: cfg.maxBackoff, UploadDelay: cfg.uploadDelay, UploadCutShort: cfg.uploadCutShort,
		InitialBackoff: min(250*time.Millisecond, cfg.maxBackoff), Logger: cfg.log})
	if err != nil {
		gc.Close()
		return nil, err
	}
	ofs, err := jitfs.NewOutput(jitfs.OutputOptions{Area: area, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		StagingBudget: cfg.stagingSize, Logger: cfg.log})
	if err != nil {
		area.Close()
		gc.Close()
		return nil, err
	}
	srv, err := ofs.Mount(mp, jitfs.MountOptions{FsName: "gs://" + cfg.bucket + "/" + cfg.prefix, AllowOther: cfg.allowOther, Debug: cfg.debugFUSE})
	if err != nil {
		area.Close()
		gc.Close()
		return nil, err
	}
	cfg.log.Info("output area mounted", "bucket", cfg.bucket, "prefix", cfg.prefix, "mountpoint", mp,
		"staging_dir", cfg.stagingDir, "staging_budget_bytes", cfg.stagingSize)
	m := &outputMount{cfg: cfg, gcs: gc, area: area, fs: ofs, srv: srv}
	if m.met, err = telemetry.New(tel.Meters, m.snapshot, attribute.String("mountpoint", mp)); err != nil {
		m.Close()
		return nil, err
	}
	if cfg.socket != "none" {
		hs, err := hooks.NewServer(hooks.ServerOptions{Mountpoint: mp, Outputs: outputsAPI{m: m}, SocketPath: cfg.socket,
			SocketGroup: cfg.socketGroup, Logger: cfg.log})
		if err != nil {
			m.Close()
			return nil, err
		}
		m.hooks = hs
		go func() {
			if err := hs.Serve(); err != nil {
				cfg.log.Error("hook API stopped", "socket", hs.SocketPath(), "err", err)
			}
		}()
	}
	return m, nil
}

// Close unmounts and stops the uploaders; staged work stays journalled.
func (m *outputMount) Close() error {
	var errs []error
	m.met.Close()
	if m.hooks != nil {
		if err := m.hooks.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unmount(m.srv, m.cfg.mountpoint, m.cfg.log); err != nil {
		errs = append(errs, err)
	}
	if err := m.area.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := m.gcs.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// outputsAPI serves an output area through the hook API.
type outputsAPI struct{ m *outputMount }

func (o outputsAPI) abs(rel string) string { return filepath.Join(o.m.cfg.mountpoint, rel) }

func (o outputsAPI) files(in []output.FileState) []hooks.OutputFile {
	out := make([]hooks.OutputFile, 0, len(in))
	for _, f := range in {
		out = append(out, hooks.OutputFile{Path: o.abs(f.Path), Object: "gs://" + o.m.cfg.bucket + "/" + f.Object,
			State: f.State, Size: f.Size, Error: f.Error})
	}
	return out
}

func (o outputsAPI) Flush(ctx context.Context, f hooks.Flush) (hooks.FlushResult, error) {
	var cancel context.CancelFunc
	if f.Wait > 0 {
		ctx, cancel = context.WithTimeout(ctx, f.Wait)
	} else {
		ctx, cancel = context.WithCancel(ctx)
		cancel() // report only
	}
	defer cancel()
	res := o.m.area.Flush(ctx, f.RetryFailed)
	files := o.files(res.NotDurable)
	total := len(files)
	if len(files) > 1000 {
		files = files[:1000]
	}
	return hooks.FlushResult{Durable: res.Durable, NotDurable: files, NotDurableTotal: total, TimedOut: res.TimedOut && f.Wait > 0}, nil
}

func (o outputsAPI) OutputStatus(since uint64) hooks.OutputStatus {
	st := o.m.area.Status(since)
	out := hooks.OutputStatus{Bucket: st.Bucket, Prefix: st.Prefix, StagingDir: st.StagingDir, StagedBytes: st.StagedBytes,
		StagingBudgetBytes: st.StagingBudget, Files: st.Counts, DurableFiles: st.DurableFiles, DurableBytes: st.DurableBytes,
		Retries: st.Retries, PermanentFailures: st.PermanentFailures, LastDurableSeq: st.LastDurableSeq,
		NotDurable: o.files(st.NotDurable), NotDurableTotal: st.NotDurableTotal}
	for _, ev := range st.Durable {
		out.Durable = append(out.Durable, hooks.DurableOutput{Seq: ev.Seq, Path: o.abs(ev.Path),
			Object: "gs://" + st.Bucket + "/" + ev.Object, Generation: ev.Generation, Size: ev.Size,
			CRC32C: fmt.Sprintf("%08x", ev.CRC32C), ClosedAt: unixSeconds(ev.ClosedAt), DurableAt: unixSeconds(ev.DurableAt)})
	}
	return out
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
