package strace

import (
	"math"
	"strconv"
	"strings"

	"github.com/jitfs/jitfs/trace"
)

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
		"access":     {1, func(im *importer, p *proc, c *call) { im.pathOp(p, c, trace.OpAccess, "", c.args[0]) }},
		"faccessat":  {2, func(im *importer, p *proc, c *call) { im.pathOp(p, c, trace.OpAccess, c.args[0], c.args[1]) }},
		"faccessat2": {2, func(im *importer, p *proc, c *call) { im.pathOp(p, c, trace.OpAccess, c.args[0], c.args[1]) }},
		"readlink":   {1, func(im *importer, p *proc, c *call) { im.pathOp(p, c, trace.OpReadlink, "", c.args[0]) }},
		"readlinkat": {2, func(im *importer, p *proc, c *call) { im.pathOp(p, c, trace.OpReadlink, c.args[0], c.args[1]) }},
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

func (im *importer) open(p *proc, c *call, dirArg, pathArg, flags string) {
	if pathArg == `""` && failed(c) {
		return // ENOENT from the kernel before any lookup: no file involved
	}
	pth, ok := im.resolve(p, dirArg, pathArg)
	if !ok && !failed(c) && c.hasRetP {
		// The kernel's name for what was opened beats losing the open.
		pth, ok = trace.CleanAbs(c.retPath)
	}
	ev := trace.Event{T: im.secs(c.ns), Pid: c.pid, Op: trace.OpOpen, Path: pth, Dur: c.dur,
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
	ev := trace.Event{T: im.secs(c.ns), Pid: c.pid, Op: trace.OpStat, Path: pth, Dur: c.dur}
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

func (im *importer) pathOp(p *proc, c *call, op trace.Op, dirArg, pathArg string) {
	if pathArg == `""` {
		return // ENOENT from the kernel before any lookup: no file involved
	}
	pth, ok := im.resolve(p, dirArg, pathArg)
	if !ok {
		im.st.Unresolved++
		return
	}
	ev := trace.Event{T: im.secs(c.ns), Pid: c.pid, Op: op, Path: pth, Dur: c.dur}
	if failed(c) {
		ev.Err = c.errno
	} else if op == trace.OpReadlink {
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
	ev := trace.Event{T: im.secs(c.ns), Pid: c.pid, Op: trace.OpRead, Path: d.path, Fh: uint64(fd), Off: off, Dur: c.dur}
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
	ev := trace.Event{T: im.secs(c.ns), Pid: c.pid, Op: trace.OpMmap, Path: d.path, Fh: uint64(fd), Off: off, Len: length, Dur: c.dur}
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
	ev := trace.Event{T: im.secs(c.ns), Pid: c.pid, Op: trace.OpClose, Path: d.path, Fh: uint64(fd), Dur: c.dur}
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
			im.emit(trace.Event{T: im.secs(c.ns), Pid: c.pid, Op: trace.OpReaddir, Path: d.path, Fh: uint64(fd), Err: c.errno, Dur: c.dur})
		}
		return
	}
	entries, ok := direntCount(c.args[1])
	if !d.listing {
		d.listing, d.listEntries, d.list = true, ok, -1
		if d.path != "" {
			d.list = im.emit(trace.Event{T: im.secs(c.ns), Pid: c.pid, Op: trace.OpReaddir, Path: d.path, Fh: uint64(fd)})
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
