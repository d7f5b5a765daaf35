package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/jitfs/jitfs/telemetry"
)

type command struct {
	name, usage string
	run         func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return append([]command{
		{"mount", "mount gs://BUCKET[/PREFIX] MOUNTPOINT [flags]: serve a bucket prefix until SIGINT/SIGTERM", runMount},
		{"output", "output gs://BUCKET[/PREFIX] MOUNTPOINT [flags]: serve a writable output area, uploading files to GCS as they are closed", runOutput},
		{"unmount", "unmount [--lazy] MOUNT...: end jitfs mounts and output areas; the daemon serving each exits", runUnmount},
		{"flush", "flush [--wait] [--timeout D] [--retry-failed] [--json] MOUNT: check (or wait) that every output written to an output area is durable in GCS", runFlush},
		{"run", "run --mount gs://B/P:DIR [--output gs://B/P:DIR] [--prefetch MANIFEST] -- CMD ARGS...: mount, run a render command, flush its outputs, unmount", runRun},
		{"daemon", "daemon --cache-dir DIR --cache-size SIZE [--staging-dir DIR] [--socket PATH]: the node agent; every jitfs run on the node attaches to it and shares its one cache", runDaemon},
		{"affinity-key", "affinity-key gs://BUCKET[/PREFIX] | --job ID: the key node daemons publish in Nomad node metadata (jitfs daemon --nomad-meta), for a job's affinity", runAffinityKey},
		{"trace", "trace import-strace|summary ...: convert an strace of a render into a trace; print a trace's totals", func(args []string, stdout, stderr io.Writer) error {
			return runTrace(context.Background(), args, stdout, stderr)
		}},
		{"prefetch", "prefetch [--wait D] [--job ID] [--manifest F] [--from-trace T] PATH...: make files resident before a render opens them", runPrefetch},
		{"status", "status [--json] [--watch 1s] [PATH]: the daemon's prefetch queue, jobs and cache", runStatus},
		{"replay", "replay TRACE --root DIR [--map OLD=NEW] [--pace] [--json]: re-issue a trace's file operations against a directory", runReplay},
	}, devCommands()...)
}

func main() { os.Exit(entry(os.Args, os.Stdout, os.Stderr)) }

// entry runs the command line argv: the jitfs command, or the mount helper
// when the binary was run as mount.fuse.jitfs (mounthelper.go).
func entry(argv []string, stdout, stderr io.Writer) int {
	if len(argv) > 0 && isMountHelper(argv[0]) {
		return exitStatus("mount helper", runMountHelper(argv[1:], stdout, stderr), stderr)
	}
	return run(argv[1:], stdout, stderr)
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

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "version" || args[0] == "--version") {
		fmt.Fprint(stdout, versionText())
		return 0
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		return exitStatus(c.name, c.run(args[1:], stdout, stderr), stderr)
	}
	fmt.Fprintf(stderr, "jitfs: unknown command %q\n", args[0])
	printUsage(stderr)
	return 2
}

// exitStatus prints a command's error as its one line and returns the
// process's exit status.
func exitStatus(name string, err error, stderr io.Writer) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintf(stderr, "jitfs %s: %v\n", name, ee.err)
		}
		return ee.code
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "jitfs %s: %v\n", name, err)
		return 2
	default:
		fmt.Fprintf(stderr, "jitfs %s: %v\n", name, err)
		return 1
	}
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

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: jitfs COMMAND [args]")
	fmt.Fprintln(w, "  version: the module version, commit and Go version jitfs was built from (also --version)")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %s\n", c.usage)
	}
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments, as users type them.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
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
	if err != nil || f <= 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%w: invalid size %q (want e.g. 300GiB)", errUsage, s)
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
