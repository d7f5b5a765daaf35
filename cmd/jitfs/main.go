package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/jitfs/jitfs/telemetry"

	"github.com/spf13/pflag"
)

// Flag groups shared by the commands that serve mounts.
var (
	cacheGroup  = flagGroup{"Cache", []string{"cache-dir", "cache-size", "verify", "job-grace"}}
	gcsGroup    = flagGroup{"Cloud Storage", []string{"endpoint", "metadata-ttl", "gcs-attempt-timeout", "op-timeout", "zone-cache", "zone-token-file", "zone-timeout"}}
	fuseGroup   = flagGroup{"FUSE", []string{"passthrough", "allow-other", "debug-fuse"}}
	hookGroup   = flagGroup{"Prefetch", []string{"socket", "socket-group", "prefetch-workers", "speculate", "learn-prefix", "prefetch", "prefetch-wait", "job"}}
	outputGroup = flagGroup{"Outputs", []string{"staging-dir", "staging-size", "staging-wait", "upload-workers", "upload-max-backoff", "upload-cut-short", "upload-delay", "stop-flush-timeout", "flush-timeout"}}
	nomadGroup  = flagGroup{"Nomad", []string{"nomad-meta", "nomad-addr", "nomad-meta-interval", "nomad-meta-min-bytes"}}
	signalGroup = flagGroup{"Logs, metrics and traces", []string{"log-format", "log-level", "metrics-addr", "trace"}}
)

