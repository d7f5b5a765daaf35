package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"go.opentelemetry.io/otel/attribute"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/jitfs"
	"github.com/jitfs/jitfs/output"
	"github.com/jitfs/jitfs/telemetry"
)

// OutputConfig is everything needed to serve one output area.
type OutputConfig struct {
	// Bucket and Prefix ("" or ending in "/") are where closed files are
	// uploaded.
	Bucket, Prefix string
	Mountpoint     string
	// StagingDir holds the journal and the staged bytes; what a previous
	// daemon left there is recovered and uploaded.
	StagingDir  string
	StagingSize int64
	// SpaceWait, Workers, MaxBackoff and UploadDelay are as in
	// output.Options (zero for its defaults; a negative UploadDelay for
	// none).
	SpaceWait      time.Duration
	Workers        int
	MaxBackoff     time.Duration
	UploadDelay    time.Duration
	UploadCutShort bool
	// Endpoint is a GCS emulator's address ("" for Google Cloud Storage).
	Endpoint   string
	AllowOther bool
	DebugFUSE  bool
	// Socket is the hook API's Unix socket (flush, status): "" for the
	// mountpoint's default, "none" for no hook API.
	Socket      string
	SocketGroup string
	// Log receives the daemon's log lines; nil discards them.
	Log *slog.Logger
	// Telemetry is the process's metrics; nil records none.
	Telemetry *telemetry.Telemetry
}

// Output is a serving output area and what it owns. Its fields are set by
// StartOutput and read-only after.
type Output struct {
	// Config is the configuration it was started with, its Mountpoint
	// made absolute and its Log set.
	Config OutputConfig
	GCS    *gcs.Client
	Area   *output.Area
	FS     *jitfs.OutputFS
	Server *fuse.Server
	// Hooks is nil when Config.Socket is "none".
	Hooks *hooks.Server

	met    *telemetry.Metrics
	closed closeOnce
}

// StartOutput checks the bucket, opens the staging directory (recovering
// what a previous daemon left), mounts the area and serves its hook API.
func StartOutput(ctx context.Context, cfg OutputConfig) (*Output, error) {
	cfg.Log = orDiscard(cfg.Log)
	mp, err := checkMountpoint(cfg.Mountpoint, cfg.Log)
	hidden := hiddenFiles(mp)
	if err != nil {
		return nil, err
	}
	cfg.Mountpoint = mp
	mountAttr := attribute.String("mountpoint", mp)
	tel, met, err := operationMetrics(cfg.Telemetry, mountAttr)
	if err != nil {
		return nil, err
	}
	gc, err := openBucket(ctx, gcs.Options{Bucket: cfg.Bucket, Endpoint: cfg.Endpoint, Metrics: met})
	if err != nil {
		return nil, err
	}
	area, err := output.New(output.Options{Metrics: met, Remote: gc, Bucket: cfg.Bucket, Prefix: cfg.Prefix, StagingDir: cfg.StagingDir,
		StagingBytes: cfg.StagingSize, SpaceWait: cfg.SpaceWait, Workers: cfg.Workers, MaxBackoff: cfg.MaxBackoff, UploadDelay: cfg.UploadDelay, UploadCutShort: cfg.UploadCutShort,
		InitialBackoff: min(250*time.Millisecond, cfg.MaxBackoff), Logger: cfg.Log})
	if err != nil {
		gc.Close()
		return nil, err
	}
	ofs, err := jitfs.NewOutput(jitfs.OutputOptions{Area: area, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		StagingBudget: cfg.StagingSize, Logger: cfg.Log})
	if err != nil {
		area.Close()
		gc.Close()
		return nil, err
	}
	srv, err := ofs.Mount(mp, jitfs.MountOptions{FsName: "gs://" + cfg.Bucket + "/" + cfg.Prefix, AllowOther: cfg.AllowOther, Debug: cfg.DebugFUSE})
	if err != nil {
		area.Close()
		gc.Close()
		return nil, err
	}
	cfg.Log.Info("output area mounted", "bucket", cfg.Bucket, "prefix", cfg.Prefix, "mountpoint", mp,
		"staging_dir", cfg.StagingDir, "staging_budget_bytes", cfg.StagingSize)
	warnHidden(hidden, mp, cfg.Log)
	o := &Output{Config: cfg, GCS: gc, Area: area, FS: ofs, Server: srv}
	if o.met, err = telemetry.New(tel.Meters, o.snapshot, mountAttr); err != nil {
		o.Close()
		return nil, err
	}
	if cfg.Socket != "none" {
		hs, err := hooks.NewServer(hooks.ServerOptions{Mountpoint: mp, Outputs: outputsAPI{o: o}, SocketPath: cfg.Socket,
			SocketGroup: cfg.SocketGroup, Logger: cfg.Log})
		if err != nil {
			o.Close()
			return nil, err
		}
		o.Hooks = hs
		serveHooks(hs, cfg.Log)
	}
	return o, nil
}

