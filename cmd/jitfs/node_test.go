package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	n := w.startNode(dir)
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
