package trace

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ImportOptions tunes ImportStrace.
type ImportOptions struct {
	// Prefix keeps only events on paths under it (see Under) and becomes
	// Header.Root. Empty or "/" keeps every path.
	Prefix string
	// Note is copied to Header.Note.
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

// ImportStrace converts the output of
//
//	strace -f -ttt -T -y -s 0 -qq -o RAW -e trace=... CMD
//
// (see docs/trace-format.md for the full command) into a trace. It never
// fails on a bad line: malformed lines are counted in Stats and skipped.
// It returns an error only when r cannot be read or holds no strace line.
//
// Events are in time order, T counted from the earliest timestamp, which
// becomes Header.Start. Offsets of plain read() and readv() are
// reconstructed by following each open file description through open,
// read, lseek, dup*, fcntl(F_DUPFD*), fork/clone, close and execve.
func ImportStrace(r io.Reader, opts ImportOptions) (Header, []Event, Stats, error) {
	prefix := "/"
	if opts.Prefix != "" {
		p, ok := CleanAbs(opts.Prefix)
		if !ok {
			return Header{}, nil, Stats{}, fmt.Errorf("trace: prefix %q is not an absolute path", opts.Prefix)
		}
		prefix = p
	}
	im := &importer{
		prefix: prefix,
		procs:  map[int]*proc{},
		clones: map[int][]cloneRef{},
	}
	if err := im.scan(r); err != nil {
		return Header{}, nil, im.st, err
	}
	if im.st.Calls == 0 {
		msg := fmt.Sprintf("trace: no strace system call lines in %d lines (want the output of strace -f -ttt -T -y)", im.st.Lines)
		if len(im.st.Examples) > 0 {
			msg += "; first: " + im.st.Examples[0]
		}
		return Header{}, nil, im.st, errors.New(msg)
	}
	for _, rec := range im.recs {
		im.apply(rec)
	}
	// Calls are applied in the order they finished, which keeps offsets
	// right, but an event's T is when its call began.
	sort.SliceStable(im.evs, func(i, j int) bool { return im.evs[i].T < im.evs[j].T })
	im.st.Events = len(im.evs)
	h := Header{
		Format: Format,
		Source: "strace",
		Start:  time.Unix(0, im.t0).UTC(),
		Root:   prefix,
		Cmd:    im.cmd,
		Note:   opts.Note,
	}
	return h, im.evs, im.st, nil
}

// call is one whole system call, its unfinished and resumed halves joined.
type call struct {
	line    int   // the line it began on
	pid     int   // the thread strace printed
	ns      int64 // when it began, nanoseconds since the epoch
	name    string
	args    []string // top-level arguments, still in strace's notation
	ret     int64
	retOK   bool   // false when the result was "?" or unparsable
	retPath string // the -y annotation on the result (open, dup)
	hasRetP bool
	errno   string
	dur     float64
}

type recKind int

const (
	recCall recKind = iota
	recExit
	recSupersede // pid now runs what "from" exec'd (a thread's execve)
)

type record struct {
	kind recKind
	pid  int
	from int
	c    *call
}

// cloneRef says that parent created pid with a call that began on line.
type cloneRef struct {
	line   int
	parent int
	files  bool // CLONE_FILES: the fd table is shared, not copied
	fs     bool // CLONE_FS: the cwd is shared, not copied
}

type pending struct {
	line int
	ns   int64
	name string
	text string
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
	evs   []Event
	cmd   []string
}

// scan is the first pass.
func (im *importer) scan(r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	pend := map[int]*pending{}
	pids := map[int]bool{}
	lineNo := 0
	for {
		line, tooLong, err := readLimitedLine(br, maxStraceLine)
		if len(line) > 0 || tooLong {
			lineNo++
			im.st.Lines++
			if tooLong {
				im.malformed(lineNo, "longer than 1 MiB", line)
			} else {
				im.scanLine(lineNo, strings.TrimRight(string(line), "\r\n"), pend, pids)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("trace: reading strace output: %w", err)
		}
	}
	im.st.Unfinished += len(pend)
	im.st.Pids = len(pids)
	for pid := range im.clones {
		refs := im.clones[pid]
		sort.SliceStable(refs, func(i, j int) bool { return refs[i].line < refs[j].line })
	}
	return nil
}

// readLimitedLine returns the next line without its newline; a line longer
// than max is consumed and reported as tooLong with its beginning.
func readLimitedLine(br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) <= max {
			line = append(line, frag...)
		} else {
			tooLong = true
			if len(line) < 80 {
				line = append(line, frag[:min(len(frag), 80)]...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return line, tooLong, err
	}
}

func (im *importer) malformed(lineNo int, why string, line []byte) {
	im.st.Malformed++
	if len(im.st.Examples) < maxExamples {
		s := string(line)
		if len(s) > 120 {
			s = s[:120] + "…"
		}
		im.st.Examples = append(im.st.Examples, fmt.Sprintf("line %d: %s: %s", lineNo, why, strings.ToValidUTF8(s, "?")))
	}
}

func (im *importer) scanLine(lineNo int, s string, pend map[int]*pending, pids map[int]bool) {
	if strings.TrimSpace(s) == "" || strings.HasPrefix(s, "strace: ") {
		return
	}
	pid, ns, body, why := splitPrefix(s)
	if why != "" {
		im.malformed(lineNo, why, []byte(s))
		return
	}
	pids[pid] = true
	if !im.haveT0 || ns < im.t0 {
		im.t0, im.haveT0 = ns, true
	}
	switch {
	case strings.HasPrefix(body, "+++"):
		if from, ok := cutSupersede(body); ok {
			// A non-leader thread exec'd: it continues under the
			// leader's pid, including the execve it is inside.
			if p := pend[from]; p != nil {
				pend[pid] = p
				delete(pend, from)
			}
			im.recs = append(im.recs, record{kind: recSupersede, pid: pid, from: from})
			return
		}
		if pend[pid] != nil {
			im.st.Unfinished++
			delete(pend, pid)
		}
		im.recs = append(im.recs, record{kind: recExit, pid: pid})
	case strings.HasPrefix(body, "---"):
		// A signal: nothing to record.
	case strings.HasPrefix(body, "<... "):
		rest := body[len("<... "):]
		name, after, ok := strings.Cut(rest, " resumed>")
		p := pend[pid]
		if !ok || p == nil || p.name != name {
			im.malformed(lineNo, "resumed call that did not start", []byte(s))
			return
		}
		if r, ok := cutUnfinished(after); ok {
			if len(p.text)+len(r) > maxStraceLine {
				delete(pend, pid)
				im.malformed(lineNo, "call longer than 1 MiB", []byte(s))
				return
			}
			p.text += r
			return
		}
		delete(pend, pid)
		im.finish(lineNo, p.line, pid, p.ns, p.name, p.text+after)
	default:
		i := strings.IndexByte(body, '(')
		if i <= 0 || !validName(body[:i]) {
			im.malformed(lineNo, "not a system call", []byte(s))
			return
		}
		if r, ok := cutUnfinished(body); ok {
			if pend[pid] != nil {
				im.st.Unfinished++
			}
			pend[pid] = &pending{line: lineNo, ns: ns, name: body[:i], text: r}
			return
		}
		im.finish(lineNo, lineNo, pid, ns, body[:i], body)
	}
}

func cutUnfinished(s string) (string, bool) {
	r, ok := strings.CutSuffix(s, "<unfinished ...>")
	if !ok {
		return s, false
	}
	return strings.TrimRight(r, " "), true
}

// cutSupersede parses "+++ superseded by execve in pid 123 +++".
func cutSupersede(body string) (int, bool) {
	rest, ok := strings.CutPrefix(body, "+++ superseded by execve in pid ")
	if !ok {
		return 0, false
	}
	n, ok := strings.CutSuffix(rest, " +++")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(n)
	return pid, err == nil && pid > 0
}

func validName(s string) bool {
	if len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '?') {
			return false
		}
	}
	return true
}

// splitPrefix takes the pid (`1234 `, `[pid 1234] `, or none without -f)
// and the -ttt timestamp off a line.
func splitPrefix(s string) (pid int, ns int64, body, why string) {
	s = strings.TrimLeft(s, " ")
	if rest, ok := strings.CutPrefix(s, "[pid"); ok {
		num, after, ok := strings.Cut(rest, "]")
		if !ok {
			return 0, 0, "", "bad [pid N] prefix"
		}
		n, err := strconv.Atoi(strings.TrimSpace(num))
		if err != nil || n < 0 {
			return 0, 0, "", "bad [pid N] prefix"
		}
		pid, s = n, strings.TrimLeft(after, " ")
	}
	first, rest, _ := strings.Cut(s, " ")
	if t, ok := parseEpoch(first); ok {
		return pid, t, strings.TrimLeft(rest, " "), ""
	}
	n, err := strconv.Atoi(first)
	if err != nil || n < 0 || pid != 0 {
		return 0, 0, "", "no pid or -ttt timestamp"
	}
	rest = strings.TrimLeft(rest, " ")
	second, body, _ := strings.Cut(rest, " ")
	t, ok := parseEpoch(second)
	if !ok {
		return 0, 0, "", "no -ttt timestamp (record with strace -ttt)"
	}
	return n, t, strings.TrimLeft(body, " "), ""
}

// parseEpoch reads seconds.fraction exactly, as float64 would lose the
// microseconds of a 10-digit epoch.
func parseEpoch(s string) (int64, bool) {
	sec, frac, ok := strings.Cut(s, ".")
	if !ok || sec == "" || frac == "" || len(sec) > 10 || !allDigits(sec) || !allDigits(frac) {
		return 0, false
	}
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || n > 9e9 { // n*1e9 must fit in an int64
		return 0, false
	}
	if len(frac) > 9 {
		frac = frac[:9]
	}
	f, _ := strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
	return n*1e9 + f, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// finish parses a whole call and queues it for the second pass.
func (im *importer) finish(lineNo, start, pid int, ns int64, name, text string) {
	args, rest, ok := splitArgs(text[len(name)+1:])
	if !ok {
		im.malformed(lineNo, "unbalanced arguments", []byte(text))
		return
	}
	c := &call{line: start, pid: pid, ns: ns, name: name, args: args}
	if why := parseResult(rest, c); why != "" {
		im.malformed(lineNo, why, []byte(text))
		return
	}
	im.st.Calls++
	im.recs = append(im.recs, record{kind: recCall, pid: pid, c: c})
	if c.retOK && c.ret > 0 && c.ret <= math.MaxInt32 {
		if files, fs, ok := cloneFlags(c); ok {
			child := int(c.ret)
			im.clones[child] = append(im.clones[child], cloneRef{line: start, parent: pid, files: files, fs: fs})
		}
	}
}

// cloneFlags reports whether c created a process or thread, and what the
// child shares with its parent.
func cloneFlags(c *call) (files, fs, ok bool) {
	switch c.name {
	case "fork", "vfork":
		return false, false, true
	case "clone", "clone2", "clone3":
	default:
		return false, false, false
	}
	for _, a := range c.args {
		i := strings.Index(a, "flags=")
		if i < 0 {
			continue
		}
		f := a[i+len("flags="):]
		if j := strings.IndexAny(f, ",}"); j >= 0 {
			f = f[:j]
		}
		for _, fl := range strings.Split(f, "|") {
			switch strings.TrimSpace(fl) {
			case "CLONE_FILES":
				files = true
			case "CLONE_FS":
				fs = true
			}
		}
		break
	}
	return files, fs, true
}

// splitArgs splits s, which starts just after a call's "(", into its
// top-level arguments and returns what follows the matching ")". Quoted
// strings, -y annotations and /* comments */ may hold any byte.
func splitArgs(s string) (args []string, rest string, ok bool) {
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			j := skipQuoted(s, i)
			if j < 0 {
				return nil, "", false
			}
			i = j - 1
		case '<':
			if i > 0 && (isDigit(s[i-1]) || s[i-1] == 'D') {
				j := skipAnnotation(s, i)
				if j < 0 {
					return nil, "", false
				}
				i = j - 1
			}
		case '/':
			if i+1 < len(s) && s[i+1] == '*' {
				j := strings.Index(s[i+2:], "*/")
				if j < 0 {
					return nil, "", false
				}
				i += 2 + j + 1
			}
		case '(', '[', '{':
			depth++
		case ']', '}':
			depth--
			if depth < 0 {
				return nil, "", false
			}
		case ')':
			if depth == 0 {
				args = append(args, strings.TrimSpace(s[start:i]))
				if len(args) == 1 && args[0] == "" {
					args = nil
				}
				return args, s[i+1:], true
			}
			depth--
		case ',':
			if depth == 0 {
				args = append(args, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	return nil, "", false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipQuoted returns the index just past the string starting at s[i] ==
// '"', or -1 if it does not end.
func skipQuoted(s string, i int) int {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipAnnotation returns the index just past the -y annotation starting at
// s[i] == '<'. strace escapes '<' and '>' in paths, so an unescaped '<'
// inside opens the device or socket details that -yy adds.
func skipAnnotation(s string, i int) int {
	depth := 0
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '<':
			depth++
		case '>':
			depth--
			if depth == 0 {
				return j + 1
			}
		}
	}
	return -1
}

// parseResult reads " = RET[<annotation>] [ERRNO (text)] [(detail)] [<dur>]".
func parseResult(rest string, c *call) (why string) {
	rest = strings.TrimLeft(rest, " ")
	rest, ok := strings.CutPrefix(rest, "=")
	if !ok {
		return "no result"
	}
	rest = strings.TrimLeft(rest, " ")
	end := strings.IndexAny(rest, " <")
	if end < 0 {
		end = len(rest)
	}
	tok := rest[:end]
	rest = rest[end:]
	if strings.HasPrefix(rest, "<") {
		j := skipAnnotation(rest, 0)
		if j < 0 {
			return "unterminated annotation"
		}
		c.retPath, _, c.hasRetP = decodeAnnotation(rest[:j])
		rest = strings.TrimPrefix(rest[j:], "(deleted)")
	}
	rest = strings.TrimSpace(rest)
	if strings.HasSuffix(rest, ">") {
		if i := strings.LastIndexByte(rest, '<'); i >= 0 {
			if d, err := strconv.ParseFloat(rest[i+1:len(rest)-1], 64); err == nil {
				if d < 0 || math.IsNaN(d) || math.IsInf(d, 0) {
					return "bad duration"
				}
				c.dur = d
				rest = strings.TrimSpace(rest[:i])
			}
		}
	}
	if tok == "?" {
		return ""
	}
	n, err := strconv.ParseInt(tok, 0, 64)
	if err != nil {
		// mmap returns addresses above MaxInt64 on some kernels.
		if _, uerr := strconv.ParseUint(tok, 0, 64); uerr != nil {
			return "bad return value"
		}
		n = math.MaxInt64
	}
	c.ret, c.retOK = n, true
	if n < 0 {
		e, _, _ := strings.Cut(rest, " ")
		if !validErrno(e) {
			return "failed call without an errno"
		}
		c.errno = e
	}
	return ""
}

func validErrno(s string) bool {
	if len(s) < 2 || len(s) > 24 || s[0] != 'E' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// unquote decodes one strace string argument. A string strace cut short
// ("..." after the quote) is refused: a path prefix is not the path.
func unquote(a string) (string, bool) {
	if len(a) < 2 || a[0] != '"' {
		return "", false
	}
	j := skipQuoted(a, 0)
	if j != len(a) {
		return "", false
	}
	return unescape(a[1 : j-1])
}

// decodeAnnotation decodes a -y annotation: "<path>", dropping -yy's
// nested details. The kernel's " (deleted)" on an unlinked file is taken
// off the path and reported; strace 6 prints it after the '>'.
func decodeAnnotation(a string) (path string, deleted, ok bool) {
	a, deleted = strings.CutSuffix(a, "(deleted)")
	if len(a) < 2 || a[0] != '<' || a[len(a)-1] != '>' {
		return "", false, false
	}
	in := a[1 : len(a)-1]
	for i := 0; i < len(in); i++ {
		if in[i] == '\\' {
			i++
		} else if in[i] == '<' {
			in = in[:i]
			break
		}
	}
	s, ok := unescape(in)
	if !ok {
		return "", false, false
	}
	s, del := strings.CutSuffix(s, " (deleted)")
	return s, deleted || del, true
}

// unescape undoes strace's C-style escapes: \n \t \" \\, octal \303 and
// hex \xc3 (with -x).
func unescape(s string) (string, bool) {
	if strings.IndexByte(s, '\\') < 0 {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(s) {
			return "", false
		}
		switch c = s[i]; c {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'v':
			b.WriteByte('\v')
		case 'f':
			b.WriteByte('\f')
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'x':
			if i+2 >= len(s) {
				return "", false
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", false
			}
			b.WriteByte(byte(v))
			i += 2
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i
			for j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			v, err := strconv.ParseUint(s[i:j], 8, 16)
			if err != nil || v > 255 {
				return "", false
			}
			b.WriteByte(byte(v))
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// The second pass: processes, fd tables and open file descriptions.

// desc is an open file description: what dup'd fds, forked children and
// threads share, and where the offset of plain read() lives.
type desc struct {
	path  string // absolute, as the process named it; "" if not a file
	kpath string // the kernel's name from -y, to notice a stale entry
	off   int64
	offOK bool
	app   bool // O_APPEND: a write moves the offset to an unknown end
	// open is the index of its open event in evs, or -1.
	open int
	// A directory listing in progress: list is its readdir event, or -1
	// when the event was left out.
	listing     bool
	list        int
	listEntries bool
}

type fdEntry struct {
	d       *desc
	cloexec bool
}

type fdTable struct{ fds map[int]fdEntry }

func (t *fdTable) clone() *fdTable {
	n := &fdTable{fds: make(map[int]fdEntry, len(t.fds))}
	for fd, e := range t.fds {
		n.fds[fd] = e
	}
	return n
}

type fsState struct{ cwd string }

type proc struct {
	// id is the line of the clone call that created this instance (-1
	// for a process whose creation is not in the trace), which tells a
	// recycled pid from the process that had it before.
	id  int
	fdt *fdTable
	fs  *fsState
}

func newProc() *proc {
	return &proc{id: -1, fdt: &fdTable{fds: map[int]fdEntry{}}, fs: &fsState{}}
}

// procAt returns pid's state for a call that began on line, creating it
// from its parent's if this is the first sign of a clone's child.
func (im *importer) procAt(pid, line, depth int) *proc {
	refs := im.clones[pid]
	i := sort.Search(len(refs), func(i int) bool { return refs[i].line >= line }) - 1
	cur := im.procs[pid]
	if i < 0 {
		if cur == nil {
			cur = newProc()
			im.procs[pid] = cur
		}
		return cur
	}
	ref := refs[i]
	if cur != nil && cur.id >= ref.line {
		return cur
	}
	child := newProc()
	if depth < maxForkDepth && ref.parent != pid {
		parent := im.procAt(ref.parent, ref.line, depth+1)
		if ref.files {
			child.fdt = parent.fdt
		} else {
			child.fdt = parent.fdt.clone()
		}
		if ref.fs {
			child.fs = parent.fs
		} else {
			child.fs = &fsState{cwd: parent.fs.cwd}
		}
	}
	child.id = ref.line
	im.procs[pid] = child
	return child
}

func (im *importer) secs(ns int64) float64 {
	d := ns - im.t0
	if d < 0 {
		d = 0
	}
	return float64(d) / 1e9
}

// emit appends ev if its path is one the trace can carry and the prefix
// keeps, and returns its index or -1.
func (im *importer) emit(ev Event) int {
	if !utf8.ValidString(ev.Path) {
		im.st.Unresolved++
		return -1
	}
	if !Under(ev.Path, im.prefix) {
		im.st.Outside++
		return -1
	}
	im.evs = append(im.evs, ev)
	return len(im.evs) - 1
}

func (im *importer) apply(rec record) {
	switch rec.kind {
	case recExit:
		delete(im.procs, rec.pid)
		return
	case recSupersede:
		if p := im.procs[rec.from]; p != nil {
			im.procs[rec.pid] = p
			delete(im.procs, rec.from)
		}
		return
	}
	c := rec.c
	h, known := handlers[c.name]
	if !known {
		im.st.Ignored++
		return
	}
	p := im.procAt(c.pid, c.line, 0)
	if !c.retOK {
		im.st.Unfinished++
		return
	}
	if len(c.args) < h.args {
		im.badCall(c, "too few arguments")
		return
	}
	h.fn(im, p, c)
}

// badCall counts a call that parsed but makes no sense (a hostile or
// corrupted line), naming it as the line it began on.
func (im *importer) badCall(c *call, why string) {
	im.malformed(c.line, why, []byte(c.name+"("+strings.Join(c.args, ", ")+")"))
}

type handler struct {
	args int // arguments the handler indexes
	fn   func(im *importer, p *proc, c *call)
}

var handlers map[string]handler

func init() {
	stat := func(dir, pathArg, st, flags int) func(*importer, *proc, *call) {
		return func(im *importer, p *proc, c *call) { im.stat(p, c, dir, pathArg, st, flags) }
	}
	handlers = map[string]handler{
		"open":       {2, func(im *importer, p *proc, c *call) { im.open(p, c, "", c.args[0], c.args[1]) }},
		"openat":     {3, func(im *importer, p *proc, c *call) { im.open(p, c, c.args[0], c.args[1], c.args[2]) }},
		"openat2":    {3, func(im *importer, p *proc, c *call) { im.open(p, c, c.args[0], c.args[1], openHowFlags(c.args[2])) }},
		"creat":      {1, func(im *importer, p *proc, c *call) { im.open(p, c, "", c.args[0], "O_WRONLY|O_CREAT|O_TRUNC") }},
		"stat":       {2, stat(-1, 0, 1, -1)},
		"lstat":      {2, stat(-1, 0, 1, -1)},
		"stat64":     {2, stat(-1, 0, 1, -1)},
		"lstat64":    {2, stat(-1, 0, 1, -1)},
		"newfstatat": {4, stat(0, 1, 2, 3)},
		"fstatat64":  {4, stat(0, 1, 2, 3)},
		"statx":      {5, stat(0, 1, 4, 2)},
		"fstat":      {2, func(im *importer, p *proc, c *call) { im.fstat(p, c, c.args[0], c.args[1]) }},
		"fstat64":    {2, func(im *importer, p *proc, c *call) { im.fstat(p, c, c.args[0], c.args[1]) }},
		"access":     {1, func(im *importer, p *proc, c *call) { im.pathOp(p, c, OpAccess, "", c.args[0]) }},
		"faccessat":  {2, func(im *importer, p *proc, c *call) { im.pathOp(p, c, OpAccess, c.args[0], c.args[1]) }},
		"faccessat2": {2, func(im *importer, p *proc, c *call) { im.pathOp(p, c, OpAccess, c.args[0], c.args[1]) }},
		"readlink":   {1, func(im *importer, p *proc, c *call) { im.pathOp(p, c, OpReadlink, "", c.args[0]) }},
		"readlinkat": {2, func(im *importer, p *proc, c *call) { im.pathOp(p, c, OpReadlink, c.args[0], c.args[1]) }},
		"read":       {3, func(im *importer, p *proc, c *call) { im.read(p, c, argInt(c.args[2]), -1) }},
		"pread64":    {4, func(im *importer, p *proc, c *call) { im.read(p, c, argInt(c.args[2]), offArg(c.args[3])) }},
		"readv":      {1, func(im *importer, p *proc, c *call) { im.read(p, c, iovLen(c.args), -1) }},
		"preadv":     {4, func(im *importer, p *proc, c *call) { im.read(p, c, iovLen(c.args), offArg(c.args[3])) }},
		"preadv2":    {4, func(im *importer, p *proc, c *call) { im.read(p, c, iovLen(c.args), offArg(c.args[3])) }},
		"write":      {1, (*importer).write},
		"writev":     {1, (*importer).write},
		"mmap":       {6, (*importer).mmap},
		"lseek":      {1, (*importer).lseek},
		"close":      {1, (*importer).close},
		"dup":        {1, func(im *importer, p *proc, c *call) { im.dup(p, c, false) }},
		"dup2":       {1, func(im *importer, p *proc, c *call) { im.dup(p, c, false) }},
		"dup3":       {3, func(im *importer, p *proc, c *call) { im.dup(p, c, hasFlag(c.args[2], "O_CLOEXEC")) }},
		"fcntl":      {2, (*importer).fcntl},
		"fcntl64":    {2, (*importer).fcntl},
		"getdents64": {2, (*importer).getdents},
		"getdents":   {2, (*importer).getdents},
		"execve":     {1, func(im *importer, p *proc, c *call) { im.execve(p, c, "", c.args[0]) }},
		"execveat":   {2, func(im *importer, p *proc, c *call) { im.execve(p, c, c.args[0], c.args[1]) }},
		"chdir":      {1, (*importer).chdir},
		"fchdir":     {1, (*importer).fchdir},
		// Creation is handled in procAt; calling it here makes sure the
		// child copies the parent's fds before the parent's next call.
		"clone":  {0, (*importer).forked},
		"clone2": {0, (*importer).forked},
		"clone3": {0, (*importer).forked},
		"fork":   {0, (*importer).forked},
		"vfork":  {0, (*importer).forked},
	}
}

func (im *importer) forked(p *proc, c *call) {
	if c.ret > 0 && c.ret <= math.MaxInt32 {
		im.procAt(int(c.ret), c.line+1, 0)
	}
}

func hasFlag(flags, f string) bool {
	for _, x := range strings.Split(flags, "|") {
		if strings.TrimSpace(x) == f {
			return true
		}
	}
	return false
}

// openHowFlags digs the flags out of openat2's {flags=..., mode=...}.
func openHowFlags(how string) string {
	i := strings.Index(how, "flags=")
	if i < 0 {
		return ""
	}
	f := how[i+len("flags="):]
	if j := strings.IndexAny(f, ",}"); j >= 0 {
		f = f[:j]
	}
	return f
}

func argInt(a string) int64 {
	n, err := strconv.ParseInt(a, 0, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// offArg is a positional read's offset; -1 (preadv2's "use the file
// offset") and anything unparsable come back as -1, -2 means invalid.
func offArg(a string) int64 {
	n, err := strconv.ParseInt(a, 0, 64)
	if err != nil || n < -1 {
		return -2
	}
	return n
}

// iovLen sums the iov_len fields strace prints without -s 0; with -s 0 it
// prints "[...]" and the length asked for is unknown (-1).
func iovLen(args []string) int64 {
	if len(args) < 2 {
		return -1
	}
	a := args[1]
	if !strings.Contains(a, "iov_len=") || strings.HasSuffix(a, "...]") {
		return -1
	}
	var sum int64
	for {
		i := strings.Index(a, "iov_len=")
		if i < 0 {
			return sum
		}
		a = a[i+len("iov_len="):]
		j := strings.IndexAny(a, "},")
		if j < 0 {
			return -1
		}
		n, err := strconv.ParseInt(a[:j], 0, 64)
		if err != nil || n < 0 || sum > math.MaxInt64-n {
			return -1
		}
		sum += n
		a = a[j:]
	}
}

// fdArg parses "3</show/a.exr>", "3", "AT_FDCWD</cwd>" or "AT_FDCWD".
func fdArg(a string) (fd int, atCWD bool, annot string, hasAnnot, deleted, ok bool) {
	num := a
	if i := strings.IndexByte(a, '<'); i >= 0 {
		num = a[:i]
		annot, deleted, hasAnnot = decodeAnnotation(a[i:])
	}
	if num == "AT_FDCWD" {
		return 0, true, annot, hasAnnot, deleted, true
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, false, "", false, false, false
	}
	return n, false, annot, hasAnnot, deleted, true
}

// lookup returns the description behind an fd argument. With -y the
// annotation is the truth: an fd the table does not know (inherited, or
// made by a call strace was not told to trace, such as pipe or memfd) or
// knows under another name (it was renamed, or close_range closed it
// unseen and the number was reused) is adopted from it.
func (im *importer) lookup(p *proc, arg string) (int, *desc) {
	fd, atCWD, annot, hasAnnot, deleted, ok := fdArg(arg)
	if !ok || atCWD {
		return -1, nil
	}
	e, found := p.fdt.fds[fd]
	if found && hasAnnot {
		switch {
		case e.d.kpath == "":
			e.d.kpath = annot
		case e.d.kpath != annot:
			found = false
		}
	}
	if found {
		return fd, e.d
	}
	if !hasAnnot {
		return fd, nil
	}
	d := &desc{kpath: annot, offOK: true, open: -1, list: -1}
	// An unlinked file (a memfd, a temporary) has no path replay could
	// open, so it is kept out like a pipe.
	if a, ok := CleanAbs(annot); ok && !deleted {
		d.path = a
		im.st.Adopted++
	}
	p.fdt.fds[fd] = fdEntry{d: d}
	return fd, d
}

// unresolvedFd counts a call on an fd whose file is unknown; a call that
// failed on a bad fd (EBADF on -1) lost nothing.
func (im *importer) unresolvedFd(fd int, c *call) {
	if fd >= 0 && !failed(c) {
		im.st.Unresolved++
	}
}

// resolve makes a path argument absolute: against the dirfd argument, or
// the process's cwd. A cwd strace shows on AT_FDCWD seeds an unknown one.
func (im *importer) resolve(p *proc, dirArg, pathArg string) (string, bool) {
	name, ok := unquote(pathArg)
	if !ok {
		return "", false
	}
	atCWD := dirArg == "" || strings.HasPrefix(dirArg, "AT_FDCWD")
	if atCWD && p.fs.cwd == "" && dirArg != "" {
		if _, _, annot, has, _, _ := fdArg(dirArg); has {
			if a, ok := CleanAbs(annot); ok {
				p.fs.cwd = a
			}
		}
	}
	if strings.HasPrefix(name, "/") {
		return CleanAbs(name)
	}
	base := p.fs.cwd
	if !atCWD {
		base = ""
		if _, d := im.lookup(p, dirArg); d != nil {
			base = d.path
		}
	}
	if base == "" || name == "" {
		return "", false
	}
	return CleanAbs(base + "/" + name)
}

// failed reports a call that returned an error.
func failed(c *call) bool { return c.ret < 0 }

func (im *importer) open(p *proc, c *call, dirArg, pathArg, flags string) {
	if pathArg == `""` && failed(c) {
		return // ENOENT from the kernel before any lookup: no file involved
	}
	pth, ok := im.resolve(p, dirArg, pathArg)
	if !ok && !failed(c) && c.hasRetP {
		// The kernel's name for what was opened beats losing the open.
		pth, ok = CleanAbs(c.retPath)
	}
	ev := Event{T: im.secs(c.ns), Pid: c.pid, Op: OpOpen, Path: pth, Dur: c.dur,
		Dir:   hasFlag(flags, "O_DIRECTORY"),
		Write: hasFlag(flags, "O_WRONLY") || hasFlag(flags, "O_RDWR") || hasFlag(flags, "O_CREAT") || hasFlag(flags, "O_TRUNC")}
	if failed(c) {
		ev.Err = c.errno
		if !ok {
			im.st.Unresolved++
			return
		}
		im.emit(ev)
		return
	}
	if c.ret > math.MaxInt32 {
		im.badCall(c, "fd out of range")
		return
	}
	fd := int(c.ret)
	d := &desc{path: pth, offOK: true, app: hasFlag(flags, "O_APPEND"), open: -1, list: -1}
	if c.hasRetP {
		d.kpath = c.retPath
	}
	p.fdt.fds[fd] = fdEntry{d: d, cloexec: hasFlag(flags, "O_CLOEXEC")}
	if !ok {
		im.st.Unresolved++
		return
	}
	ev.Fh = uint64(fd)
	d.open = im.emit(ev)
}

// statInfo reads the file type and size out of a printed struct stat or
// statx; size is -1 when not shown or not a regular file.
func statInfo(s string) (size int64, dir bool) {
	size = -1
	mode := fieldValue(s, "st_mode=")
	if mode == "" {
		mode = fieldValue(s, "stx_mode=")
	}
	dir = strings.HasPrefix(mode, "S_IFDIR")
	if !strings.HasPrefix(mode, "S_IFREG") {
		return -1, dir
	}
	v := fieldValue(s, "st_size=")
	if v == "" {
		v = fieldValue(s, "stx_size=")
	}
	if n, err := strconv.ParseInt(v, 0, 64); err == nil && n >= 0 {
		size = n
	}
	return size, dir
}

func fieldValue(s, key string) string {
	i := strings.Index(s, key)
	if i < 0 || (i > 0 && s[i-1] != '{' && s[i-1] != ' ') {
		return ""
	}
	v := s[i+len(key):]
	if j := strings.IndexAny(v, ",}"); j >= 0 {
		v = v[:j]
	}
	return v
}

func (im *importer) stat(p *proc, c *call, dirIdx, pathIdx, stIdx, flagsIdx int) {
	dirArg := ""
	if dirIdx >= 0 {
		dirArg = c.args[dirIdx]
	}
	if flagsIdx >= 0 && c.args[pathIdx] == `""` && hasFlag(c.args[flagsIdx], "AT_EMPTY_PATH") {
		im.fstat(p, c, dirArg, c.args[stIdx])
		return
	}
	if c.args[pathIdx] == `""` {
		return // ENOENT from the kernel before any lookup: no file involved
	}
	pth, ok := im.resolve(p, dirArg, c.args[pathIdx])
	if !ok {
		im.st.Unresolved++
		return
	}
	ev := Event{T: im.secs(c.ns), Pid: c.pid, Op: OpStat, Path: pth, Dur: c.dur}
	if failed(c) {
		ev.Err = c.errno
	} else {
		size, dir := statInfo(c.args[stIdx])
		ev.Size, ev.Dir = max(size, 0), dir
	}
	im.emit(ev)
}

// fstat is not an event (the process already holds the file), but it
// tells the file's size and type, which the open event records.
func (im *importer) fstat(p *proc, c *call, fdArg, st string) {
	_, d := im.lookup(p, fdArg)
	if d == nil || failed(c) || d.open < 0 {
		return
	}
	size, dir := statInfo(st)
	ev := &im.evs[d.open]
	if size >= 0 && ev.Size == 0 {
		ev.Size = size
	}
	ev.Dir = ev.Dir || dir
}

func (im *importer) pathOp(p *proc, c *call, op Op, dirArg, pathArg string) {
	if pathArg == `""` {
		return // ENOENT from the kernel before any lookup: no file involved
	}
	pth, ok := im.resolve(p, dirArg, pathArg)
	if !ok {
		im.st.Unresolved++
		return
	}
	ev := Event{T: im.secs(c.ns), Pid: c.pid, Op: op, Path: pth, Dur: c.dur}
	if failed(c) {
		ev.Err = c.errno
	} else if op == OpReadlink {
		ev.N = c.ret
	}
	im.emit(ev)
}

// read handles every read call: want is the length asked for (-1 when
// strace does not show it), off the position of a positional read or -1
// for the file offset.
func (im *importer) read(p *proc, c *call, want, off int64) {
	fd, d := im.lookup(p, c.args[0])
	if d == nil {
		im.unresolvedFd(fd, c)
		return
	}
	if off < -1 {
		im.badCall(c, "negative offset")
		return
	}
	positional := off >= 0
	if !positional {
		if !d.offOK {
			im.st.UnknownOffset++
			return
		}
		off = d.off
	}
	ev := Event{T: im.secs(c.ns), Pid: c.pid, Op: OpRead, Path: d.path, Fh: uint64(fd), Off: off, Dur: c.dur}
	if failed(c) {
		ev.Err = c.errno
		ev.Len = max(want, 0)
	} else {
		ev.N = c.ret
		ev.Len = want
		if want < 0 {
			ev.Len = c.ret
		}
		if !positional {
			im.advance(d, c.ret)
		}
	}
	if d.path == "" {
		return // a pipe, socket or other non-file
	}
	im.emit(ev)
}

func (im *importer) advance(d *desc, n int64) {
	if d.off > math.MaxInt64-n {
		d.offOK = false
		return
	}
	d.off += n
}

// write is not an event, but a write on a read-write or append fd moves
// the offset the next read() starts at.
func (im *importer) write(p *proc, c *call) {
	_, d := im.lookup(p, c.args[0])
	if d == nil || failed(c) {
		return
	}
	if d.app {
		d.offOK = false
		return
	}
	im.advance(d, c.ret)
}

func (im *importer) mmap(p *proc, c *call) {
	if hasFlag(c.args[3], "MAP_ANONYMOUS") || strings.HasPrefix(c.args[4], "-") {
		return
	}
	fd, d := im.lookup(p, c.args[4])
	if d == nil {
		im.unresolvedFd(fd, c)
		return
	}
	length, off := argInt(c.args[1]), argInt(c.args[5])
	if length < 0 || off < 0 {
		im.badCall(c, "negative length or offset")
		return
	}
	if d.path == "" {
		return
	}
	ev := Event{T: im.secs(c.ns), Pid: c.pid, Op: OpMmap, Path: d.path, Fh: uint64(fd), Off: off, Len: length, Dur: c.dur}
	if failed(c) {
		ev.Err = c.errno
	}
	im.emit(ev)
}

func (im *importer) lseek(p *proc, c *call) {
	_, d := im.lookup(p, c.args[0])
	if d == nil || failed(c) {
		return
	}
	d.off, d.offOK = c.ret, true
	d.listing = false // rewinddir starts a new listing
}

func (im *importer) close(p *proc, c *call) {
	fd, d := im.lookup(p, c.args[0])
	if c.errno == "EBADF" {
		return
	}
	// Linux releases the fd even when close fails (EINTR, EIO).
	delete(p.fdt.fds, fd)
	if d == nil {
		return
	}
	if d.path == "" {
		return
	}
	ev := Event{T: im.secs(c.ns), Pid: c.pid, Op: OpClose, Path: d.path, Fh: uint64(fd), Dur: c.dur}
	if failed(c) {
		ev.Err = c.errno
	}
	im.emit(ev)
}

func (im *importer) dup(p *proc, c *call, cloexec bool) {
	_, d := im.lookup(p, c.args[0])
	if failed(c) || c.ret > math.MaxInt32 {
		return
	}
	nfd := int(c.ret)
	if d == nil {
		// Unknown source: forget what the new fd was, so its next use
		// is adopted from -y rather than taken for the old file.
		delete(p.fdt.fds, nfd)
		return
	}
	p.fdt.fds[nfd] = fdEntry{d: d, cloexec: cloexec}
}

func (im *importer) fcntl(p *proc, c *call) {
	cmd := c.args[1]
	switch cmd {
	case "F_DUPFD", "F_DUPFD_CLOEXEC":
		im.dup(p, c, cmd == "F_DUPFD_CLOEXEC")
	case "F_SETFD":
		if len(c.args) < 3 || failed(c) {
			return
		}
		fd, d := im.lookup(p, c.args[0])
		if d != nil {
			p.fdt.fds[fd] = fdEntry{d: d, cloexec: hasFlag(c.args[2], "FD_CLOEXEC")}
		}
	case "F_SETFL":
		if len(c.args) < 3 || failed(c) {
			return
		}
		if _, d := im.lookup(p, c.args[0]); d != nil {
			d.app = hasFlag(c.args[2], "O_APPEND")
		}
	}
}

// getdents makes one readdir event per listing: the calls from the first
// until one returns 0 (or a seek or close) add up into it.
func (im *importer) getdents(p *proc, c *call) {
	fd, d := im.lookup(p, c.args[0])
	if d == nil {
		im.unresolvedFd(fd, c)
		return
	}
	if failed(c) {
		d.listing = false
		if d.path != "" {
			im.emit(Event{T: im.secs(c.ns), Pid: c.pid, Op: OpReaddir, Path: d.path, Fh: uint64(fd), Err: c.errno, Dur: c.dur})
		}
		return
	}
	entries, ok := direntCount(c.args[1])
	if !d.listing {
		d.listing, d.listEntries, d.list = true, ok, -1
		if d.path != "" {
			d.list = im.emit(Event{T: im.secs(c.ns), Pid: c.pid, Op: OpReaddir, Path: d.path, Fh: uint64(fd)})
		}
	}
	if d.list >= 0 {
		ev := &im.evs[d.list]
		n := c.ret
		if d.listEntries && ok {
			n = entries
		}
		if ev.N <= math.MaxInt64-n {
			ev.N += n
		}
		// Rounded so the sum prints as strace's microseconds did.
		ev.Dur = math.Round((ev.Dur+c.dur)*1e9) / 1e9
	}
	if c.ret == 0 {
		d.listing = false
	}
}

// direntCount reads strace's "/* 12 entries */" comment.
func direntCount(a string) (int64, bool) {
	i := strings.Index(a, "/* ")
	if i < 0 {
		return 0, false
	}
	num, rest, ok := strings.Cut(a[i+3:], " ")
	if !ok || !strings.HasPrefix(rest, "entr") {
		return 0, false
	}
	n, err := strconv.ParseInt(num, 10, 64)
	return n, err == nil && n >= 0
}

// execve closes the close-on-exec fds and unshares the fd table (the
// kernel does both), and names the traced command.
func (im *importer) execve(p *proc, c *call, dirArg, pathArg string) {
	if failed(c) {
		return
	}
	if im.cmd == nil {
		if name, ok := unquote(pathArg); ok {
			im.cmd = []string{name}
			if len(c.args) > 1+btoi(dirArg != "") {
				if argv, ok := stringList(c.args[1+btoi(dirArg != "")]); ok && len(argv) > 0 {
					im.cmd = argv
				}
			}
		}
	}
	t := &fdTable{fds: map[int]fdEntry{}}
	for fd, e := range p.fdt.fds {
		if !e.cloexec {
			t.fds[fd] = e
		}
	}
	p.fdt = t
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// stringList decodes ["a", "b"]; strace abbreviates it to [...] under -s 0.
func stringList(a string) ([]string, bool) {
	if len(a) < 2 || a[0] != '[' || a[len(a)-1] != ']' {
		return nil, false
	}
	items, rest, ok := splitArgs(a[1:len(a)-1] + ")")
	if !ok || rest != "" {
		return nil, false
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, ok := unquote(it)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func (im *importer) chdir(p *proc, c *call) {
	if failed(c) {
		return
	}
	pth, ok := im.resolve(p, "", c.args[0])
	if !ok {
		pth = ""
	}
	p.fs.cwd = pth
}

func (im *importer) fchdir(p *proc, c *call) {
	if failed(c) {
		return
	}
	_, d := im.lookup(p, c.args[0])
	if d == nil {
		p.fs.cwd = ""
		return
	}
	p.fs.cwd = d.path
}
