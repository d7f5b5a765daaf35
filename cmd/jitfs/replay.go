package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/dustin/go-humanize/english"

	"github.com/jitfs/jitfs/replay"
	"github.com/jitfs/jitfs/trace"
)

// mappings collects repeated --map OLD=NEW flags.
type mappings []replay.Mapping

func (m *mappings) String() string { return fmt.Sprint(*m) }
func (m *mappings) Type() string   { return "OLD=NEW" }
func (m *mappings) Set(s string) error {
	mp, err := replay.ParseMapping(s)
	if err != nil {
		return err
	}
	*m = append(*m, mp)
	return nil
}

func runReplay(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("replay")
	root := fl.String("root", "", "directory to replay against: a jitfs mount, another filesystem's mount or a local copy (required)")
	var maps mappings
	fl.Var(&maps, "map", "rewrite paths starting with OLD to start with NEW (OLD=NEW, repeatable)")
	pace := fl.Bool("pace", false, "keep the recorded gaps between operations instead of going as fast as possible")
	asJSON := fl.Bool("json", false, "print the result as JSON")
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want one TRACE file, got %s", errUsage, english.Plural(len(pos), "argument", ""))
	}
	if *root == "" {
		return fmt.Errorf("%w: --root is required", errUsage)
	}
	h, evs, err := readTraceFile(pos[0], stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := replay.Run(ctx, h, evs, replay.Options{Root: *root, Map: maps, Pace: *pace})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printReplay(stdout, pos[0], res)
	}
	return res.Err()
}

// readTraceFile reads a whole trace. A trace torn by a killed writer is
// still replayable up to the tear, so that is a warning, not an error.
func readTraceFile(path string, stderr io.Writer) (trace.Header, []trace.Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return trace.Header{}, nil, err
	}
	defer f.Close()
	h, evs, err := trace.ReadAll(f)
	if errors.Is(err, trace.ErrTruncated) {
		fmt.Fprintf(stderr, "jitfs: warning: %s: %v; using the %d events before the tear\n", path, err, len(evs))
		err = nil
	}
	if err != nil {
		return h, nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, evs, nil
}

func printReplay(w io.Writer, name string, r *replay.Result) {
	fmt.Fprintf(w, "replay of %s against %s\n", name, r.Root)
	fmt.Fprintf(w, "  wall time        %.3f s\n", r.Wall)
	if r.TTFB >= 0 {
		fmt.Fprintf(w, "  first byte       %.3f s\n", r.TTFB)
	} else {
		fmt.Fprintf(w, "  first byte       (nothing read)\n")
	}
	fmt.Fprintf(w, "  operations       %d by %d processes (%d skipped), at most %d at once\n", r.Ops, r.Pids, r.Skipped, r.MaxConcurrent)
	fmt.Fprintf(w, "  bytes read       %d (%s)\n", r.Bytes, size(r.Bytes))
	fmt.Fprintf(w, "  opens            %d\n", r.Opens)
	fmt.Fprintf(w, "  ENOENT           %d (as recorded)\n", r.ENOENT)
	fmt.Fprintf(w, "  mismatches       %d (failed when recorded, succeed now)\n", r.Mismatches)
	fmt.Fprintf(w, "  errors           %d\n", r.Errors)
	ops := make([]string, 0, len(r.Latency))
	for op := range r.Latency {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	fmt.Fprintf(w, "  %-10s %8s %10s %10s %10s\n", "op", "count", "p50 ms", "p99 ms", "max ms")
	for _, op := range ops {
		l := r.Latency[op]
		fmt.Fprintf(w, "  %-10s %8d %10.3f %10.3f %10.3f\n", op, l.Count, l.P50, l.P99, l.Max)
	}
	for _, e := range r.FirstErrors {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
}
