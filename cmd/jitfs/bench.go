//go:build !production

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jitfs/jitfs/bench"
	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/internal/wan"
)

func runBench(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("bench")
	rtt := fl.Duration("rtt", 20*time.Millisecond, "round trip time of the emulated link to GCS")
	bw := fl.String("bandwidth", "100MB/s", "aggregate bandwidth of the emulated link (e.g. 100MB/s, 1Gbit)")
	traces := fl.String("traces", "testdata/traces", "directory of *.jsonl.zst traces to use as workloads (skipped when missing)")
	synthetic := fl.Bool("synthetic", true, "include the synthetic workloads")
	short := fl.Bool("short", false, "small synthetic workloads and only the smallest trace: a quick check that the bench runs")
	asJSON := fl.Bool("json", false, "print the report as JSON instead of markdown")
	workDir := fl.String("work-dir", "", "directory for caches, mountpoints and pre-synced copies (default: a new temporary directory)")
	logLevel := fl.String("log-level", "warn", "log level for the mounts' messages")
	soakRounds := fl.Int("soak", 0, "instead of the matrix, soak: this many rounds of concurrent replays (cold, warm, after a restart) of --soak-traces on a fresh cache each; exits 1 on any failed operation")
	soakTraces := fl.String("soak-traces", "blender_sh010_f02,blender_sh010_f03,povray_balcony", "comma-separated trace names (in --traces) the soak replays")
	replayers := fl.Int("replayers", 4, "concurrent replayers in each soak phase")
	spec := fl.String("speculate", daemon.SpeculationKinds, "the jitfs strategies' fetching ahead without hooks (as jitfs mount --speculate); with it on, a \"jitfs cold, no speculation\" row is added")
	node := fl.Bool("node", false, "instead of the matrix, the node daemon's figures: tasks at once through it vs one after another standalone, memory with many jobs listed, restart over a large cache")
	nodeWorkload := fl.String("node-workload", "blender_sh010_f02", "with --node: the trace (in --traces) each task reads; a synthetic small-files workload when it is missing")
	farm := fl.Bool("farm", false, "instead of the matrix, the zone's figures: nodes (each its own jitfs mount process and cache) reading one job at once, "+
		"through GCS directly and through a zone cache (deploy/zone-cache, nginx), origin bytes against node count (docs/farm.md)")
	farmNodes := fl.String("farm-nodes", "1,2,4,8", "with --farm: the node counts measured")
	farmModes := fl.String("farm-modes", "gcs,zone", "with --farm: how nodes reach the origin: gcs (directly), zone (through the zone cache)")
	farmKill := fl.Bool("farm-kill-zone", false, "with --farm: add a row with the most nodes through the zone cache, killed once half the bytes are read")
	farmScale := fl.Float64("farm-scale", 1, "with --farm: scale the job's file sizes (1: 62 MiB of assets and 8 MiB per frame)")
	peerNames := fl.String("peers", strings.Join(bench.PeerNames, ","), "other FUSE clients of GCS to measure beside jitfs, over the same link, where installed (\"none\" for none); scripts/install-peers.sh installs them")
	peerPaths := map[string]*string{}
	for _, n := range bench.PeerNames {
		peerPaths[n] = fl.String(n, "", "path of the "+n+" binary (default: found on PATH)")
	}
	only := fl.String("workloads", "", "comma-separated names of the workloads to run (default: all), e.g. small-files-300x16")
	plotFile := fl.String("plot", "", "also draw the report as a chart into this .svg or .png file")
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	if *plotFile != "" {
		if _, err := bench.PlotFormat(*plotFile); err != nil {
			return fmt.Errorf("%w: --plot: %v", errUsage, err)
		}
	}
	var names []string
	for _, n := range strings.Split(*peerNames, ",") {
		if n = strings.TrimSpace(n); n != "" && n != "none" {
			names = append(names, n)
		}
	}
	paths := map[string]string{}
	for n, p := range peerPaths {
		paths[n] = *p
	}
	peers, err := bench.FindPeers(names, paths)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
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
	// Shaping happens in a private network namespace so the host's own
	// loopback is never touched: run the rest of the command there.
	if err := wan.Reexec(); err != nil {
		return err
	}
	if *farm {
		return runFarmBench(*farmNodes, *farmModes, *farmKill, *farmScale, *short, *workDir, *asJSON, link, log, stdout, stderr)
	}
	if *node {
		return runNodeBench(*traces, *nodeWorkload, *short, *workDir, *asJSON, link, log, stdout, stderr)
	}
	if *soakRounds > 0 {
		return runSoak(*traces, *soakTraces, *soakRounds, *replayers, *workDir, *asJSON, link, log, stdout, stderr)
	}
	files := pos
	if *traces != "" {
		found, err := filepath.Glob(filepath.Join(*traces, "*.jsonl.zst"))
		if err != nil {
			return err
		}
		files = append(files, found...)
	}
	// The traces' show: every file under their root, touched or not, so
	// pre-sync copies what a real one would.
	var show map[string]int64
	if *traces != "" {
		if b, err := os.ReadFile(filepath.Join(*traces, "corpus.tsv")); err == nil {
			if show, err = bench.ReadShow(string(b)); err != nil {
				return err
			}
		}
	}
	var wls []*bench.Workload
	for _, f := range files {
		h, evs, err := readTraceFile(f, stderr)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.Base(f), ".jsonl.zst")
		w, err := bench.NewWorkload(name, h, evs)
		if err != nil {
			return err
		}
		if show != nil && filepath.Dir(f) == filepath.Clean(*traces) {
			w.AddShow(show)
		}
		wls = append(wls, w)
	}
	// A frame's trace prefetches from the previous frame's, as a node
	// that rendered frame N-1 would: <name>_fNN learns from <name>_f(NN-1).
	byName := map[string]*bench.Workload{}
	for _, w := range wls {
		byName[w.Name] = w
	}
	for _, w := range wls {
		if prev := previousFrame(w.Name); byName[prev] != nil {
			p := byName[prev]
			w.PrefetchFromTrace(p.Name, p.Header, p.Events)
		}
	}
	if *short && len(wls) > 1 {
		sort.Slice(wls, func(i, j int) bool { return wls[i].Bytes() < wls[j].Bytes() })
		wls = wls[:1]
	}
	if *synthetic {
		if *short {
			wls = append(wls, bench.SequentialLarge(32<<20), bench.SmallFiles(300, 32<<10, 1),
				bench.SmallFiles(300, 32<<10, 16), bench.RandomSmall(128<<20, 200))
		} else {
			wls = append(wls, bench.SequentialLarge(1<<30), bench.SmallFiles(2000, 64<<10, 1),
				bench.SmallFiles(2000, 64<<10, 16), bench.RandomSmall(1<<30, 500))
		}
	}
	if *only != "" {
		if wls, err = selectWorkloads(wls, *only); err != nil {
			return err
		}
	}
	if len(wls) == 0 {
		return fmt.Errorf("%w: no workloads (no traces in %q and --synthetic=false)", errUsage, *traces)
	}
	dir := *workDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "jitfs-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sp, err := daemon.ParseSpeculation(*spec)
	if err != nil {
		return fmt.Errorf("%w: --speculate: %v", errUsage, err)
	}
	rep, err := bench.Run(ctx, bench.Config{Workloads: wls, Link: link, Network: emulatedWAN(link), WorkDir: dir,
		Log: log, Progress: stderr, Speculate: sp, NoSpeculation: !sp.Any(), Peers: peers})
	if err != nil {
		return err
	}
	if *plotFile != "" {
		if err := rep.WritePlot(*plotFile); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.Markdown(stdout)
	return nil
}

