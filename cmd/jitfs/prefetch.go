package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/prefetch"
)

// errIncomplete marks a prefetch that ran but left items unresolved: exit 1
// with the reply printed, so an agent can decide whether to start anyway.
var errIncomplete = errors.New("prefetch incomplete")

func runPrefetch(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("prefetch", flag.ContinueOnError)
	fl.SetOutput(stderr)
	wait := fl.Duration("wait", 0, "hold until every file is resident or this long has passed (0: queue and return)")
	job := fl.String("job", os.Getenv("JITFS_JOB_ID"), "job id: the files are pinned for the job until it is released (default $JITFS_JOB_ID)")
	scope := fl.String("scope", "", "frame, miss, job, lookahead or job_seq (default: frame with --wait, job without)")
	manifest := fl.String("manifest", "", "file with one path per line, or a pattern and its frames (PATTERN FRAMES, e.g. /show/plate.%04d.exr 1001-1100)")
	fromTrace := fl.String("from-trace", "", "prefetch what a recorded trace read (whole small files, the read ranges of large ones)")
	traceRoot := fl.String("trace-root", "", "with --from-trace: the directory the trace's root maps to (default: the daemon's mountpoint)")
	socket := fl.String("socket", "", "hook API socket (default: $JITFS_SOCKET, else the socket of the mount holding the first path)")
	asJSON := fl.Bool("json", false, "print the daemon's reply as JSON")
	release := fl.Bool("release", false, "release the job's pins (with --job) instead of prefetching")
	nodeSock := fl.String("daemon", os.Getenv(daemon.EnvNodeSocket), "with --release and no hook socket: the node daemon's socket (default $"+daemon.EnvNodeSocket+", else "+daemon.DefaultNodeSocket+")")
	pos, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	if *release {
		if *job == "" {
			return fmt.Errorf("%w: --release needs --job", errUsage)
		}
	} else if len(pos) == 0 && *manifest == "" && *fromTrace == "" {
		return fmt.Errorf("%w: give PATHs, --manifest or --from-trace", errUsage)
	}
	sc := hooks.Scope(*scope)
	if sc == "" {
		sc = hooks.ScopeJob
		if *wait > 0 {
			sc = hooks.ScopeFrame
		}
	}
	if !sc.Valid() {
		return fmt.Errorf("%w: unknown --scope %q", errUsage, *scope)
	}
	sock, err := daemonSocket(*socket, pos)
	if err != nil && *release {
		// No mount's hook socket here: the node daemon ends the job's pins
		// (and its snapshot, once no task of it is attached).
		if ns, ok := nodeSocket(*nodeSock); ok {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			return daemon.NewNodeClient(ns).Release(ctx, *job)
		}
	}
	if err != nil {
		return err
	}
	cl := hooks.NewClient(sock, *wait+30*time.Second)
	defer cl.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *release {
		return cl.Release(ctx, hooks.ReleaseRequest{Schema: hooks.Schema, Job: hooks.JobInfo{Job: hooks.Job{ID: *job}}, Scope: hooks.ScopeJob})
	}

	var items []hooks.Item
	for _, p := range pos {
		more, err := pathItems(p)
		if err != nil {
			return err
		}
		items = append(items, more...)
	}
	if *manifest != "" {
		more, err := manifestItems(*manifest)
		if err != nil {
			return err
		}
		items = append(items, more...)
	}
	if *fromTrace != "" {
		root := *traceRoot
		if root == "" {
			h, err := cl.Health(ctx)
			if err != nil {
				return err
			}
			root = h.Mountpoint
		}
		more, err := traceItems(*fromTrace, root, stderr)
		if err != nil {
			return err
		}
		items = append(items, more...)
	}
	req := hooks.PrefetchRequest{Schema: hooks.Schema, Job: hooks.JobInfo{Job: hooks.Job{ID: *job, PID: os.Getpid()}},
		Scope: sc, WaitMS: wait.Milliseconds(), Items: items}
	rep, err := cl.Prefetch(ctx, req)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		fmt.Fprintf(stdout, "jitfs prefetch: %d files: %d resident, %d queued, %d missing, %d failed, %d outside the mount (waited %d ms)\n",
			rep.Accepted+len(rep.Unmanaged), rep.Resident, rep.Queued, len(rep.Missing), len(rep.Failed), len(rep.Unmanaged), rep.WaitedMS)
		for _, p := range rep.Missing {
			fmt.Fprintf(stdout, "  missing   %s\n", p)
		}
		for _, p := range rep.Unmanaged {
			fmt.Fprintf(stdout, "  outside   %s\n", p)
		}
		for _, f := range rep.Failed {
			fmt.Fprintf(stdout, "  failed    %s: %s\n", f.Path, f.Error)
		}
		for _, p := range rep.Pending {
			fmt.Fprintf(stdout, "  pending   %s\n", p)
		}
	}
	if len(rep.Missing) > 0 || len(rep.Unmanaged) > 0 || len(rep.Failed) > 0 || rep.TimedOut {
		return errIncomplete
	}
	return nil
}

