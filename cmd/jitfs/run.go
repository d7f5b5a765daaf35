package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/daemon"
)

// pairs collects repeated SRC:DIR flags.
type pairs []string

func (p *pairs) String() string     { return strings.Join(*p, ",") }
func (p *pairs) Type() string       { return "gs://B/P:DIR" }
func (p *pairs) Set(v string) error { *p = append(*p, v); return nil }

// splitPair splits gs://BUCKET/PREFIX:DIR at its last colon (so DIR
// cannot hold one; prefixes may).
func splitPair(flagName, v string) (bucket, prefix, dir string, err error) {
	i := strings.LastIndexByte(v, ':')
	if i < 0 || !strings.HasPrefix(v, "gs://") || i < len("gs://") {
		return "", "", "", fmt.Errorf("%w: --%s %q: want gs://BUCKET[/PREFIX]:DIR", errUsage, flagName, v)
	}
	src, dir := v[:i], v[i+1:]
	if dir == "" {
		return "", "", "", fmt.Errorf("%w: --%s %q names no directory", errUsage, flagName, v)
	}
	bucket, prefix, err = parseGSURL(src)
	return bucket, prefix, dir, err
}

func runRun(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("run")
	var scenes, outs pairs
	fl.Var(&scenes, "mount", "gs://BUCKET[/PREFIX]:DIR to serve read-only at DIR (repeatable; DIR is created if missing)")
	fl.Var(&outs, "output", "gs://BUCKET[/PREFIX]:DIR to serve as a writable output area at DIR (repeatable)")
	manifest := fl.String("prefetch", "", "manifest of files to prefetch before the command starts (as jitfs prefetch --manifest)")
	prefetchWait := fl.Duration("prefetch-wait", 10*time.Minute, "how long to wait for the manifest's files before starting anyway")
	job := fl.String("job", os.Getenv("JITFS_JOB_ID"), "job id for the prefetch's pins (default $JITFS_JOB_ID)")
	cacheDir := fl.String("cache-dir", "/var/cache/jitfs", "cache root; each --mount uses its own directory under it, named after its source")
	cacheSize := fl.String("cache-size", "10GiB", "cache budget of each --mount")
	of := addOutputFlags(fl, "staging root; each --output uses its own directory under it, named after its prefix (default "+defaultStagingRoot+")")
	flushTimeout := fl.Duration("flush-timeout", 30*time.Minute, "after the command ends, wait at most this long for its outputs to be durable (0: no limit)")
	endpoint := fl.String("endpoint", "", "GCS API endpoint of an emulator (anonymous); default: STORAGE_EMULATOR_HOST, else Google Cloud Storage with Application Default Credentials")
	allowOther := fl.Bool("allow-other", true, "let every user on the node use the mounts")
	logFormat := fl.String("log-format", "text", "log format: text or json")
	logLevel := fl.String("log-level", "info", "log level: debug, info, warn or error")
	metricsAddr := fl.String("metrics-addr", "", "serve the mounts' Prometheus metrics at http://ADDR/metrics while the command runs (docs/metrics.md)")
	spec := speculateFlag(fl)
	zf := zoneFlags(fl)
	nodeSocket := fl.String("daemon", os.Getenv(daemon.EnvNodeSocket), "the node daemon's socket: the task attaches to it and mounts nothing itself (default $"+daemon.EnvNodeSocket+", else "+daemon.DefaultNodeSocket+" when a daemon answers there, else standalone)")
	// Everything after the first non-flag argument (or --) is the command
	// and its own arguments, which jitfs must not parse.
	fl.SetInterspersed(false)
	argv, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	if len(argv) == 0 {
		return fmt.Errorf("%w: no command (usage: jitfs run [flags] -- CMD [ARGS])", errUsage)
	}
	if *manifest != "" && len(scenes) == 0 {
		return fmt.Errorf("%w: --prefetch needs a --mount", errUsage)
	}
	if len(scenes)+len(outs) == 0 {
		return fmt.Errorf("%w: give at least one --mount or --output", errUsage)
	}
	if *flushTimeout < 0 || *prefetchWait < 0 {
		return fmt.Errorf("%w: timeouts must not be negative", errUsage)
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	csize, err := parseSize(*cacheSize)
	if err != nil {
		return err
	}
	sp, err := daemon.ParseSpeculation(*spec)
	if err != nil {
		return fmt.Errorf("%w: --speculate: %v", errUsage, err)
	}
	zone, err := zf.options()
	if err != nil {
		return err
	}
	tel, err := startTelemetry(context.Background(), *metricsAddr, log)
	if err != nil {
		return err
	}
	defer stopTelemetry(tel)
	var mcfgs []mountConfig
	seen := map[string]string{}
	dirOK := func(flagName, v, dir string) error {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("%w: --%s %q: %v", errUsage, flagName, v, err)
		}
		if prev, ok := seen[abs]; ok {
			return fmt.Errorf("%w: %s is given twice (%s and %s)", errUsage, abs, prev, v)
		}
		seen[abs] = v
		return nil
	}
	for _, v := range scenes {
		b, p, dir, err := splitPair("mount", v)
		if err != nil {
			return err
		}
		if err := dirOK("mount", v, dir); err != nil {
			return err
		}
		mcfgs = append(mcfgs, mountConfig{bucket: b, prefix: p, mountpoint: dir, cacheSize: csize, endpoint: *endpoint,
			cacheDir:    filepath.Join(*cacheDir, strings.ReplaceAll(strings.TrimSuffix(b+"/"+p, "/"), "/", "%2F")),
			passthrough: true, allowOther: *allowOther, attemptTimeout: 60 * time.Second, opTimeout: defaultOpTimeout, prefetchers: 32, speculate: sp, zone: zone, log: log, tel: tel})
	}
	if *manifest != "" {
		// A missing or malformed manifest is the job's mistake: said
		// before anything is mounted, as a usage error, rather than as a
		// setup failure once the mounts are up.
		mnt, err := filepath.Abs(mcfgs[0].mountpoint)
		if err != nil {
			return fmt.Errorf("%w: --mount: %v", errUsage, err)
		}
		if _, err := manifestItems(*manifest, mnt); err != nil {
			return fmt.Errorf("--prefetch: %w", err)
		}
	}
	var ocfgs []daemon.OutputConfig
	for _, v := range outs {
		b, p, dir, err := splitPair("output", v)
		if err != nil {
			return err
		}
		if err := dirOK("output", v, dir); err != nil {
			return err
		}
		c := daemon.OutputConfig{Bucket: b, Prefix: p, Mountpoint: dir, Endpoint: *endpoint, AllowOther: *allowOther, Log: log, Telemetry: tel}
		if err := of.apply(&c); err != nil {
			return err
		}
		root := *of.stagingDir
		if root == "" {
			root = defaultStagingRoot
		}
		c.StagingDir = stagingDirFor(root, b, p)
		ocfgs = append(ocfgs, c)
	}
	r := &runner{log: log, stderr: stderr}
	explicit := *nodeSocket != ""
	sock := *nodeSocket
	if !explicit {
		sock = daemon.DefaultNodeSocket
	}
	if explicit || daemon.NodeAnswers(sock, 2*time.Second) {
		req := daemon.AttachRequest{Job: *job, PID: os.Getpid(), Name: os.Getenv("NOMAD_ALLOC_ID")}
		for _, c := range mcfgs {
			req.Mounts = append(req.Mounts, daemon.Source{Bucket: c.bucket, Prefix: c.prefix, Dir: c.mountpoint})
		}
		for _, c := range ocfgs {
			req.Outputs = append(req.Outputs, daemon.Source{Bucket: c.Bucket, Prefix: c.Prefix, Dir: c.Mountpoint})
		}
		code := r.attached(sock, req, argv, *manifest, *prefetchWait, *flushTimeout)
		if code == 0 {
			return nil
		}
		return &exitError{code: code}
	}
	code := r.run(mcfgs, ocfgs, argv, *manifest, *prefetchWait, *job, *flushTimeout)
	if code == 0 {
		return nil
	}
	return &exitError{code: code}
}

