package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/dustin/go-humanize/english"

	"github.com/jitfs/jitfs/trace"
	"github.com/jitfs/jitfs/trace/strace"
)

func runTraceImportStrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlags("trace import-strace")
	prefix := fl.String("prefix", "", "keep only events on paths under this directory; it becomes the trace's root (default: keep all, root /)")
	note := fl.String("note", "", "free text stored in the trace header: the workload, how it was recorded")
	out := fl.StringP("output", "o", "", "write the trace to this file (default: stdout)")
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want one STRACE_FILE, got %s", errUsage, english.Plural(len(pos), "argument", ""))
	}
	if *prefix != "" && !strings.HasPrefix(*prefix, "/") {
		return fmt.Errorf("%w: --prefix %q must be an absolute path (event paths are)", errUsage, *prefix)
	}
	// Refuse before reading anything: a binary stream would garble the
	// terminal, and the import may take a while.
	if *out == "" && isTerminal(stdout) {
		return fmt.Errorf("%w: refusing to write a binary trace to a terminal; give -o FILE or redirect stdout", errUsage)
	}

	name := pos[0]
	var in io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	h, evs, st, err := strace.Import(ctxReader{ctx, in}, strace.Options{Prefix: *prefix, Note: *note})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if *out == "" {
		if err := trace.Write(stdout, h, evs); err != nil {
			return fmt.Errorf("writing the trace: %w", err)
		}
	} else if err := writeFileAtomic(*out, func(w io.Writer) error { return trace.Write(w, h, evs) }); err != nil {
		return err
	}

	dest := *out
	if dest == "" {
		dest = "stdout"
	}
	fmt.Fprintf(stderr, "jitfs trace import-strace: %s -> %s: %s\n", name, dest, st)
	for _, ex := range st.Examples {
		fmt.Fprintf(stderr, "  malformed %s\n", ex)
	}
	if st.Events == 0 && st.Outside > 0 {
		fmt.Fprintf(stderr, "  warning: no event is under --prefix %s; is it the path the traced program used?\n", h.Root)
	}
	return nil
}

// writeFileAtomic writes through a temporary file and renames it, so an
// interrupted import never leaves a half trace under the final name.
func writeFileAtomic(name string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename this finds nothing
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	// CreateTemp makes the file 0600; a trace is no secret and is shared.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// ctxReader stops a long import when the command is interrupted.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func runTraceSummary(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlags("trace summary")
	prefix := fl.String("prefix", "", "count only events on paths under this directory")
	asJSON := fl.Bool("json", false, "print the summary as JSON")
	pos, err := parseArgs(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want one TRACE file, got %s", errUsage, english.Plural(len(pos), "argument", ""))
	}
	if *prefix != "" && !strings.HasPrefix(*prefix, "/") {
		return fmt.Errorf("%w: --prefix %q must be an absolute path (event paths are)", errUsage, *prefix)
	}
	name := pos[0]
	var in io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	h, evs, err := trace.ReadAll(ctxReader{ctx, in})
	if errors.Is(err, trace.ErrTruncated) {
		// A killed recorder leaves a torn tail; what came before is
		// still the recording.
		fmt.Fprintf(stderr, "jitfs trace summary: warning: %s: %v; summarising the %d events before the tear\n", name, err, len(evs))
		err = nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	s := trace.Summarize(evs, *prefix)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	printTraceSummary(stdout, name, h, s)
	return nil
}

func printTraceSummary(w io.Writer, name string, h trace.Header, s trace.Summary) {
	fmt.Fprintf(w, "trace           %s\n", name)
	fmt.Fprintf(w, "source          %s, root %s, started %s\n", h.Source, h.Root, h.Start.UTC().Format("2006-01-02 15:04:05.000 MST"))
	if len(h.Cmd) > 0 {
		fmt.Fprintf(w, "command         %s\n", strings.Join(h.Cmd, " "))
	}
	if h.Bucket != "" {
		fmt.Fprintf(w, "bucket          gs://%s/%s\n", h.Bucket, h.Prefix)
	}
	if h.Note != "" {
		fmt.Fprintf(w, "note            %s\n", h.Note)
	}
	if s.Prefix != "" {
		fmt.Fprintf(w, "prefix          %s (only paths under it are counted)\n", s.Prefix)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "events          %d by %d pids over %.3f s\n", s.Events, s.Pids, s.Duration)
	fmt.Fprintf(w, "opens           %d: %d files, %d directories, %d failed, %d for writing\n", s.Opens, s.Files, s.Dirs, s.OpenErrors, s.WriteOpens)
	amp := ""
	if s.DistinctBytesRead > 0 {
		amp = fmt.Sprintf(", %.2fx", float64(s.BytesRead)/float64(s.DistinctBytesRead))
	}
	fmt.Fprintf(w, "reads           %d: %s returned, %s distinct%s\n", s.Reads, size(s.BytesRead), size(s.DistinctBytesRead), amp)
	fmt.Fprintf(w, "mmaps           %d: %s mapped (an upper bound: a syscall trace cannot see which pages were touched)\n", s.Mmaps, size(s.MmapBytes))
	fmt.Fprintf(w, "bytes accessed  %s distinct, reads and mappings together\n", size(s.DistinctBytesAccessed))
	fmt.Fprintf(w, "lookups         %d (lookup, stat, access, readlink); %d getattrs; %d readdirs\n", s.Lookups, s.Getattrs, s.Readdirs)
	fmt.Fprintf(w, "ENOENT          %d on %d distinct paths; %d errors in all\n", s.ENOENT, s.ENOENTPaths, s.Errors)
	if s.CacheHits+s.CachePartial+s.CacheMisses > 0 || s.FetchedBytes > 0 {
		fmt.Fprintf(w, "cache           %d hits, %d partial, %d misses; %s fetched from GCS\n", s.CacheHits, s.CachePartial, s.CacheMisses, size(s.FetchedBytes))
	}
	switch {
	case s.HasEnd:
		fmt.Fprintf(w, "recorder        %d events written, %d dropped\n", s.Recorded, s.Dropped)
	case h.Source == "mount":
		fmt.Fprintf(w, "recorder        no end trailer: the daemon did not close the trace\n")
	}
	ops := make([]string, 0, len(s.Ops))
	for op := range s.Ops {
		ops = append(ops, string(op))
	}
	sort.Strings(ops)
	var parts []string
	for _, op := range ops {
		parts = append(parts, fmt.Sprintf("%s %d", op, s.Ops[trace.Op(op)]))
	}
	fmt.Fprintf(w, "ops             %s\n", strings.Join(parts, ", "))
	if len(s.TopFiles) == 0 {
		return
	}
	fmt.Fprintf(w, "\nfiles with the most bytes read or mapped\n")
	fmt.Fprintf(w, "  %10s %10s %10s %10s %6s %6s  %s\n", "read", "distinct", "mapped", "size", "opens", "reads", "path")
	for _, f := range s.TopFiles {
		sz := "?"
		if f.Size > 0 {
			sz = size(f.Size)
		}
		fmt.Fprintf(w, "  %10s %10s %10s %10s %6d %6d  %s\n", size(f.BytesRead), size(f.DistinctBytesRead),
			size(f.MmapBytes), sz, f.Opens, f.Reads, f.Path)
	}
}