func commands() []command {
	return append([]command{
		{name: "mount", args: "gs://BUCKET[/PREFIX] MOUNTPOINT", group: "serve",
			short: "serve a bucket prefix read-only at a directory until SIGINT/SIGTERM",
			long: "Serves gs://BUCKET/PREFIX read-only at MOUNTPOINT. Each file is fetched from Cloud Storage the first\n" +
				"time it is read, into the cache, and read from there afterwards; listings and generations are pinned\n" +
				"for the mount's lifetime (--metadata-ttl). Renders and hooks ask for files ahead through the hook\n" +
				"socket (jitfs prefetch). Also mount -t fuse.jitfs and fstab, through mount.fuse.jitfs (README).",
			examples: "  jitfs mount gs://show-assets/proj /mnt/show --cache-dir /mnt/disks/ssd/jitfs --cache-size 300GiB\n\n" +
				"  # the same through mount(8)\n" +
				"  mount -t fuse.jitfs gs://show-assets/proj /mnt/show -o cache_dir=/mnt/disks/ssd/jitfs,cache_size=300GiB",
			flagGroups: []flagGroup{cacheGroup, gcsGroup, fuseGroup, hookGroup, signalGroup}, run: runMount},
		{name: "output", args: "gs://BUCKET[/PREFIX] MOUNTPOINT", group: "serve",
			short: "serve a writable output area, uploading each file to Cloud Storage once it is closed",
			long: "Serves a writable directory whose files are staged on local disk and uploaded to gs://BUCKET/PREFIX\n" +
				"when closed, verified, and kept staged until they are: outputs survive a killed daemon and a Cloud\n" +
				"Storage outage, and resume when the area is served again. jitfs flush waits for them.",
			examples:   "  jitfs output gs://show-renders/proj /mnt/out --staging-dir /mnt/disks/ssd/jitfs-staging",
			flagGroups: []flagGroup{outputGroup, gcsGroup, fuseGroup, hookGroup, signalGroup}, run: runOutput},
		{name: "run", args: "--mount gs://B/P:DIR [--output gs://B/P:DIR] [flags] -- CMD [ARGS...]", group: "serve", argsEnd: true,
			short: "mount, run a render command, flush its outputs, unmount",
			long: "Serves each --mount and --output, runs CMD with JITFS_SOCKET set, waits for CMD's outputs to be durable\n" +
				"in Cloud Storage, and unmounts. With a node daemon running (jitfs daemon), the task attaches to it and\n" +
				"shares its cache instead of mounting itself. Exits with CMD's status, or 75 when outputs are not\n" +
				"durable (docs/outputs.md). Flags end at CMD: everything after it is CMD's.",
			examples: "  jitfs run --mount gs://show-assets/proj:/mnt/show --output gs://show-renders/proj:/mnt/out \\\n" +
				"      --prefetch sh010.manifest -- nuke -x /mnt/show/comp/sh010.nk 1001-1010",
			flagGroups: []flagGroup{{"Mounts", []string{"mount", "output", "daemon"}}, hookGroup, cacheGroup, outputGroup, gcsGroup, fuseGroup, signalGroup}, run: runRun},
		{name: "daemon", group: "serve",
			short: "the node agent: every jitfs run on the node attaches to it and shares its one cache",
			long: "Runs the node's agent. Tasks' jitfs run attach through its control socket; it serves their mounts and\n" +
				"output areas from one process over one cache with one byte budget, keeps a job's snapshot and pins\n" +
				"while its tasks run, and learns what each job's frames read. Settings: flags, JITFS_<FLAG> variables\n" +
				"or a --config file (docs/node.md).",
			examples: "  jitfs daemon --cache-dir /mnt/disks/ssd/jitfs --cache-size 300GiB\n\n" +
				"  # settings from the file the node's units share\n" +
				"  jitfs daemon --config /etc/jitfs/daemon.env",
			flagGroups: []flagGroup{cacheGroup, outputGroup, hookGroup, gcsGroup, fuseGroup, nomadGroup, signalGroup}, run: runDaemon},
		{name: "unmount", args: "MOUNT...", group: "serve", completeArgs: completeMounts,
			short: "end jitfs mounts and output areas; the daemon serving each exits",
			long: "Ends jitfs mounts (scene mounts and output areas) as fusermount3 -u does, and refuses anything that is\n" +
				"not a jitfs mount. An output area's outputs that are not durable yet stay staged and resume when it is\n" +
				"served again; unmount names how many there are. Run jitfs flush --wait first to wait for them.",
			examples: "  jitfs unmount /mnt/show\n  jitfs unmount --lazy /mnt/show /mnt/out", run: runUnmount},
		{name: "prefetch", args: "[PATH|PATTERN...]", group: "frames", short: "make files resident before a render opens them",
			long: prefetchHelp, examples: "  jitfs prefetch --wait 10m --job show-sh010 --manifest sh010.manifest\n" +
				"  jitfs prefetch --frames 1001-1100 /mnt/show/plates/sh010/plate.####.exr\n" +
				"  jitfs prefetch --dry-run --mount /mnt/show --manifest sh010.manifest",
			flagGroups: []flagGroup{{"What", []string{"manifest", "frames", "from-trace", "trace-root", "mount"}}, {"How", []string{"wait", "job", "scope", "release", "dry-run"}}},
			run:        runPrefetch},
		{name: "flush", args: "MOUNT", group: "frames", short: "check, or wait, that every output written to an output area is durable",
			long: "Asks the output area at MOUNT whether every output written so far is durable in Cloud Storage, verified,\n" +
				"and with --wait waits until it is. Exit status: 0 durable, 75 not durable (pending, failing,\n" +
				"--timeout ran out, or interrupted; what is pending is listed), 69 no output area answers\n" +
				"(docs/outputs.md).",
			examples: "  jitfs flush --wait --timeout 30m /mnt/out", run: runFlush},
		{name: "status", args: "[PATH]", group: "frames", short: "what the daemon is doing: prefetch queue, jobs, cache, outputs",
			long: "Shows the state of the mount holding PATH (or the current directory), or with no mount there, of the\n" +
				"node daemon: every job and task, the prefetch queue, the cache, the outputs.",
			examples: "  jitfs status /mnt/show\n  jitfs status --watch 1s\n  jitfs status --json", run: runStatus},
		{name: "affinity-key", args: "gs://BUCKET[/PREFIX] | --job ID", group: "other",
			short:    "the key node daemons publish in Nomad node metadata, for a job's affinity",
			examples: "  jitfs affinity-key gs://show-assets/proj\n  jitfs affinity-key --job show-sh010", run: runAffinityKey},
		{name: "trace", group: "traces", short: "convert an strace of a render into a trace; print a trace's totals",
			subs: []command{
				{name: "import-strace", args: "STRACE_FILE", short: "convert strace -f -ttt -T -y output into a jitfs trace",
					long: "Converts the output of strace -f -ttt -T -y into a jitfs trace (docs/trace-format.md says how to\n" +
						"record one). STRACE_FILE \"-\" reads stdin.",
					examples: "  jitfs trace import-strace --prefix /mnt/show --note \"nuke sh010 f1001\" -o sh010.jsonl.zst render.strace",
					run: func(args []string, stdout, stderr io.Writer) error {
						return runTraceImportStrace(context.Background(), args, stdout, stderr)
					}},
				{name: "summary", args: "TRACE", short: "what a trace did: opens, reads, bytes, lookups, ENOENT, mmaps, cache outcomes",
					examples: "  jitfs trace summary sh010.jsonl.zst\n  jitfs trace summary --json sh010.jsonl.zst",
					run: func(args []string, stdout, stderr io.Writer) error {
						return runTraceSummary(context.Background(), args, stdout, stderr)
					}},
			}},
		{name: "replay", args: "TRACE --root DIR", group: "traces", short: "re-issue a trace's file operations against a directory",
			examples: "  jitfs replay sh010.jsonl.zst --root /mnt/show --map /mnt/show=/mnt/show", run: runReplay},
	}, devCommands()...)
}

