package strace

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

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
