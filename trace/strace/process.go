package strace

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jitfs/jitfs/trace"
)

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
func (im *importer) emit(ev trace.Event) int {
	if !utf8.ValidString(ev.Path) {
		im.st.Unresolved++
		return -1
	}
	if !trace.Under(ev.Path, im.prefix) {
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
	if a, ok := trace.CleanAbs(annot); ok && !deleted {
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
			if a, ok := trace.CleanAbs(annot); ok {
				p.fs.cwd = a
			}
		}
	}
	if strings.HasPrefix(name, "/") {
		return trace.CleanAbs(name)
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
	return trace.CleanAbs(base + "/" + name)
}

// failed reports a call that returned an error.
func failed(c *call) bool { return c.ret < 0 }
