package strace

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jitfs/jitfs/trace"
)

// brief renders events as one line each, with pids renamed p1, p2, … in
// order of appearance and paths relative to root, so an expectation
// reads like the program that made the trace and survives re-recording.
func brief(evs []trace.Event, root string) []string {
	pids := map[int]string{}
	var out []string
	for _, ev := range evs {
		if pids[ev.Pid] == "" {
			pids[ev.Pid] = fmt.Sprintf("p%d", len(pids)+1)
		}
		p := ev.Path
		if root != "" {
			if p == root {
				p = "."
			} else {
				p = strings.TrimPrefix(p, root+"/")
			}
		}
		s := fmt.Sprintf("%s %s %s", pids[ev.Pid], ev.Op, p)
		for _, f := range []struct {
			name string
			v    int64
		}{{"fh", int64(ev.Fh)}, {"off", ev.Off}, {"len", ev.Len}, {"n", ev.N}, {"size", ev.Size}} {
			if f.v != 0 {
				s += fmt.Sprintf(" %s=%d", f.name, f.v)
			}
		}
		if ev.Err != "" {
			s += " err=" + ev.Err
		}
		if ev.Dir {
			s += " dir"
		}
		if ev.Write {
			s += " write"
		}
		out = append(out, s)
	}
	return out
}

func equalLines(t *testing.T, got, want []string) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	n := max(len(got), len(want))
	var b strings.Builder
	for i := 0; i < n; i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		mark := "  "
		if g != w {
			mark = "!!"
		}
		fmt.Fprintf(&b, "%s %-50q %q\n", mark, g, w)
	}
	t.Errorf("events differ (got, want):\n%s", b.String())
}

const sampleRoot = "/tmp/jitfs-strace-sample/show"

func importSample(t *testing.T, prefix string) (trace.Header, []trace.Event, Stats) {
	t.Helper()
	f, err := os.Open("testdata/sample.strace")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, evs, st, err := Import(f, Options{Prefix: prefix, Note: "sample.c"})
	if err != nil {
		t.Fatal(err)
	}
	return h, evs, st
}