// snapshot is the area's counters for the metrics' observable instruments.
func (o *Output) snapshot() telemetry.Snapshot {
	st := o.Area.Status(^uint64(0)) // no events: only the counters
	gs := &o.GCS.Stats
	s := telemetry.Snapshot{Outputs: true, OutputStaged: st.StagedBytes, OutputUploaded: st.DurableBytes, OutputDurable: st.DurableFiles,
		OutputFailed: int64(st.Counts["failed"]), GCSRetries: gs.Retries.Load(), GCSBytes: gs.BytesRead.Load()}
	for state, n := range st.Counts {
		if state != output.StateFailed && state != output.StateInterrupted && state != output.StateCutShort && state != output.StateOpen {
			s.OutputPending += int64(n) // queued, uploading, retrying, deleting
		}
	}
	return s
}

// Close unmounts and stops the uploaders; staged work stays journalled for
// the next daemon. Later calls return the first's result.
func (o *Output) Close() error {
	return o.closed.do(o.close)
}

func (o *Output) close() error {
	var errs []error
	o.met.Close()
	if o.Hooks != nil {
		if err := o.Hooks.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unmount(o.Server, o.Config.Mountpoint, o.Config.Log); err != nil {
		errs = append(errs, err)
	}
	if err := o.Area.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := o.GCS.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// outputsAPI serves an output area through the hook API.
type outputsAPI struct{ o *Output }

func (a outputsAPI) abs(rel string) string { return filepath.Join(a.o.Config.Mountpoint, rel) }

func (a outputsAPI) files(in []output.FileState) []hooks.OutputFile {
	out := make([]hooks.OutputFile, 0, len(in))
	for _, f := range in {
		of := hooks.OutputFile{Path: a.abs(f.Path), Object: "gs://" + a.o.Config.Bucket + "/" + f.Object,
			State: f.State, Size: f.Size, Error: f.Error}
		if !f.ClosedAt.IsZero() {
			of.ClosedAt = float64(f.ClosedAt.UnixNano()) / 1e9
		}
		out = append(out, of)
	}
	return out
}

func (a outputsAPI) Flush(ctx context.Context, f hooks.Flush) (hooks.FlushResult, error) {
	var cancel context.CancelFunc
	if f.Wait > 0 {
		ctx, cancel = context.WithTimeout(ctx, f.Wait)
	} else {
		ctx, cancel = context.WithCancel(ctx)
		cancel() // report only
	}
	defer cancel()
	res := a.o.Area.Flush(ctx, f.RetryFailed)
	files := a.files(res.NotDurable)
	total := len(files)
	if len(files) > 1000 {
		files = files[:1000]
	}
	return hooks.FlushResult{Durable: res.Durable, NotDurable: files, NotDurableTotal: total, TimedOut: res.TimedOut && f.Wait > 0}, nil
}

func (a outputsAPI) OutputStatus(since uint64) hooks.OutputStatus {
	st := a.o.Area.Status(since)
	out := hooks.OutputStatus{Bucket: st.Bucket, Prefix: st.Prefix, StagingDir: st.StagingDir, StagedBytes: st.StagedBytes,
		StagingBudgetBytes: st.StagingBudget, Files: st.Counts, DurableFiles: st.DurableFiles, DurableBytes: st.DurableBytes,
		Retries: st.Retries, PermanentFailures: st.PermanentFailures, LastDurableSeq: st.LastDurableSeq,
		NotDurable: a.files(st.NotDurable), NotDurableTotal: st.NotDurableTotal}
	for _, ev := range st.Durable {
		out.Durable = append(out.Durable, hooks.DurableOutput{Seq: ev.Seq, Path: a.abs(ev.Path),
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
