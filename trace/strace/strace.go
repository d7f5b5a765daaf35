package strace

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/jitfs/jitfs/trace"
)

// Options tunes Import.
type Options struct {
	// Prefix keeps only events on paths under it (see trace.Under) and
	// becomes trace.Header.Root. Empty or "/" keeps every path.
	Prefix string
	// Note is copied to trace.Header.Note.
	Note string
}

// Stats says what an import made of its input, so that a user can tell a
// clean conversion from one that lost events.
type Stats struct {
	Lines int `json:"lines"` // lines read
	// Calls counts whole system calls; an unfinished/resumed pair is one.
	Calls  int `json:"calls"`
	Events int `json:"events"` // events emitted
	// Outside counts events left out because their path is not under
	// the prefix.
	Outside int `json:"outside"`
	// Malformed lines are skipped; Examples holds the first few.
	Malformed int      `json:"malformed"`
	Examples  []string `json:"examples,omitempty"`
	// Ignored counts calls that carry no event and no state (rename,
	// exit_group, any syscall beyond the recording command's list).
	Ignored int `json:"ignored"`
	// Unfinished counts calls whose result never appeared (the process
	// died inside them) or was "?".
	Unfinished int `json:"unfinished"`
	// Unresolved counts events dropped for want of a path: a relative
	// path before the process's cwd is known, an fd with no -y
	// annotation that was never opened in the trace, a path that is not
	// valid UTF-8 (JSON cannot carry it faithfully).
	Unresolved int `json:"unresolved"`
	// UnknownOffset counts plain reads dropped because their file offset
	// could not be reconstructed (a write with O_APPEND moved it).
	UnknownOffset int `json:"unknown_offset"`
	// Adopted counts fds first seen in use rather than opened (inherited
	// from before the trace, or made by a call strace was not told to
	// trace); their path comes from -y and their offset is assumed 0.
	Adopted int `json:"adopted"`
	Pids    int `json:"pids"` // distinct pids with at least one line
}

// String is the one-line account printed after an import.
func (s Stats) String() string {
	return fmt.Sprintf("%d lines, %d syscalls, %d events (%d outside the prefix); %d malformed, %d unfinished, %d unresolved, %d unknown offset, %d adopted fds, %d pids",
		s.Lines, s.Calls, s.Events, s.Outside, s.Malformed, s.Unfinished, s.Unresolved, s.UnknownOffset, s.Adopted, s.Pids)
}

const (
	// maxStraceLine bounds one line; longer ones (an execve printed
	// without -s 0) are skipped as malformed rather than buffered.
	maxStraceLine = 1 << 20
	maxExamples   = 5
	// maxForkDepth bounds the recursion that builds a child from a parent
	// that itself has not been seen yet; only a hostile input nests deeper.
	maxForkDepth = 64
)

// Import converts the output of
//
//	strace -f -ttt -T -y -s 0 -qq -o RAW -e trace=... CMD
//
// (see docs/trace-format.md for the full command) into a trace. It never
// fails on a bad line: malformed lines are counted in Stats and skipped.
// It returns an error only when r cannot be read or holds no strace line.
//
// Events are in time order, T counted from the earliest timestamp, which
// becomes trace.Header.Start. Offsets of plain read() and readv() are
// reconstructed by following each open file description through open,
// read, lseek, dup*, fcntl(F_DUPFD*), fork/clone, close and execve.
func Import(r io.Reader, opts Options) (trace.Header, []trace.Event, Stats, error) {
	prefix := "/"
	if opts.Prefix != "" {
		p, ok := trace.CleanAbs(opts.Prefix)
		if !ok {
			return trace.Header{}, nil, Stats{}, fmt.Errorf("trace: prefix %q is not an absolute path", opts.Prefix)
		}
		prefix = p
	}
	im := &importer{
		prefix: prefix,
		procs:  map[int]*proc{},
		clones: map[int][]cloneRef{},
	}
	if err := im.scan(r); err != nil {
		return trace.Header{}, nil, im.st, err
	}
	if im.st.Calls == 0 {
		msg := fmt.Sprintf("trace: no strace system call lines in %d lines (want the output of strace -f -ttt -T -y)", im.st.Lines)
		if len(im.st.Examples) > 0 {
			msg += "; first: " + im.st.Examples[0]
		}
		return trace.Header{}, nil, im.st, errors.New(msg)
	}
	for _, rec := range im.recs {
		im.apply(rec)
	}
	// Calls are applied in the order they finished, which keeps offsets
	// right, but an event's T is when its call began.
	sort.SliceStable(im.evs, func(i, j int) bool { return im.evs[i].T < im.evs[j].T })
	im.st.Events = len(im.evs)
	h := trace.Header{
		Format: trace.Format,
		Source: "strace",
		Start:  time.Unix(0, im.t0).UTC(),
		Root:   prefix,
		Cmd:    im.cmd,
		Note:   opts.Note,
	}
	return h, im.evs, im.st, nil
}

// importer holds both passes. The first (scan) joins split calls and
// learns which pid each clone created; the second (apply) needs that to
// give a child its parent's fds even when the child's first line comes
// before the parent's clone returns, which strace -f prints often.
type importer struct {
	prefix string
	st     Stats
	recs   []record
	clones map[int][]cloneRef
	t0     int64
	haveT0 bool

	procs map[int]*proc
	evs   []trace.Event
	cmd   []string
}
