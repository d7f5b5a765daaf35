package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/internal/testworld"
)

// noded is a `jitfs daemon` process.
type noded struct {
	*testworld.Daemon
	sock, dir string
}

// startNode starts the node daemon with its cache, staging and sockets
// under dir, and waits until its control socket answers.
func (w *world) startNode(dir string, extra ...string) *noded {
	w.t.Helper()
	sock := filepath.Join(dir, "run", "daemon.sock")
	args := append([]string{"daemon", "--endpoint", w.Proxy.Addr(), "--cache-dir", filepath.Join(dir, "cache"), "--cache-size", "1GiB",
		"--staging-dir", filepath.Join(dir, "staging"), "--socket", sock, "--upload-max-backoff", "500ms"}, extra...)
	d := testworld.StartDaemon(w.t, "", func() bool { return daemon.NodeAnswers(sock, time.Second) }, args...)
	return &noded{Daemon: d, sock: sock, dir: dir}
}

func (n *noded) status(t *testing.T) daemon.NodeStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := daemon.NewNodeClient(n.sock).Status(ctx)
	if err != nil {
		t.Fatalf("node status: %v\n%s", err, n.Log)
	}
	return st
}

// runResult is one `jitfs run` that ran to completion.
type runResult struct {
	out  string
	code int
}

// startRun starts `jitfs run --daemon SOCK ARGS...` and returns a channel
// with its result.
func (n *noded) startRun(t *testing.T, args ...string) <-chan runResult {
	t.Helper()
	ch := make(chan runResult, 1)
	go func() {
		cmd := testworld.Command(context.Background(), append([]string{"run", "--daemon", n.sock, "--log-level", "warn"}, args...)...)
		out, _ := cmd.CombinedOutput()
		ch <- runResult{string(out), cmd.ProcessState.ExitCode()}
	}()
	return ch
}

func waitRun(t *testing.T, what string, ch <-chan runResult) runResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Minute):
		t.Fatalf("%s: jitfs run did not end", what)
		return runResult{}
	}
}

// gate is a file-based barrier the tests' commands wait on: a command
// touches its "ready" file, then waits until the test creates "go".
type gate struct{ dir string }

func newGate(t *testing.T) gate {
	d := filepath.Join(t.TempDir(), "gate")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return gate{d}
}

// sh is the shell snippet that marks name ready and waits for go.
func (g gate) sh(name string) string {
	return fmt.Sprintf(`touch %q; while [ ! -e %q ]; do sleep 0.05; done`, filepath.Join(g.dir, name+".ready"), filepath.Join(g.dir, "go"))
}

func (g gate) ready(names ...string) bool {
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(g.dir, n+".ready")); err != nil {
			return false
		}
	}
	return true
}