// runner is one `jitfs run`: its mounts and its command.
type runner struct {
	log    *slog.Logger
	stderr io.Writer
	scenes []*mounted
	outs   []*daemon.Output
}

// run returns the exit status: the command's (128+N when signal N killed
// it), exitNotDurable when outputs are not durable, exitSetup when the
// mounts could not be set up, exitNoCommand when the command cannot start.
func (r *runner) run(mcfgs []mountConfig, ocfgs []daemon.OutputConfig, argv []string, manifest string, prefetchWait time.Duration,
	job string, flushTimeout time.Duration) int {
	// Signals are caught from the start: one arriving while mounting ends
	// the setup; later ones go to the command.
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
	defer r.unmountAll()
	if err := r.setup(setupCtx, mcfgs, ocfgs, manifest, prefetchWait, job); err != nil {
		fmt.Fprintf(r.stderr, "jitfs run: %v\n", err)
		if errors.Is(err, cache.ErrInUse) {
			fmt.Fprintf(r.stderr, "jitfs run: to run several tasks on one node, run one `jitfs daemon` per node (deploy/jitfs-daemon.service): every `jitfs run` attaches to it and shares its cache (docs/node.md)\n")
		}
		return exitSetup
	}
	if setupCtx.Err() != nil {
		fmt.Fprintln(r.stderr, "jitfs run: interrupted before the command ran")
		return exitSetup
	}
	cancelSetup()

	code, err := r.command(argv, sigs)
	if err != nil {
		fmt.Fprintf(r.stderr, "jitfs run: %v\n", err)
	}
	if !r.flush(flushTimeout, sigs) {
		return exitNotDurable
	}
	return code
}

