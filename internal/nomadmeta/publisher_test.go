package nomadmeta_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitfs/jitfs/internal/nomadmeta"
	"github.com/jitfs/jitfs/internal/testworld"
)

// agent stands in for a Nomad client agent's HTTP API: it records every
// request and answers 503 while down.
type agent struct {
	srv  *httptest.Server
	down atomic.Bool
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method, path, token, contentType string
	body                             []byte
}

func newAgent(t *testing.T) *agent {
	a := &agent{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.reqs = append(a.reqs, recorded{r.Method, r.URL.Path, r.Header.Get("X-Nomad-Token"), r.Header.Get("Content-Type"), b})
		a.mu.Unlock()
		if a.down.Load() {
			http.Error(w, "No path to node", http.StatusServiceUnavailable)
			return
		}
		// The agent answers with the merged metadata (NodeMetaResponse).
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"Meta":{},"Dynamic":{},"Static":{}}`)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *agent) requests() []recorded {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]recorded(nil), a.reqs...)
}

// want is a Want function whose answer the test changes, counting calls:
// a call is an interval that has passed.
type want struct {
	mu    sync.Mutex
	meta  map[string]string
	calls atomic.Int64
}

func (w *want) set(m map[string]string) {
	w.mu.Lock()
	w.meta = m
	w.mu.Unlock()
}

func (w *want) get() (map[string]string, bool) {
	w.calls.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]string{}
	for k, v := range w.meta {
		out[k] = v
	}
	return out, true
}

// logBuf is a log destination safe to read while the publisher writes.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// decode reads a recorded body as the Nomad agent would.
func decode(t *testing.T, r recorded) nomadmeta.ApplyRequest {
	t.Helper()
	var req nomadmeta.ApplyRequest
	if err := json.Unmarshal(r.body, &req); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return req
}

// TestPublisherSendsWhatChanged: the first publish is POST
// /v1/client/metadata with the token and every managed key (null to
// unset); later intervals send nothing until Want changes, then only the
// changed keys.
func TestPublisherSendsWhatChanged(t *testing.T) {
	a := newAgent(t)
	w := &want{}
	w.set(map[string]string{nomadmeta.MetaSources: "0123456789ab,ba9876543210", nomadmeta.MetaJobs: ""})
	p := nomadmeta.Start(nomadmeta.Options{Client: &nomadmeta.Client{Addr: a.srv.URL + "/", Token: "s3cret"},
		Interval: 5 * time.Millisecond, Want: w.get})
	defer p.Stop()
	testworld.WaitFor(t, "the first publish", func() bool { return len(a.requests()) == 1 })
	r := a.requests()[0]
	if r.method != http.MethodPost || r.path != "/v1/client/metadata" || r.token != "s3cret" || r.contentType != "application/json" {
		t.Fatalf("request %s %s token %q content-type %q; want POST /v1/client/metadata, token s3cret, JSON", r.method, r.path, r.token, r.contentType)
	}
	// The exact body: NodeID empty (the agent's own node), null unsets.
	if got, wantBody := string(r.body), `{"NodeID":"","Meta":{"jitfs_jobs":null,"jitfs_sources":"0123456789ab,ba9876543210"}}`; got != wantBody {
		t.Fatalf("body\n%s\nwant\n%s", got, wantBody)
	}
	n := w.calls.Load()
	testworld.WaitFor(t, "five more intervals", func() bool { return w.calls.Load() >= n+5 })
	if got := len(a.requests()); got != 1 {
		t.Fatalf("%d requests with nothing changed, want 1", got)
	}
	w.set(map[string]string{nomadmeta.MetaSources: "0123456789ab,ba9876543210", nomadmeta.MetaJobs: "aaaaaaaaaaaa"})
	testworld.WaitFor(t, "the change published", func() bool { return len(a.requests()) == 2 })
	req := decode(t, a.requests()[1])
	if len(req.Meta) != 1 || req.Meta[nomadmeta.MetaJobs] == nil || *req.Meta[nomadmeta.MetaJobs] != "aaaaaaaaaaaa" {
		t.Fatalf("second publish %s, want only jitfs_jobs=aaaaaaaaaaaa", a.requests()[1].body)
	}
	// A key whose value empties is unset.
	w.set(map[string]string{nomadmeta.MetaSources: "", nomadmeta.MetaJobs: "aaaaaaaaaaaa"})
	testworld.WaitFor(t, "the unset published", func() bool { return len(a.requests()) == 3 })
	if req := decode(t, a.requests()[2]); len(req.Meta) != 1 || req.Meta[nomadmeta.MetaSources] != nil {
		t.Fatalf("third publish %s, want only jitfs_sources unset", a.requests()[2].body)
	}
	testworld.WaitFor(t, "the third publish accepted", func() bool { return p.Status().Publishes == 3 })
	st := p.Status()
	if st.Publishes != 3 || st.Errors != 0 || len(st.Published) != 1 || st.Published[nomadmeta.MetaJobs] != "aaaaaaaaaaaa" {
		t.Fatalf("status %+v", st)
	}
}

// TestPublisherSurvivesAgentDown: while the agent fails, every interval
// tries again, each failure is counted and the outage is logged once; when
// it answers again the metadata is published and the failure cleared.
func TestPublisherSurvivesAgentDown(t *testing.T) {
	a := newAgent(t)
	a.down.Store(true)
	w := &want{}
	w.set(map[string]string{nomadmeta.MetaSources: "0123456789ab"})
	var logs logBuf
	p := nomadmeta.Start(nomadmeta.Options{Client: &nomadmeta.Client{Addr: a.srv.URL}, Interval: 5 * time.Millisecond,
		Want: w.get, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	defer p.Stop()
	testworld.WaitFor(t, "three failed attempts", func() bool { return p.Status().Errors >= 3 })
	st := p.Status()
	if !st.Failing || !strings.Contains(st.LastError, "503") || st.Publishes != 0 || len(st.Published) != 0 {
		t.Fatalf("status while the agent is down: %+v", st)
	}
	if r := a.requests(); r[0].token != "" {
		t.Fatalf("a token was sent with none configured: %q", r[0].token)
	}
	if got := strings.Count(logs.String(), "cannot publish"); got != 1 {
		t.Fatalf("the outage was logged %d times, want once:\n%s", got, logs.String())
	}
	a.down.Store(false)
	testworld.WaitFor(t, "the publish after the outage", func() bool { return p.Status().Publishes == 1 })
	st = p.Status()
	if st.Failing || st.LastError != "" || st.Errors < 3 || st.Published[nomadmeta.MetaSources] != "0123456789ab" {
		t.Fatalf("status after the outage: %+v", st)
	}
	if !strings.Contains(logs.String(), "published again") {
		t.Fatalf("the recovery is not logged:\n%s", logs.String())
	}
	errs := st.Errors
	n := w.calls.Load()
	testworld.WaitFor(t, "five more intervals", func() bool { return w.calls.Load() >= n+5 })
	if st := p.Status(); st.Publishes != 1 || st.Errors != errs {
		t.Fatalf("published again with nothing changed: %+v", st)
	}
}

// TestPublisherUnreachableAgent: an address nothing listens on is a
// counted failure too, not a stuck publisher, and Stop returns.
func TestPublisherUnreachableAgent(t *testing.T) {
	a := newAgent(t)
	a.srv.Close()
	w := &want{}
	w.set(map[string]string{nomadmeta.MetaSources: "0123456789ab"})
	p := nomadmeta.Start(nomadmeta.Options{Client: &nomadmeta.Client{Addr: a.srv.URL}, Interval: 5 * time.Millisecond, Want: w.get})
	testworld.WaitFor(t, "two failed attempts", func() bool { return p.Status().Errors >= 2 })
	p.Stop()
	if st := p.Status(); !st.Failing || st.Publishes != 0 {
		t.Fatalf("status: %+v", st)
	}
}

// TestKey: keys are 12 hex digits, stable, and differ between sources.
func TestKey(t *testing.T) {
	k := nomadmeta.Key(nomadmeta.Source("studio-show", "show/"))
	if len(k) != nomadmeta.KeyLen || strings.Trim(k, "0123456789abcdef") != "" {
		t.Fatalf("key %q", k)
	}
	if k != nomadmeta.Key("gs://studio-show/show/") || k == nomadmeta.Key("gs://studio-show/") {
		t.Fatal("keys are not a function of the canonical source")
	}
}
