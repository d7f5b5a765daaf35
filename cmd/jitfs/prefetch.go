package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/signal"
	"path"
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

// Exit codes of jitfs prefetch, sysexits-style like flush's (docs/hook-api.md
// and --help list them), so a farm agent can tell what to do next. Usage
// errors, a malformed manifest included, exit 2 as every command's do, and
// anything else 1. A manifest line outside the mount is a bad line (2),
// since a manifest names one mount's files; a PATH argument outside it is
// the daemon's "unmanaged", not fetched and not a mistake of the job (1).
const (
	// exitPrefetchMissing: some files are not in the bucket, so the scene
	// is broken and rendering it would fail or render wrong
	// (EX_NOINPUT).
	exitPrefetchMissing = 66
	// exitPrefetchNoDaemon: no daemon answers the hook socket; the render
	// may go on uncached, or the mount is not up (EX_UNAVAILABLE, as
	// flush's exitSetup).
	exitPrefetchNoDaemon = 69
	// exitPrefetchPending: every file exists, but some were still being
	// fetched when --wait ran out or was interrupted, a fetch failed, or
	// the daemon was too busy to take them; retrying later may succeed
	// (EX_TEMPFAIL, as flush's exitNotDurable). An interrupt is no error
	// of the job's, and 75 tells the agent what it most needs: the files
	// are not all resident.
	exitPrefetchPending = 75
)

const prefetchHelp = `Makes files resident in the daemon's cache before a render opens them.
A PATH is a file, or a directory meaning its subtree, relative to the
current directory. With --frames, each argument is a PATTERN expanded over
those frames. A manifest holds one item per line ('#' starts a comment):

  PATH                       a file; relative paths are relative to the mount
  PATTERN FRAMES             e.g. shots/plate.####.exr 1001-1100x2,1200
  PATTERN                    with <UDIM> or <UVTILE> and no frame token

A path may hold spaces: a line with no frame token whose last word is no
frame list is one path; else quote it ("my plate.####.exr" 1001-1010).

Frame tokens: #### or @@@@ (one per digit: %04d), $F (unpadded) and
$F1..$F9 (Houdini; ${F4} when a letter, digit or _ follows), %d and
%0Nd (printf). Tile tokens, in the file name:
<UDIM> (1001-1999) and <UVTILE> (u1_v1 is tile 1001, u2_v1 1002, u1_v2
1011), expanded to the tiles present in the directory. Every malformed
manifest line, and every line outside the mount, is reported file:line.

--dry-run needs no daemon: it expands the items, stats every file through
the mount, and lists which exist and which are missing.

Exit status:
  0   every file is resident or queued (with --dry-run: every file exists)
  1   another error, e.g. PATH arguments outside the mount
  2   usage error, including a malformed manifest (every bad line is
      listed, lines outside the mount among them)
  66  files missing in the bucket: the scene is broken
  69  no daemon reachable: the render may go on, uncached
  75  still pending when --wait ran out or was interrupted (SIGINT,
      SIGTERM), a fetch failed, or the daemon was busy: retry, or render
      and read on demand
`

