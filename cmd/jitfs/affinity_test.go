package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitfs/jitfs/internal/daemon"
	"github.com/jitfs/jitfs/internal/nomadmeta"
)

// nomadAgent stands in for the node's Nomad client agent: it records every
// request to its HTTP API and answers 503 while down.
type nomadAgent struct {
	srv  *httptest.Server
	down atomic.Bool
	mu   sync.Mutex
	reqs []nomadRequest
}

type nomadRequest struct {
	method, path, token string
	body                nomadmeta.ApplyRequest
}

func newNomadAgent(t *testing.T) *nomadAgent {
	a := &nomadAgent{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body nomadmeta.ApplyRequest
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			t.Errorf("the agent got a body that is no NodeMetaApplyRequest: %q: %v", b, err)
		}
		a.mu.Lock()
		a.reqs = append(a.reqs, nomadRequest{r.Method, r.URL.Path, r.Header.Get("X-Nomad-Token"), body})
		a.mu.Unlock()
		if a.down.Load() {
			http.Error(w, "agent unavailable", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"Meta":{},"Dynamic":{},"Static":{}}`)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// meta is the node metadata the agent holds after the requests it
// accepted (the last request's values win; null unsets).
func (a *nomadAgent) meta() (map[string]string, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := map[string]string{}
	for _, r := range a.reqs {
		for k, v := range r.body.Meta {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = *v
			}
		}
	}
	return m, len(a.reqs)
}

func (a *nomadAgent) requests() []nomadRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]nomadRequest(nil), a.reqs...)
}

// scrapeValue reads the one series of name whose labels include label.
func scrapeValue(t *testing.T, url, name, label string) (int64, bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^` + name + `\{[^}]*` + regexp.QuoteMeta(label) + `[^}]*\} (\S+)$`).FindStringSubmatch(string(body))
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s{%s}: %v", name, label, err)
	}
	return int64(v), true
}

func sourceOf(st daemon.NodeStatus, src string) (daemon.NodeSourceStatus, bool) {
	for _, s := range st.Sources {
		if s.Source == src {
			return s, true
		}
	}
	return daemon.NodeSourceStatus{}, false
}

func jobOf(st daemon.NodeStatus, id string) (daemon.JobStatus, bool) {
	for _, j := range st.Jobs {
		if j.ID == id {
			return j, true
		}
	}
	return daemon.JobStatus{}, false
}

