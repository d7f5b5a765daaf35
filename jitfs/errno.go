package jitfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"syscall"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/gcs"
)

// errno maps an error to the errno the caller sees, logging it once.
// Interrupted waits are not logged: the reader went away, nothing failed.
func (f *FS) errno(ctx context.Context, err error, op string, attrs ...any) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	switch {
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, errOpTimeout):
		e = syscall.EIO
		attrs = append(attrs, "op_timeout", f.opts.OpTimeout)
	case errors.As(err, &e):
		// An errno from the kernel or the cache disk passes through only
		// if it means something for a file: a network errno deep in a GCS
		// error (ECONNRESET, ETIMEDOUT, …) is an I/O error to a reader.
		if !fileErrno[e] {
			e = syscall.EIO
		}
	case errors.Is(err, gcs.ErrNotFound):
		// A pinned generation that vanished: the snapshot can no longer be
		// served, which is an I/O error, not a missing file.
		e = syscall.EIO
	case errors.Is(err, cache.ErrChecksum):
		e = syscall.EIO
	case errors.Is(err, fs.ErrClosed):
		e = syscall.EIO
	default:
		e = syscall.EIO
	}
	f.Stats.Errors.Add(1)
	// The operation's context: with tracing on, the line carries the
	// read's trace and span ids (telemetry.WithTraceIDs).
	f.log.LogAttrs(ctx, slog.LevelError, "jitfs: "+op+" failed",
		append([]slog.Attr{slog.String("errno", e.Error()), slog.Any("err", err)}, toAttrs(attrs)...)...)
	return e
}

// errOpTimeout is the cause of an operation's context running out after
// Options.OpTimeout.
var errOpTimeout = errors.New("jitfs: operation timed out waiting on GCS (--op-timeout)")

// opContext bounds one FUSE operation by Options.OpTimeout.
func (f *FS) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if f.opts.OpTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, f.opts.OpTimeout, errOpTimeout)
}

// waitErrno is the errno of a wait that ended because ctx did: the caller
// went away (EINTR, not logged), or the operation's deadline passed (EIO,
// logged).
func (f *FS) waitErrno(ctx context.Context, op string, attrs ...any) syscall.Errno {
	if err := context.Cause(ctx); errors.Is(err, errOpTimeout) {
		return f.errno(ctx, err, op, attrs...)
	}
	return syscall.EINTR
}

// withCause names the operation's deadline in err when that is what ended
// it (GCS calls report only the context's error).
func withCause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && errors.Is(c, errOpTimeout) {
		return fmt.Errorf("%w: %v", c, err)
	}
	return err
}

// fileErrno are the errnos a reader of a file may see as they came.
var fileErrno = map[syscall.Errno]bool{
	syscall.ENOENT: true, syscall.EACCES: true, syscall.EPERM: true, syscall.ENOSPC: true,
	syscall.EDQUOT: true, syscall.EROFS: true, syscall.EISDIR: true, syscall.ENOTDIR: true,
	syscall.EINVAL: true, syscall.EBADF: true, syscall.EINTR: true, syscall.ENAMETOOLONG: true,
	syscall.EFBIG: true, syscall.EEXIST: true, syscall.ENOTEMPTY: true, syscall.EIO: true,
}

func toAttrs(kv []any) []slog.Attr {
	var out []slog.Attr
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := kv[i].(string)
		out = append(out, slog.Any(k, kv[i+1]))
	}
	return out
}