func main() { os.Exit(entry(os.Args, os.Stdout, os.Stderr)) }

// entry runs the command line argv: the jitfs command, or the mount helper
// when the binary was run as mount.fuse.jitfs (mounthelper.go).
func entry(argv []string, stdout, stderr io.Writer) int {
	if len(argv) > 0 && isMountHelper(argv[0]) {
		return exitStatus("mount helper", runMountHelper(argv[1:], stdout, stderr), stderr)
	}
	return execute(argv[1:], stdout, stderr)
}

// errUsage marks errors caused by the command line (exit status 2).
var errUsage = errors.New("usage")

// exitError ends a command with a chosen exit status: jitfs run passes its
// command's through, and flush and run have codes of their own (see
// docs/outputs.md). err, when set, is printed as the one error line.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitStatus prints a command's error as its one line and returns the
// process's exit status.
func exitStatus(name string, err error, stderr io.Writer) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prog(name), ee.err)
		}
		return ee.code
	case errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "%s: %v\n", prog(name), err)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", prog(name), err)
		return 1
	}
}

// prog is how errors name the command: "jitfs mount".
func prog(name string) string {
	if name == "" {
		return "jitfs"
	}
	return "jitfs " + name
}

// versionText is what `jitfs version` prints: the module version, the
// commit it was built from (and whether the tree had changes), and the Go
// that built it, all from the binary's own build information.
func versionText() string {
	v, commit, when, dirty, goVersion := "(devel)", "unknown", "", false, runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.time":
				when = " (" + s.Value + ")"
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if dirty {
		commit += " with uncommitted changes"
	}
	return fmt.Sprintf("jitfs %s\ncommit %s%s\n%s %s/%s\n", v, commit, when, goVersion, runtime.GOOS, runtime.GOARCH)
}

// parseSize reads sizes such as 300GiB, 512MiB, 10G, 4096.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	units := []struct {
		suf string
		m   int64
	}{
		{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
		{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
	}
	for _, u := range units {
		if strings.HasSuffix(t, u.suf) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suf)), u.m
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	// NaN fails every comparison, so it is refused by name; a size must
	// come to at least one byte.
	if err != nil || math.IsNaN(f) || f*float64(mult) < 1 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%w: invalid size %q (want a size such as 300GiB, 512MiB or 1.5TB)", errUsage, s)
	}
	return int64(f * float64(mult)), nil
}

// parseGSURL splits gs://BUCKET[/PREFIX] into bucket and prefix ("" or
// ending in "/").
func parseGSURL(u string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(u, "gs://")
	if !ok {
		return "", "", fmt.Errorf("%w: %q is not a gs://BUCKET[/PREFIX] URL", errUsage, u)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" || strings.ContainsAny(bucket, " \x00") {
		return "", "", fmt.Errorf("%w: %q names no bucket", errUsage, u)
	}
	prefix = strings.Trim(prefix, "/")
	if strings.Contains(prefix, "//") || strings.Contains(prefix, "\x00") {
		return "", "", fmt.Errorf("%w: invalid prefix in %q", errUsage, u)
	}
	for _, seg := range strings.Split(prefix, "/") {
		if seg == "." || seg == ".." {
			return "", "", fmt.Errorf("%w: invalid prefix in %q", errUsage, u)
		}
	}
	if prefix != "" {
		prefix += "/"
	}
	return bucket, prefix, nil
}

// newLogger builds the one logger passed to every package.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, level)
	}
	o := &slog.HandlerOptions{Level: lv}
	// Records logged with a traced operation's context carry its trace_id
	// and span_id.
	switch format {
	case "text":
		return slog.New(telemetry.WithTraceIDs(slog.NewTextHandler(w, o))), nil
	case "json":
		return slog.New(telemetry.WithTraceIDs(slog.NewJSONHandler(w, o))), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q: want text or json", errUsage, format)
}
