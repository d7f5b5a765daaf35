package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize/english"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/output"

	"github.com/spf13/pflag"
)

// defaultStagingRoot holds one staging directory per output prefix.
const defaultStagingRoot = "/var/spool/jitfs"

// stagingDirFor is the default staging directory of an output prefix: one
// per prefix, so a restarted daemon (or a re-run task) for the same
// outputs finds what is pending.
func stagingDirFor(root, bucket, prefix string) string {
	return daemon.StagingDirFor(root, bucket, prefix)
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

func addOutputFlags(fl *pflag.FlagSet, stagingHelp string) outputFlags {
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

func (f outputFlags) apply(cfg *daemon.OutputConfig) error {
	var err error
	if cfg.StagingSize, err = parseSize(*f.stagingSize); err != nil {
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
	cfg.SpaceWait, cfg.Workers, cfg.MaxBackoff, cfg.UploadDelay = *f.spaceWait, *f.workers, *f.maxBackoff, *f.uploadDelay
	cfg.UploadCutShort = *f.uploadCutShort
	if cfg.UploadDelay == 0 {
		cfg.UploadDelay = -1 // none (the area's zero value means its default)
	}
	return nil
}

func runOutput(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("output")
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
	cfg := daemon.OutputConfig{Mountpoint: pos[1], StagingDir: *of.stagingDir, Endpoint: *endpoint, AllowOther: *allowOther,
		DebugFUSE: *debugFUSE, Socket: *socket, SocketGroup: *socketGroup}
	if cfg.Bucket, cfg.Prefix, err = parseGSURL(pos[0]); err != nil {
		return err
	}
	if err := of.apply(&cfg); err != nil {
		return err
	}
	if *stopFlush < 0 {
		return fmt.Errorf("%w: --stop-flush-timeout must not be negative", errUsage)
	}
	if cfg.StagingDir == "" {
		cfg.StagingDir = stagingDirFor(defaultStagingRoot, cfg.Bucket, cfg.Prefix)
	}
	if cfg.Log, err = newLogger(stderr, *logFormat, *logLevel); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if cfg.Telemetry, err = startTelemetry(ctx, *metricsAddr, cfg.Log); err != nil {
		return err
	}
	defer stopTelemetry(cfg.Telemetry)
	m, err := daemon.StartOutput(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "jitfs: output area gs://%s/%s at %s (staging %s, budget %s)\n", cfg.Bucket, cfg.Prefix, m.Config.Mountpoint,
		cfg.StagingDir, *of.stagingSize)
	if m.Hooks != nil {
		fmt.Fprintf(stdout, "jitfs: hook API at %s (%s)\n", m.Hooks.SocketPath(), flushHint(m.Hooks.SocketPath(), m.Config.Mountpoint))
	}
	notifyReady(cfg.Log)
	defer notifyStopping()
	unmounted := make(chan struct{})
	go func() { m.Server.Wait(); close(unmounted) }()
	select {
	case <-ctx.Done():
		cfg.Log.Info("signal received; flushing outputs, then unmounting", "mountpoint", m.Config.Mountpoint, "timeout", *stopFlush)
		stop() // a second signal ends the daemon the default way
		fctx, cancel := context.WithTimeout(context.Background(), *stopFlush)
		res := m.Area.Flush(fctx, false)
		cancel()
		logFlush(cfg.Log, m, res)
	case <-unmounted:
		cfg.Log.Info("unmounted externally", "mountpoint", m.Config.Mountpoint)
	}
	return m.Close()
}

func logFlush(log *slog.Logger, m *daemon.Output, res output.FlushResult) {
	if res.Durable {
		log.Info("every output is durable", "mountpoint", m.Config.Mountpoint)
		return
	}
	for _, f := range res.NotDurable {
		log.Warn("output not durable; it stays staged for the next daemon", "path", filepath.Join(m.Config.Mountpoint, f.Path),
			"state", f.State, "bytes", f.Size, "err", f.Error)
	}
}

// flushHint is the command that waits for this output area's outputs, as
// a shell takes it: flush finds a mount's default socket by itself, and
// must be told any other.
func flushHint(sock, mnt string) string {
	if sock == hooks.DefaultSocket(mnt) {
		return "jitfs flush --wait " + shellQuote(mnt)
	}
	return "jitfs flush --wait --socket " + shellQuote(sock) + " " + shellQuote(mnt)
}

// shellQuote quotes s for a POSIX shell when it holds anything a shell
// would split or expand, so a printed command can be pasted as it is.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