// TestImportRecordedSample imports a real recording of testdata/sample.c
// (made by record.sh with the documented strace command). The comments
// in sample.c say why each event is what it is.
func TestImportRecordedSample(t *testing.T) {
	h, evs, st := importSample(t, sampleRoot)
	want := []string{
		"p1 stat missing.exr err=ENOENT",
		"p1 access a.exr",
		"p1 open a.exr fh=3 size=10000",
		"p1 read a.exr fh=3 len=100 n=100",
		"p1 read a.exr fh=3 off=100 len=4096 n=4096",
		"p1 read a.exr fh=3 off=8000 len=50 n=50",
		"p1 read a.exr fh=3 off=9000 len=4096 n=1000",
		"p1 read a.exr fh=3 off=10000 len=4096",
		"p1 read a.exr fh=4 off=9500 len=200 n=200",
		"p1 read a.exr fh=3 off=1000 len=10 n=10",
		"p2 read a.exr fh=3 off=1010 len=100 n=100",
		"p2 access sub/c.png",
		"p1 read a.exr fh=3 off=1110 len=10 n=10",
		"p1 access b.vdb",
		"p1 close a.exr fh=4",
		"p1 close a.exr fh=3",
		"p1 open b.vdb fh=3 size=8192",
		"p3 read b.vdb fh=3 len=5 n=5",
		"p1 read b.vdb fh=3 off=5 len=5 n=5",
		"p1 mmap b.vdb fh=3 len=8192",
		"p1 mmap b.vdb fh=3 off=4096 len=4096",
		"p1 close b.vdb fh=3",
		"p4 open sub/c.png fh=3",
		"p4 read sub/c.png fh=3 len=1000 n=1000",
		"p1 read sub/c.png fh=3 off=1000 len=1000 n=1000",
		"p1 access sub/c.png",
		"p1 close sub/c.png fh=3",
		"p1 open . fh=3 dir",
		"p1 readdir . fh=3 n=7",
		"p1 close . fh=3",
		"p1 open sub fh=3 dir",
		"p1 open a.exr fh=4",
		"p1 read a.exr fh=4 len=30 n=30",
		"p1 read a.exr fh=4 off=100 len=30 n=30",
		"p1 read a.exr fh=4 off=30 len=30 n=30",
		"p1 close a.exr fh=4",
		"p1 close sub fh=3",
		"p1 open q\"uote\\d é.txt fh=3",
		"p1 read q\"uote\\d é.txt fh=3 len=4096 n=100",
		"p1 close q\"uote\\d é.txt fh=3",
		"p1 readlink link n=5",
		"p1 stat link",
		"p1 stat sub dir",
		"p1 open out.log fh=3 write",
		"p1 close out.log fh=3",
		"p1 open b.vdb fh=3",
		"p1 open a.exr fh=4",
		"p1 read b.vdb fh=3 len=10 n=10",
		"p1 read b.vdb fh=3 off=10 len=10 n=10",
	}
	equalLines(t, brief(evs, sampleRoot), want)

	if h.Format != trace.Format || h.Source != "strace" || h.Root != sampleRoot || h.Note != "sample.c" {
		t.Errorf("header = %+v", h)
	}
	if !reflect.DeepEqual(h.Cmd, []string{"./sample"}) {
		t.Errorf("cmd = %q, want the first execve's path (argv is [...] under -s 0)", h.Cmd)
	}
	// Start is the first line's timestamp, exactly.
	raw, err := os.ReadFile("testdata/sample.strace")
	if err != nil {
		t.Fatal(err)
	}
	first := strings.Fields(string(raw))[1]
	if got := fmt.Sprintf("%d.%06d", h.Start.Unix(), h.Start.Nanosecond()/1000); got != first {
		t.Errorf("start = %v (%s), want the first line's %s", h.Start, got, first)
	}
	for i, ev := range evs {
		if ev.T < 0 || ev.Dur <= 0 || (i > 0 && ev.T < evs[i-1].T) {
			t.Errorf("event %d: t %v dur %v after t %v", i, ev.T, ev.Dur, evs[max(i-1, 0)].T)
		}
	}
	if st.Malformed != 0 || st.Unresolved != 0 || st.Unfinished != 0 || st.UnknownOffset != 0 || st.Events != len(want) || st.Pids != 4 {
		t.Errorf("stats = %+v", st)
	}
}

func TestImportSampleWithoutPrefix(t *testing.T) {
	h, evs, st := importSample(t, "")
	if h.Root != "/" || st.Outside != 0 || len(evs) <= 49 {
		t.Fatalf("root %q, outside %d, %d events", h.Root, st.Outside, len(evs))
	}
	// The dynamic loader's reads and mappings are there too, with the
	// mapping offsets strace printed in hex.
	var sawLibcMmap bool
	for _, ev := range evs {
		if clean, ok := trace.CleanAbs(ev.Path); !ok || clean != ev.Path {
			t.Errorf("path %q is not clean and absolute", ev.Path)
		}
		if ev.Op == trace.OpMmap && strings.HasSuffix(ev.Path, "/libc.so.6") && ev.Off > 0 {
			sawLibcMmap = true
		}
	}
	if !sawLibcMmap {
		t.Error("no mmap of libc at a non-zero offset")
	}
}

func TestImportRoundTrip(t *testing.T) {
	h, evs, _ := importSample(t, sampleRoot)
	var buf bytes.Buffer
	if err := trace.Write(&buf, h, evs); err != nil {
		t.Fatal(err)
	}
	gh, gevs, err := trace.ReadAll(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gh, h) {
		t.Errorf("header = %+v, want %+v", gh, h)
	}
	if !reflect.DeepEqual(gevs, evs) {
		t.Errorf("events changed in the round trip:\n got %+v\nwant %+v", gevs, evs)
	}
}