// pathItems turns a command-line path into items: a file, or every file
// of a directory's subtree.
func pathItems(p string) ([]hooks.Item, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil || !st.IsDir() {
		// A missing file is the daemon's to report, with the others.
		return []hooks.Item{{Path: abs}}, nil
	}
	var items []hooks.Item
	err = filepath.WalkDir(abs, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			items = append(items, hooks.Item{Path: q})
		}
		return nil
	})
	return items, err
}

// manifestItems reads a manifest: one absolute path per line, or a
// pattern and its frame list; # starts a comment.
func manifestItems(name string) ([]hooks.Item, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var items []hooks.Item
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 1 && strings.Contains(fields[0], hooks.UDIMToken):
			items = append(items, hooks.Item{Seq: &hooks.Seq{Pattern: fields[0]}})
		case len(fields) == 1:
			items = append(items, hooks.Item{Path: fields[0]})
		case len(fields) == 2:
			items = append(items, hooks.Item{Seq: &hooks.Seq{Pattern: fields[0], Frames: fields[1]}})
		default:
			return nil, fmt.Errorf("%s:%d: want PATH or PATTERN FRAMES (paths with spaces: one per line, alone)", name, n)
		}
	}
	return items, sc.Err()
}

// traceItems turns what a trace read into items under root.
func traceItems(name, root string, stderr io.Writer) ([]hooks.Item, error) {
	h, evs, err := readTraceFile(name, stderr)
	if err != nil {
		return nil, err
	}
	var items []hooks.Item
	for _, w := range prefetch.WantsFromTrace(h, evs) {
		items = append(items, hooks.Item{Path: strings.TrimSuffix(root, "/") + "/" + w.Rel, Ranges: w.Ranges, Source: "trace"})
	}
	return items, nil
}

func runStatus(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("status", flag.ContinueOnError)
	fl.SetOutput(stderr)
	socket := fl.String("socket", "", "hook API socket (default: $JITFS_SOCKET, else the socket of the mount holding PATH or the current directory)")
	asJSON := fl.Bool("json", false, "print JSON")
	watch := fl.Duration("watch", 0, "refresh every interval until interrupted (a live progress view)")
	nodeSock := fl.String("daemon", "", "the node daemon's socket: every job and task on the node (default, when no mount's hook socket is found: $"+daemon.EnvNodeSocket+", else "+daemon.DefaultNodeSocket+")")
	pos, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	if *nodeSock != "" {
		return nodeStatus(*nodeSock, *asJSON, *watch, stdout)
	}
	sock, err := daemonSocket(*socket, pos)
	if err != nil {
		if ns, ok := nodeSocket(""); ok && *socket == "" && len(pos) == 0 {
			return nodeStatus(ns, *asJSON, *watch, stdout)
		}
		return err
	}
	cl := hooks.NewClient(sock, 5*time.Second)
	defer cl.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for {
		st, err := cl.Status(ctx)
		if err != nil {
			if ctx.Err() != nil && *watch > 0 {
				return nil
			}
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(st)
		} else {
			printStatus(stdout, st, *watch > 0)
		}
		if *watch <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*watch):
		}
	}
}