func runPrefetch(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("prefetch")
	wait := fl.Duration("wait", 0, "hold until every file is resident or this long has passed (0: queue and return)")
	job := fl.String("job", os.Getenv("JITFS_JOB_ID"), "job id: the files are pinned for the job until it is released (default $JITFS_JOB_ID)")
	scope := fl.String("scope", "", "frame, miss, job, lookahead or job_seq (default: frame with --wait, job without)")
	manifest := fl.String("manifest", "", "file with one item per line: PATH, or PATTERN FRAMES (e.g. plates/plate.####.exr 1001-1100)")
	frames := fl.String("frames", "", "frame list (e.g. 1001-1100x2,1200): every PATH argument is a PATTERN expanded over it")
	mount := fl.String("mount", "", "the mountpoint manifest paths are relative to (default: the daemon's; --dry-run has no daemon to ask)")
	dryRun := fl.Bool("dry-run", false, "expand the items and check through the mount which files exist, without a daemon")
	fromTrace := fl.String("from-trace", "", "prefetch what a recorded trace read (whole small files, the read ranges of large ones)")
	traceRoot := fl.String("trace-root", "", "with --from-trace: the directory the trace's root maps to (default: the mount)")
	socket := fl.String("socket", "", "hook API socket (default: $JITFS_SOCKET, else the socket of the mount holding the first path)")
	asJSON := fl.Bool("json", false, "print the daemon's reply (with --dry-run: the files and the missing) as JSON")
	release := fl.Bool("release", false, "release the job's pins (with --job) instead of prefetching")
	nodeSock := fl.String("daemon", os.Getenv(daemon.EnvNodeSocket), "with --release and no hook socket: the node daemon's socket (default $"+daemon.EnvNodeSocket+", else "+daemon.DefaultNodeSocket+")")
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	switch {
	case *release && *dryRun:
		return fmt.Errorf("%w: --release and --dry-run do not go together", errUsage)
	case *release:
		if *job == "" {
			return fmt.Errorf("%w: --release needs --job", errUsage)
		}
	case len(pos) == 0 && *manifest == "" && *fromTrace == "":
		return fmt.Errorf("%w: give PATHs, --manifest or --from-trace", errUsage)
	case fl.Changed("frames") && strings.TrimSpace(*frames) == "":
		// An empty list given on purpose is most likely an unset
		// variable: without this, every PATTERN would be taken for a
		// literal file name and reported missing.
		return fmt.Errorf("%w: --frames is empty", errUsage)
	}
	for i, p := range pos {
		// "" would be the current directory, and its whole subtree
		// prefetched: what an unset $SCENE in a job script gives.
		if strings.TrimSpace(p) == "" {
			return fmt.Errorf("%w: argument %d is empty (an unset variable?)", errUsage, i+1)
		}
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
	if *mount != "" {
		abs, err := filepath.Abs(*mount)
		if err != nil {
			return fmt.Errorf("%w: --mount: %v", errUsage, err)
		}
		*mount = abs
	}

	// The command line and the manifest's syntax are checked before any
	// prefetch is asked for, so a broken manifest is a usage error (2)
	// whether or not a daemon is up; a daemon is asked only for its
	// mountpoint, to place the manifest's lines.
	var items []hooks.Item
	for _, p := range pos {
		more, err := argItems(p, *frames)
		if err != nil {
			return err
		}
		items = append(items, more...)
	}
	var lines []manifestLine
	var bad []badLine
	if *manifest != "" {
		if lines, bad, err = parseManifest(*manifest); err != nil {
			return err
		}
	}
	if len(bad) > 0 && !*dryRun {
		// Lines outside the mount are bad lines too, listed with the
		// syntax errors when the mount can be known, so the manifest is
		// fixed in one pass; with no daemon to name it, only the syntax
		// errors can be.
		mnt := *mount
		if mnt == "" {
			mnt = daemonMountpoint(*socket, pos)
		}
		if mnt == "" {
			return newManifestError(*manifest, bad)
		}
		_, err := resolveManifest(*manifest, lines, bad, mnt)
		return err
	}

	if *dryRun {
		root := *traceRoot
		if root == "" {
			root = *mount
		}
		if *fromTrace != "" && root == "" {
			return fmt.Errorf("%w: --dry-run --from-trace needs --trace-root or --mount", errUsage)
		}
		more, err := resolveManifest(*manifest, lines, bad, *mount)
		if err != nil {
			return err
		}
		items = append(items, more...)
		if *fromTrace != "" {
			more, err := traceItems(*fromTrace, root, stderr)
			if err != nil {
				return err
			}
			items = append(items, more...)
		}
		return dryRunItems(items, *asJSON, stdout)
	}

	from := pos
	if len(from) == 0 && *mount != "" {
		from = []string{*mount} // a manifest's socket is its mount's
	}
	sock, err := daemonSocket(*socket, from)
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
		return &exitError{code: exitPrefetchNoDaemon, err: err}
	}
	cl := hooks.NewClient(sock, *wait+30*time.Second)
	defer cl.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *release {
		return daemonError(ctx, cl.Release(ctx, hooks.ReleaseRequest{Schema: hooks.Schema, Job: hooks.JobInfo{Job: hooks.Job{ID: *job}}, Scope: hooks.ScopeJob}))
	}

	// The daemon knows its mountpoint: manifest paths relative to the
	// mount, and the trace's root, default to it.
	mnt := *mount
	if mnt == "" && (len(lines) > 0 || (*fromTrace != "" && *traceRoot == "")) {
		h, err := cl.Health(ctx)
		if err != nil {
			return daemonError(ctx, err)
		}
		mnt = h.Mountpoint
	}
	more, err := resolveManifest(*manifest, lines, nil, mnt)
	if err != nil {
		return err
	}
	items = append(items, more...)
	if *fromTrace != "" {
		root := *traceRoot
		if root == "" {
			root = mnt
		}
		more, err := traceItems(*fromTrace, root, stderr)
		if err != nil {
			return err
		}
		items = append(items, more...)
	}
	req := hooks.PrefetchRequest{Schema: hooks.Schema, Job: hooks.JobInfo{Job: hooks.Job{ID: *job, PID: os.Getpid()}},
		Scope: sc, WaitMS: wait.Milliseconds(), Items: items}
	// Progress goes to stderr, and only while waiting: stdout is the
	// result's, and --json's must stay clean.
	rep, err := prefetchWatched(ctx, cl, req, *wait > 0 && !*asJSON, stderr)
	if err != nil {
		return daemonError(ctx, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		fmt.Fprintf(stdout, "jitfs prefetch: %s: %d resident, %d queued, %d missing, %d failed, %d outside the mount (waited %d ms)\n",
			counted(rep.Accepted+len(rep.Unmanaged), "file"), rep.Resident, rep.Queued, len(rep.Missing), len(rep.Failed), len(rep.Unmanaged), rep.WaitedMS)
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
	// The worst outcome decides: a broken scene outranks a slow fetch,
	// which outranks files that were never the daemon's.
	switch {
	case len(rep.Missing) > 0:
		return &exitError{code: exitPrefetchMissing}
	case len(rep.Failed) > 0 || rep.TimedOut:
		return &exitError{code: exitPrefetchPending}
	case len(rep.Unmanaged) > 0:
		return &exitError{code: 1}
	}
	return nil
}

// daemonError maps what a daemon call returned to the exit codes: a
// refused request is the command line's fault (2), a busy daemon or an
// interrupted wait a retry (75), and a daemon that does not answer at all
// is no daemon (69).
func daemonError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var apiErr *hooks.APIError
	var intr *interruptedError
	switch {
	case errors.As(err, &intr):
		return &exitError{code: exitPrefetchPending, err: err}
	case ctx.Err() != nil:
		// SIGINT or SIGTERM: what was asked for is as pending as when
		// --wait runs out, and the client's "interrupt signal received"
		// is no error of the daemon's.
		return &exitError{code: exitPrefetchPending, err: errors.New("interrupted")}
	case errors.As(err, &apiErr) && apiErr.StatusCode == 503:
		return &exitError{code: exitPrefetchPending, err: err}
	case errors.As(err, &apiErr) && apiErr.StatusCode >= 400 && apiErr.StatusCode < 500:
		return &exitError{code: 2, err: err}
	case errors.As(err, &apiErr):
		return err
	}
	return &exitError{code: exitPrefetchNoDaemon, err: err}
}

// argItems turns a command-line argument into items: with frames, or with
// a tile token, a pattern; otherwise a file, or every file of a
// directory's subtree.
func argItems(arg, frames string) ([]hooks.Item, error) {
	if frames == "" && !hooks.HasTileToken(arg) {
		return pathItems(arg)
	}
	abs, err := filepath.Abs(arg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	seq, err := patternSeq(abs, frames)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errUsage, arg, err)
	}
	return []hooks.Item{{Seq: seq}}, nil
}