// strace builds input lines: "PID TIME BODY", one microsecond apart, from
// "PID BODY" lines, or leaves lines that start otherwise alone.
func strace(lines ...string) string {
	var b strings.Builder
	for i, l := range lines {
		pid, body, ok := strings.Cut(l, " ")
		if ok && allDigits(pid) && pid != "" {
			fmt.Fprintf(&b, "%s 1700000000.%06d %s\n", pid, 100+i, body)
		} else {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func importLines(t *testing.T, prefix string, lines ...string) ([]trace.Event, Stats) {
	t.Helper()
	_, evs, st, err := Import(strings.NewReader(strace(lines...)), Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return evs, st
}

func TestImportUnfinishedResumed(t *testing.T) {
	evs, st := importLines(t, "",
		`100 read(3</s/a>,  <unfinished ...>`,
		`101 openat(AT_FDCWD</s>, "b", O_RDONLY <unfinished ...>`,
		`100 <... read resumed>""..., 4096) = 4096 <0.000100>`,
		`101 <... openat resumed>) = 4</s/b> <0.000020>`,
		`100 read(3</s/a>, ""..., 10) = 10 <0.000001>`,
		`102 <... read resumed>""..., 10) = 10 <0.000001>`, // never started: malformed
		`103 pread64(5</s/c>, ""..., 10, 0 <unfinished ...>`,
		`103 +++ killed by SIGKILL +++`,
	)
	equalLines(t, brief(evs, ""), []string{
		// fd 3 was never opened in the trace: -y names it, offset 0.
		"p1 read /s/a fh=3 len=4096 n=4096",
		"p2 open /s/b fh=4",
		"p1 read /s/a fh=3 off=4096 len=10 n=10",
	})
	if evs[0].T != 0 || evs[1].T != 1e-6 || evs[0].Dur != 0.0001 {
		t.Errorf("times: %+v", evs[:2])
	}
	if st.Calls != 3 || st.Malformed != 1 || st.Unfinished != 1 || st.Adopted != 1 || len(st.Examples) != 1 ||
		!strings.Contains(st.Examples[0], "line 6: resumed call that did not start") {
		t.Errorf("stats = %+v", st)
	}
}

func TestImportDupLseekShareOffset(t *testing.T) {
	evs, _ := importLines(t, "",
		`1 open("/s/a", O_RDONLY) = 3`,
		`1 read(3, ""..., 100) = 100`,
		`1 dup(3) = 4`,
		`1 lseek(4, 1000, SEEK_SET) = 1000`,
		`1 read(3, ""..., 10) = 10`,            // 1000: shared with fd 4
		`1 pread64(3, ""..., 10, 50) = 10`,     // positional: does not move it
		`1 open("/s/b", O_RDONLY) = 5`,         //
		`1 dup2(3, 5) = 5`,                     // replaces /s/b
		`1 read(5, ""..., 10) = 10`,            // 1010
		`1 fcntl(5, F_DUPFD_CLOEXEC, 10) = 10`, //
		`1 close(3) = 0`,                       // the description lives on
		`1 lseek(10, -20, SEEK_CUR) = 1000`,    //
		`1 preadv2(10, [...], 2, -1, 0) = 30`,  // -1: uses and moves the offset
		`1 readv(5, [{iov_base=""..., iov_len=8}, {iov_base=""..., iov_len=8}], 2) = 16`, // 1030, 16 asked for
		`1 fcntl(5, F_GETFL) = 0x8000 (flags O_RDONLY|O_LARGEFILE)`,
		`1 read(5, ""..., 4) = 4`, // 1046
	)
	equalLines(t, brief(evs, ""), []string{
		"p1 open /s/a fh=3",
		"p1 read /s/a fh=3 len=100 n=100",
		"p1 read /s/a fh=3 off=1000 len=10 n=10",
		"p1 read /s/a fh=3 off=50 len=10 n=10",
		"p1 open /s/b fh=5",
		"p1 read /s/a fh=5 off=1010 len=10 n=10",
		"p1 close /s/a fh=3",
		"p1 read /s/a fh=10 off=1000 len=30 n=30",
		"p1 read /s/a fh=5 off=1030 len=16 n=16",
		"p1 read /s/a fh=5 off=1046 len=4 n=4",
	})
}

// Without -y annotations only the fd tables say which file an fd is, so
// these test the tables themselves.
func TestImportCloneWithAndWithoutCLONE_FILES(t *testing.T) {
	evs, _ := importLines(t, "",
		`200 open("/s/a", O_RDONLY) = 3`,
		`200 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD <unfinished ...>`,
		`201 read(3, ""..., 10) = 10`, // the child runs before clone returns
		`200 <... clone resumed>, child_tidptr=0x7f0) = 201`,
		`200 close(3) = 0`,            // the parent's close…
		`201 read(3, ""..., 10) = 10`, // …leaves the child's copy, same offset
		`200 read(3, ""..., 10) = -1 EBADF (Bad file descriptor)`,
		`200 open("/s/b", O_RDONLY) = 3`,
		`200 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, exit_signal=0, stack=0x7f, stack_size=0x7fff80} => {parent_tid=[202]}, 88) = 202`,
		`202 close(3) = 0`,
		`202 open("/s/c", O_RDONLY) = 3`,
		`200 read(3, ""..., 10) = 10`, // the thread's table is the parent's
		`201 read(3, ""..., 10) = 10`, // but not the forked child's
		`200 vfork( <unfinished ...>`,
		`203 read(3, ""..., 1) = 1`,
		`200 <... vfork resumed>) = 203`,
		`200 read(3, ""..., 1) = 1`,
	)
	equalLines(t, brief(evs, ""), []string{
		"p1 open /s/a fh=3",
		"p2 read /s/a fh=3 len=10 n=10",
		"p1 close /s/a fh=3",
		"p2 read /s/a fh=3 off=10 len=10 n=10",
		"p1 open /s/b fh=3",
		"p3 close /s/b fh=3",
		"p3 open /s/c fh=3",
		"p1 read /s/c fh=3 len=10 n=10",
		"p2 read /s/a fh=3 off=20 len=10 n=10",
		"p4 read /s/c fh=3 off=10 len=1 n=1",
		"p1 read /s/c fh=3 off=11 len=1 n=1",
	})
}

func TestImportPidReuse(t *testing.T) {
	evs, _ := importLines(t, "",
		`1 open("/s/a", O_RDONLY) = 3`,
		`1 fork() = 2`,
		`2 close(3) = 0`,
		`2 open("/s/b", O_RDONLY) = 3`,
		`1 open("/s/c", O_RDONLY) = 4`,
		`1 fork() = 2`, // pid 2 again, a new process: its fd 3 is /s/a
		`2 read(3, ""..., 1) = 1`,
		`2 read(4, ""..., 1) = 1`,
	)
	equalLines(t, brief(evs, ""), []string{
		"p1 open /s/a fh=3",
		"p2 close /s/a fh=3",
		"p2 open /s/b fh=3",
		"p1 open /s/c fh=4",
		"p2 read /s/a fh=3 len=1 n=1",
		"p2 read /s/c fh=4 len=1 n=1",
	})
}

func TestImportRelativePaths(t *testing.T) {
	evs, st := importLines(t, "",
		`400 access("rel", F_OK) = 0`, // cwd unknown yet
		`400 newfstatat(AT_FDCWD, "", 0x7ffc, 0) = -1 ENOENT (No such file or directory)`, // no lookup: not lost
		`400 chdir("/s") = 0`,
		`400 access("x", F_OK) = 0`,
		`400 chdir("sub/../d") = 0`,
		`400 stat("y", {st_mode=S_IFREG|0644, st_size=12, ...}) = 0`,
		`400 open("/s/e", O_RDONLY|O_DIRECTORY) = 5`,
		`400 fchdir(5) = 0`,
		`400 fork() = 401`,
		`401 chdir("..") = 0`,
		`401 access("z", F_OK) = -1 ENOENT (No such file or directory)`,
		`400 access("z", F_OK) = 0`,
		`400 openat(5, "w", O_RDONLY) = -1 ENOENT (No such file or directory)`,
		`400 readlinkat(AT_FDCWD, "../l", ""..., 100) = 3`,
		`400 newfstatat(AT_FDCWD, "./v/", {st_mode=S_IFDIR|0755, st_size=4096, ...}, 0) = 0`,
		`400 clone(child_stack=0x7f, flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_THREAD|CLONE_SIGHAND) = 402`,
		`402 chdir("/t") = 0`,
		`400 faccessat2(AT_FDCWD, "q", R_OK, AT_EACCESS) = -1 EACCES (Permission denied)`,
		`400 chdir("/nonexistent") = -1 ENOENT (No such file or directory)`,
		`400 access("q", F_OK) = 0`,
	)
	equalLines(t, brief(evs, ""), []string{
		"p1 access /s/x",
		"p1 stat /s/d/y size=12",
		"p1 open /s/e fh=5 dir",
		"p2 access /s/z err=ENOENT",
		"p1 access /s/e/z",
		"p1 open /s/e/w err=ENOENT",
		"p1 readlink /s/l n=3",
		"p1 stat /s/e/v dir",
		"p1 access /t/q err=EACCES", // CLONE_FS: the thread's chdir is ours
		"p1 access /t/q",
	})
	if st.Unresolved != 1 {
		t.Errorf("unresolved = %d, want 1 (the access before any cwd was known)", st.Unresolved)
	}
}

// strace shows the cwd on AT_FDCWD under -y, which gives a process whose
// start the trace missed a cwd to resolve its non-at calls against.
func TestImportCwdFromAnnotation(t *testing.T) {
	evs, _ := importLines(t, "",
		`1 openat(AT_FDCWD</home/u>, "a", O_RDONLY) = 3</home/u/a>`,
		`1 access("b", R_OK) = 0`,
		`2 open("c", O_RDONLY) = 3</srv/c>`, // no cwd at all: the kernel's name for it
	)
	equalLines(t, brief(evs, ""), []string{
		"p1 open /home/u/a fh=3",
		"p1 access /home/u/b",
		"p2 open /srv/c fh=3",
	})
}

func TestImportEscapes(t *testing.T) {
	evs, st := importLines(t, "",
		`1 openat(AT_FDCWD</s>, "a\"b\\c\303\251\x41\n\t", O_RDONLY) = 3</s/a\"b\\c\303\251A\n\t>`,
		`1 read(3</s/a\"b\\c\303\251A\n\t>, ""..., 1) = 1`,
		`1 read(7</s/x\74y\76>, ""..., 1) = 1`,
		`1 open("/s/tmp", O_RDONLY) = 4</s/tmp>`,
		`1 read(4</s/tmp>(deleted), ""..., 1) = 1`,  // unlinked since: still the file opened
		`1 read(6</s/old (deleted)>, ""..., 1) = 1`, // strace 5's form; never opened, so no path to replay
		`1 mmap(NULL, 64, PROT_READ, MAP_SHARED, 5</memfd:pulseaudio>(deleted), 0) = 0x7f0`,
		`1 read(1</dev/pts/0<char 136:0>>, ""..., 1) = 1`,
		`1 read(8<pipe:[1234]>, ""..., 1) = 1`,                          // not a file: no event, not lost either
		`1 stat("/s/\377", {st_mode=S_IFREG|0644, st_size=1, ...}) = 0`, // JSON cannot carry \377
		`1 stat("/s/trunc"..., 0x7ff) = 0`,                              // a cut-off path is no path
		`1 openat(AT_FDCWD, "/s//./q/../r", O_RDONLY|O_CLOEXEC) = 9`,
	)
	equalLines(t, brief(evs, ""), []string{
		"p1 open /s/a\"b\\cé" + "A\n\t fh=3",
		"p1 read /s/a\"b\\cé" + "A\n\t fh=3 len=1 n=1",
		"p1 read /s/x<y> fh=7 len=1 n=1",
		"p1 open /s/tmp fh=4",
		"p1 read /s/tmp fh=4 len=1 n=1",
		"p1 read /dev/pts/0 fh=1 len=1 n=1",
		"p1 open /s/r fh=9",
	})
	if st.Unresolved != 2 || st.Adopted != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestImportExecClosesCloexec(t *testing.T) {
	evs, _ := importLines(t, "",
		`1 open("/s/a", O_RDONLY|O_CLOEXEC) = 3`,
		`1 open("/s/b", O_RDONLY) = 4`,
		`1 dup3(4, 5, O_CLOEXEC) = 5`,
		`1 dup2(3, 6) = 6`, // dup2 clears close-on-exec
		`1 open("/s/c", O_RDONLY) = 7`,
		`1 fcntl(7, F_SETFD, FD_CLOEXEC) = 0`,
		`1 read(4, ""..., 5) = 5`,
		`1 execve("/bin/nope", ["nope"], 0x7ff /* 3 vars */) = -1 ENOENT (No such file or directory)`,
		`1 execve("/usr/bin/render", ["render", "-f", "3"], 0x7ff /* 3 vars */) = 0`,
		`1 read(3, ""..., 1) = -1 EBADF (Bad file descriptor)`,
		`1 read(4, ""..., 1) = 1`, // survives, offset 5
		`1 read(5, ""..., 1) = -1 EBADF (Bad file descriptor)`,
		`1 read(6, ""..., 1) = 1`,
		`1 read(7, ""..., 1) = -1 EBADF (Bad file descriptor)`,
	)
	equalLines(t, brief(evs, ""), []string{
		"p1 open /s/a fh=3",
		"p1 open /s/b fh=4",
		"p1 open /s/c fh=7",
		"p1 read /s/b fh=4 len=5 n=5",
		"p1 read /s/b fh=4 off=5 len=1 n=1",
		"p1 read /s/a fh=6 len=1 n=1",
	})
	h, _, _, err := Import(strings.NewReader(strace(`1 execve("/usr/bin/render", ["render", "-f", "3"], 0x7ff /* 3 vars */) = 0`)), Options{})
	if err != nil || !reflect.DeepEqual(h.Cmd, []string{"render", "-f", "3"}) {
		t.Errorf("cmd = %q, %v", h.Cmd, err)
	}
}

// A non-leader thread's execve finishes under the leader's pid.
func TestImportExecFromThread(t *testing.T) {
	evs, _ := importLines(t, "",
		`10 open("/s/a", O_RDONLY) = 3`,
		`10 clone(child_stack=0x7f, flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD) = 11`,
		`11 execve("/bin/x", [...], 0x7f /* 1 var */ <unfinished ...>`,
		`10 +++ superseded by execve in pid 11 +++`,
		`10 <... execve resumed>) = 0`,
		`10 read(3, ""..., 2) = 2`,
	)
	equalLines(t, brief(evs, ""), []string{
		"p1 open /s/a fh=3",
		"p1 read /s/a fh=3 len=2 n=2",
	})
}

func TestImportReaddirOncePerListing(t *testing.T) {
	evs, _ := importLines(t, "",
		`1 openat(AT_FDCWD, "/s", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY) = 3`,
		`1 fstat(3, {st_mode=S_IFDIR|0755, st_size=4096, ...}) = 0`,
		`1 getdents64(3, 0x55 /* 100 entries */, 32768) = 3200 <0.000010>`,
		`1 getdents64(3, 0x55 /* 20 entries */, 32768) = 640 <0.000020>`,
		`1 getdents64(3, 0x55 /* 0 entries */, 32768) = 0 <0.000001>`,
		`1 lseek(3, 0, SEEK_SET) = 0`, // rewinddir: a second listing
		`1 getdents64(3, 0x55, 32768) = 640`,
		`1 getdents64(3, 0x55, 32768) = 0`,
		`1 getdents64(4, 0x55 /* 1 entries */, 32768) = -1 ENOTDIR (Not a directory)`,
		`1 close(3) = 0`,
	)
	equalLines(t, brief(evs, ""), []string{
		"p1 open /s fh=3 dir",
		"p1 readdir /s fh=3 n=120",
		"p1 readdir /s fh=3 n=640", // no entry counts printed: bytes
		"p1 close /s fh=3",
	})
	if evs[1].Dur != 0.000031 {
		t.Errorf("listing dur = %v, want the sum of its calls", evs[1].Dur)
	}
}

func TestImportMmap(t *testing.T) {
	evs, _ := importLines(t, "",
		`1 openat(AT_FDCWD, "/s/lib.blend", O_RDONLY) = 3`,
		`1 fstat(3, {st_mode=S_IFREG|0644, st_size=10485760, ...}) = 0`,
		`1 mmap(NULL, 10485760, PROT_READ, MAP_SHARED, 3, 0) = 0x7f0000000000`,
		`1 mmap(0x7f00, 4096, PROT_READ, MAP_PRIVATE|MAP_FIXED, 3, 0x26000) = 0x7f00`,
		`1 mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f1`,
		`1 mmap(NULL, 8192, PROT_WRITE, MAP_SHARED, 3, 0) = -1 EACCES (Permission denied)`,
		`1 mmap(NULL, 18446744073709547520, PROT_READ, MAP_SHARED, 3, 0) = 0xffffffffffffe000`,
	)
	equalLines(t, brief(evs, ""), []string{
		"p1 open /s/lib.blend fh=3 size=10485760",
		"p1 mmap /s/lib.blend fh=3 len=10485760",
		"p1 mmap /s/lib.blend fh=3 off=155648 len=4096",
		"p1 mmap /s/lib.blend fh=3 len=8192 err=EACCES",
	})
}

func TestImportFailedCalls(t *testing.T) {
	evs, _ := importLines(t, "/s",
		`1 openat(AT_FDCWD, "/s/a.exr", O_RDONLY) = -1 ENOENT (No such file or directory) <0.000010>`,
		`1 newfstatat(AT_FDCWD, "/s/b", 0x7ffd, 0) = -1 ENOENT (No such file or directory)`,
		`1 statx(AT_FDCWD, "/s/c", AT_STATX_SYNC_AS_STAT, STATX_SIZE, 0x7ff) = -1 ENOTDIR (Not a directory)`,
		`1 statx(AT_FDCWD, "/s/d", AT_STATX_SYNC_AS_STAT, STATX_ALL, {stx_mask=STATX_BASIC_STATS, stx_attributes=0, stx_mode=S_IFREG|0644, stx_size=77, ...}) = 0`,
		`1 lstat("/s/e", 0x7ff) = -1 ELOOP (Too many levels of symbolic links)`,
		`1 readlink("/s/f", 0x7ff, 100) = -1 EINVAL (Invalid argument)`,
		`1 open("/s", O_RDONLY) = 3`,
		`1 read(3, 0x7ff, 10) = -1 EISDIR (Is a directory)`,
		`1 read(3, ""..., 10) = 10`, // the failure did not move the offset
		`1 creat("/s/out.exr", 0644) = -1 EROFS (Read-only file system)`,
		`1 open("/etc/passwd", O_RDONLY) = -1 EACCES (Permission denied)`, // outside /s
	)
	equalLines(t, brief(evs, "/s"), []string{
		"p1 open a.exr err=ENOENT",
		"p1 stat b err=ENOENT",
		"p1 stat c err=ENOTDIR",
		"p1 stat d size=77",
		"p1 stat e err=ELOOP",
		"p1 readlink f err=EINVAL",
		"p1 open . fh=3",
		"p1 read . fh=3 len=10 err=EISDIR",
		"p1 read . fh=3 len=10 n=10",
		"p1 open out.exr err=EROFS write",
	})
}

func TestImportLineFormats(t *testing.T) {
	// strace without -f prints no pid; to a terminal it prints [pid N].
	in := "1700000000.5 openat(AT_FDCWD, \"/s/a\", O_RDONLY) = 3 <0.1>\n" +
		"[pid  42] 1700000001.25 open(\"/s/b\", O_RDONLY) = 4\n" +
		"1700000002.000000001 read(3, \"\"..., 1) = 1\n"
	h, evs, _, err := Import(strings.NewReader(in), Options{})
	if err != nil {
		t.Fatal(err)
	}
	equalLines(t, brief(evs, ""), []string{"p1 open /s/a fh=3", "p2 open /s/b fh=4", "p1 read /s/a fh=3 len=1 n=1"})
	if !h.Start.Equal(time.Unix(1700000000, 5e8)) || evs[1].T != 0.75 || evs[2].T != 1.500000001 || evs[0].Dur != 0.1 || evs[1].Pid != 42 {
		t.Errorf("start %v, events %+v", h.Start, evs)
	}
}

func TestImportSkipsNoise(t *testing.T) {
	evs, st := importLines(t, "",
		`1 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=2} ---`,
		`1 +++ exited with 0 +++`,
		`strace: Process 5 attached`,
		``,
		`1 write(1, ""..., 5) = 5`, // not an event; it only moves offsets
		`1 rename("/s/a", "/s/b") = 0`,
		`1 exit_group(0) = ?`,
		`garbage`,
		`1 open("/s/a", O_RDONLY`,    // no closing parenthesis
		`1 open("/s/a", O_RDONLY) 3`, // no "="
		`1 open("/s/a", O_RDONLY) = -1`,
		`1 read(3, ""..., 1) = 1 <nan>`,
		`1 read(3, ""..., 1) = ? <unavailable>`,
		`12:00:01 open("/s/a", O_RDONLY) = 3`,
		`1 open("/s/ok", O_RDONLY) = 3`,
	)
	equalLines(t, brief(evs, ""), []string{"p1 open /s/ok fh=3"})
	if st.Malformed != 6 || st.Ignored != 2 || st.Unfinished != 1 || len(st.Examples) != maxExamples {
		t.Errorf("stats = %+v", st)
	}
}

func TestImportErrors(t *testing.T) {
	for name, in := range map[string]string{
		"empty":      "",
		"not strace": "hello\nworld\n",
		"no -ttt":    "123 open(\"/a\", O_RDONLY) = 3\n",
	} {
		_, _, _, err := Import(strings.NewReader(in), Options{})
		if err == nil || !strings.Contains(err.Error(), "no strace system call lines") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, _, _, err := Import(strings.NewReader(strace(`1 close(3) = 0`)), Options{Prefix: "show"}); err == nil {
		t.Error("a relative prefix was accepted")
	}
}

func TestImportPrefix(t *testing.T) {
	in := strace(
		`1 open("/show/a", O_RDONLY) = 3`,
		`1 open("/showx/b", O_RDONLY) = 4`,
		`1 open("/show", O_RDONLY|O_DIRECTORY) = 5`,
		`1 read(3, ""..., 1) = 1`,
		`1 read(4, ""..., 1) = 1`,
	)
	h, evs, st, err := Import(strings.NewReader(in), Options{Prefix: "/show/"})
	if err != nil {
		t.Fatal(err)
	}
	equalLines(t, brief(evs, ""), []string{"p1 open /show/a fh=3", "p1 open /show fh=5 dir", "p1 read /show/a fh=3 len=1 n=1"})
	if h.Root != "/show" || st.Outside != 2 || st.Events != 3 {
		t.Errorf("root %q stats %+v", h.Root, st)
	}
}
