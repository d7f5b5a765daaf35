package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/trace"
)

// The Blender hook tests run Debian's Blender 3.4 headless (scripts/test.sh
// installs blender, strace and python3-openvdb) on a project that bpy builds
// at test time (blender-hooks/tests/make_fixture.py), and compare what the
// add-on asked for with what Blender really opened, as strace saw it.

var (
	hookScript  = mustAbs("../../blender-hooks/jitfs_prefetch.py")
	fixtureGen  = mustAbs("../../blender-hooks/tests/make_fixture.py")
	buildExt    = mustAbs("../../blender-hooks/build_extension.py")
	hookSummary = regexp.MustCompile(`jitfs: hooks: (\d+) frames, ([\d.]+) ms in hooks \(([\d.]+) ms waiting for files\), (\d+) requests, (\d+) failures, (\d+) breaker trips, (\d+) skipped`)
)

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (scripts/test.sh installs it): %v", tool, err)
		}
	}
}

// blenderFixture builds the hook test project under dir/proj.
func blenderFixture(t *testing.T, dir string) string {
	t.Helper()
	needTools(t, "blender")
	root := filepath.Join(dir, "proj")
	out, err := runBlender(t, nil, "-b", "--factory-startup", "-noaudio", "--python-exit-code", "1",
		"-P", fixtureGen, "--", root)
	if err != nil {
		t.Fatalf("building the fixture: %v\n%s", err, out)
	}
	return root
}

// runBlender runs blender with extra environment and returns its output.
func runBlender(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	return runTool(t, env, "blender", args...)
}