func printStatus(w io.Writer, st hooks.StatusReply, live bool) {
	if live {
		fmt.Fprint(w, "\x1b[H\x1b[2J") // redraw in place
	}
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	fmt.Fprintf(w, "jitfs %s at %s\n", st.Version, st.Mountpoint)
	fmt.Fprintf(w, "  cache       %.1f of %.1f MiB, byte hit ratio %.1f%%\n", mib(st.CacheUsedBytes), mib(st.CacheBudgetBytes), 100*st.HitRatio)
	fmt.Fprintf(w, "  prefetch    %d queued, %d in flight, %.1f MiB outstanding; %.1f MiB prefetched, %.1f MiB evicted unread\n",
		st.QueueDepth, st.InFlight, mib(st.BytesOutstanding), mib(st.PrefetchedBytes), mib(st.WastedBytes))
	fmt.Fprintf(w, "  pinned      %.1f MiB\n", mib(st.PinnedBytes))
	if st.Speculation != nil {
		fmt.Fprintf(w, "  speculation %s\n", speculationLine(st.Speculation))
	}
	if st.Zone != nil {
		fmt.Fprintf(w, "  zone cache  %s\n", zoneLine(*st.Zone))
	}
	if st.MissingFiles > 0 || st.RefusedFiles > 0 {
		fmt.Fprintf(w, "  asked for   %d names not in the bucket; %d files refused (daemon busy)\n", st.MissingFiles, st.RefusedFiles)
	}
	for _, j := range st.Jobs {
		pct := 100.0
		if j.BytesWanted > 0 {
			pct = 100 * float64(j.BytesResident) / float64(j.BytesWanted)
		}
		fmt.Fprintf(w, "  job %-20s %d/%d files, %.1f/%.1f MiB (%.0f%%), %.1f MiB pinned, %d missing\n", j.ID, j.Resident, j.Wanted,
			mib(j.BytesResident), mib(j.BytesWanted), pct, mib(j.PinnedBytes), j.Missing)
	}
}

// daemonSocket is the socket given, else the one of the daemon serving the
// first path (or the current directory).
func daemonSocket(given string, pos []string) (string, error) {
	if given != "" {
		return given, nil
	}
	from := "."
	if len(pos) > 0 {
		from = pos[0]
	}
	return hooks.FindSocket(from)
}

// nodeSocket is the node daemon's socket: given, else $JITFS_DAEMON, else
// the default when a daemon answers there.
func nodeSocket(given string) (string, bool) {
	if given == "" {
		given = os.Getenv(daemon.EnvNodeSocket)
	}
	if given != "" {
		return given, true
	}
	if daemon.NodeAnswers(daemon.DefaultNodeSocket, 2*time.Second) {
		return daemon.DefaultNodeSocket, true
	}
	return "", false
}

// nodeStatus prints the node daemon's status: every job and task.
func nodeStatus(sock string, asJSON bool, watch time.Duration, stdout io.Writer) error {
	cl := daemon.NewNodeClient(sock)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		st, err := cl.Status(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil && watch > 0 {
				return nil
			}
			return err
		}
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(st)
		} else {
			printNodeStatus(stdout, st, watch > 0)
		}
		if watch <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(watch):
		}
	}
}