// TestNodeWhereTheBytesAre: two jobs read known bytes of two sources
// through a real node daemon. The status reports each source's and each
// job's resident bytes, the metrics carry the same, the sources stay after
// the jobs end and after a restart, and the daemon publishes, to a
// recording stand-in for the Nomad agent, the keys `jitfs affinity-key`
// prints for the source and the job it holds at least --nomad-meta-min-bytes
// of: POST /v1/client/metadata with the token, only when what it holds
// changes, carrying on through the agent's outage.
func TestNodeWhereTheBytesAre(t *testing.T) {
	w := newWorld(t, false)
	files := map[string]int{"showA/a.bin": 1 << 20, "showA/sub/b.bin": 512 << 10, "showB/c.bin": 256 << 10}
	for name, size := range files {
		w.PutRandom(name, size)
	}
	agent := newNomadAgent(t)
	agent.down.Store(true)
	t.Setenv("NOMAD_TOKEN", "s3cret")
	dir := t.TempDir()
	n := w.startNode(dir, "--metrics-addr", "127.0.0.1:0", "--nomad-meta", "--nomad-addr", agent.srv.URL,
		"--nomad-meta-interval", "50ms", "--nomad-meta-min-bytes", "1MiB")
	srcA, srcB := "gs://"+testBucket+"/showA/", "gs://"+testBucket+"/showB/"
	key := func(args ...string) string {
		out, code := runJitfs(t, append([]string{"affinity-key"}, args...)...)
		if code != 0 {
			t.Fatalf("jitfs affinity-key %v: exit %d\n%s", args, code, out)
		}
		return strings.TrimSpace(out)
	}
	keyA, keyB, keyJ1 := key("gs://"+testBucket+"/showA"), key(srcB), key("--job", "J1")

	// The agent is down: failures are counted, and the daemon serves on.
	waitFor(t, "a failed publish counted", time.Minute, func() bool {
		m := n.status(t).NomadMeta
		return m != nil && m.Errors >= 2 && m.Failing
	})
	read := func(job, src, task string, names ...string) {
		td := filepath.Join(dir, task)
		var cmds []string
		for _, name := range names {
			cmds = append(cmds, fmt.Sprintf("cat %q > /dev/null", filepath.Join(td, "show", name)))
		}
		r := waitRun(t, task, n.startRun(t, "--job", job, "--mount", src+":"+filepath.Join(td, "show"), "--",
			"sh", "-c", "set -e; "+strings.Join(cmds, "; ")))
		if r.code != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", task, r.code, r.out, n.Log)
		}
	}
	read("J1", "gs://"+testBucket+"/showA", "t1", "a.bin", "sub/b.bin")
	read("J2", "gs://"+testBucket+"/showB", "t2", "c.bin")
	agent.down.Store(false)

	// Fills write what they fetched after serving it: wait for all of it.
	wantA, wantB := int64(files["showA/a.bin"]+files["showA/sub/b.bin"]), int64(files["showB/c.bin"])
	var st daemon.NodeStatus
	waitFor(t, "both sources' bytes resident", time.Minute, func() bool {
		st = n.status(t)
		a, okA := sourceOf(st, srcA)
		b, okB := sourceOf(st, srcB)
		return okA && okB && a.ResidentBytes >= wantA && b.ResidentBytes >= wantB && !st.SourcesCounting
	})
	a, _ := sourceOf(st, srcA)
	b, _ := sourceOf(st, srcB)
	// Allocated bytes: at least the objects' sizes, at most a block more
	// per file.
	if a.Files != 2 || b.Files != 1 || a.ResidentBytes > wantA+2*64<<10 || b.ResidentBytes > wantB+64<<10 {
		t.Fatalf("sources: %+v and %+v; want %d bytes in 2 files and %d in 1", a, b, wantA, wantB)
	}
	if a.Key != keyA || b.Key != keyB || st.Sources[0].Source != srcA {
		t.Fatalf("sources %+v: keys %s and %s from jitfs affinity-key, showA first", st.Sources, keyA, keyB)
	}
	j1, ok1 := jobOf(st, "J1")
	j2, ok2 := jobOf(st, "J2")
	if !ok1 || !ok2 || j1.ResidentBytes != a.ResidentBytes || j2.ResidentBytes != b.ResidentBytes {
		t.Fatalf("jobs: J1 %d bytes, J2 %d; want the bytes of their sources, %d and %d", j1.ResidentBytes, j2.ResidentBytes, a.ResidentBytes, b.ResidentBytes)
	}
	if out, code := runJitfs(t, "status", "--daemon", n.sock); code != 0 || !strings.Contains(out, srcA) || !strings.Contains(out, "key "+keyA) ||
		!strings.Contains(out, "nomad meta") {
		t.Fatalf("jitfs status --daemon: exit %d\n%s", code, out)
	}

	// Metrics: the same figures.
	m := regexp.MustCompile(`url=(http://\S+/metrics)`).FindStringSubmatch(n.Log.String())
	if m == nil {
		t.Fatalf("the node daemon logged no metrics URL:\n%s", n.Log)
	}
	url := m[1]
	for _, c := range []struct {
		name, label string
		want        int64
	}{
		{"jitfs_node_source_resident_bytes", `source="` + srcA + `"`, a.ResidentBytes},
		{"jitfs_node_source_resident_bytes", `source="` + srcB + `"`, b.ResidentBytes},
		{"jitfs_node_job_resident_bytes", `job_id="J1"`, j1.ResidentBytes},
		{"jitfs_node_job_resident_bytes", `job_id="J2"`, j2.ResidentBytes},
	} {
		if got, ok := scrapeValue(t, url, c.name, c.label); !ok || got != c.want {
			t.Errorf("%s{%s} = %d (found %v), want %d", c.name, c.label, got, ok, c.want)
		}
	}

	// Nomad: showA (1.5 MiB) and J1 are over the 1 MiB threshold, showB
	// and J2 are not.
	waitFor(t, "showA and J1 published", time.Minute, func() bool {
		meta, _ := agent.meta()
		return meta[nomadmeta.MetaSources] == keyA && meta[nomadmeta.MetaJobs] == keyJ1
	})
	for i, r := range agent.requests() {
		if r.method != http.MethodPost || r.path != "/v1/client/metadata" || r.token != "s3cret" || r.body.NodeID != "" {
			t.Fatalf("request %d: %s %s token %q node %q", i, r.method, r.path, r.token, r.body.NodeID)
		}
	}

	// J1 ends: its key is withdrawn, showA's stays, and the status and the
	// metrics still count showA's bytes.
	if out, code := runJitfs(t, "prefetch", "--release", "--job", "J1", "--daemon", n.sock); code != 0 {
		t.Fatalf("release J1: exit %d\n%s", code, out)
	}
	waitFor(t, "J1's key withdrawn", time.Minute, func() bool {
		meta, _ := agent.meta()
		_, jobs := meta[nomadmeta.MetaJobs]
		return !jobs && meta[nomadmeta.MetaSources] == keyA
	})
	st = n.status(t)
	if _, ok := jobOf(st, "J1"); ok {
		t.Fatal("J1 is still on the node after its release")
	}
	if s, ok := sourceOf(st, srcA); !ok || s.ResidentBytes != a.ResidentBytes || s.Files != 2 {
		t.Fatalf("showA after J1 ended: %+v, want %d bytes in 2 files", s, a.ResidentBytes)
	}
	if got, ok := scrapeValue(t, url, "jitfs_node_source_resident_bytes", `source="`+srcA+`"`); !ok || got != a.ResidentBytes {
		t.Fatalf("showA's metric after J1 ended: %d (found %v), want %d", got, ok, a.ResidentBytes)
	}
	if _, ok := scrapeValue(t, url, "jitfs_node_job_resident_bytes", `job_id="J1"`); ok {
		t.Fatal("J1 still has a metric series after it ended")
	}
	// Only changes were sent: after the outage's refused requests (each
	// retried with the same body), no request repeats the one before it.
	nm := n.status(t).NomadMeta
	reqs := agent.requests()
	if nm.Failing || nm.Publishes+nm.Errors != int64(len(reqs)) {
		t.Fatalf("publisher %+v after %d requests", nm, len(reqs))
	}
	if got := strings.Count(n.Log.String(), "cannot publish node metadata"); got != 1 {
		t.Fatalf("the agent's outage (%d failed requests) was logged %d times, want once:\n%s", nm.Errors, got, n.Log)
	}
	for i := int(nm.Errors) + 1; i < len(reqs); i++ {
		p, _ := json.Marshal(reqs[i-1].body)
		q, _ := json.Marshal(reqs[i].body)
		if string(p) == string(q) {
			t.Fatalf("request %d repeats request %d: %s", i, i-1, q)
		}
	}

	// Restarted, the daemon counts showA again from its cache and leaves
	// its key published.
	n.Stop()
	_, before := agent.meta()
	n.Start()
	waitFor(t, "showA counted after the restart", time.Minute, func() bool {
		st = n.status(t)
		s, ok := sourceOf(st, srcA)
		return ok && !st.SourcesCounting && s.ResidentBytes == a.ResidentBytes && s.Files == 2
	})
	waitFor(t, "the restarted daemon's first publish", time.Minute, func() bool {
		m := n.status(t).NomadMeta
		return m != nil && m.Publishes >= 1
	})
	meta, after := agent.meta()
	if after <= before || meta[nomadmeta.MetaSources] != keyA {
		t.Fatalf("after the restart: %d requests (%d before), metadata %v; want %s=%s", after, before, meta, nomadmeta.MetaSources, keyA)
	}
}
