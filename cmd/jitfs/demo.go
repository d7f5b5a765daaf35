//go:build !production

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jitfs/jitfs/bench"
	"github.com/jitfs/jitfs/internal/emulator"
	"github.com/jitfs/jitfs/internal/scene"
	"github.com/jitfs/jitfs/internal/wan"
)

const (
	demoBucket = "jitfs-demo"
	demoScene  = "shots/sh010/sh010.scene"
	// demoFirstFiller is the first generated shot, after the sample's
	// sh010 and sh020.
	demoFirstFiller = 30
)

// demoTiming is one row of the demo's side-by-side table: frame 1001 read
// one way, timed from when the node got the job.
type demoTiming struct {
	name        string
	start, done time.Duration
	linkBytes   int64
}

func runDemo(args []string, stdout, stderr io.Writer) (err error) {
	fl := newFlags("demo")
	keep := fl.Bool("keep", false, "keep the temporary cache directory")
	logLevel := fl.String("log-level", "warn", "log level for the daemon's messages")
	rtt := fl.Duration("rtt", 20*time.Millisecond, "round trip time of the emulated link to GCS")
	bw := fl.String("bandwidth", "100MB/s", "aggregate bandwidth of the emulated link (e.g. 100MB/s, 1Gbit)")
	noWAN := fl.Bool("no-wan", false, "read straight from the in-process emulator, without the emulated link (needs no root; the times then mean nothing, only the bytes do)")
	showSize := fl.String("show-size", "256MiB", "size of the show in the bucket: the 6 MiB sample, then generated shots standing in for the rest of a show (0: the sample only); the emulator holds it in memory and the pre-sync copies it to a temporary directory, so the demo needs about three times this much memory and this much disk")
	if _, err := parseArgs(fl, args); err != nil {
		return err
	}
	var showBytes int64
	if s := strings.TrimSpace(*showSize); s != "0" {
		if showBytes, err = parseSize(s); err != nil {
			return err
		}
	}
	if err := demoMemory(showBytes); err != nil {
		return err
	}
	link := bench.Link{RTT: *rtt}
	if link.Bandwidth, err = wan.ParseBandwidth(*bw); err != nil {
		return fmt.Errorf("%w: --bandwidth: %v", errUsage, err)
	}
	if *rtt < 0 {
		return fmt.Errorf("%w: --rtt must not be negative", errUsage)
	}
	log, err := newLogger(stderr, "text", *logLevel)
	if err != nil {
		return err
	}
	// The demo mounts in this process: a signal that killed it would leave
	// a dead mount, its socket and the temporary directory behind. SIGINT
	// and SIGTERM, and a closed stdout (demo | head), instead end it at the
	// next step, through the deferred unmount and removal.
	ctx, stopDemo, release := demoContext()
	defer release()
	stdout = demoWriter{stdout, stopDemo}
	defer func() {
		if e := demoStopped(ctx); e != nil {
			err = e
		}
	}()
	noLink := demoWAN(*noWAN)
	emu, err := emulator.Start(emulator.Options{Bucket: demoBucket, Prefix: "show/", Objects: scene.FS()})
	if err != nil {
		return err
	}
	defer emu.Stop()
	var sample, filler demoShow
	if err := sample.walk(scene.FS(), nil); err != nil {
		return err
	}
	// The filler goes in one object at a time: the emulator's Objects
	// would read the whole show before storing it, twice its memory.
	fill := bench.Filler(max(showBytes-sample.bytes, 0), demoFirstFiller)
	if showBytes > sample.bytes {
		// Generating a large show takes seconds: say what the wait is.
		fmt.Fprintf(stdout, "jitfs demo: loading a %s show into the GCS emulator\n", size(showBytes))
	} else if showBytes > 0 {
		fmt.Fprintf(stdout, "jitfs demo: --show-size %s is less than the %s sample: the show is the sample alone\n", size(showBytes), size(sample.bytes))
	}
	err = filler.walk(fill, func(p string) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b, err := fs.ReadFile(fill, p)
		if err == nil {
			emu.Put(demoBucket, "show/"+p, b)
		}
		return err
	})
	if err != nil {
		return err
	}
	presyncObjects, presyncBytes := sample.objects+filler.objects, sample.bytes+filler.bytes
	// jitfs and the pre-sync dial addr: the link when there is one.
	addr := emu.Addr()
	if noLink == nil {
		var stopLink func() error
		if addr, stopLink, err = emulatedWAN(link)(emu.Addr()); err != nil {
			addr, noLink = emu.Addr(), fmt.Errorf("the emulated link could not be built: %w", err)
		} else {
			defer stopLink()
		}
	}

	tmp, err := os.MkdirTemp("", "jitfs-demo-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(tmp)
	}
	mnt, cacheDir := filepath.Join(tmp, "mnt"), filepath.Join(tmp, "cache")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	cfg := mountConfig{bucket: demoBucket, prefix: "show/", mountpoint: mnt, cacheDir: cacheDir,
		cacheSize: 1 << 30, endpoint: addr, passthrough: true, log: log}

	fmt.Fprintf(stdout, "jitfs demo: GCS emulator at http://%s holds gs://%s/show/ (%d objects, %s)\n",
		emu.Addr(), demoBucket, presyncObjects, size(presyncBytes))
	if filler.objects > 0 {
		fmt.Fprintf(stdout, "the sample's shots sh010 and sh020 (%d objects, %s), and from sh%03d on generated filler standing in for the rest of a show (%d objects, %s)\n",
			sample.objects, size(sample.bytes), demoFirstFiller, filler.objects, size(filler.bytes))
	}
	if noLink == nil {
		fmt.Fprintf(stdout, "jitfs reaches it through an emulated WAN at %s: %s\n", addr, wan.Link(link))
	}
	fmt.Fprintf(stdout, "mounting at %s with cache %s\n\n", mnt, cacheDir)
	if noLink != nil {
		fmt.Fprintf(stdout, "no emulated WAN (%v): jitfs reads the emulator in-process, so the times below mean nothing; the bytes do.\n\n", noLink)
	}

	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\tfiles read\tabsent probes\tbytes read\tGCS data requests\tbytes over the link\ttime\t")
	type step struct {
		name    string
		frame   int
		restart bool
		timing  string // the side-by-side row this step's frame is, if any
	}
	steps := []step{
		{"sh010 frame 1001, cold cache", 1001, false, "jitfs cold"},
		{"sh010 frame 1002, shared deps warm", 1002, false, ""},
		{"sh010 frame 1001 again, same mount", 1001, false, "jitfs warm"},
		{"daemon restarted on the same cache", 0, true, ""},
		{"sh010 frame 1001 after restart", 1001, false, ""},
	}
	var total int64
	var timings []demoTiming
	if ctx.Err() != nil { // stopped while loading the show, or stdout went
		return ctx.Err()
	}
	// With jitfs a frame can start as soon as the mount serves; on a mount
	// that already serves, at once. wait is what the next frame waited.
	mountStart := time.Now()
	m, err := startMount(ctx, cfg)
	if err != nil {
		return err
	}
	wait := time.Since(mountStart)
	defer func() { m.Close() }()
	for _, s := range steps {
		// A frame reads this process's own mount, so it is not cut short:
		// an interrupt takes effect between steps.
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.restart {
			if err := m.Close(); err != nil {
				return err
			}
			start := time.Now()
			if m, err = startMount(ctx, cfg); err != nil {
				return err
			}
			wait = time.Since(start)
			fmt.Fprintf(tw, "%s\t\t\t\t\t\t%s\t\n", s.name, wait.Round(time.Millisecond))
			continue
		}
		reads0, bytes0 := m.gcs.Stats.Reads.Load(), m.gcs.Stats.BytesRead.Load()
		start := time.Now()
		rep, err := renderFrame(mnt, demoScene, s.frame)
		if err != nil {
			return err
		}
		took := time.Since(start)
		fetched := m.gcs.Stats.BytesRead.Load() - bytes0
		total += fetched
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\t%s\t\n", s.name, rep.Files, rep.Probes, size(rep.BytesRead),
			m.gcs.Stats.Reads.Load()-reads0, size(fetched), took.Round(time.Millisecond))
		if s.timing != "" {
			timings = append(timings, demoTiming{s.timing, wait, wait + took, fetched})
		}
		wait = 0
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\njitfs fetched %s in all; a pre-sync of the show would have copied %s (%d objects) before the first frame: %.1f%% of it.\n",
		size(total), size(presyncBytes), presyncObjects, 100*float64(total)/float64(presyncBytes))
	if noLink != nil {
		return nil
	}

	// The pre-sync copies the whole show over the same link, as `jitfs
	// bench` prices it, and only then reads the frame from local disk.
	local := filepath.Join(tmp, "presync")
	ps, err := bench.PreSync(ctx, demoBucket, addr, "show/", local, 0)
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := renderFrame(local, demoScene, 1001); err != nil {
		return fmt.Errorf("pre-sync: %w", err)
	}
	timings = append(timings, demoTiming{"pre-sync of the whole show", ps.Copy, ps.Copy + time.Since(start), ps.LinkBytes})

	fmt.Fprintf(stdout, "\nsh010 frame 1001 over the emulated WAN (%s), in time since the node got the job:\n\n", wan.Link(link))
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tfirst frame can start\tfirst frame done\tbytes over the link\t")
	for _, t := range timings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", t.name, t.start.Round(time.Millisecond), t.done.Round(time.Millisecond), size(t.linkBytes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nA pre-sync's copy grows with the whole show (%s here: --show-size), jitfs's cold frame with what the frame reads (%s).\n",
		size(ps.LinkBytes), size(timings[0].linkBytes))
	return nil
}