func runTool(t *testing.T, env []string, tool string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	// Blender writes its own temporary files; keep them out of the tree.
	cmd.Dir = t.TempDir()
	cmd.Env = append(append(os.Environ(), "TMPDIR="+cmd.Dir), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// openEvent is one successful or failed openat of a file for reading.
type openEvent struct {
	at time.Time
	ok bool
}

var openatLine = regexp.MustCompile(`^\d+\s+(\d+\.\d+) openat\([^,]+, "((?:[^"\\]|\\.)*)", ([^)]*?)(?:, \d+)?\) = (-?\d+)`)

// straceOpens reads `strace -f -ttt -e trace=openat` output: the opens for
// reading of files under root (directories and writes left out).
func straceOpens(t *testing.T, file, root string) map[string][]openEvent {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opens := map[string][]openEvent{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := openatLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		p, flags := m[2], m[3]
		if !strings.HasPrefix(p, root+"/") || strings.Contains(flags, "O_DIRECTORY") ||
			strings.Contains(flags, "O_WRONLY") || strings.Contains(flags, "O_RDWR") {
			continue
		}
		sec, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		at := time.Unix(0, int64(sec*1e9))
		opens[p] = append(opens[p], openEvent{at: at, ok: !strings.HasPrefix(m[4], "-")})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return opens
}

// recorded is one hook API call as the recording backend received it.
type recorded struct {
	at      time.Time
	release bool
	scope   hooks.Scope
	frame   *int
	wait    time.Duration
	paths   []string // absolute
}

// recordingBackend answers the hook API like a daemon whose every existing
// file is already resident, and records what it was asked, when.
type recordingBackend struct {
	root string
	mu   sync.Mutex
	reqs []recorded
}

func (b *recordingBackend) Prefetch(_ context.Context, p hooks.Prefetch) ([]hooks.Result, error) {
	r := recorded{at: time.Now(), scope: p.Scope, frame: p.Frame, wait: p.Wait}
	res := make([]hooks.Result, len(p.Wants))
	for i, w := range p.Wants {
		abs := filepath.Join(b.root, w.Rel)
		r.paths = append(r.paths, abs)
		res[i].State = hooks.Resident
		if _, err := os.Stat(abs); err != nil {
			res[i].State = hooks.Missing
		}
	}
	b.mu.Lock()
	b.reqs = append(b.reqs, r)
	b.mu.Unlock()
	return res, nil
}

func (b *recordingBackend) Release(_ context.Context, r hooks.Release) error {
	rec := recorded{at: time.Now(), release: true, scope: r.Scope, frame: r.Frame}
	for _, rel := range r.Rels {
		rec.paths = append(rec.paths, filepath.Join(b.root, rel))
	}
	b.mu.Lock()
	b.reqs = append(b.reqs, rec)
	b.mu.Unlock()
	return nil
}

func (b *recordingBackend) Status() hooks.Status { return hooks.Status{} }

func (b *recordingBackend) take() []recorded {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.reqs
	b.reqs = nil
	return r
}

// serveRecorder runs the real hook API server over a recording backend, so
// every request the add-on sends is also checked against the wire rules.
func serveRecorder(t *testing.T, root string) (*recordingBackend, string) {
	t.Helper()
	b := &recordingBackend{root: root}
	sock := filepath.Join(t.TempDir(), "hooks.sock")
	srv, err := hooks.NewServer(hooks.ServerOptions{Mountpoint: root, Backend: b, SocketPath: sock})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() {
		srv.Close()
		if _, rej, errs := srv.Counters(); len(rej) > 0 || errs > 0 {
			t.Errorf("the hook API refused requests of the add-on: %v, %d errors", rej, errs)
		}
	})
	return b, sock
}

// hookRun is one strace'd Blender render with the hooks.
type hookRun struct {
	name   string
	args   []string // blender arguments, {hook} and {scene} substituted
	frames []int    // the frames it renders
	env    []string
	// lateHook: the script runs after Blender loaded the scene and
	// evaluated its saved frame, so that frame's files are opened before
	// any hook can run (docs/blender.md says to put -P first).
	lateHook bool
}

// TestBlenderHooksPredictOpens renders the fixture with the add-on loaded in
// each supported way and checks it against strace: every project file
// Blender opened was requested, and every file of a frame was requested for
// that frame before Blender opened it.
func TestBlenderHooksPredictOpens(t *testing.T) {
	needTools(t, "blender", "strace")
	dir := t.TempDir()
	root := blenderFixture(t, dir)
	scene := filepath.Join(root, "scenes", "shot.blend")
	addons := filepath.Join(dir, "userscripts", "addons")
	if err := os.MkdirAll(addons, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(hookScript)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(addons, "jitfs_prefetch.py"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	runs := []hookRun{
		{name: "python-before-scene-anim", args: []string{"-P", "{hook}", "{scene}", "-o", "{out}", "-s", "1", "-e", "3", "-a"}, frames: []int{1, 2, 3}},
		{name: "python-after-scene-frame2", args: []string{"{scene}", "-P", "{hook}", "-o", "{out}", "-f", "2"}, frames: []int{2}, lateHook: true},
		{name: "addon-frame3", args: []string{"--addons", "jitfs_prefetch", "{scene}", "-o", "{out}", "-f", "3"}, frames: []int{3},
			env: []string{"BLENDER_USER_SCRIPTS=" + filepath.Dir(addons)}},
	}
	var animOpens map[string][]openEvent
	for _, run := range runs {
		t.Run(run.name, func(t *testing.T) {
			rec, sock := serveRecorder(t, root)
			out := filepath.Join(t.TempDir(), "out")
			st := filepath.Join(t.TempDir(), "strace.txt")
			args := []string{"-f", "-ttt", "-e", "trace=openat", "-o", st, "blender", "-b", "--factory-startup", "-noaudio", "-t", "1"}
			// Blender applies arguments in order: -o after the scene (loading
			// a .blend resets the output path), -f/-a last.
			for _, a := range run.args {
				args = append(args, strings.NewReplacer("{hook}", hookScript, "{scene}", scene, "{out}", out+"/f_####").Replace(a))
			}
			env := append([]string{hooks.EnvSocket + "=" + sock, "JITFS_JOB_ID=job-" + run.name}, run.env...)
			o, err := runTool(t, env, "strace", args...)
			if err != nil {
				t.Fatalf("render: %v\n%s", err, o)
			}
			for _, f := range run.frames {
				if _, err := os.Stat(filepath.Join(out, fmt.Sprintf("f_%04d.png", f))); err != nil {
					t.Fatalf("frame %d not rendered: %v\n%s", f, err, o)
				}
			}
			m := hookSummary.FindStringSubmatch(o)
			if m == nil {
				t.Fatalf("no hook summary in Blender's output:\n%s", o)
			}
			opens := straceOpens(t, st, root)
			if run.name == runs[0].name {
				animOpens = opens
			}
			checkPredictions(t, root, opens, rec.take(), run.frames, run.lateHook)
			t.Logf("hook time: %s ms over %s frames (%s ms waiting), %s requests", m[2], m[1], m[3], m[4])
		})
	}

	// The submit-time manifest of the same frames lists every file the
	// render opened, the .blend and its libraries first.
	t.Run("manifest", func(t *testing.T) {
		if animOpens == nil {
			t.Fatal("the animation render did not run")
		}
		m := filepath.Join(t.TempDir(), "manifest.txt")
		if o, err := runBlender(t, nil, "-b", "--factory-startup", "-noaudio", scene, "-P", hookScript, "--",
			"--jitfs-manifest", m, "--jitfs-frames", "1-3"); err != nil {
			t.Fatalf("%v\n%s", err, o)
		}
		items, err := manifestItems(m, "")
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]int{}
		for i, it := range items {
			listed[it.Path] = i + 1
		}
		for p := range animOpens {
			if listed[p] == 0 {
				t.Errorf("the manifest misses %s, which the render opened", p)
			}
		}
		for i, lib := range []string{"scenes/shot.blend", "lib/deep/mat.blend", "lib/a/b/mid.blend"} {
			if n := listed[filepath.Join(root, lib)]; n == 0 || n > 3 {
				t.Errorf("%s is entry %d of the manifest; want it among the first three (%d)", lib, n, i)
			}
		}
		t.Logf("manifest: %d entries cover the %d files the render opened", len(items), len(animOpens))
	})
}

// checkPredictions compares the requests with what Blender opened.
func checkPredictions(t *testing.T, root string, opens map[string][]openEvent, reqs []recorded, frames []int, lateHook bool) {
	t.Helper()
	if len(opens) < 15 {
		t.Fatalf("strace saw only %d project files opened: %v", len(opens), opens)
	}
	if len(reqs) == 0 {
		t.Fatal("the hooks sent nothing")
	}
	firstHook := reqs[0].at
	requested := map[string]bool{}
	frameReq := map[int]time.Time{}         // frame -> its (first) frame request
	firstForFrame := map[string]time.Time{} // file -> first frame request naming it
	released := map[int]bool{}
	jobReleased := false
	for _, r := range reqs {
		if r.release {
			if r.scope == hooks.ScopeJob {
				jobReleased = true
			} else if r.frame != nil {
				released[*r.frame] = true
			}
			continue
		}
		for _, p := range r.paths {
			requested[p] = true
		}
		if r.scope == hooks.ScopeFrame && r.frame != nil {
			if r.wait <= 0 {
				t.Errorf("frame %d request does not wait", *r.frame)
			}
			if _, ok := frameReq[*r.frame]; !ok {
				frameReq[*r.frame] = r.at
			}
			for _, p := range r.paths {
				if _, ok := firstForFrame[p]; !ok {
					firstForFrame[p] = r.at
				}
			}
		}
	}
	var opened []string
	for p := range opens {
		opened = append(opened, p)
	}
	sort.Strings(opened)
	hit, before, frameScoped, preHook := 0, 0, 0, 0
	for _, p := range opened {
		if requested[p] {
			hit++
		} else {
			t.Errorf("Blender opened %s, which the hooks never requested", p)
		}
		first := opens[p][0].at
		// The .blend and its libraries are read before any hook runs: the
		// render agent prefetches them (docs/blender.md).
		if strings.HasSuffix(p, ".blend") {
			continue
		}
		if at, ok := firstForFrame[p]; ok {
			if first.Before(firstHook) {
				preHook++
				if !lateHook {
					t.Errorf("%s was opened before the hooks sent anything", p)
				}
				continue
			}
			frameScoped++
			if at.Before(first) {
				before++
			} else {
				t.Errorf("%s was opened %v before the frame request that named it", p, at.Sub(first))
			}
		}
	}
	for _, f := range frames {
		if _, ok := frameReq[f]; !ok {
			t.Errorf("no frame request for frame %d", f)
		}
		if !released[f] {
			t.Errorf("frame %d was not released", f)
		}
	}
	if !jobReleased {
		t.Errorf("the job was not released at the end")
	}
	for _, want := range []string{"tex/missing.png", "audio/click.wav"} {
		if !requested[filepath.Join(root, want)] {
			t.Errorf("%s (a dependency Blender does not open in this render) was not reported to the daemon", want)
		}
	}
	for p := range requested {
		if !strings.HasPrefix(p, root+"/") {
			t.Errorf("requested a path outside the mount: %s", p)
		}
	}
	t.Logf("recall %d/%d opened project files requested; %d/%d frame-scoped files requested before Blender opened them (%d opened before the script ran); %d requested in all",
		hit, len(opened), before, frameScoped, preHook, len(requested))
	if frameScoped == 0 {
		t.Errorf("no opened file was frame-scoped; the fixture's sequences were not predicted")
	}
}

// TestBlenderHooksFailOpen renders with no daemon, a hung daemon and a
// daemon that fails every request: each render completes, and the time the
// hooks add stays bounded by the client's timeouts instead of growing with
// the frame wait.
func TestBlenderHooksFailOpen(t *testing.T) {
	needTools(t, "blender")
	dir := t.TempDir()
	root := blenderFixture(t, dir)
	scene := filepath.Join(root, "scenes", "shot.blend")

	// serve answers the hook API on a socket with handler.
	serve := func(name string, handler http.HandlerFunc) string {
		sock := filepath.Join(t.TempDir(), name+".sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: handler}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return sock
	}
	health := func(w http.ResponseWriter) {
		fmt.Fprintf(w, `{"schema":%q,"ok":true,"mountpoint":%q}`, hooks.Schema, root)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	// Accepts connections and never answers, health included.
	hung := serve("hung", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-done:
		}
	})
	// Healthy, but the engine never answers a request.
	stalled := serve("stalled", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/health" {
			health(w)
			return
		}
		select {
		case <-r.Context().Done():
		case <-done:
		}
	})
	// Healthy, but every request fails with a 500.
	failing := serve("failing", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/health" {
			health(w)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, `{"schema":%q,"error":"engine failure","reason":"internal"}`, hooks.Schema)
	})

	cases := []struct {
		name string
		sock string
		env  []string
		// onlyHealth: the start-up health check fails, so nothing else is
		// sent: the render pays at most the health check's 0.5 s timeout.
		onlyHealth bool
	}{
		{name: "no-daemon", sock: filepath.Join(t.TempDir(), "absent.sock"), onlyHealth: true},
		{name: "hung-daemon", sock: hung, onlyHealth: true},
		// The first frame waits its frame wait (2 s) plus the transport
		// allowance; the failures open the breaker, so the other frames'
		// calls are skipped and cost nothing. What the render pays follows
		// from how many calls were sent, which is what is checked: a time
		// bound would be stretched by a loaded machine.
		{name: "stalled-engine", sock: stalled, env: []string{"JITFS_FRAME_WAIT_MS=2000", "JITFS_TIMEOUT_MS=300"}},
		{name: "failing-daemon", sock: failing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			env := append([]string{hooks.EnvSocket + "=" + c.sock, "JITFS_FRAME_WAIT_MS=20000"}, c.env...)
			start := time.Now()
			o, err := runBlender(t, env, "-b", "--factory-startup", "-noaudio", "-t", "1", "-P", hookScript, scene,
				"-o", out+"/f_####", "-s", "1", "-e", "3", "-a")
			wall := time.Since(start)
			if err != nil {
				t.Fatalf("render failed: %v\n%s", err, o)
			}
			for f := 1; f <= 3; f++ {
				if _, err := os.Stat(filepath.Join(out, fmt.Sprintf("f_%04d.png", f))); err != nil {
					t.Fatalf("frame %d missing: %v\n%s", f, err, o)
				}
			}
			if strings.Contains(o, "Traceback") {
				t.Errorf("a Python exception reached Blender:\n%s", o)
			}
			m := hookSummary.FindStringSubmatch(o)
			if m == nil {
				t.Fatalf("no hook summary:\n%s", o)
			}
			hookMS, _ := strconv.ParseFloat(m[2], 64)
			requests, _ := strconv.Atoi(m[4])
			failures, _ := strconv.Atoi(m[5])
			skipped, _ := strconv.Atoi(m[7])
			switch {
			case c.onlyHealth && (requests != 1 || failures != 1):
				t.Errorf("%d requests, %d failures; want only the failed health check\n%s", requests, failures, o)
			case !c.onlyHealth && (m[6] == "0" || skipped == 0):
				t.Errorf("repeated failures did not open the circuit breaker (%s trips, %d calls skipped)\n%s", m[6], skipped, o)
			case !c.onlyHealth && failures > 3:
				// The breaker opens after three failures in a row: a fourth
				// failed call (another full frame wait) means it did not.
				t.Errorf("%d failed calls; the breaker should stop them at 3\n%s", failures, o)
			}
			t.Logf("%s: hooks added %.1f ms over 3 frames; %d requests, %d failures, %s breaker trips, %d skipped; render wall %v",
				c.name, hookMS, requests, failures, m[6], skipped, wall.Round(time.Millisecond))
		})
	}

	t.Run("disabled", func(t *testing.T) {
		rec, sock := serveRecorder(t, root)
		out := filepath.Join(t.TempDir(), "out")
		o, err := runBlender(t, []string{hooks.EnvSocket + "=" + sock, "JITFS_DISABLE=1"}, "-b", "--factory-startup",
			"-noaudio", "-t", "1", "-P", hookScript, scene, "-o", out+"/f_####", "-f", "1")
		if err != nil {
			t.Fatalf("render failed: %v\n%s", err, o)
		}
		if reqs := rec.take(); len(reqs) != 0 {
			t.Errorf("JITFS_DISABLE=1 still sent %d requests", len(reqs))
		}
	})
}

