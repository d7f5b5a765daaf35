package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jitfs/jitfs/internal/daemon"
)

// attached is `jitfs run` through the node daemon: the daemon serves the
// task's directories, this process only runs the command. Exit statuses
// are standalone's, plus exitNotDurable when the daemon died under the
// command (the scheduler retries; what the command had closed is uploaded
// by the restarted daemon).
func (r *runner) attached(socket string, req daemon.AttachRequest, argv []string, manifest string, prefetchWait time.Duration,
	flushTimeout time.Duration) int {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	setupCtx, cancelSetup := context.WithCancel(context.Background())
	defer cancelSetup()
	go func() {
		select {
		case s := <-sigs:
			r.log.Warn("signal during setup; stopping before the command runs", "signal", s)
			cancelSetup()
		case <-setupCtx.Done():
		}
	}()
	for i, s := range req.Mounts {
		req.Mounts[i].Dir = absDir(s.Dir)
	}
	for i, s := range req.Outputs {
		req.Outputs[i].Dir = absDir(s.Dir)
	}
	cl := daemon.NewNodeClient(socket)
	a, err := cl.Attach(setupCtx, req)
	if err != nil {
		fmt.Fprintf(r.stderr, "jitfs run: %v\n", err)
		return exitSetup
	}
	r.log.Info("attached to the node daemon", "socket", socket, "task", a.Reply.Task, "job", a.Reply.Job, "hook_socket", a.Reply.Socket)
	detached := false
	detach := func() {
		if detached {
			return
		}
		detached = true
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := a.Detach(ctx); err != nil {
			r.log.Warn("detach from the node daemon", "err", err)
		}
	}
	defer detach()
	var scenes, outs []string
	for _, s := range req.Mounts {
		scenes = append(scenes, s.Dir)
	}
	for _, s := range req.Outputs {
		outs = append(outs, s.Dir)
	}
	if manifest != "" {
		if err := prefetchManifest(setupCtx, r.log, a.Reply.Socket, req.Mounts[0].Dir, manifest, prefetchWait, a.Reply.Job); err != nil {
			fmt.Fprintf(r.stderr, "jitfs run: %v\n", err)
			return exitSetup
		}
	}
	if setupCtx.Err() != nil {
		fmt.Fprintln(r.stderr, "jitfs run: interrupted before the command ran")
		return exitSetup
	}
	cancelSetup()

	code, lost, err := r.runCommand(argv, sigs, commandEnv(a.Reply.Socket, scenes, outs), a.Lost)
	if err != nil {
		fmt.Fprintf(r.stderr, "jitfs run: %v\n", err)
	}
	if !lost {
		// The command may have ended on its own errors a moment before
		// the stream showed the daemon gone: ask.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		lost = !a.Attached(ctx)
		cancel()
	}
	if lost {
		fmt.Fprintf(r.stderr, "jitfs run: the node daemon at %s died while the command ran; retry the task (outputs it had closed are uploaded when the daemon restarts)\n", socket)
		return exitNotDurable
	}
	if len(outs) > 0 && !r.flushAttached(a, flushTimeout, sigs) {
		return exitNotDurable
	}
	detach()
	return code
}

// flushAttached waits for the task's outputs to be durable, as flush
// does for a standalone run.
func (r *runner) flushAttached(a *daemon.Attachment, timeout time.Duration, sigs chan os.Signal) bool {
	defer r.logSignals(sigs, "signal while flushing outputs; still flushing (what is staged survives a kill and the node daemon uploads it)")()
	wait := timeout
	if wait <= 0 {
		wait = 365 * 24 * time.Hour
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait+time.Minute)
	defer cancel()
	start := time.Now()
	rep, err := a.Flush(ctx, wait, false)
	if err != nil {
		fmt.Fprintf(r.stderr, "jitfs run: flush through the node daemon: %v\n", err)
		return false
	}
	ok := true
	for _, o := range rep.Outputs {
		if o.Durable {
			r.log.Info("outputs durable", "dir", o.Dir, "waited", time.Since(start).Round(time.Millisecond))
			continue
		}
		ok = false
		fmt.Fprintf(r.stderr, "jitfs run: %d outputs in %s are NOT durable in GCS (they stay staged in %s; the node daemon keeps uploading them):\n",
			o.NotDurableTotal, o.Dir, o.StagingDir)
		for _, f := range o.NotDurable {
			line := fmt.Sprintf("  %-11s %s (%d bytes)", f.State, f.Path, f.Size)
			if f.Error != "" {
				line += ": " + f.Error
			}
			fmt.Fprintln(r.stderr, line)
		}
	}
	return ok
}

func absDir(d string) string {
	if abs, err := filepath.Abs(d); err == nil {
		return abs
	}
	return d
}