func (g gate) open(t *testing.T) {
	if err := os.WriteFile(filepath.Join(g.dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNodeFourTasks runs 2 jobs × 2 tasks at once through one node daemon,
// each task reading the same files of 2 sources and writing an output:
// every task gets the right bytes, the status lists every job and task,
// and each object's data crosses the link once for all four.
func TestNodeFourTasks(t *testing.T) {
	w := newWorld(t, false)
	want := map[string][]byte{}
	for i := range 4 {
		for _, src := range []string{"showA/tex", "showB/lib"} {
			name := fmt.Sprintf("%s/f%d.bin", src, i)
			want[name] = w.PutRandom(name, 100_000+i*7919)
		}
	}
	dir := t.TempDir()
	n := w.startNode(dir, "--metrics-addr", "127.0.0.1:0")
	g := newGate(t)
	type tk struct{ job, name string }
	tasks := []tk{{"J1", "t1"}, {"J1", "t2"}, {"J2", "t3"}, {"J2", "t4"}}
	var runs []<-chan runResult
	for _, k := range tasks {
		td := filepath.Join(dir, k.name)
		res := filepath.Join(td, "res")
		// Copy both trees out of the mounts, write an output, then wait
		// for the gate with the directories still attached.
		script := fmt.Sprintf(`set -e; mkdir -p %[1]q; cp -r "$JITFS_MOUNTS_A" %[1]q/a; cp -r "$JITFS_MOUNTS_B" %[1]q/b; echo %[2]s > "$JITFS_OUTPUTS/done.txt"; %[3]s`,
			res, k.name, g.sh(k.name))
		script = strings.ReplaceAll(script, "$JITFS_MOUNTS_A", filepath.Join(td, "show"))
		script = strings.ReplaceAll(script, "$JITFS_MOUNTS_B", filepath.Join(td, "lib"))
		runs = append(runs, n.startRun(t, "--job", k.job,
			"--mount", "gs://"+testBucket+"/showA:"+filepath.Join(td, "show"),
			"--mount", "gs://"+testBucket+"/showB:"+filepath.Join(td, "lib"),
			"--output", "gs://"+testBucket+"/jobs/"+k.job+"/"+k.name+":"+filepath.Join(td, "out"),
			"--", "sh", "-c", script))
	}
	waitFor(t, "all four tasks at the gate", 3*time.Minute, func() bool { return g.ready("t1", "t2", "t3", "t4") })
	st := n.status(t)
	if len(st.Jobs) != 2 {
		t.Fatalf("status lists %d jobs, want 2: %+v", len(st.Jobs), st.Jobs)
	}
	for _, j := range st.Jobs {
		if len(j.Tasks) != 2 || len(j.Sources) != 2 {
			t.Fatalf("job %s: %d tasks, %d sources; want 2 and 2", j.ID, len(j.Tasks), len(j.Sources))
		}
		// Each job pinned the 8 files it read, and they are resident.
		var files int64
		for _, s := range j.Sources {
			files += s.Files
		}
		if files != 8 || j.ResidentBytes <= 0 {
			t.Fatalf("job %s: %d files pinned, %d bytes resident", j.ID, files, j.ResidentBytes)
		}
	}
	// The FUSE series of the task mounts say whose reads they are.
	m := regexp.MustCompile(`url=(http://\S+/metrics)`).FindStringSubmatch(n.Log.String())
	if m == nil {
		t.Fatalf("the daemon logged no metrics URL:\n%s", n.Log)
	}
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, job := range []string{"J1", "J2"} {
		if v, _ := scrapeSum(string(body), "jitfs_fuse_operations_total", `job_id="`+job+`"`, `op="read"`, `result="ok"`); v < 1 {
			t.Errorf("no FUSE read counted for job %s:\n%s", job, grepLines(string(body), "jitfs_fuse_operations_total"))
		}
	}
	if out, code := runJitfs(t, "status", "--daemon", n.sock); code != 0 || !strings.Contains(out, "job J1") || !strings.Contains(out, "job J2") ||
		!strings.Contains(out, " of 1.0 GiB in ") {
		// Sizes in the unit a reader expects: the 1 GiB budget, not "1024.0 MiB".
		t.Fatalf("jitfs status --daemon: exit %d\n%s", code, out)
	}
	g.open(t)
	for i, ch := range runs {
		r := waitRun(t, tasks[i].name, ch)
		if r.code != 0 {
			t.Fatalf("task %s: exit %d\n%s\ndaemon:\n%s", tasks[i].name, r.code, r.out, n.Log)
		}
	}
	for _, k := range tasks {
		res := filepath.Join(dir, k.name, "res")
		for name, b := range want {
			local := filepath.Join(res, "a", strings.TrimPrefix(name, "showA/"))
			if strings.HasPrefix(name, "showB/") {
				local = filepath.Join(res, "b", strings.TrimPrefix(name, "showB/"))
			}
			mustEqualBytes(t, k.name+" "+name, mustRead(t, local), b)
		}
		if err := checkObject(t, w.gcsClient(), "jobs/"+k.job+"/"+k.name+"/done.txt", []byte(k.name+"\n")); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.Proxy.MediaReqs.Load(); got != int64(len(want)) {
		t.Fatalf("%d data requests for %d objects read by 4 tasks: the node's cache is not shared", got, len(want))
	}
	// Detached: nothing is left mounted, and the jobs wait out their grace.
	st = n.status(t)
	for _, j := range st.Jobs {
		if len(j.Tasks) != 0 || j.EndsAt == 0 {
			t.Fatalf("job %s after its tasks ended: %d tasks, ends_at %v", j.ID, len(j.Tasks), j.EndsAt)
		}
	}
}

// TestNodeSnapshots: job A reads x; x is overwritten; job B, started
// after, reads the new bytes, while every task of A, one started after the
// overwrite included, reads the generation A pinned.
func TestNodeSnapshots(t *testing.T) {
	w := newWorld(t, true)
	v1 := w.PutRandom("show/x.bin", 50_000)
	dir := t.TempDir()
	n := w.startNode(dir)
	g := newGate(t)
	read := func(job, name string, extra string) <-chan runResult {
		td := filepath.Join(dir, name)
		return n.startRun(t, "--job", job, "--mount", "gs://"+testBucket+"/show:"+filepath.Join(td, "show"), "--",
			"sh", "-c", fmt.Sprintf(`set -e; cp %q %q; %s`, filepath.Join(td, "show", "x.bin"), filepath.Join(dir, name+".got"), extra))
	}
	a1 := read("A", "a1", g.sh("a1")) // stays attached until the gate opens
	waitFor(t, "a1 read x", 2*time.Minute, func() bool { return g.ready("a1") })
	mustEqualBytes(t, "a1 before the overwrite", mustRead(t, filepath.Join(dir, "a1.got")), v1)

	v2 := testworld.RandBytes("x v2", 60_000)
	w.Put("show/x.bin", v2)

	for _, c := range []struct {
		job, name string
		want      []byte
	}{{"B", "b1", v2}, {"A", "a2", v1}, {"B", "b2", v2}} {
		r := waitRun(t, c.name, read(c.job, c.name, "true"))
		if r.code != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", c.name, r.code, r.out, n.Log)
		}
		mustEqualBytes(t, c.name+" (job "+c.job+")", mustRead(t, filepath.Join(dir, c.name+".got")), c.want)
	}
	g.open(t)
	if r := waitRun(t, "a1", a1); r.code != 0 {
		t.Fatalf("a1: exit %d\n%s", r.code, r.out)
	}
	// Job A's pins end on release (no task of it is attached now); its
	// next task is a new job that sees the bucket as it is.
	if out, code := runJitfs(t, "prefetch", "--release", "--job", "A", "--daemon", n.sock); code != 0 {
		t.Fatalf("jitfs prefetch --release --job A: exit %d\n%s", code, out)
	}
	if r := waitRun(t, "a3", read("A", "a3", "true")); r.code != 0 {
		t.Fatalf("a3: exit %d\n%s", r.code, r.out)
	}
	mustEqualBytes(t, "a3 after A's release", mustRead(t, filepath.Join(dir, "a3.got")), v2)
}

// TestNodeKilled SIGKILLs the node daemon while two tasks read and one
// has written outputs that are not uploaded yet: every task's jitfs run
// ends with the retry status (75) instead of hanging; the restarted
// daemon detaches the dead mounts, uploads the closed output, and serves
// the job's next task with no data re-downloaded and no list or stat
// request.
func TestNodeKilled(t *testing.T) {
	w := newWorld(t, false)
	want := map[string][]byte{}
	for i := range 5 {
		name := fmt.Sprintf("f%d.bin", i)
		want[name] = w.PutRandom("show/sub/"+name, 200_000+i)
	}
	dir := t.TempDir()
	n := w.startNode(dir)
	g := newGate(t)
	reader := func(name string) <-chan runResult {
		show := filepath.Join(dir, name, "show")
		// Read every file once, then keep reading until a read fails.
		script := fmt.Sprintf(`set -e; cat %[1]q/sub/* >/dev/null; touch %[2]q; while cat %[1]q/sub/* >/dev/null; do :; done; exit 1`,
			show, filepath.Join(g.dir, name+".ready"))
		return n.startRun(t, "--job", "R", "--mount", "gs://"+testBucket+"/show:"+show, "--", "sh", "-c", script)
	}
	t.Cleanup(func() {
		// A failing test may leave the killed daemon's mounts behind.
		for _, d := range []string{"r1/show", "r2/show", "w/out"} {
			if deadMount(filepath.Join(dir, d)) {
				syscall.Unmount(filepath.Join(dir, d), syscall.MNT_DETACH)
			}
		}
	})
	r1, r2 := reader("r1"), reader("r2")
	w.Proxy.UploadOutage.Store(true) // the output stays staged
	out := filepath.Join(dir, "w", "out")
	wr := n.startRun(t, "--job", "W", "--output", "gs://"+testBucket+"/jobs/W/frames-1-2:"+out, "--",
		"sh", "-c", fmt.Sprintf(`set -e; echo frame1 > %q/f1.exr; %s`, out, g.sh("w")))
	waitFor(t, "readers reading and the writer's frame closed", 2*time.Minute, func() bool { return g.ready("r1", "r2", "w") })
	waitFor(t, "the listings in the metadata store", time.Minute, func() bool { return n.status(t).Metadata.Pending == 0 })

	n.Kill()
	killed := time.Now()
	for name, ch := range map[string]<-chan runResult{"r1": r1, "r2": r2, "w": wr} {
		r := waitRun(t, name, ch)
		if r.code != exitNotDurable || !strings.Contains(r.out, "node daemon") {
			t.Fatalf("%s after the daemon was killed: exit %d, want %d\n%s", name, r.code, exitNotDurable, r.out)
		}
		// The documented bound (docs/node.md): the kernel fails every
		// request of a dead daemon's mount at once; 2 minutes leaves room
		// for a loaded machine and still catches a hang.
		if d := time.Since(killed); d > 2*time.Minute {
			t.Fatalf("%s ended %v after the kill", name, d)
		}
	}

	w.Proxy.UploadOutage.Store(false)
	n.Start()
	for _, name := range []string{"r1", "r2"} {
		if deadMount(filepath.Join(dir, name, "show")) {
			t.Fatalf("%s: the dead mount is still there after the restart", name)
		}
	}
	c := w.gcsClient()
	waitFor(t, "the killed task's closed frame durable", 2*time.Minute, func() bool {
		return checkObject(t, c, "jobs/W/frames-1-2/f1.exr", []byte("frame1\n")) == nil
	})

	w.Proxy.MediaReqs.Store(0)
	w.Proxy.Lists.Store(0)
	w.Proxy.Stats.Store(0)
	show := filepath.Join(dir, "r3", "show")
	res := filepath.Join(dir, "r3", "res")
	r := waitRun(t, "r3", n.startRun(t, "--job", "R", "--mount", "gs://"+testBucket+"/show:"+show, "--", "cp", "-r", filepath.Join(show, "sub"), res))
	if r.code != 0 {
		t.Fatalf("r3: exit %d\n%s\n%s", r.code, r.out, n.Log)
	}
	for name, b := range want {
		mustEqualBytes(t, "r3 "+name, mustRead(t, filepath.Join(res, name)), b)
	}
	if m, l, s := w.Proxy.MediaReqs.Load(), w.Proxy.Lists.Load(), w.Proxy.Stats.Load(); m+l+s != 0 {
		t.Fatalf("after the restart the job's next task cost %d data, %d list and %d stat requests; want none", m, l, s)
	}
}

// deadMount: a FUSE mount whose daemon is gone (statfs fails ENOTCONN).
func deadMount(dir string) bool {
	var sfs syscall.Statfs_t
	err := syscall.Statfs(dir, &sfs)
	return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED)
}

// TestNodeBudget: two jobs whose files together exceed the node's one
// cache budget. Eviction brings the cache back within the budget, and
// never takes a file a live task holds open or a job has pinned.
func TestNodeBudget(t *testing.T) {
	w := newWorld(t, false)
	const mib = 1 << 20
	pinned := w.PutRandom("show/a/pinned.bin", mib)
	held := w.PutRandom("show/a/held.bin", mib)
	for i := range 8 {
		w.PutRandom(fmt.Sprintf("show/b/f%d.bin", i), mib)
	}
	dir := t.TempDir()
	n := w.startNode(dir, "--cache-size", "4MiB")
	g := newGate(t)
	show := filepath.Join(dir, "a", "show")
	self, _ := os.Executable()
	// Job A pins one file through its hook socket and holds another open
	// across the gate, then reads both again.
	script := fmt.Sprintf(`set -e
%[1]q prefetch --wait 60s --job A %[2]q/a/pinned.bin
cat %[2]q/a/held.bin >/dev/null
exec 3< %[2]q/a/held.bin
%[3]s
cat <&3 > %[4]q
cat %[2]q/a/pinned.bin > %[5]q`, self, show, g.sh("a"), filepath.Join(dir, "held.got"), filepath.Join(dir, "pinned.got"))
	a := n.startRun(t, "--job", "A", "--mount", "gs://"+testBucket+"/show:"+show, "--", "sh", "-c", script)
	waitFor(t, "job A holding its files", 2*time.Minute, func() bool { return g.ready("a") })

	bshow := filepath.Join(dir, "b", "show")
	r := waitRun(t, "b", n.startRun(t, "--job", "B", "--mount", "gs://"+testBucket+"/show:"+bshow, "--",
		"sh", "-c", fmt.Sprintf(`for f in %q/b/*; do cat "$f" >/dev/null || exit 1; done`, bshow)))
	if r.code != 0 {
		t.Fatalf("job B: exit %d\n%s", r.code, r.out)
	}
	waitFor(t, "the cache back within its budget", 2*time.Minute, func() bool {
		st := n.status(t)
		return st.CacheUsedBytes <= st.CacheBudgetBytes
	})
	before := w.Proxy.MediaReqs.Load()
	if before != 10 {
		t.Fatalf("%d data requests for 10 files read once", before)
	}
	g.open(t)
	if r := waitRun(t, "a", a); r.code != 0 {
		t.Fatalf("job A: exit %d\n%s", r.code, r.out)
	}
	mustEqualBytes(t, "held open", mustRead(t, filepath.Join(dir, "held.got")), held)
	mustEqualBytes(t, "pinned", mustRead(t, filepath.Join(dir, "pinned.got")), pinned)
	if got := w.Proxy.MediaReqs.Load(); got != before {
		t.Fatalf("job A's open and pinned files were fetched again (%d more data requests): eviction took them", got-before)
	}
}

// TestNodeCorruptMetadata: a metadata store found torn at start is
// logged, set aside and rebuilt from GCS: the job's next task lists
// again and reads the bucket's bytes, and the status says so.
func TestNodeCorruptMetadata(t *testing.T) {
	w := newWorld(t, false)
	want := w.PutRandom("show/x.bin", 30_000)
	dir := t.TempDir()
	n := w.startNode(dir)
	read := func(name string) {
		t.Helper()
		show := filepath.Join(dir, name, "show")
		r := waitRun(t, name, n.startRun(t, "--job", "J", "--mount", "gs://"+testBucket+"/show:"+show, "--",
			"cp", filepath.Join(show, "x.bin"), filepath.Join(dir, name+".got")))
		if r.code != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", name, r.code, r.out, n.Log)
		}
		mustEqualBytes(t, name, mustRead(t, filepath.Join(dir, name+".got")), want)
	}
	read("t1")
	n.Stop()
	db := filepath.Join(dir, "cache", "meta.db")
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	// Tear it: the first pages (bbolt's meta pages) overwritten.
	garbage := testworld.RandBytes("torn", int(min(fi.Size(), 16<<10)))
	f, err := os.OpenFile(db, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(garbage, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	n.Start()
	st := n.status(t)
	if !st.Metadata.Rebuilt || st.Metadata.RebuiltReason == "" {
		t.Fatalf("status after a torn store: %+v", st.Metadata)
	}
	if _, err := os.Stat(db + ".corrupt"); err != nil {
		t.Fatalf("the torn store was not set aside: %v", err)
	}
	if !strings.Contains(n.Log.String(), "corrupt") {
		t.Fatalf("the daemon did not log the torn store:\n%s", n.Log)
	}
	w.Proxy.Lists.Store(0)
	read("t2")
	if w.Proxy.Lists.Load() == 0 {
		t.Fatal("the rebuilt store served a listing it cannot have kept")
	}
}

// TestRunWithoutNodeDaemon: a second standalone task of the same source on
// one cache is refused with a pointer to the node daemon, and a --daemon
// that does not answer fails the setup.
func TestRunWithoutNodeDaemon(t *testing.T) {
	w := newWorld(t, false)
	w.PutRandom("show/x.bin", 1000)
	dir := t.TempDir()
	g := newGate(t)
	first := make(chan runResult, 1)
	go func() {
		o, code := runJitfs(t, append(w.runArgs(dir), "--mount", "gs://"+testBucket+"/show:"+filepath.Join(dir, "t1"), "--", "sh", "-c", g.sh("t1"))...)
		first <- runResult{o, code}
	}()
	waitFor(t, "the first task running", 2*time.Minute, func() bool { return g.ready("t1") })
	o, code := runJitfs(t, append(w.runArgs(dir), "--mount", "gs://"+testBucket+"/show:"+filepath.Join(dir, "t2"), "--", "true")...)
	if code != exitSetup || !strings.Contains(o, "in use") || !strings.Contains(o, "jitfs daemon") {
		t.Fatalf("second standalone task on one cache: exit %d\n%s", code, o)
	}
	g.open(t)
	if r := waitRun(t, "t1", first); r.code != 0 {
		t.Fatalf("first task: exit %d\n%s", r.code, r.out)
	}
	o, code = runJitfs(t, "run", "--daemon", filepath.Join(dir, "none.sock"), "--mount", "gs://"+testBucket+"/show:"+filepath.Join(dir, "t3"), "--", "true")
	if code != exitSetup || !strings.Contains(o, "no jitfs node daemon") {
		t.Fatalf("--daemon with nothing there: exit %d\n%s", code, o)
	}
}

// TestNodeGraceAndLeftoverOutputs: a job ends its grace period after its
// last task (its pins end, and its next task sees the bucket as it is
// now), and outputs a task left not durable when its flush gave up are
// uploaded by the daemon after the task detached.
func TestNodeGraceAndLeftoverOutputs(t *testing.T) {
	w := newWorld(t, true)
	w.PutRandom("show/x.bin", 20_000)
	dir := t.TempDir()
	n := w.startNode(dir, "--job-grace", "300ms")
	show := filepath.Join(dir, "t1", "show")
	out := filepath.Join(dir, "t1", "out")
	w.Proxy.UploadOutage.Store(true)
	r := waitRun(t, "t1", n.startRun(t, "--job", "G", "--flush-timeout", "1s",
		"--mount", "gs://"+testBucket+"/show:"+show, "--output", "gs://"+testBucket+"/jobs/G/f1:"+out, "--",
		"sh", "-c", fmt.Sprintf(`cp %q %q && echo frame > %q/f.exr`, filepath.Join(show, "x.bin"), filepath.Join(dir, "t1.got"), out)))
	if r.code != exitNotDurable || !strings.Contains(r.out, "NOT durable") {
		t.Fatalf("t1 with uploads failing: exit %d\n%s", r.code, r.out)
	}
	w.Proxy.UploadOutage.Store(false)
	c := w.gcsClient()
	waitFor(t, "the detached task's output uploaded by the daemon", 2*time.Minute, func() bool {
		return checkObject(t, c, "jobs/G/f1/f.exr", []byte("frame\n")) == nil
	})
	waitFor(t, "job G ended after its grace period", 2*time.Minute, func() bool { return len(n.status(t).Jobs) == 0 })

	v2 := testworld.RandBytes("x v2", 25_000)
	w.Put("show/x.bin", v2)
	show2 := filepath.Join(dir, "t2", "show")
	r = waitRun(t, "t2", n.startRun(t, "--job", "G", "--mount", "gs://"+testBucket+"/show:"+show2, "--",
		"cp", filepath.Join(show2, "x.bin"), filepath.Join(dir, "t2.got")))
	if r.code != 0 {
		t.Fatalf("t2: exit %d\n%s", r.code, r.out)
	}
	mustEqualBytes(t, "job G after its grace period", mustRead(t, filepath.Join(dir, "t2.got")), v2)
}

// TestNodeDaemonNotifiesSystemd: under systemd (Type=notify) the daemon
// says READY=1 once its socket answers and STOPPING=1 when told to stop.
func TestNodeDaemonNotifiesSystemd(t *testing.T) {
	w := newWorld(t, false)
	dir := t.TempDir()
	notify := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 8)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	t.Setenv("NOTIFY_SOCKET", notify)
	n := w.startNode(dir)
	want := func(what string) {
		t.Helper()
		select {
		case m := <-msgs:
			if !strings.Contains(m, what) {
				t.Fatalf("sd_notify message %q, want %s", m, what)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("no %s from the daemon\n%s", what, n.Log)
		}
	}
	want("READY=1")
	if !daemon.NodeAnswers(n.sock, time.Minute) {
		t.Fatal("READY=1 before the socket answers")
	}
	n.Stop()
	want("STOPPING=1")
}