// TestBlenderHooksOnMount renders the fixture from a real jitfs mount, the
// way a render agent does: prefetch the .blend and its libraries and wait,
// then run Blender with the hooks. Every read the mount served during the
// render was a cache hit: no frame waited on GCS for a predicted file.
func TestBlenderHooksOnMount(t *testing.T) {
	needTools(t, "blender")
	w := newWorld(t, false)
	dir := t.TempDir()
	root := blenderFixture(t, dir)
	var files []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		w.Put("show/"+rel, b)
		files = append(files, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "jitfs.sock")
	tr := filepath.Join(t.TempDir(), "mount.trace")
	d := w.mountForTest("show", "", "--socket", sock, "--trace", tr)
	waitSocket(t, sock)

	// The agent's step: the scene and its libraries, which Blender reads
	// before any hook can run.
	out, code := runJitfs(t, "prefetch", "--socket", sock, "--wait", "60s", "--job", "shot",
		d.path("scenes/shot.blend"), d.path("lib"))
	if code != 0 {
		t.Fatalf("agent prefetch: exit %d: %s", code, out)
	}
	renderOut := filepath.Join(t.TempDir(), "out")
	o, err := runBlender(t, []string{hooks.EnvSocket + "=" + sock, "JITFS_JOB_ID=shot"}, "-b", "--factory-startup",
		"-noaudio", "-t", "1", "-P", hookScript, d.path("scenes/shot.blend"), "-o", renderOut+"/f_####", "-s", "1", "-e", "3", "-a")
	if err != nil {
		t.Fatalf("render from the mount: %v\n%s", err, o)
	}
	for f := 1; f <= 3; f++ {
		if _, err := os.Stat(filepath.Join(renderOut, fmt.Sprintf("f_%04d.png", f))); err != nil {
			t.Fatalf("frame %d missing: %v\n%s", f, err, o)
		}
	}
	st, err := hooks.NewClient(sock, 10*time.Second).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d.Stop() // flushes the trace

	f, err := os.Open(tr)
	if err != nil {
		t.Fatal(err)
	}
	_, evs, err := trace.ReadAll(f)
	f.Close()
	if err != nil && !errors.Is(err, trace.ErrTruncated) {
		t.Fatal(err)
	}
	var reads, cold int
	readFiles, openFiles := map[string]bool{}, map[string]bool{}
	for _, ev := range evs {
		if ev.Op == "open" && ev.Err == "" {
			openFiles[ev.Path] = true
		}
		if ev.Op != "read" {
			continue
		}
		reads++
		readFiles[ev.Path] = true
		if ev.Cache != "hit" || ev.Fetched > 0 {
			cold++
			t.Errorf("a render read of %s at %d+%d waited on GCS (cache %s, %d bytes fetched)", ev.Path, ev.Off, ev.Len, ev.Cache, ev.Fetched)
		}
	}
	// The mount serves a complete file through passthrough: the kernel
	// reads the cache file and no read reaches the daemon. A file opened
	// while still incomplete shows up above as reads that missed.
	if len(openFiles) < 15 {
		t.Errorf("the mount saw only %d files opened; the render did not read through it", len(openFiles))
	}
	if st.PrefetchedBytes == 0 {
		t.Errorf("the daemon shows no prefetch work: %+v", st)
	}
	t.Logf("%d files in the bucket; the render opened %d through the mount; %d reads reached the daemon (%d files; the rest went through passthrough), %d cold; %d bytes prefetched",
		len(files), len(openFiles), reads, len(readFiles), cold, st.PrefetchedBytes)
	if m := hookSummary.FindStringSubmatch(o); m != nil {
		t.Logf("hooks: %s ms over %s frames (%s ms waiting for files)", m[2], m[1], m[3])
	} else {
		t.Errorf("no hook summary:\n%s", o)
	}
}