// patternSeq checks a pattern as the daemon would, after translating its
// hand-written tokens, so a mistake is reported here with its line rather
// than as the daemon's refusal of the whole request.
func patternSeq(pattern, frames string) (*hooks.Seq, error) {
	p, err := hooks.TranslateTokens(pattern)
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "hooks: "))
	}
	var fr []int
	if frames != "" {
		if fr, err = hooks.ParseFrames(frames); err != nil {
			return nil, errors.New(strings.TrimPrefix(err.Error(), "hooks: "))
		}
	}
	if _, err := hooks.ExpandPattern(p, fr, nil); err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "hooks: "))
	}
	if hooks.HasTileToken(p) {
		dir, name := path.Split(p)
		if hooks.HasTileToken(dir) {
			return nil, fmt.Errorf("%s or %s may appear once, in the file name only", hooks.UDIMToken, hooks.UVTileToken)
		}
		if _, err := hooks.MatchTiles(name, nil); err != nil {
			return nil, errors.New(strings.TrimPrefix(err.Error(), "hooks: "))
		}
	}
	return &hooks.Seq{Pattern: p, Frames: frames}, nil
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

// manifestLine is one item line of a manifest, checked for syntax but not
// yet resolved against the mount.
type manifestLine struct {
	n      int
	path   string
	frames string
	seq    bool
}