// selectWorkloads keeps the workloads named in the comma-separated list,
// in their order; a name that matches none is an error that lists them.
func selectWorkloads(wls []*bench.Workload, list string) ([]*bench.Workload, error) {
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	var kept []*bench.Workload
	var all []string
	for _, w := range wls {
		all = append(all, w.Name)
		if want[w.Name] {
			kept = append(kept, w)
			delete(want, w.Name)
		}
	}
	if len(want) > 0 {
		var missing []string
		for n := range want {
			missing = append(missing, n)
		}
		sort.Strings(missing)
		return nil, fmt.Errorf("%w: --workloads: no workload %s (have: %s)", errUsage, strings.Join(missing, ", "), strings.Join(all, ", "))
	}
	return kept, nil
}

// previousFrame names the trace of the frame before: "x_f03" → "x_f02";
// "" when the name has no frame suffix or is the first frame.
func previousFrame(name string) string {
	i := strings.LastIndex(name, "_f")
	if i < 0 {
		return ""
	}
	digits := name[i+2:]
	n, err := strconv.Atoi(digits)
	if err != nil || n <= 1 || strings.ContainsAny(digits, "+-") {
		return ""
	}
	return fmt.Sprintf("%s_f%0*d", name[:i], len(digits), n-1)
}

// runSoak is `jitfs bench --soak N`: the reliability soak whose figure
// docs/BENCHMARKS.md records (failed operations over replays).
func runSoak(traces, names string, rounds, replayers int, workDir string, asJSON bool, link bench.Link, log *slog.Logger, stdout, stderr io.Writer) error {
	if replayers <= 0 {
		return fmt.Errorf("%w: --replayers must be positive", errUsage)
	}
	var wls []*bench.Workload
	for _, name := range strings.Split(names, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		h, evs, err := readTraceFile(filepath.Join(traces, name+".jsonl.zst"), stderr)
		if err != nil {
			return err
		}
		w, err := bench.NewWorkload(name, h, evs)
		if err != nil {
			return err
		}
		wls = append(wls, w)
	}
	if len(wls) == 0 {
		return fmt.Errorf("%w: --soak-traces names no trace", errUsage)
	}
	dir := workDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "jitfs-soak-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Soak(ctx, bench.SoakConfig{Workloads: wls, Rounds: rounds, Replayers: replayers,
		Network: emulatedWAN(link), WorkDir: dir, Log: log, Progress: stderr})
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.Markdown(stdout, link)
	}
	return rep.Err()
}

