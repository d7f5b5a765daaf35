package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/internal/testworld"
)

// TestStatusShowsWhatIsInFlightNow holds two files' reads on the link: a
// cold read through the mount blocks on one while `jitfs prefetch` fetches
// the other. `jitfs status` shows the read blocked, with the reading
// process, and the prefetch in flight, with its job and band, in JSON and
// in its "now:" section; once the link lets the bytes through, nothing.
func TestStatusShowsWhatIsInFlightNow(t *testing.T) {
	w := newWorld(t, false)
	want := w.PutRandom("show/plates/a.exr", 16<<20)
	w.PutRandom("show/plates/b.exr", 16<<20)
	sock := filepath.Join(t.TempDir(), "jitfs.sock")
	d := w.mountForTest("show", "", "--socket", sock)
	waitForSocket(t, sock)

	var hold atomic.Bool
	hold.Store(true)
	holdFn := func(p string) bool { return hold.Load() && strings.Contains(p, "show/plates/") }
	w.Proxy.HoldMedia.Store(&holdFn)
	t.Cleanup(func() { hold.Store(false) })

	read := make(chan error, 1)
	go func() {
		got, err := os.ReadFile(d.path("plates/a.exr"))
		if err == nil && !bytes.Equal(got, want) {
			err = fmt.Errorf("read %d bytes, not the object's %d", len(got), len(want))
		}
		read <- err
	}()
	prefetched := make(chan string, 1)
	go func() {
		out, err := testworld.Command(context.Background(), "prefetch", "--socket", sock, "--job", "j7", "--scope", "job",
			"--wait", "2m", d.path("plates/b.exr")).CombinedOutput()
		if err != nil {
			prefetched <- fmt.Sprintf("%v: %s", err, out)
			return
		}
		prefetched <- ""
	}()

	status := func() hooks.StatusReply {
		out, code := runJitfs(t, "status", "--socket", sock, "--json")
		if code != 0 {
			t.Fatalf("status: exit %d: %s", code, out)
		}
		var rep hooks.StatusReply
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return rep
	}
	var rep hooks.StatusReply
	var blocked *hooks.BlockedRead
	var fetch *hooks.ActiveFetch
	testworld.WaitFor(t, "the read blocked and the prefetch in flight in the status", func() bool {
		rep = status()
		blocked, fetch = nil, nil
		for i, b := range rep.Blocked {
			if b.Path == "plates/a.exr" && b.PID == os.Getpid() && b.AgeMS > 0 {
				blocked = &rep.Blocked[i]
			}
		}
		for i, f := range rep.Fetching {
			if f.Path == "plates/b.exr" && f.Job == "j7" && f.Band == "job" && f.AgeMS > 0 {
				fetch = &rep.Fetching[i]
			}
		}
		return blocked != nil && fetch != nil
	})
	for _, f := range rep.Fetching {
		if f.BytesTotal <= 0 || f.BytesDone < 0 || f.BytesDone > f.BytesTotal || f.AgeMS < 0 || f.Band == "" {
			t.Errorf("fetch %+v", f)
		}
	}
	for _, b := range rep.Blocked {
		if b.Length <= 0 || b.BytesTotal <= 0 || b.BytesDone > b.BytesTotal || b.AgeMS < 0 {
			t.Errorf("blocked read %+v", b)
		}
	}
	// A reader's miss names no job on a mount of its own; its fetch is the
	// read's.
	for _, f := range rep.Fetching {
		if f.Path == "plates/a.exr" && (f.Band != "read" && f.Band != "readahead" || f.Job != "") {
			t.Errorf("the reader's fetch: %+v", f)
		}
	}
	out, code := runJitfs(t, "status", "--socket", sock)
	t.Logf("jitfs status:\n%s", out)
	for _, line := range []string{"  now:\n", "    blocked  plates/a.exr @", fmt.Sprintf("pid %d\n", os.Getpid()),
		"    fetching plates/b.exr @", "job j7, pid ", ", band job\n"} {
		if code != 0 || !strings.Contains(out, line) {
			t.Errorf("status text: exit %d, no %q:\n%s", code, line, out)
		}
	}

	hold.Store(false)
	if err := <-read; err != nil {
		t.Fatalf("cold read: %v", err)
	}
	if msg := <-prefetched; msg != "" {
		t.Fatalf("prefetch: %s", msg)
	}
	testworld.WaitFor(t, "nothing in flight once the bytes came", func() bool {
		rep = status()
		return len(rep.Fetching) == 0 && len(rep.Blocked) == 0
	})
	if rep.Fetching == nil || rep.Blocked == nil {
		t.Errorf("empty lists should be [] in JSON: %+v %+v", rep.Fetching, rep.Blocked)
	}
	out, code = runJitfs(t, "status", "--socket", sock)
	if code != 0 || !strings.Contains(out, "  now:        nothing in flight\n") {
		t.Errorf("idle status text: exit %d:\n%s", code, out)
	}
}

