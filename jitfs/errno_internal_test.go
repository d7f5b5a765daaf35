package jitfs

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
)

// TestErrnoMapping: errnos that mean something for a file reach the
// reader; network errnos found deep in a GCS error become EIO (a reset
// connection once surfaced as ECONNRESET from open).
func TestErrnoMapping(t *testing.T) {
	f := &FS{log: slog.New(slog.DiscardHandler)}
	netErr := &net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}
	cases := []struct {
		err  error
		want syscall.Errno
	}{
		{fmt.Errorf("gcs: read tex/a.png: %w", netErr), syscall.EIO},
		{fmt.Errorf("gcs: %w", syscall.ETIMEDOUT), syscall.EIO},
		{fmt.Errorf("gcs: %w", syscall.ECONNREFUSED), syscall.EIO},
		{fmt.Errorf("gcs: %w", syscall.EPIPE), syscall.EIO},
		{fmt.Errorf("cache: write: %w", syscall.ENOSPC), syscall.ENOSPC},
		{fmt.Errorf("stat: %w", syscall.ENOENT), syscall.ENOENT},
		{fmt.Errorf("open: %w", syscall.EROFS), syscall.EROFS},
	}
	o := &OutputFS{log: slog.New(slog.DiscardHandler)}
	for _, c := range cases {
		if got := f.errno(context.Background(), c.err, "test"); got != c.want {
			t.Errorf("errno(%v) = %v, want %v", c.err, got, c.want)
		}
		if got := o.errno(c.err, "test"); got != c.want {
			t.Errorf("output errno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