// runFarmBench is `jitfs bench --farm`: the zone's figures.
func runFarmBench(nodes, modes string, kill bool, scale float64, short bool, workDir string, asJSON bool, link bench.Link,
	log *slog.Logger, stdout, stderr io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg := bench.FarmConfig{Link: link, Network: emulatedWAN(link), Log: log, Progress: stderr, KillZone: kill,
		Modes: strings.Split(modes, ","), Job: bench.DefaultFarmJob(scale),
		// The nodes are this binary's `jitfs mount`, each its own process.
		Jitfs: func(args ...string) *exec.Cmd {
			cmd := exec.Command(self, args...)
			cmd.Env = os.Environ()
			return cmd
		}}
	if short {
		cfg.Job = bench.DefaultFarmJob(scale / 8)
	}
	for _, s := range strings.Split(nodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 64 {
			return fmt.Errorf("%w: --farm-nodes %q: want node counts from 1 to 64", errUsage, nodes)
		}
		cfg.Nodes = append(cfg.Nodes, n)
	}
	if scale <= 0 {
		return fmt.Errorf("%w: --farm-scale must be positive", errUsage)
	}
	return runFigures(workDir, "jitfs-farm-bench-", asJSON, stdout, func(ctx context.Context, dir string) (markdowner, error) {
		cfg.WorkDir = dir
		return bench.RunFarm(ctx, cfg)
	})
}

// markdowner is a report of figures that writes itself as markdown.
type markdowner interface{ Markdown(io.Writer) }

// runFigures runs one of the bench's figure sets in workDir (a new
// temporary directory, removed after, when empty), until done or
// interrupted, and prints its report as JSON or markdown.
func runFigures(workDir, tmpPattern string, asJSON bool, stdout io.Writer,
	run func(ctx context.Context, dir string) (markdowner, error)) error {
	dir := workDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", tmpPattern); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, dir)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	rep.Markdown(stdout)
	return nil
}

// runNodeBench is `jitfs bench --node`: the node daemon's figures.
func runNodeBench(traces, name string, short bool, workDir string, asJSON bool, link bench.Link, log *slog.Logger, stdout, stderr io.Writer) error {
	cfg := bench.NodeConfig{Link: link, Network: emulatedWAN(link), Log: log, Progress: stderr}
	if short {
		cfg.Workload = bench.SmallFiles(100, 32<<10, 1)
		cfg.Jobs, cfg.FilesPerJob, cfg.RestartObjects = 2, 500, 2000
	} else if h, evs, err := readTraceFile(filepath.Join(traces, name+".jsonl.zst"), stderr); err == nil {
		if cfg.Workload, err = bench.NewWorkload(name, h, evs); err != nil {
			return err
		}
	} else {
		cfg.Workload = bench.SmallFiles(2000, 64<<10, 16)
	}
	return runFigures(workDir, "jitfs-node-bench-", asJSON, stdout, func(ctx context.Context, dir string) (markdowner, error) {
		cfg.WorkDir = dir
		return bench.RunNode(ctx, cfg)
	})
}