// badLine is a manifest line's mistake, kept with its number so the
// syntax errors and those only the mount reveals are listed together in
// file order.
type badLine struct {
	n   int
	why string
}

// manifestError lists every bad line of a manifest, so whoever wrote it
// fixes them in one pass; it is a usage error.
type manifestError struct{ lines []string }

func (e *manifestError) Error() string {
	return fmt.Sprintf("%s:\n  %s", counted(len(e.lines), "bad manifest line"), strings.Join(e.lines, "\n  "))
}

func (e *manifestError) Unwrap() error { return errUsage }

// newManifestError is the error of a manifest's bad lines, in file order;
// nil when there are none.
func newManifestError(name string, bad []badLine) error {
	if len(bad) == 0 {
		return nil
	}
	slices.SortStableFunc(bad, func(a, b badLine) int { return a.n - b.n })
	e := &manifestError{}
	for _, b := range bad {
		e.lines = append(e.lines, fmt.Sprintf("%s:%d: %s", name, b.n, b.why))
	}
	return e
}

// manifestItems reads a manifest, every bad line reported at once.
func manifestItems(name, mount string) ([]hooks.Item, error) {
	lines, bad, err := parseManifest(name)
	if err != nil {
		return nil, err
	}
	return resolveManifest(name, lines, bad, mount)
}

// parseManifest reads a manifest: one path per line, or a pattern and
// its frame list, or a tile pattern alone; # starts a comment. It returns
// the good lines and the bad ones, and an error only when the file cannot
// be read. A line of one field is a literal path (frame tokens and all)
// unless it holds a tile token, so a file whose name has a '#' or '@' can
// still be named.
func parseManifest(name string) ([]manifestLine, []badLine, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	defer f.Close()
	var lines []manifestLine
	var bad []badLine
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, frames, err := splitManifestLine(line)
		if err != nil {
			bad = append(bad, badLine{n, err.Error()})
			continue
		}
		l := manifestLine{n: n, path: p, frames: frames, seq: frames != "" || hooks.HasTileToken(p)}
		if l.seq {
			if _, err := patternSeq(l.path, l.frames); err != nil {
				bad = append(bad, badLine{n, err.Error()})
				continue
			}
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", errUsage, name, err)
	}
	return lines, bad, nil
}

// splitManifestLine splits a trimmed manifest line into its path (or
// pattern) and frame list. A path may hold spaces: in double quotes, or
// bare when the line's last field is no frame list and the line has no
// frame token, since then nothing else could be meant. A last field that
// is a frame list makes the rest a pattern, so a file whose name ends in
// " 2" is written in quotes.
func splitManifestLine(line string) (p, frames string, err error) {
	const quoteHint = `a path with spaces goes in double quotes: "PATH" or "PATTERN" FRAMES`
	if strings.HasPrefix(line, `"`) {
		end := strings.IndexByte(line[1:], '"')
		if end < 0 {
			return "", "", errors.New(`no closing " (` + quoteHint + `)`)
		}
		p, rest := line[1:1+end], line[2+end:]
		if p == "" {
			return "", "", errors.New(`"" names no file`)
		}
		if rest != "" && !strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "\t") {
			return "", "", errors.New(`want a space after the closing " (` + quoteHint + `)`)
		}
		switch f := strings.Fields(rest); len(f) {
		case 0:
			return p, "", nil
		case 1:
			return p, f[0], nil
		}
		return "", "", errors.New(`want one frame list after the quoted pattern (` + quoteHint + `)`)
	}
	fields := strings.Fields(line)
	if len(fields) == 1 {
		return line, "", nil
	}
	last := fields[len(fields)-1]
	head := strings.TrimSpace(strings.TrimSuffix(line, last))
	_, ferr := hooks.ParseFrames(last)
	switch {
	case ferr == nil && !hooks.HasFrameToken(head):
		return "", "", fmt.Errorf("%s has no frame token for the frame list %q (%s)", head, last, quoteHint)
	case ferr == nil:
		return head, last, nil
	case !hooks.HasFrameToken(line):
		return line, "", nil
	}
	return "", "", fmt.Errorf("%s (%s)", strings.TrimPrefix(ferr.Error(), "hooks: "), quoteHint)
}