func (r *runner) setup(ctx context.Context, mcfgs []mountConfig, ocfgs []daemon.OutputConfig, manifest string, wait time.Duration, job string) error {
	for _, c := range mcfgs {
		if err := os.MkdirAll(c.mountpoint, 0o755); err != nil {
			return fmt.Errorf("mountpoint: %w", err)
		}
		m, err := startMount(ctx, c)
		if err != nil {
			return err
		}
		r.scenes = append(r.scenes, m)
		r.log.Info("scene mounted", "source", "gs://"+c.bucket+"/"+c.prefix, "dir", m.cfg.mountpoint)
	}
	for _, c := range ocfgs {
		if err := os.MkdirAll(c.Mountpoint, 0o755); err != nil {
			return fmt.Errorf("mountpoint: %w", err)
		}
		m, err := daemon.StartOutput(ctx, c)
		if err != nil {
			return err
		}
		r.outs = append(r.outs, m)
	}
	if manifest == "" {
		return nil
	}
	if len(r.scenes) == 0 || r.scenes[0].Hooks == nil {
		return fmt.Errorf("%w: --prefetch needs a --mount", errUsage)
	}
	return prefetchManifest(ctx, r.log, r.scenes[0].Hooks.SocketPath(), r.scenes[0].cfg.mountpoint, manifest, wait, job)
}

// prefetchManifest asks the hook API at socket for the manifest's files
// and waits for them, up to wait; a failing prefetch is logged, and the
// command starts anyway and reads on demand. The manifest's relative paths
// are under mount, the first --mount's directory.
func prefetchManifest(ctx context.Context, log *slog.Logger, socket, mount, manifest string, wait time.Duration, job string) error {
	items, err := manifestItems(manifest, mount)
	if err != nil {
		return fmt.Errorf("prefetch manifest: %w", err)
	}
	cl := hooks.NewClient(socket, wait+30*time.Second)
	defer cl.Close()
	// The daemon caps one wait; repeat until the files are in or the
	// run's own wait is over.
	deadline := time.Now().Add(wait)
	for {
		left := time.Until(deadline)
		req := hooks.PrefetchRequest{Job: hooks.JobInfo{Job: hooks.Job{ID: job, PID: os.Getpid()}}, Scope: hooks.ScopeJob,
			WaitMS: max(min(left, hooks.DefaultMaxWait).Milliseconds(), 0), Items: items}
		rep, err := cl.Prefetch(ctx, req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Warn("prefetch failed; the command starts anyway and reads on demand", "err", err)
			return nil
		}
		if !rep.TimedOut || time.Until(deadline) <= 0 {
			lvl := slog.LevelInfo
			if rep.TimedOut || len(rep.Missing)+len(rep.Failed)+len(rep.Unmanaged) > 0 {
				lvl = slog.LevelWarn
			}
			log.Log(ctx, lvl, "prefetch done", "resident", rep.Resident, "queued", rep.Queued, "missing", len(rep.Missing),
				"failed", len(rep.Failed), "outside_mounts", len(rep.Unmanaged), "timed_out", rep.TimedOut)
			return nil
		}
	}
}

// command runs argv in its own process group, forwarding signals to the
// group, and returns its exit status.
func (r *runner) command(argv []string, sigs chan os.Signal) (int, error) {
	var scenes []string
	for _, m := range r.scenes {
		scenes = append(scenes, m.cfg.mountpoint)
	}
	var outs []string
	for _, m := range r.outs {
		outs = append(outs, m.Config.Mountpoint)
	}
	socket := ""
	if len(r.scenes) > 0 && r.scenes[0].Hooks != nil {
		socket = r.scenes[0].Hooks.SocketPath()
	}
	code, _, err := r.runCommand(argv, sigs, commandEnv(socket, scenes, outs), nil)
	return code, err
}

