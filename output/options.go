package output

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/telemetry"
)

// Remote is what an output area needs of the bucket. *gcs.Client fits.
type Remote interface {
	Stat(ctx context.Context, name string) (gcs.Attrs, error)
	ListPage(ctx context.Context, prefix, token string, pageSize int) (gcs.Page, error)
	ReadRange(ctx context.Context, name string, gen, off int64, p []byte) error
	Upload(ctx context.Context, name string, r io.ReaderAt, size int64, o gcs.UploadOptions) (gcs.Attrs, error)
	Delete(ctx context.Context, name string, gen int64) error
}

// Options configures an Area.
type Options struct {
	Remote Remote
	// Bucket names the bucket in messages and in the staging directory's
	// identity check.
	Bucket string
	// Prefix is the object prefix the area's root maps to ("" or "a/b/").
	Prefix string
	// StagingDir holds the journal and the staged bytes. One daemon at a
	// time; a restarted daemon given the same directory resumes its work.
	StagingDir string
	// StagingBytes bounds the staged bytes (default 10 GiB). A write that
	// would exceed it waits up to SpaceWait (default 60s) for uploads to
	// free space, then fails with ErrNoSpace.
	StagingBytes int64
	SpaceWait    time.Duration
	// Workers is how many uploads run at once (default 4).
	Workers int
	// UploadCutShort uploads a file that was closed after a write to it
	// failed with ENOSPC (staging budget or disk full), marked with the
	// object metadata jitfs-cut-short=true. Without it such a file is kept
	// staged and never uploaded as is (StateCutShort): a renderer that hit
	// ENOSPC and closed its file would otherwise publish a truncated frame.
	UploadCutShort bool
	// UploadDelay holds a closed file this long before its upload starts,
	// so that the rename a renderer makes right after closing a temporary
	// file lands first and the bytes go up once, under the final name.
	// Negative means none; zero takes the default, 100ms.
	UploadDelay time.Duration
	// InitialBackoff (default 250ms) doubles up to MaxBackoff (default
	// 30s) between attempts of an upload or delete that keeps failing
	// transiently, jittered as GCS retries are (internal/backoff).
	InitialBackoff, MaxBackoff time.Duration
	// RecentDurable is how many durable events status keeps (default 1000).
	RecentDurable int
	Logger        *slog.Logger
	// Metrics, when set, records each output's time from close to durable.
	Metrics *telemetry.Metrics
}

// Validate checks the options and fills in defaults.
func (o *Options) Validate() error {
	switch {
	case o.Remote == nil:
		return errors.New("output: no remote")
	case o.StagingDir == "":
		return errors.New("output: no staging directory")
	case o.Prefix != "" && (!strings.HasSuffix(o.Prefix, "/") || strings.HasPrefix(o.Prefix, "/") || strings.Contains(o.Prefix, "//")):
		return fmt.Errorf("output: invalid prefix %q", o.Prefix)
	case o.StagingBytes < 0 || o.SpaceWait < 0 || o.Workers < 0:
		return errors.New("output: negative limit")
	}
	if o.StagingBytes == 0 {
		o.StagingBytes = 10 << 30
	}
	if o.SpaceWait == 0 {
		o.SpaceWait = 60 * time.Second
	}
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.UploadDelay == 0 {
		o.UploadDelay = 100 * time.Millisecond
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.RecentDurable <= 0 {
		o.RecentDurable = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Errors of namespace operations; the FUSE layer maps each to an errno.
var (
	ErrNotExist  = errors.New("output: no such file or directory")
	ErrExist     = errors.New("output: file exists")
	ErrNotEmpty  = errors.New("output: directory not empty")
	ErrIsDir     = errors.New("output: is a directory")
	ErrNotDir    = errors.New("output: not a directory")
	ErrNoSpace   = errors.New("output: staging space exhausted")
	ErrInvalid   = errors.New("output: invalid argument")
	ErrNameLen   = errors.New("output: name too long for a GCS object")
	ErrClosed    = errors.New("output: area closed")
	ErrReadOnly  = errors.New("output: handle not open for writing")
	ErrCrossDir  = errors.New("output: a directory holding uploaded objects cannot be renamed in place")
	ErrRemoteGen = errors.New("output: the object changed in GCS while it was being staged")
)

// Errors of New.
var (
	ErrStagingBusy     = errors.New("output: staging directory in use by another daemon")
	ErrStagingMismatch = errors.New("output: staging directory belongs to another output area")
)