// resolveManifest turns manifest lines into items under mount (the
// mountpoint, "" when unknown): relative paths are joined to it, and an
// absolute path outside it is an error of its line, since a manifest names
// the files of one mount. Those errors and bad, the syntax errors, are
// reported together, so one pass finds every bad line.
func resolveManifest(name string, lines []manifestLine, bad []badLine, mount string) ([]hooks.Item, error) {
	var items []hooks.Item
	bad = slices.Clone(bad)
	for _, l := range lines {
		p, err := resolveUnder(l.path, mount)
		if err != nil {
			bad = append(bad, badLine{l.n, err.Error()})
			continue
		}
		if !l.seq {
			items = append(items, hooks.Item{Path: p})
			continue
		}
		seq, err := patternSeq(p, l.frames)
		if err != nil {
			bad = append(bad, badLine{l.n, err.Error()})
			continue
		}
		items = append(items, hooks.Item{Seq: seq})
	}
	if err := newManifestError(name, bad); err != nil {
		return nil, err
	}
	return items, nil
}

// resolveUnder makes p absolute under mount.
func resolveUnder(p, mount string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		if mount == "" {
			return "", fmt.Errorf("%s is relative to the mount, which is not known here (give --mount)", p)
		}
		c := path.Clean(p)
		if c == ".." || strings.HasPrefix(c, "../") {
			return "", fmt.Errorf("%s leaves the mount %s", p, mount)
		}
		if c == "." {
			return "", fmt.Errorf("%s is the mount itself, not a file", p)
		}
		return path.Join(mount, c), nil
	}
	c := path.Clean(p)
	if mount != "" && mount != "/" && !strings.HasPrefix(c, mount+"/") {
		return "", fmt.Errorf("%s is outside the mount %s", p, mount)
	}
	return c, nil
}