// commandEnv is the environment a render command runs with: the hook
// socket and the task's directories.
func commandEnv(socket string, scenes, outs []string) []string {
	env := os.Environ()
	if socket != "" {
		env = append(env, hooks.EnvSocket+"="+socket)
	}
	return append(env, "JITFS_MOUNTS="+strings.Join(scenes, ":"), "JITFS_OUTPUTS="+strings.Join(outs, ":"))
}

// runCommand runs argv with env. When lost closes (the node daemon serving
// the task's directories died), the command's process group is sent
// SIGTERM: its files are gone, and the task is better retried than left
// to fail file by file. wasLost reports that it happened.
func (r *runner) runCommand(argv []string, sigs chan os.Signal, env []string, lost <-chan struct{}) (code int, wasLost bool, err error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return exitNoCommand, false, fmt.Errorf("command %q: %w", argv[0], err)
	}
	cmd := &exec.Cmd{Path: path, Args: argv, Env: env, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}}
	type result struct {
		state *os.ProcessState
		err   error
	}
	started := make(chan error, 1)
	done := make(chan result, 1)
	go func() {
		// Pdeathsig fires when the thread that forked exits, not the
		// process: keep this goroutine on its thread until the command ends.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		done <- result{cmd.ProcessState, err}
	}()
	if err := <-started; err != nil {
		return exitNoCommand, false, fmt.Errorf("start %s: %w", argv[0], err)
	}
	pgid := cmd.Process.Pid
	r.log.Info("command started", "pid", pgid, "argv", argv)
	for {
		select {
		case s := <-sigs:
			r.log.Info("forwarding signal to the command's process group", "signal", s, "pgid", pgid)
			syscall.Kill(-pgid, s.(syscall.Signal))
		case <-lost:
			lost, wasLost = nil, true
			r.log.Error("the node daemon serving this task's directories is gone; stopping the command (exit 75: retry the task)", "pgid", pgid)
			syscall.Kill(-pgid, syscall.SIGTERM)
		case res := <-done:
			ws, _ := res.state.Sys().(syscall.WaitStatus)
			switch {
			case ws.Signaled():
				r.log.Warn("command killed by a signal", "signal", ws.Signal())
				return 128 + int(ws.Signal()), wasLost, nil
			default:
				code := res.state.ExitCode()
				r.log.Info("command exited", "code", code)
				return code, wasLost, nil
			}
		}
	}
}

// flush waits for every output area's files to be durable and reports
// the ones that are not. Signals meanwhile are logged, not obeyed: what
// is staged survives a SIGKILL anyway.
func (r *runner) flush(timeout time.Duration, sigs chan os.Signal) bool {
	ctx := context.Background()
	var cancel context.CancelFunc = func() {}
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	defer r.logSignals(sigs, "signal while flushing outputs; still flushing (what is staged survives a kill and uploads at the next start)")()
	ok := true
	for _, m := range r.outs {
		start := time.Now()
		res := m.Area.Flush(ctx, false)
		if res.Durable {
			r.log.Info("outputs durable", "dir", m.Config.Mountpoint, "waited", time.Since(start).Round(time.Millisecond))
			continue
		}
		ok = false
		fmt.Fprintf(r.stderr, "jitfs run: %d outputs in %s are NOT durable in GCS (they stay staged in %s):\n",
			len(res.NotDurable), m.Config.Mountpoint, m.Config.StagingDir)
		for _, f := range res.NotDurable {
			line := fmt.Sprintf("  %-11s %s (%d bytes)", f.State, filepath.Join(m.Config.Mountpoint, f.Path), f.Size)
			if f.Error != "" {
				line += ": " + f.Error
			}
			fmt.Fprintln(r.stderr, line)
		}
	}
	return ok
}

// logSignals logs the signals that arrive, and obeys none, until the
// returned stop is called.
func (r *runner) logSignals(sigs chan os.Signal, msg string) (stop func()) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				r.log.Warn(msg, "signal", s)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done) }
}

func (r *runner) unmountAll() {
	for _, m := range r.outs {
		if err := m.Close(); err != nil {
			r.log.Error("unmount output area", "dir", m.Config.Mountpoint, "err", err)
		}
	}
	for _, m := range r.scenes {
		if err := m.Close(); err != nil {
			r.log.Error("unmount", "dir", m.cfg.mountpoint, "err", err)
		}
	}
}