// demoShow counts the objects and bytes of one part of the demo's show.
type demoShow struct {
	objects int
	bytes   int64
}

// walk counts every file of fsys, calling put (when not nil) with each.
func (s *demoShow) walk(fsys fs.FS, put func(p string) error) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		s.objects++
		s.bytes += info.Size()
		if put != nil {
			return put(p)
		}
		return nil
	})
}

// demoWAN moves the demo into the emulated WAN's private network namespace
// when it can (in the parent it does not return then: see wan.Reexec), and
// otherwise says why not; the demo then goes on without the link, since a
// newcomer without root should still see what jitfs fetches.
func demoWAN(noWAN bool) error {
	if noWAN {
		return errors.New("--no-wan given")
	}
	if err := wan.Check(); err != nil {
		return err
	}
	if err := wan.Reexec(); err != nil {
		return fmt.Errorf("the private network namespace was refused: %w", err)
	}
	return nil
}

// demoSignal is why a demo was stopped: the signal it got.
type demoSignal struct{ sig syscall.Signal }

func (d demoSignal) Error() string { return "stopped by " + unix.SignalName(d.sig) }

// demoContext is cancelled by SIGINT or SIGTERM (its cause a demoSignal),
// or by its stop function with a cause of its own. Until release, SIGPIPE
// does not kill the process: a write to a closed stdout fails with EPIPE,
// which demoWriter turns into a stop, and so does every write after it.
func demoContext() (ctx context.Context, stop context.CancelCauseFunc, release func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGPIPE)
	go func() {
		for {
			select {
			case s := <-sigs:
				// SIGPIPE needs nothing more: the write that raised it
				// fails too.
				if s != syscall.SIGPIPE {
					cancel(demoSignal{s.(syscall.Signal)})
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return ctx, cancel, func() {
		signal.Stop(sigs)
		cancel(nil)
	}
}

// demoStopped is the demo's result once ctx was stopped: exit 128+N for
// signal N, as a shell reports a process the signal killed (130 for
// SIGINT), once the mount and the temporary directory are cleaned up.
func demoStopped(ctx context.Context) error {
	var sig demoSignal
	var werr demoWriteError
	switch cause := context.Cause(ctx); {
	case errors.As(cause, &sig):
		return &exitError{code: 128 + int(sig.sig), err: errors.New(sig.Error())}
	case errors.As(cause, &werr) && errors.Is(werr.err, syscall.EPIPE):
		// Whoever read the output has gone (demo | head): nobody to tell.
		return &exitError{code: 128 + int(syscall.SIGPIPE)}
	case errors.As(cause, &werr):
		return werr
	}
	return nil
}

// demoWriteError is a failed write of the demo's output.
type demoWriteError struct{ err error }

func (e demoWriteError) Error() string { return "writing the output: " + e.err.Error() }

// demoWriter stops the demo at its first failed write: its output is what
// the demo is for.
type demoWriter struct {
	w    io.Writer
	stop context.CancelCauseFunc
}

func (d demoWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	if err != nil {
		d.stop(demoWriteError{err})
	}
	return n, err
}

// demoMemory refuses a show the machine cannot hold: the emulator keeps it
// in memory and the pre-sync's copy passes through it too, about three
// times its size in all. Without /proc/meminfo there is nothing to check.
func demoMemory(show int64) error {
	avail, ok := memAvailable()
	if !ok || show <= avail/3 {
		return nil
	}
	return fmt.Errorf("%w: --show-size %s needs about %s of memory (three times the show), and %s is available",
		errUsage, size(show), size(3*show), size(avail))
}

// memAvailable is MemAvailable from /proc/meminfo, in bytes.
func memAvailable() (int64, bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}