// dryRunItems expands items as the daemon would and checks through the
// mount which files exist: a stat of each file, a listing of each tile
// pattern's directory. The kernel asks the daemon serving the mount, so
// no hook socket is involved.
func dryRunItems(items []hooks.Item, asJSON bool, stdout io.Writer) error {
	var res struct {
		Files   []string `json:"files"`
		Missing []string `json:"missing"`
	}
	res.Files, res.Missing = []string{}, []string{}
	seen := map[string]bool{}
	note := func(p string, exists bool) {
		if seen[p] {
			return
		}
		seen[p] = true
		if exists {
			res.Files = append(res.Files, p)
		} else {
			res.Missing = append(res.Missing, p)
		}
	}
	check := func(p string) error {
		_, err := os.Stat(p)
		switch {
		case err == nil:
			note(p, true)
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
			note(p, false)
		default:
			return err
		}
		return nil
	}
	for _, it := range items {
		if it.Seq == nil {
			if err := check(it.Path); err != nil {
				return err
			}
			continue
		}
		var fr []int
		if it.Seq.Frames != "" {
			fr, _ = hooks.ParseFrames(it.Seq.Frames) // checked when the item was made
		}
		paths, err := hooks.ExpandPattern(it.Seq.Pattern, fr, nil)
		if err != nil {
			return err
		}
		for _, p := range paths {
			if !hooks.HasTileToken(p) {
				if err := check(p); err != nil {
					return err
				}
				continue
			}
			dir, name := filepath.Split(p)
			ents, err := os.ReadDir(dir)
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				note(p, false)
				continue
			}
			if err != nil {
				return err
			}
			var names []string
			for _, e := range ents {
				if !e.IsDir() {
					names = append(names, e.Name())
				}
			}
			tiles, err := hooks.MatchTiles(name, names)
			if err != nil {
				return err
			}
			if len(tiles) == 0 {
				note(p, false)
			}
			for _, t := range tiles {
				note(dir+t, true)
			}
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
	} else {
		for _, p := range res.Files {
			fmt.Fprintf(stdout, "  ok        %s\n", p)
		}
		for _, p := range res.Missing {
			fmt.Fprintf(stdout, "  missing   %s\n", p)
		}
		fmt.Fprintf(stdout, "jitfs prefetch --dry-run: %s: %d present, %d missing\n", counted(len(res.Files)+len(res.Missing), "file"), len(res.Files), len(res.Missing))
	}
	if len(res.Missing) > 0 {
		return &exitError{code: exitPrefetchMissing}
	}
	return nil
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
	fl := newFlags("status")
	socket := fl.String("socket", "", "hook API socket (default: $JITFS_SOCKET, else the socket of the mount holding PATH or the current directory)")
	asJSON := fl.Bool("json", false, "print JSON")
	watch := fl.Duration("watch", 0, "refresh every interval until interrupted (a live progress view)")
	nodeSock := fl.String("daemon", "", "the node daemon's socket: every job and task on the node (default, when no mount's hook socket is found: $"+daemon.EnvNodeSocket+", else "+daemon.DefaultNodeSocket+")")
	pos, err := parseArgs(fl, args)
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
			printStatus(stdout, st, *watch > 0 && isTerminal(stdout))
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
	fmt.Fprintf(w, "jitfs %s at %s\n", st.Version, st.Mountpoint)
	if st.Outputs != nil {
		printOutputs(w, *st.Outputs)
		if st.CacheBudgetBytes == 0 {
			// An output area alone: it has no cache, no prefetch and
			// nothing in flight to read, and lines of zeros about them
			// would hide the outputs.
			return
		}
	}
	fmt.Fprintf(w, "  cache       %s of %s, byte hit ratio %.1f%%\n", size(st.CacheUsedBytes), size(st.CacheBudgetBytes), 100*st.HitRatio)
	fmt.Fprintf(w, "  prefetch    %d queued, %d in flight, %s outstanding; %s prefetched, %s evicted unread\n",
		st.QueueDepth, st.InFlight, size(st.BytesOutstanding), size(st.PrefetchedBytes), size(st.WastedBytes))
	fmt.Fprintf(w, "  pinned      %s\n", size(st.PinnedBytes))
	if st.Speculation != nil {
		fmt.Fprintf(w, "  speculation %s\n", speculationLine(st.Speculation))
	}
	if st.Zone != nil {
		fmt.Fprintf(w, "  zone cache  %s\n", zoneLine(*st.Zone))
	}
	if st.MissingFiles > 0 || st.RefusedFiles > 0 {
		fmt.Fprintf(w, "  asked for   %s not in the bucket; %s refused (daemon busy)\n", counted(st.MissingFiles, "name"), counted(st.RefusedFiles, "file"))
	}
	for _, j := range st.Jobs {
		// By bytes once any size is known, else by files: a file still
		// being fetched has no size yet, and 0 B of 0 B is no 100%.
		pct := 100.0
		switch {
		case j.BytesWanted > 0:
			pct = 100 * float64(j.BytesResident) / float64(j.BytesWanted)
		case j.Wanted > 0:
			pct = 100 * float64(j.Resident) / float64(j.Wanted)
		}
		noun := "files"
		if j.Wanted == 1 {
			noun = "file"
		}
		fmt.Fprintf(w, "  job %-20s %d/%d %s, %s/%s (%.0f%%), %s pinned, %d missing\n", j.ID, j.Resident, j.Wanted, noun,
			size(j.BytesResident), size(j.BytesWanted), pct, size(j.PinnedBytes), j.Missing)
	}
	printNow(w, st.Status)
}

// maxNotDurableShown is how many outputs not durable status names: the
// oldest say where a flush is stuck; the rest are counted.
const maxNotDurableShown = 5