// waitSocket waits until the daemon's hook socket is bound (just after the
// mount goes live).
func waitSocket(t *testing.T, sock string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hook socket %s did not appear", sock)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// extensionSetup installs the extension zip the way a workstation does in
// Blender 3.x (Preferences > Add-ons > Install..., which unpacks the zip into
// the user's scripts/addons and reads bl_info), enables it, sets its
// preferences and saves them to the user's configuration.
const extensionSetup = `import sys, bpy
zip_path, sock = sys.argv[sys.argv.index("--") + 1:][:2]
assert bpy.ops.preferences.addon_install(filepath=zip_path) == {"FINISHED"}
assert bpy.ops.preferences.addon_enable(module="jitfs_prefetch") == {"FINISHED"}
import jitfs_prefetch
print("JITFS-TEST module", jitfs_prefetch.__file__)
p = bpy.context.preferences.addons["jitfs_prefetch"].preferences
p.socket_path = sock
p.frame_wait_ms = 1234
p.log_level = "DEBUG"
bpy.ops.wm.save_userpref()
print("JITFS-TEST preferences %s %d %s" % (p.socket_path, p.frame_wait_ms, p.log_level))
`

// TestBlenderExtension installs the zip that blender-hooks/build_extension.py
// builds into Debian's Blender 3.4, saves the add-on's preferences, and
// renders with them: where the environment leaves a setting unset (or
// empty), the preference's value is used; where it sets one, the
// environment's. (The zip's Blender 4.2 manifest is checked by
// blender-hooks/tests/test_extension.py; no Blender 4.2 runs here.)
func TestBlenderExtension(t *testing.T) {
	needTools(t, "blender", "python3")
	dir := t.TempDir()
	root := blenderFixture(t, dir)
	scene := filepath.Join(root, "scenes", "shot.blend")
	o, err := runTool(t, nil, "python3", buildExt, "--out", filepath.Join(dir, "dist"))
	if err != nil {
		t.Fatalf("building the extension: %v\n%s", err, o)
	}
	zipPath := strings.TrimSpace(o)
	if filepath.Base(zipPath) != "jitfs_prefetch-0.5.0.zip" {
		t.Fatalf("build_extension.py printed %q, want the path of jitfs_prefetch-0.5.0.zip", o)
	}
	cfg, scripts := filepath.Join(dir, "config"), filepath.Join(dir, "scripts")
	user := []string{"BLENDER_USER_CONFIG=" + cfg, "BLENDER_USER_SCRIPTS=" + scripts}
	prefRec, prefSock := serveRecorder(t, root)
	setup := filepath.Join(dir, "setup.py")
	if err := os.WriteFile(setup, []byte(extensionSetup), 0o644); err != nil {
		t.Fatal(err)
	}
	// No --factory-startup: preferences are saved to and read from cfg.
	o, err = runBlender(t, user, "-b", "-noaudio", "--python-exit-code", "1", "-P", setup, "--", zipPath, prefSock)
	if err != nil {
		t.Fatalf("installing the extension zip: %v\n%s", err, o)
	}
	for _, want := range []string{
		"JITFS-TEST module " + filepath.Join(scripts, "addons", "jitfs_prefetch", "__init__.py"),
		"JITFS-TEST preferences " + prefSock + " 1234 DEBUG",
	} {
		if !strings.Contains(o, want) {
			t.Fatalf("the setup did not print %q:\n%s", want, o)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg, "userpref.blend")); err != nil {
		t.Fatalf("the preferences were not saved: %v\n%s", err, o)
	}

	// render renders frame 1 with the saved preferences and env, and returns
	// Blender's output and the wait of each frame request a recorder got.
	render := func(t *testing.T, env ...string) string {
		t.Helper()
		out := t.TempDir()
		o, err := runBlender(t, append(append([]string{}, user...), env...), "-b", "-noaudio", "-t", "1",
			scene, "-o", out+"/f_####", "-f", "1")
		if err != nil {
			t.Fatalf("render: %v\n%s", err, o)
		}
		if _, err := os.Stat(filepath.Join(out, "f_0001.png")); err != nil {
			t.Fatalf("frame 1 not rendered: %v\n%s", err, o)
		}
		if hookSummary.FindStringSubmatch(o) == nil {
			t.Fatalf("the add-on did not run (no hook summary):\n%s", o)
		}
		return o
	}
	frameWaits := func(reqs []recorded) []time.Duration {
		var w []time.Duration
		for _, r := range reqs {
			if !r.release && r.scope == hooks.ScopeFrame && r.frame != nil && *r.frame == 1 {
				w = append(w, r.wait)
			}
		}
		return w
	}

	t.Run("preferences-where-env-unset", func(t *testing.T) {
		// Empty counts as unset: a farm template that exports an empty
		// JITFS_SOCKET must not turn the preference off.
		o := render(t, hooks.EnvSocket+"=", "JITFS_FRAME_WAIT_MS=", "JITFS_HOOK_DEBUG=")
		waits := frameWaits(prefRec.take())
		if len(waits) == 0 {
			t.Fatalf("the socket set in the preferences got no frame request:\n%s", o)
		}
		for _, w := range waits {
			if w != 1234*time.Millisecond {
				t.Errorf("frame request waits %v; the preferences say 1234 ms", w)
			}
		}
		if !strings.Contains(o, "jitfs: daemon "+prefSock) {
			t.Errorf("log level Debug in the preferences, but no debug line naming the daemon:\n%s", o)
		}
	})

	t.Run("environment-wins", func(t *testing.T) {
		envRec, envSock := serveRecorder(t, root)
		o := render(t, hooks.EnvSocket+"="+envSock, "JITFS_FRAME_WAIT_MS=4321", "JITFS_HOOK_DEBUG=")
		if reqs := prefRec.take(); len(reqs) != 0 {
			t.Errorf("the preferences' socket got %d requests though JITFS_SOCKET was set", len(reqs))
		}
		waits := frameWaits(envRec.take())
		if len(waits) == 0 {
			t.Fatalf("JITFS_SOCKET's daemon got no frame request:\n%s", o)
		}
		for _, w := range waits {
			if w != 4321*time.Millisecond {
				t.Errorf("frame request waits %v; JITFS_FRAME_WAIT_MS says 4321 ms", w)
			}
		}
		// JITFS_HOOK_DEBUG is empty, so the preferences' Debug still holds:
		// each setting is decided on its own.
		if !strings.Contains(o, "jitfs: daemon "+envSock) {
			t.Errorf("no debug line naming JITFS_SOCKET's daemon:\n%s", o)
		}
	})
}