func printNodeStatus(w io.Writer, st daemon.NodeStatus, live bool) {
	if live {
		fmt.Fprint(w, "\x1b[H\x1b[2J")
	}
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	fmt.Fprintf(w, "jitfs node daemon (pid %d) at %s\n", st.PID, st.Socket)
	fmt.Fprintf(w, "  cache       %.1f of %.1f MiB in %s\n", mib(st.CacheUsedBytes), mib(st.CacheBudgetBytes), st.CacheDir)
	fmt.Fprintf(w, "  metadata    %s, %d writes pending", st.Metadata.Path, st.Metadata.Pending)
	if st.Metadata.Rebuilt {
		fmt.Fprintf(w, ", REBUILT at start (%s)", st.Metadata.RebuiltReason)
	}
	fmt.Fprintf(w, "; %d listings shared between jobs\n", st.ListingsShared)
	for _, z := range st.Zones {
		fmt.Fprintf(w, "  zone cache  gs://%s: %s\n", z.Bucket, zoneLine(z))
	}
	if ls := st.LearnShared; ls != nil {
		fmt.Fprintf(w, "  learning    shared at %s as %s: %d published (%d failed), %d read, %d ignored, %d read errors; %d of %d predicted files used\n",
			ls.Prefix, ls.Node, ls.Published, ls.PublishErrors, ls.Read, ls.Ignored, ls.ReadErrors, ls.PredictionsUsed, ls.Predictions)
	}
	for _, d := range st.Recovering {
		fmt.Fprintf(w, "  uploading   outputs a gone task staged in %s\n", d)
	}
	printWhereTheBytesAre(w, st)
	for _, j := range st.Jobs {
		state := fmt.Sprintf("%d tasks", len(j.Tasks))
		if len(j.Tasks) == 0 && j.EndsAt > 0 {
			state = "no task; ends " + time.Unix(int64(j.EndsAt), 0).Format(time.RFC3339)
		}
		fmt.Fprintf(w, "  job %-20s %s; %.1f MiB resident, %.1f MiB pinned\n", j.ID, state, mib(j.ResidentBytes), mib(j.PinnedBytes))
		for _, s := range j.Sources {
			fmt.Fprintf(w, "    %-40s %d files (%.1f MiB), %.1f MiB resident, %d listings (%d from the store)\n",
				s.Source, s.Files, mib(s.FileBytes), mib(s.ResidentBytes), s.Listings, s.StoredListings)
			if s.Prefetch.Speculation != nil {
				fmt.Fprintf(w, "      speculation %s\n", speculationLine(s.Prefetch.Speculation))
			}
		}
		for _, t := range j.Tasks {
			fmt.Fprintf(w, "    task %s pid %d %s mounts %v outputs %v\n", t.ID, t.PID, t.Name, t.Mounts, t.Outputs)
		}
	}
}

// zoneLine tells whether the zone cache is in use and what it served.
func zoneLine(z gcs.ZoneStatus) string {
	state := "up"
	if !z.Up {
		state = "DOWN, reading from GCS directly (" + z.LastError + ")"
	}
	return fmt.Sprintf("%s %s; %d reads (%.1f MiB) through it, %d failed, %d bypassed, %d objects failed their check, %d outages",
		z.URL, state, z.Reads, float64(z.Bytes)/(1<<20), z.Errors, z.Bypassed, z.Mismatches, z.Outages)
}

// speculationLine tells what fetching ahead without hooks did: how much
// of it the readers used, and how much went to waste.
func speculationLine(sp *hooks.SpeculationStatus) string {
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	line := fmt.Sprintf("%d files (%.1f MiB) fetched ahead: %d used (%.1f MiB), %d wasted (%.1f MiB), %d in flight; %d streams stopped",
		sp.Predicted, mib(sp.Bytes), sp.Used, mib(sp.UsedBytes), sp.Wasted, mib(sp.WastedBytes), sp.Predicted-sp.Used-sp.Wasted, sp.Stopped)
	var kinds []string
	for _, k := range slices.Sorted(maps.Keys(sp.Kinds)) {
		if sp.Kinds[k] > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, sp.Kinds[k]))
		}
	}
	if len(kinds) > 0 {
		line += " (" + strings.Join(kinds, ", ") + ")"
	}
	return line
}
