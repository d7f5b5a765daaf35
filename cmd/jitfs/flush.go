package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dustin/go-humanize/english"

	"github.com/jitfs/jitfs/hooks"
)

// Exit statuses of jitfs flush and jitfs run (docs/outputs.md).
const (
	// exitNotDurable: some outputs are not durable in GCS (EX_TEMPFAIL:
	// they are staged, and a later flush or daemon may still upload them).
	exitNotDurable = 75
	// exitSetup: jitfs run could not set up its mounts, so the command
	// did not run; or no output area answers jitfs flush
	// (EX_UNAVAILABLE).
	exitSetup = 69
	// exitNoCommand: the command could not be started (as shells report).
	exitNoCommand = 127
)

func runFlush(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("flush")
	wait := fl.Bool("wait", false, "wait until every output is durable (or cannot progress, or --timeout)")
	timeout := fl.Duration("timeout", 0, "with --wait: give up after this long (0: no limit)")
	retry := fl.Bool("retry-failed", false, "retry uploads that failed permanently (after fixing the cause) before waiting")
	socket := fl.String("socket", "", "hook API socket (default: the socket of the output mount holding MOUNT, else $JITFS_SOCKET)")
	asJSON := fl.Bool("json", false, "print the daemon's reply as JSON")
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want the output area's MOUNT directory, got %s", errUsage, english.Plural(len(pos), "argument", ""))
	}
	if *timeout < 0 {
		return fmt.Errorf("%w: --timeout must not be negative", errUsage)
	}
	sock := *socket
	if sock == "" {
		if sock, err = outputSocket(pos[0]); err != nil {
			return &exitError{code: exitSetup, err: err}
		}
	}
	sigCtx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx := sigCtx
	if *wait && *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	cl := hooks.NewClient(sock, 30*time.Second)
	defer cl.Close()
	rep, err := flushWatched(ctx, cl, *wait, *retry, *wait && !*asJSON, stderr)
	if err != nil {
		return flushError(err, sock)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		printFlush(stdout, rep)
	}
	if !rep.Durable {
		if sigCtx.Err() != nil {
			// Interrupted: what is pending is printed above; say why
			// the wait ended, as --timeout's report does.
			return &exitError{code: exitNotDurable, err: fmt.Errorf("interrupted after %s: %d outputs not durable yet stay staged and go on uploading",
				time.Duration(rep.WaitedMS*int64(time.Millisecond)).Round(time.Second), rep.NotDurableTotal)}
		}
		return &exitError{code: exitNotDurable}
	}
	return nil
}

// flushError gives a failed flush its exit status: 69 when no output area
// answers on sock (nothing listens there, or what does is a scene mount),
// 75 when the wait was cut short before the daemon could say what is
// pending, 1 for anything else.
func flushError(err error, sock string) error {
	var apiErr *hooks.APIError
	var opErr *net.OpError
	switch {
	case errors.As(err, &apiErr) && apiErr.Reason == "no_outputs":
		return &exitError{code: exitSetup, err: errors.New(apiErr.Message)}
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return &exitError{code: exitSetup, err: fmt.Errorf("no output area answers on %s: %v", sock, opErr.Err)}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &exitError{code: exitNotDurable, err: err}
	}
	return err
}

// flushOnce asks the daemon, repeating while outputs are still moving and
// ctx allows: the daemon holds one request at most its own wait limit.
func flushOnce(ctx context.Context, cl *hooks.Client, wait, retry bool) (hooks.FlushReply, error) {
	var total time.Duration
	for {
		req := hooks.FlushRequest{RetryFailed: retry}
		if wait {
			req.WaitMS = hooks.DefaultMaxWait.Milliseconds()
			if dl, ok := ctx.Deadline(); ok {
				// The daemon answers a moment before our own deadline, so
				// its reply (what is not durable) arrives before we give up.
				left := time.Until(dl)
				left -= min(left/10, flushReplyMargin)
				req.WaitMS = max(min(req.WaitMS, left.Milliseconds()), 1)
			}
		}
		start := time.Now()
		rep, err := cl.Flush(ctx, req)
		total += time.Since(start)
		if err != nil {
			if ctx.Err() != nil {
				// --timeout ran out or an interrupt came mid-request: not
				// durable is the answer (exit 75), so ask once more without
				// waiting for what is left rather than failing the command.
				qctx, cancel := context.WithTimeout(context.Background(), flushReplyMargin*10)
				rep, qerr := cl.Flush(qctx, hooks.FlushRequest{})
				cancel()
				if qerr == nil {
					rep.WaitedMS = total.Milliseconds()
					rep.TimedOut = !rep.Durable
					return rep, nil
				}
			}
			if ctx.Err() != nil {
				return hooks.FlushReply{}, fmt.Errorf("gave up after %s, before the daemon said what is not durable: %w", total.Round(time.Second), ctx.Err())
			}
			return hooks.FlushReply{}, err
		}
		retry = false
		if rep.Durable || !wait || !rep.TimedOut || ctx.Err() != nil {
			rep.WaitedMS = total.Milliseconds()
			return rep, nil
		}
	}
}

// flushReplyMargin is how long before --timeout the last wait ends, at
// most (a tenth of what is left when that is less).
const flushReplyMargin = time.Second

func printFlush(w io.Writer, rep hooks.FlushReply) {
	if rep.Durable {
		fmt.Fprintf(w, "jitfs flush: every output is durable in GCS (waited %d ms)\n", rep.WaitedMS)
		return
	}
	fmt.Fprintf(w, "jitfs flush: %d outputs are NOT durable (waited %d ms):\n", rep.NotDurableTotal, rep.WaitedMS)
	for _, f := range rep.NotDurable {
		line := fmt.Sprintf("  %-11s %s (%d bytes)", f.State, f.Path, f.Size)
		if f.Error != "" {
			line += ": " + f.Error
		}
		fmt.Fprintln(w, line)
	}
	if rep.NotDurableTotal > len(rep.NotDurable) {
		fmt.Fprintf(w, "  ... and %d more\n", rep.NotDurableTotal-len(rep.NotDurable))
	}
}

// outputSocket finds the socket of the daemon serving the output area at
// dir. The mount's own default socket comes first: inside `jitfs run`,
// $JITFS_SOCKET names the scene mount's daemon, not the output area's.
func outputSocket(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	for d := abs; ; d = filepath.Dir(d) {
		s := hooks.DefaultSocket(d)
		if fi, err := os.Stat(s); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return s, nil
		}
		if d == "/" {
			break
		}
	}
	if s := os.Getenv(hooks.EnvSocket); s != "" {
		return s, nil
	}
	return "", fmt.Errorf("%w for %s (is it a jitfs output area? give --socket)", hooks.ErrNoDaemon, abs)
}