// printOutputs is an output area's part of a status: what is staged, the
// outputs by state, what is durable, and the first few that are not.
func printOutputs(w io.Writer, o hooks.OutputStatus) {
	fmt.Fprintf(w, "  outputs     gs://%s/%s, staged %s of %s in %s\n", o.Bucket, o.Prefix, size(o.StagedBytes), size(o.StagingBudgetBytes), o.StagingDir)
	var states []string
	for _, k := range slices.Sorted(maps.Keys(o.Files)) {
		if o.Files[k] > 0 {
			states = append(states, fmt.Sprintf("%d %s", o.Files[k], k))
		}
	}
	line := counted(o.NotDurableTotal, "file") + " not durable"
	if len(states) > 0 {
		line += " (" + strings.Join(states, ", ") + ")"
	}
	fmt.Fprintf(w, "  files       %s; %s durable (%s)\n", line, counted(o.DurableFiles, "file"), size(o.DurableBytes))
	fmt.Fprintf(w, "  uploads     %s, %s\n", counted(o.Retries, "retry"), counted(o.PermanentFailures, "permanent failure"))
	for i, f := range o.NotDurable {
		if i == maxNotDurableShown {
			fmt.Fprintf(w, "    and %d more\n", o.NotDurableTotal-maxNotDurableShown)
			break
		}
		what := f.State + ", " + size(f.Size)
		if f.Error != "" {
			what += ": " + f.Error
		}
		fmt.Fprintf(w, "    %-9s %s (%s)\n", "pending", f.Path, what)
	}
}

// daemonMountpoint is the mountpoint of the daemon daemonSocket finds, or
// "" when none answers soon.
func daemonMountpoint(socket string, pos []string) string {
	sock, err := daemonSocket(socket, pos)
	if err != nil {
		return ""
	}
	cl := hooks.NewClient(sock, 5*time.Second)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := cl.Health(ctx)
	if err != nil {
		return ""
	}
	return h.Mountpoint
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
			printNodeStatus(stdout, st, watch > 0 && isTerminal(stdout))
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
	fmt.Fprintf(w, "jitfs node daemon (pid %d) at %s\n", st.PID, st.Socket)
	fmt.Fprintf(w, "  cache       %s of %s in %s\n", size(st.CacheUsedBytes), size(st.CacheBudgetBytes), st.CacheDir)
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
		state := counted(len(j.Tasks), "task")
		if len(j.Tasks) == 0 && j.EndsAt > 0 {
			state = "no task; ends " + time.Unix(int64(j.EndsAt), 0).Format(time.RFC3339)
		}
		fmt.Fprintf(w, "  job %-20s %s; %s resident, %s pinned\n", j.ID, state, size(j.ResidentBytes), size(j.PinnedBytes))
		for _, s := range j.Sources {
			fmt.Fprintf(w, "    %-40s %s (%s), %s resident, %s (%d from the store)\n",
				s.Source, counted(s.Files, "file"), size(s.FileBytes), size(s.ResidentBytes), counted(s.Listings, "listing"), s.StoredListings)
			if s.Prefetch.Speculation != nil {
				fmt.Fprintf(w, "      speculation %s\n", speculationLine(s.Prefetch.Speculation))
			}
		}
		for _, t := range j.Tasks {
			fmt.Fprintf(w, "    task %s pid %d %s mounts %v outputs %v\n", t.ID, t.PID, t.Name, t.Mounts, t.Outputs)
		}
	}
	printNodeNow(w, st)
}

// zoneLine tells whether the zone cache is in use and what it served.
func zoneLine(z gcs.ZoneStatus) string {
	state := "up"
	if !z.Up {
		state = "DOWN, reading from GCS directly (" + z.LastError + ")"
	}
	return fmt.Sprintf("%s %s; %d reads (%s) through it, %d failed, %d bypassed, %d objects failed their check, %d outages",
		z.URL, state, z.Reads, size(z.Bytes), z.Errors, z.Bypassed, z.Mismatches, z.Outages)
}

// speculationLine tells what fetching ahead without hooks did: how much
// of it the readers used, and how much went to waste.
func speculationLine(sp *hooks.SpeculationStatus) string {
	line := fmt.Sprintf("%s (%s) fetched ahead: %d used (%s), %d wasted (%s), %d in flight; %s stopped",
		counted(sp.Predicted, "file"), size(sp.Bytes), sp.Used, size(sp.UsedBytes), sp.Wasted, size(sp.WastedBytes), sp.Predicted-sp.Used-sp.Wasted, counted(sp.Stopped, "stream"))
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

// counted is n and the noun, in the plural unless n is 1: "1 file",
// "2 files", "3 retries".
func counted[N ~int | ~int64](n N, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if stem, ok := strings.CutSuffix(noun, "y"); ok {
		return fmt.Sprintf("%d %sies", n, stem)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