// TestNodeStatusShowsWhatIsInFlightNow: on the node daemon, a task's cold
// read held on the link shows under its job's source, with the task, the
// reading process and the object's gs:// name in the text.
func TestNodeStatusShowsWhatIsInFlightNow(t *testing.T) {
	w := newWorld(t, false)
	want := w.PutRandom("show/plates/a.exr", 4<<20)
	dir := t.TempDir()
	n := w.startNode(dir)

	var hold atomic.Bool
	hold.Store(true)
	holdFn := func(p string) bool { return hold.Load() && strings.HasSuffix(p, "show/plates/a.exr") }
	w.Proxy.HoldMedia.Store(&holdFn)
	t.Cleanup(func() { hold.Store(false) })

	mnt := filepath.Join(dir, "task", "show")
	pidFile := filepath.Join(dir, "cat.pid")
	copied := filepath.Join(dir, "a.exr")
	run := n.startRun(t, "--job", "J9", "--mount", "gs://"+testBucket+"/show:"+mnt,
		"--", "sh", "-c", fmt.Sprintf(`cat %q > %q & echo $! > %q; wait $!`, filepath.Join(mnt, "plates/a.exr"), copied, pidFile))

	var st daemon.NodeStatus
	var blocked *hooks.BlockedRead
	testworld.WaitFor(t, "the task's read blocked in the node's status", func() bool {
		pid, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		st = n.status(t)
		blocked = nil
		for _, j := range st.Jobs {
			for _, s := range j.Sources {
				for i, b := range s.Prefetch.Blocked {
					if j.ID == "J9" && len(j.Tasks) == 1 && b.Path == "plates/a.exr" && b.Job == "J9" &&
						b.Task == j.Tasks[0].ID && fmt.Sprint(b.PID) == strings.TrimSpace(string(pid)) {
						blocked = &s.Prefetch.Blocked[i]
					}
				}
			}
		}
		return blocked != nil
	})
	out, code := runJitfs(t, "status", "--daemon", n.sock)
	t.Logf("jitfs status --daemon:\n%s", out)
	if code != 0 || !strings.Contains(out, "  now:\n") || !strings.Contains(out, "    blocked  gs://"+testBucket+"/show/plates/a.exr @") ||
		!strings.Contains(out, "job J9, task "+blocked.Task) {
		t.Errorf("jitfs status --daemon: exit %d:\n%s", code, out)
	}

	hold.Store(false)
	if r := waitRun(t, "the reading task", run); r.code != 0 {
		t.Fatalf("task: exit %d\n%s", r.code, r.out)
	}
	mustEqualBytes(t, "the task's copy", mustRead(t, copied), want)
	testworld.WaitFor(t, "nothing in flight on the node", func() bool {
		st = n.status(t)
		for _, j := range st.Jobs {
			for _, s := range j.Sources {
				if len(s.Prefetch.Fetching)+len(s.Prefetch.Blocked) > 0 {
					return false
				}
			}
		}
		return true
	})
	if out, code := runJitfs(t, "status", "--daemon", n.sock); code != 0 || !strings.Contains(out, "  now:        nothing in flight\n") {
		t.Errorf("idle node status: exit %d:\n%s", code, out)
	}
}

// TestPrintNow: one line per blocked read and fetch, who asked without
// the parts not known, a note at the bound, and one line when idle.
func TestPrintNow(t *testing.T) {
	var b strings.Builder
	printNow(&b, hooks.Status{})
	if b.String() != "  now:        nothing in flight\n" {
		t.Errorf("idle: %q", b.String())
	}
	b.Reset()
	printNow(&b, hooks.Status{
		Blocked: []hooks.BlockedRead{{Path: "tex/a.tx", Offset: 1 << 20, Length: 128 << 10, BytesDone: 1 << 20,
			BytesTotal: 8 << 20, AgeMS: 2345, PID: 42, Job: "J", Task: "T"}},
		Fetching: []hooks.ActiveFetch{{Path: "tex/a.tx", BytesDone: 1 << 20, BytesTotal: 8 << 20, AgeMS: 2400, Band: "read", PID: 42},
			{Path: "lib/b.blend", Offset: 8 << 20, BytesTotal: 4 << 20, AgeMS: 80, Job: "J", Band: "lookahead"}},
	})
	want := "  now:\n" +
		"    blocked  tex/a.tx @1.0 MiB+128 KiB  1.0 MiB/8.0 MiB  2.3s  job J, task T, pid 42\n" +
		"    fetching tex/a.tx @0  1.0 MiB/8.0 MiB  2.4s  pid 42, band read\n" +
		"    fetching lib/b.blend @8.0 MiB  0 B/4.0 MiB  80ms  job J, band lookahead\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	printNow(&b, hooks.Status{Fetching: make([]hooks.ActiveFetch, hooks.MaxNow)})
	if !strings.HasSuffix(b.String(), fmt.Sprintf("    (the %d oldest of each shown)\n", hooks.MaxNow)) ||
		!strings.Contains(b.String(), "(unknown)") {
		t.Errorf("at the bound:\n%s", b.String())
	}
}
