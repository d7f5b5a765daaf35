package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jitfs/jitfs/internal/testworld"
)

// fakeBackend records what the server hands the engine. The engine has
// its own tests; these are about the protocol.
type fakeBackend struct {
	mu         sync.Mutex
	prefetches []Prefetch
	releases   []Release
	statuses   int

	state     func(Want) Result // default: Queued
	block     bool              // hold Prefetch for p.Wait, or until ctx ends
	err       error
	panics    bool // Status panics
	status    Status
	entered   chan struct{} // if set, signalled as Prefetch starts
	wrongSize bool          // return one result too few
}

func (b *fakeBackend) Prefetch(ctx context.Context, p Prefetch) ([]Result, error) {
	b.mu.Lock()
	b.prefetches = append(b.prefetches, p)
	b.mu.Unlock()
	if b.entered != nil {
		b.entered <- struct{}{}
	}
	if b.block {
		select {
		case <-time.After(p.Wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if b.err != nil {
		return nil, b.err
	}
	out := make([]Result, len(p.Wants))
	for i, w := range p.Wants {
		out[i] = Result{State: Queued}
		if b.state != nil {
			out[i] = b.state(w)
		}
	}
	if b.wrongSize {
		out = out[1:]
	}
	return out, nil
}

func (b *fakeBackend) Release(ctx context.Context, r Release) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.releases = append(b.releases, r)
	return b.err
}

func (b *fakeBackend) Status() Status {
	if b.panics {
		panic("status exploded")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.statuses++
	return b.status
}

// calls is how many times the server reached the engine at all.
func (b *fakeBackend) calls() (prefetch, release, status int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.prefetches), len(b.releases), b.statuses
}

func (b *fakeBackend) lastPrefetch(t *testing.T) Prefetch {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.prefetches) == 0 {
		t.Fatal("the backend got no prefetch")
	}
	return b.prefetches[len(b.prefetches)-1]
}

type testServer struct {
	*Server
	c     *Client
	b     *fakeBackend
	mount string
	sock  string
}

// startServer serves a fake backend on a real socket. The mountpoint is a
// plain directory: the server only lists it, for UDIM tiles.
func startServer(t *testing.T, b *fakeBackend, tweak func(*ServerOptions)) *testServer {
	t.Helper()
	if b == nil {
		b = &fakeBackend{}
	}
	mount := t.TempDir()
	opts := ServerOptions{Mountpoint: mount, Backend: b, SocketPath: filepath.Join(t.TempDir(), "s.sock"), Version: "test"}
	if tweak != nil {
		tweak(&opts)
	}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	c := NewClient(opts.SocketPath, 10*time.Second)
	t.Cleanup(func() {
		c.Close()
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{Server: s, c: c, b: b, mount: mount, sock: opts.SocketPath}
}

// raw sends a body as is, for what the typed client cannot express.
func (ts *testServer) raw(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://jitfs"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, data
}

func intp(i int) *int { return &i }

func TestHealth(t *testing.T) {
	ts := startServer(t, nil, nil)
	h, err := ts.c.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := HealthReply{Schema: Schema, OK: true, Mountpoint: ts.mount, Version: "test"}
	if h != want {
		t.Errorf("health = %+v, want %+v", h, want)
	}
	if p, r, s := ts.b.calls(); p+r+s != 0 {
		t.Errorf("health reached the backend: %d %d %d", p, r, s)
	}
}

func TestPrefetch(t *testing.T) {
	b := &fakeBackend{state: func(w Want) Result {
		switch {
		case strings.Contains(w.Rel, "res"):
			return Result{State: Resident}
		case strings.Contains(w.Rel, "gone"):
			return Result{State: Missing}
		case strings.Contains(w.Rel, "bad"):
			return Result{State: Failed, Err: "gcs: 503"}
		}
		return Result{State: Queued}
	}}
	ts := startServer(t, b, nil)
	m := ts.mount
	req := PrefetchRequest{
		RequestID: "r-1",
		Job:       JobInfo{Job: Job{ID: "job-42", Task: "17", Shot: "sh010", DCC: "blender", PID: 31004, Host: "node17"}, DCCVersion: "3.4.1", FrameRange: []int{1, 3}},
		Scope:     ScopeJob,
		Items: []Item{
			{Path: m + "/tex/res.png", Kind: "image"},
			{Path: m + "/tex/gone.png"},
			{Path: m + "/tex/bad.png"},
			{Path: m + "/lib/big.so", Ranges: []Range{{Off: 0, Len: 4096}, {Off: 1 << 20, Len: 8192}}},
			{Path: m + "/tex/../tex/res.png"}, // the same file again
			{Path: "/usr/share/fonts/DejaVuSans.ttf"},
			{Seq: &Seq{Pattern: m + "/seq/%V/plate.%04d.exr", Frames: "1-3", Views: []string{"left", "right"}}},
		},
	}
	reply, err := ts.c.Prefetch(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	got := ts.b.lastPrefetch(t)
	if got.Job != req.Job.Job || got.Scope != ScopeJob || got.Priority != 60 || got.Wait != 0 || got.Frame != nil {
		t.Errorf("backend got %+v", got)
	}
	wantRels := []string{"tex/res.png", "tex/gone.png", "tex/bad.png", "lib/big.so"}
	for f := 1; f <= 3; f++ {
		for _, v := range []string{"left", "right"} {
			wantRels = append(wantRels, fmt.Sprintf("seq/%s/plate.%04d.exr", v, f))
		}
	}
	var rels []string
	for _, w := range got.Wants {
		rels = append(rels, w.Rel)
	}
	if !reflect.DeepEqual(rels, wantRels) {
		t.Errorf("wants %q\nwant %q", rels, wantRels)
	}
	if w := got.Wants[3]; w.Abs != m+"/lib/big.so" || !reflect.DeepEqual(w.Ranges, []Range{{0, 4096}, {1 << 20, 8192}}) {
		t.Errorf("ranged want %+v", w)
	}
	if got.Wants[0].Ranges != nil {
		t.Errorf("whole-file want has ranges %v", got.Wants[0].Ranges)
	}
	want := PrefetchReply{
		Schema: Schema, RequestID: "r-1", Accepted: 10, Resident: 1, Queued: 7,
		Missing:   []string{m + "/tex/gone.png"},
		Unmanaged: []string{"/usr/share/fonts/DejaVuSans.ttf"},
		Failed:    []ItemError{{Path: m + "/tex/bad.png", Error: "gcs: 503"}},
		Pending:   []string{},
		WaitedMS:  reply.WaitedMS,
	}
	if !reflect.DeepEqual(reply, want) {
		t.Errorf("reply %+v\nwant  %+v", reply, want)
	}
}

func TestPrefetchPriorityAndFrame(t *testing.T) {
	ts := startServer(t, nil, nil)
	for _, tc := range []struct {
		scope Scope
		prio  *int
		want  int
	}{
		{ScopeFrame, nil, 100}, {ScopeMiss, nil, 90}, {ScopeJob, nil, 60}, {ScopeLookahead, nil, 20},
		{ScopeSequence, nil, 10}, {ScopeSequence, intp(0), 0}, {ScopeFrame, intp(55), 55},
	} {
		_, err := ts.c.Prefetch(context.Background(), PrefetchRequest{
			Scope: tc.scope, Priority: tc.prio, Frame: intp(12), Items: []Item{{Path: ts.mount + "/a"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		got := ts.b.lastPrefetch(t)
		if got.Priority != tc.want || got.Frame == nil || *got.Frame != 12 {
			t.Errorf("%s priority %v: backend got priority %d frame %v, want %d", tc.scope, tc.prio, got.Priority, got.Frame, tc.want)
		}
	}
}

// wait_ms reaches the engine as Wait, a longer one is clamped, and files
// still queued when it runs out are reported.
func TestPrefetchWait(t *testing.T) {
	b := &fakeBackend{block: true, state: func(w Want) Result {
		if w.Rel == "ready" {
			return Result{State: Resident}
		}
		return Result{State: Queued}
	}}
	ts := startServer(t, b, func(o *ServerOptions) { o.MaxWait = 800 * time.Millisecond })
	// The client's own timeout is shorter than the wait: it must extend it.
	c := NewClient(ts.sock, 300*time.Millisecond)
	defer c.Close()
	reply, err := c.Prefetch(context.Background(), PrefetchRequest{
		Scope: ScopeFrame, Frame: intp(7), WaitMS: 600,
		Items: []Item{{Path: ts.mount + "/ready"}, {Path: ts.mount + "/slow"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := ts.b.lastPrefetch(t).Wait; got != 600*time.Millisecond {
		t.Errorf("backend Wait = %v, want 600ms", got)
	}
	if !reply.TimedOut || reply.Resident != 1 || reply.Queued != 1 || !reflect.DeepEqual(reply.Pending, []string{ts.mount + "/slow"}) ||
		reply.WaitedMS < 600 || reply.WaitClampedMS != 0 {
		t.Errorf("reply %+v", reply)
	}

	reply, err = c.Prefetch(context.Background(), PrefetchRequest{
		Scope: ScopeFrame, WaitMS: 3_600_000, Items: []Item{{Path: ts.mount + "/ready"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := ts.b.lastPrefetch(t).Wait; got != 800*time.Millisecond {
		t.Errorf("backend Wait = %v, want the 800ms limit", got)
	}
	if reply.WaitClampedMS != 800 || reply.TimedOut || len(reply.Pending) != 0 {
		t.Errorf("clamped reply %+v", reply)
	}
}

func TestPrefetchUDIM(t *testing.T) {
	ts := startServer(t, nil, nil)
	tex := filepath.Join(ts.mount, "tex")
	if err := os.MkdirAll(filepath.Join(tex, "left"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"c.1001.exr", "c.1002.exr", "c.1010.exr", "c.0999.exr", "c.2000.exr", "c.1003.exr.bak", "d.1004.exr", "left/c.1001.exr"} {
		if err := os.WriteFile(filepath.Join(tex, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reply, err := ts.c.Prefetch(context.Background(), PrefetchRequest{Scope: ScopeJob, Items: []Item{
		{Seq: &Seq{Pattern: tex + "/c.<UDIM>.exr"}},
		{Seq: &Seq{Pattern: tex + "/%V/c.<UDIM>.exr", Views: []string{"left", "right"}}},
		{Seq: &Seq{Pattern: tex + "/given.<UDIM>.exr", Tiles: []int{1001, 1005}}},
		{Seq: &Seq{Pattern: tex + "/none.<UDIM>.exr"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var rels []string
	for _, w := range ts.b.lastPrefetch(t).Wants {
		rels = append(rels, w.Rel)
	}
	want := []string{"tex/c.1001.exr", "tex/c.1002.exr", "tex/c.1010.exr", "tex/left/c.1001.exr", "tex/given.1001.exr", "tex/given.1005.exr"}
	if !reflect.DeepEqual(rels, want) {
		t.Errorf("wants %q\nwant %q", rels, want)
	}
	wantMissing := []string{tex + "/right/c.<UDIM>.exr", tex + "/none.<UDIM>.exr"}
	if !reflect.DeepEqual(reply.Missing, wantMissing) || reply.Accepted != 6 {
		t.Errorf("reply %+v, want missing %q", reply, wantMissing)
	}
}

// A listing that fails reports the pattern as failed, not the request.
func TestPrefetchUDIMListError(t *testing.T) {
	ts := startServer(t, nil, func(o *ServerOptions) {
		o.ListDir = func(string) ([]string, error) { return nil, syscall.EIO }
	})
	reply, err := ts.c.Prefetch(context.Background(), PrefetchRequest{Scope: ScopeJob, Items: []Item{
		{Seq: &Seq{Pattern: ts.mount + "/t.<UDIM>.exr"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(reply.Failed) != 1 || reply.Failed[0].Path != ts.mount+"/t.<UDIM>.exr" || reply.Accepted != 0 {
		t.Errorf("reply %+v", reply)
	}
	if p, _, _ := ts.b.calls(); p != 0 {
		t.Errorf("backend called with nothing to fetch")
	}
}

// Every refusal has its reason, changes nothing (the backend never hears
// of the request, even when valid items precede the bad one) and is
// counted.
func TestRejections(t *testing.T) {
	ts := startServer(t, nil, func(o *ServerOptions) {
		o.MaxItems = 20
		o.MaxBodyBytes = 64 << 10
	})
	m := ts.mount
	good := `{"path":"` + m + `/ok.exr"}`
	pf := func(rest string) string {
		return `{"schema":"jitfs.prefetch/v1","job":{"id":"j"},"scope":"job"` + rest + `}`
	}
	items := func(it ...string) string { return pf(`,"items":[` + good + `,` + strings.Join(it, ",") + `]`) }
	seq := func(s string) string { return items(`{"seq":` + s + `}`) }
	rel := func(rest string) string { return `{"schema":"jitfs.prefetch/v1"` + rest + `}` }
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		reason                   string
	}{
		{"malformed", "POST", "/v1/prefetch", `{"schema":`, 400, "bad_json"},
		{"not an object", "POST", "/v1/prefetch", `[1,2]`, 400, "bad_json"},
		{"trailing data", "POST", "/v1/prefetch", pf(`,"items":[]`) + `{}`, 400, "bad_json"},
		{"wrong type", "POST", "/v1/prefetch", pf(`,"wait_ms":"5s","items":[]`), 400, "bad_json"},
		{"empty body", "POST", "/v1/prefetch", ``, 400, "bad_json"},
		{"no schema", "POST", "/v1/prefetch", `{"scope":"job","items":[` + good + `]}`, 400, "bad_schema"},
		{"future schema", "POST", "/v1/prefetch", `{"schema":"jitfs.prefetch/v2","scope":"job","items":[` + good + `]}`, 400, "bad_schema"},
		{"bad scope", "POST", "/v1/prefetch", `{"schema":"jitfs.prefetch/v1","scope":"shot","items":[` + good + `]}`, 400, "bad_scope"},
		{"no scope", "POST", "/v1/prefetch", `{"schema":"jitfs.prefetch/v1","items":[` + good + `]}`, 400, "bad_scope"},
		{"priority high", "POST", "/v1/prefetch", pf(`,"priority":101,"items":[` + good + `]`), 400, "bad_priority"},
		{"priority negative", "POST", "/v1/prefetch", pf(`,"priority":-1,"items":[` + good + `]`), 400, "bad_priority"},
		{"negative wait", "POST", "/v1/prefetch", pf(`,"wait_ms":-5,"items":[` + good + `]`), 400, "bad_wait"},
		{"neither path nor seq", "POST", "/v1/prefetch", items(`{"kind":"image"}`), 400, "bad_item"},
		{"both path and seq", "POST", "/v1/prefetch", items(`{"path":"` + m + `/a","seq":{"pattern":"` + m + `/b"}}`), 400, "bad_item"},
		{"negative offset", "POST", "/v1/prefetch", items(`{"path":"` + m + `/a","ranges":[{"off":-1,"len":5}]}`), 400, "bad_range"},
		{"empty range", "POST", "/v1/prefetch", items(`{"path":"` + m + `/a","ranges":[{"off":0,"len":0}]}`), 400, "bad_range"},
		{"range overflows", "POST", "/v1/prefetch", items(`{"path":"` + m + `/a","ranges":[{"off":9223372036854775807,"len":1}]}`), 400, "bad_range"},
		{"relative path", "POST", "/v1/prefetch", items(`{"path":"tex/a.png"}`), 400, "relative_path"},
		{"empty seq pattern", "POST", "/v1/prefetch", seq(`{"pattern":""}`), 400, "bad_path"},
		{"mount root", "POST", "/v1/prefetch", items(`{"path":"` + m + `/"}`), 400, "bad_path"},
		{"too long", "POST", "/v1/prefetch", items(`{"path":"` + m + `/` + strings.Repeat("a", 5000) + `"}`), 400, "bad_path"},
		{"NUL", "POST", "/v1/prefetch", items(`{"path":"` + m + `/a\u0000b"}`), 400, "nul_byte"},
		{"NUL in pattern", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/a\u0000%d","frames":"1"}`), 400, "nul_byte"},
		{"dotdot escape", "POST", "/v1/prefetch", items(`{"path":"` + m + `/../../etc/passwd"}`), 400, "path_escapes"},
		{"dotdot outside", "POST", "/v1/prefetch", items(`{"path":"/etc/../etc/passwd"}`), 400, "path_escapes"},
		{"dotdot in pattern", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/../x.%d","frames":"1"}`), 400, "path_escapes"},
		{"bad token", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/p.%4d","frames":"1"}`), 400, "bad_pattern"},
		{"frames without token", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/p.exr","frames":"1"}`), 400, "bad_pattern"},
		{"token without frames", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/p.%04d.exr"}`), 400, "bad_pattern"},
		{"bad view", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/%V.exr","views":["../x"]}`), 400, "bad_pattern"},
		{"udim in dir", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/<UDIM>/c.exr"}`), 400, "bad_pattern"},
		{"two udims", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/c.<UDIM>.<UDIM>"}`), 400, "bad_pattern"},
		{"tiles without udim", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/c.exr","tiles":[1001]}`), 400, "bad_pattern"},
		{"tile out of range", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/c.<UDIM>","tiles":[1000]}`), 400, "bad_pattern"},
		{"bad frames", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/p.%04d","frames":"10-1"}`), 400, "bad_frames"},
		{"frame step zero", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/p.%04d","frames":"1-10x0"}`), 400, "bad_frames"},
		{"absurd range", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/p.%04d","frames":"1-999999999"}`), 400, "too_many_items"},
		{"expansion over limit", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/p.%04d","frames":"1-20"}`), 400, "too_many_items"},
		{"views over limit", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/%V.%04d","frames":"1-10","views":["l","r"]}`), 400, "too_many_items"},
		{"tiles over limit", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/%d.<UDIM>","frames":"1-5","tiles":[1001,1002,1003,1004]}`), 400, "too_many_items"},
		{"items over limit", "POST", "/v1/prefetch", items(strings.Repeat(good+",", 19) + good), 400, "too_many_items"},
		{"ranges over limit", "POST", "/v1/prefetch", seq(`{"pattern":"` + m + `/p.%d","frames":"1-5"},"ranges":[` + strings.Repeat(`{"off":0,"len":1},`, 4) + `{"off":0,"len":1}]`), 400, "too_many_items"},
		{"body too large", "POST", "/v1/prefetch", items(`{"path":"` + m + `/` + strings.Repeat("a/", 40<<10) + `"}`), 413, "too_large"},
		{"release without job", "POST", "/v1/release", rel(`,"scope":"job"`), 400, "bad_job"},
		{"release frame without frame", "POST", "/v1/release", rel(`,"job":{"id":"j"},"scope":"frame"`), 400, "bad_job"},
		{"release bad scope", "POST", "/v1/release", rel(`,"job":{"id":"j"},"scope":"lookahead"`), 400, "bad_scope"},
		{"release bad schema", "POST", "/v1/release", `{"schema":"x","job":{"id":"j"},"scope":"job"}`, 400, "bad_schema"},
		{"release escaping path", "POST", "/v1/release", rel(`,"job":{"id":"j"},"scope":"job","paths":["` + m + `/a","` + m + `/../../x"]`), 400, "path_escapes"},
		{"release NUL", "POST", "/v1/release", rel(`,"job":{"id":"j"},"scope":"job","paths":["` + m + `/\u0000"]`), 400, "nul_byte"},
		{"release malformed", "POST", "/v1/release", `{`, 400, "bad_json"},
		{"unknown endpoint", "GET", "/v1/nope", ``, 404, "not_found"},
		{"v2 endpoint", "POST", "/v2/prefetch", items(), 404, "not_found"},
		{"GET prefetch", "GET", "/v1/prefetch", ``, 405, "method_not_allowed"},
		{"POST status", "POST", "/v1/status", `{}`, 405, "method_not_allowed"},
	} {
		status, body := ts.raw(t, tc.method, tc.path, tc.body)
		var e ErrorReply
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("%s: reply %q: %v", tc.name, body, err)
			continue
		}
		if status != tc.status || e.Reason != tc.reason || e.Schema != Schema || e.Error == "" {
			t.Errorf("%s: %d %+v, want %d %s", tc.name, status, e, tc.status, tc.reason)
		}
	}
	if p, r, _ := ts.b.calls(); p != 0 || r != 0 {
		t.Errorf("rejected requests reached the backend: %d prefetches, %d releases", p, r)
	}
	st, err := ts.c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		"bad_json": 6, "bad_schema": 3, "bad_scope": 3, "bad_priority": 2, "bad_wait": 1, "bad_item": 2, "bad_range": 3,
		"relative_path": 1, "bad_path": 3, "nul_byte": 3, "path_escapes": 4, "bad_pattern": 8, "bad_frames": 2,
		"too_many_items": 6, "too_large": 1, "bad_job": 2, "not_found": 2, "method_not_allowed": 2,
	}
	if !reflect.DeepEqual(st.Rejected, want) {
		t.Errorf("rejected counters %v\nwant %v", st.Rejected, want)
	}
}

// The error reply's reason reaches the Go client.
func TestClientAPIError(t *testing.T) {
	ts := startServer(t, nil, nil)
	_, err := ts.c.Prefetch(context.Background(), PrefetchRequest{Scope: ScopeJob, Items: []Item{{Path: "rel/a"}}})
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Reason != "relative_path" || !strings.Contains(ae.Message, `items[0]: path "rel/a" is relative`) {
		t.Fatalf("err = %#v", err)
	}
	if !strings.Contains(err.Error(), "relative_path") {
		t.Errorf("error text %q lacks the reason", err)
	}
	err = ts.c.Release(context.Background(), ReleaseRequest{Scope: ScopeJob})
	if !errors.As(err, &ae) || ae.Reason != "bad_job" {
		t.Errorf("release err = %v", err)
	}
}

func TestBodyTooLarge(t *testing.T) {
	ts := startServer(t, nil, func(o *ServerOptions) { o.MaxBodyBytes = 1024 })
	big := `{"schema":"jitfs.prefetch/v1","scope":"job","items":[{"path":"` + ts.mount + "/" + strings.Repeat("a", 2000) + `"}]}`
	// With a Content-Length, refused before reading.
	status, body := ts.raw(t, "POST", "/v1/prefetch", big)
	if status != 413 || !strings.Contains(string(body), "too_large") {
		t.Errorf("with Content-Length: %d %s", status, body)
	}
	// Chunked, so only the read limit can catch it.
	req, err := http.NewRequest("POST", "http://jitfs/v1/prefetch", io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	resp, err := ts.c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !strings.Contains(string(data), "too_large") {
		t.Errorf("chunked: %d %s", resp.StatusCode, data)
	}
	if p, _, _ := ts.b.calls(); p != 0 {
		t.Error("an oversized request reached the backend")
	}
	// Exactly at the limit is fine.
	small := `{"schema":"jitfs.prefetch/v1","scope":"job","items":[{"path":"` + ts.mount + `/x"}]}`
	small = small[:len(small)-1] + strings.Repeat(" ", 1024-len(small)) + "}"
	if status, body := ts.raw(t, "POST", "/v1/prefetch", small); status != 200 {
		t.Errorf("body of exactly the limit: %d %s", status, body)
	}
}

func TestTooManyItemsAfterExpansion(t *testing.T) {
	ts := startServer(t, nil, func(o *ServerOptions) { o.MaxItems = 10 })
	pat := ts.mount + "/p.%04d.exr"
	ok := PrefetchRequest{Scope: ScopeSequence, Items: []Item{{Seq: &Seq{Pattern: pat, Frames: "1-10"}}}}
	if r, err := ts.c.Prefetch(context.Background(), ok); err != nil || r.Accepted != 10 {
		t.Fatalf("10 files: %+v, %v", r, err)
	}
	for _, items := range [][]Item{
		{{Seq: &Seq{Pattern: pat, Frames: "1-11"}}},
		{{Seq: &Seq{Pattern: pat, Frames: "1-5"}}, {Seq: &Seq{Pattern: pat, Frames: "6-11"}}},
		{{Seq: &Seq{Pattern: pat, Frames: "1-10"}}, {Path: ts.mount + "/one-more"}},
		// Duplicates count: the limit bounds the work of expanding.
		{{Seq: &Seq{Pattern: pat, Frames: "1-10"}}, {Seq: &Seq{Pattern: pat, Frames: "1"}}},
	} {
		_, err := ts.c.Prefetch(context.Background(), PrefetchRequest{Scope: ScopeSequence, Items: items})
		var ae *APIError
		if !errors.As(err, &ae) || ae.Reason != "too_many_items" {
			t.Errorf("%d items: err %v", len(items), err)
		}
	}
	if p, _, _ := ts.b.calls(); p != 1 {
		t.Errorf("backend called %d times, want once", p)
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		mount, raw string
		rel        string
		inside     bool
		reason     string
	}{
		{"/mnt/jitfs", "/mnt/jitfs/a/b.exr", "a/b.exr", true, ""},
		{"/mnt/jitfs", "/mnt/jitfs//a/./b.exr/", "a/b.exr", true, ""},
		{"/mnt/jitfs", "/mnt/jitfs/a/../b", "b", true, ""},
		{"/mnt/jitfs", "/mnt/jitfs/../jitfs/b", "b", true, ""},
		{"/mnt/jitfs", "/mnt/jitfs/a/b/../../c", "c", true, ""},
		{"/mnt/jitfs", "/mnt/jitfsx/a", "", false, ""},
		{"/mnt/jitfs", "/mnt/jit", "", false, ""},
		{"/mnt/jitfs", "/usr/share/fonts/a.ttf", "", false, ""},
		{"/mnt/jitfs", "/mnt/jitfs/../jitfsx/a", "", false, "path_escapes"},
		{"/mnt/jitfs", "/mnt/jitfs/a/../../b", "", false, "path_escapes"},
		{"/mnt/jitfs", "/mnt/jitfs/..", "", false, "path_escapes"},
		{"/mnt/jitfs", "/mnt/jitfs", "", false, "bad_path"},
		{"/mnt/jitfs", "/mnt/jitfs/a/..", "", false, "bad_path"},
		{"/mnt/jitfs", "/mnt/jitfs/.", "", false, "bad_path"},
		{"/mnt/jitfs", "", "", false, "bad_path"},
		{"/mnt/jitfs", "mnt/jitfs/a", "", false, "relative_path"},
		{"/mnt/jitfs", "./a", "", false, "relative_path"},
		{"/mnt/jitfs", "/mnt/jitfs/a\x00", "", false, "nul_byte"},
		{"/", "/a/b", "a/b", true, ""},
		{"/", "/../a", "a", true, ""},
		{"/", "/", "", false, "bad_path"},
	} {
		v := newValidator(tc.mount, 10, time.Second, nil)
		rel, inside, rej := v.resolve(tc.raw)
		reason := ""
		if rej != nil {
			reason = rej.reason
		}
		if rel != tc.rel || inside != tc.inside || reason != tc.reason {
			t.Errorf("resolve(%q) under %s = %q, %v, %q; want %q, %v, %q", tc.raw, tc.mount, rel, inside, reason, tc.rel, tc.inside, tc.reason)
		}
	}
}

func TestRelease(t *testing.T) {
	ts := startServer(t, nil, nil)
	ctx := context.Background()
	if err := ts.c.Release(ctx, ReleaseRequest{Job: JobInfo{Job: Job{ID: "j"}}, Scope: ScopeFrame, Frame: intp(12),
		Paths: []string{ts.mount + "/a.0012.exr", ts.mount + "/./a.0012.exr", "/elsewhere/b"}}); err != nil {
		t.Fatal(err)
	}
	if err := ts.c.Release(ctx, ReleaseRequest{Job: JobInfo{Job: Job{ID: "j"}}, Scope: ScopeJob}); err != nil {
		t.Fatal(err)
	}
	// Only paths outside the mount: nothing of ours to release, and an
	// empty list must not become "release the whole frame".
	status, body := ts.raw(t, "POST", "/v1/release", `{"schema":"jitfs.prefetch/v1","job":{"id":"j"},"scope":"frame","frame":3,"paths":["/elsewhere/c"]}`)
	var rr ReleaseReply
	if err := json.Unmarshal(body, &rr); err != nil || status != 200 || !rr.OK || !reflect.DeepEqual(rr.Unmanaged, []string{"/elsewhere/c"}) {
		t.Errorf("unmanaged-only release: %d %s", status, body)
	}
	ts.b.mu.Lock()
	defer ts.b.mu.Unlock()
	want := []Release{
		{Job: "j", Scope: ScopeFrame, Frame: intp(12), Rels: []string{"a.0012.exr"}},
		{Job: "j", Scope: ScopeJob},
	}
	if !reflect.DeepEqual(ts.b.releases, want) {
		t.Errorf("releases %+v\nwant %+v", ts.b.releases, want)
	}
}

func TestStatus(t *testing.T) {
	// No read blocked: an empty list, [] on the wire.
	b := &fakeBackend{status: Status{QueueDepth: 3, InFlight: 2, BytesOutstanding: 1 << 20, HitRatio: 0.5,
		Jobs:     []JobStatus{{ID: "j", Wanted: 10, Resident: 4}},
		Fetching: []ActiveFetch{{Path: "a", BytesDone: 1, BytesTotal: 2, AgeMS: 3, Job: "j", Task: "t", Band: "frame"}},
		Blocked:  []BlockedRead{}}}
	ts := startServer(t, b, nil)
	ctx := context.Background()
	if _, err := ts.c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.c.Prefetch(ctx, PrefetchRequest{Scope: ScopeJob, Items: []Item{{Path: ts.mount + "/a"}}}); err != nil {
		t.Fatal(err)
	}
	ts.raw(t, "POST", "/v1/prefetch", `{`)
	st, err := ts.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st.Status, b.status) || st.Mountpoint != ts.mount || st.Version != "test" || st.Errors != 0 {
		t.Errorf("status %+v", st)
	}
	wantReq := map[string]int64{"health": 1, "prefetch": 2, "status": 1}
	if !reflect.DeepEqual(st.Requests, wantReq) || !reflect.DeepEqual(st.Rejected, map[string]int64{"bad_json": 1}) {
		t.Errorf("requests %v rejected %v", st.Requests, st.Rejected)
	}
	// The engine's fields are inline, as documented.
	_, raw := ts.raw(t, "GET", "/v1/status", "")
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schema", "queue_depth", "bytes_outstanding", "hit_ratio", "jobs", "fetching", "blocked", "requests", "rejected", "errors"} {
		if _, ok := m[k]; !ok {
			t.Errorf("status reply lacks %q: %s", k, raw)
		}
	}
}

func TestEngineErrors(t *testing.T) {
	b := &fakeBackend{err: errors.New("prefetch: closed")}
	ts := startServer(t, b, nil)
	_, err := ts.c.Prefetch(context.Background(), PrefetchRequest{Scope: ScopeJob, Items: []Item{{Path: ts.mount + "/a"}}})
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 500 || ae.Reason != "engine" || ae.Message != "prefetch: closed" {
		t.Errorf("err %v", err)
	}
	b.err = nil
	b.wrongSize = true
	_, err = ts.c.Prefetch(context.Background(), PrefetchRequest{Scope: ScopeJob, Items: []Item{{Path: ts.mount + "/a"}, {Path: ts.mount + "/b"}}})
	if !errors.As(err, &ae) || ae.StatusCode != 500 || !strings.Contains(ae.Message, "1 results for 2 files") {
		t.Errorf("short results: %v", err)
	}
	if _, _, errs := ts.Counters(); errs != 2 {
		t.Errorf("errors counter %d, want 2", errs)
	}
}

// TestBusyEngineIsA503 checks the mapping of an engine at its bounds
// (hooks.ErrBusy) to a 503 "busy" reply, counted with the rejections; the
// engine's own test (prefetch) checks the bounds themselves.
func TestBusyEngineIsA503(t *testing.T) {
	b := &fakeBackend{err: fmt.Errorf("%w: 150000 files are queued", ErrBusy)}
	ts := startServer(t, b, nil)
	_, err := ts.c.Prefetch(context.Background(), PrefetchRequest{Scope: ScopeJob, Items: []Item{{Path: ts.mount + "/a"}}})
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 503 || ae.Reason != "busy" || !strings.Contains(ae.Message, "150000 files are queued") {
		t.Fatalf("err %v", err)
	}
	if _, rejected, errs := ts.Counters(); rejected["busy"] != 1 || errs != 0 {
		t.Errorf("rejected %v, errors %d: want one busy rejection and no error", rejected, errs)
	}
}

func TestPanicRecovered(t *testing.T) {
	var logs testworld.Buffer
	b := &fakeBackend{panics: true}
	ts := startServer(t, b, func(o *ServerOptions) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	_, err := ts.c.Status(context.Background())
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 500 || ae.Reason != "internal" {
		t.Fatalf("err %v", err)
	}
	if _, err := ts.c.Health(context.Background()); err != nil {
		t.Fatalf("server dead after a panic: %v", err)
	}
	if n := strings.Count(logs.String(), "handler panic"); n != 1 {
		t.Errorf("panic logged %d times:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "status exploded") {
		t.Errorf("log lacks the panic value:\n%s", logs.String())
	}
	if _, _, errs := ts.Counters(); errs != 1 {
		t.Errorf("errors counter %d", errs)
	}
}

func TestSocketMode(t *testing.T) {
	ts := startServer(t, nil, nil)
	fi, err := os.Lstat(ts.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	// The private bind directory is gone.
	ents, err := os.ReadDir(filepath.Dir(ts.sock))
	if err != nil || len(ents) != 1 {
		t.Errorf("socket directory holds %v (%v), want just the socket", ents, err)
	}
}

func TestSocketGroup(t *testing.T) {
	gid := os.Getgid()
	grp, err := user.LookupGroupId(strconv.Itoa(gid))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{strconv.Itoa(gid), grp.Name} {
		ts := startServer(t, nil, func(o *ServerOptions) { o.SocketGroup = g })
		fi, err := os.Lstat(ts.sock)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != gid || fi.Mode().Perm() != 0o660 {
			t.Errorf("group %s: socket gid %d mode %v, want %d 0660", g, st.Gid, fi.Mode(), gid)
		}
	}
	_, err = NewServer(ServerOptions{Mountpoint: "/m", Backend: &fakeBackend{}, SocketPath: filepath.Join(t.TempDir(), "s"), SocketGroup: "no-such-group-jitfs"})
	if err == nil || !strings.Contains(err.Error(), "socket group") {
		t.Errorf("unknown group: %v", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // a daemon that died: the file stays, nobody answers
	if _, err := os.Lstat(sock); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, nil, func(o *ServerOptions) { o.SocketPath = sock })
	if h, err := ts.c.Health(context.Background()); err != nil || !h.OK {
		t.Fatalf("health after replacing a stale socket: %+v %v", h, err)
	}
}

func TestLiveSocketRefused(t *testing.T) {
	ts := startServer(t, nil, nil)
	_, err := NewServer(ServerOptions{Mountpoint: ts.mount, Backend: &fakeBackend{}, SocketPath: ts.sock})
	if !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second server: %v, want ErrSocketInUse", err)
	}
	if h, err := ts.c.Health(context.Background()); err != nil || !h.OK {
		t.Errorf("the live daemon lost its socket: %+v %v", h, err)
	}
	// Nor is anything that is not a socket replaced.
	file := filepath.Join(t.TempDir(), "notasocket")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(ServerOptions{Mountpoint: ts.mount, Backend: &fakeBackend{}, SocketPath: file}); err == nil {
		t.Error("a regular file was replaced by a socket")
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Errorf("the file changed: %q %v", b, err)
	}
}

// Close ends a prefetch waiting in the engine, makes Serve return nil and
// removes the socket.
func TestClose(t *testing.T) {
	b := &fakeBackend{block: true, entered: make(chan struct{}, 1)}
	mount := t.TempDir()
	sock := filepath.Join(t.TempDir(), "s.sock")
	s, err := NewServer(ServerOptions{Mountpoint: mount, Backend: b, SocketPath: sock})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	c := NewClient(sock, 0)
	defer c.Close()
	replied := make(chan error, 1)
	go func() {
		_, err := c.Prefetch(context.Background(), PrefetchRequest{Scope: ScopeFrame, WaitMS: 60_000, Items: []Item{{Path: mount + "/a"}}})
		replied <- err
	}()
	<-b.entered
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	if err := <-replied; err == nil {
		t.Error("the waiting prefetch got a reply from a closed server")
	}
	// The property is that Close does not sit out the request's 60 s
	// wait; half of it leaves a loaded machine all the slack it needs.
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Close took %v with a prefetch waiting 60 s", d)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// Close must not remove a socket that is no longer its own.
func TestCloseLeavesOthersSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	s, err := NewServer(ServerOptions{Mountpoint: "/m", Backend: &fakeBackend{}, SocketPath: sock})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sock, []byte("other"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(sock); err != nil || string(b) != "other" {
		t.Errorf("Close removed a file it did not create: %q %v", b, err)
	}
}

func TestConcurrentRequests(t *testing.T) {
	ts := startServer(t, nil, nil)
	const workers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := NewClient(ts.sock, 10*time.Second)
			defer c.Close()
			ctx := context.Background()
			for i := 0; i < each; i++ {
				var err error
				switch i % 4 {
				case 0:
					var r PrefetchReply
					r, err = c.Prefetch(ctx, PrefetchRequest{Job: JobInfo{Job: Job{ID: strconv.Itoa(w)}}, Scope: ScopeLookahead,
						Items: []Item{{Seq: &Seq{Pattern: ts.mount + "/p.%04d.exr", Frames: fmt.Sprintf("%d-%d", i, i+9)}}}})
					if err == nil && r.Accepted != 10 {
						err = fmt.Errorf("accepted %d", r.Accepted)
					}
				case 1:
					err = c.Release(ctx, ReleaseRequest{Job: JobInfo{Job: Job{ID: strconv.Itoa(w)}}, Scope: ScopeFrame, Frame: intp(i)})
				case 2:
					_, err = c.Status(ctx)
				case 3:
					_, err = c.Prefetch(ctx, PrefetchRequest{Scope: ScopeJob, Items: []Item{{Path: "/x/../../etc"}}})
					var ae *APIError
					if errors.As(err, &ae) && ae.Reason == "path_escapes" {
						err = nil
					}
				}
				if err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	p, r, s := ts.b.calls()
	if n := workers * each / 4; p != n || r != n || s != n {
		t.Errorf("backend calls %d %d %d, want %d each", p, r, s, n)
	}
	req, rej, _ := ts.Counters()
	if req["prefetch"] != int64(workers*each/2) || rej["path_escapes"] != int64(workers*each/4) {
		t.Errorf("counters %v %v", req, rej)
	}
}

func TestClientTransportErrors(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "nobody.sock"), time.Second)
	defer c.Close()
	if _, err := c.Health(context.Background()); err == nil || !strings.Contains(err.Error(), "nobody.sock") {
		t.Errorf("no daemon: %v", err)
	}
	// Something that is not a jitfs.prefetch/v1 daemon answers.
	sock := filepath.Join(t.TempDir(), "other.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/status" {
			http.Error(w, "teapot", http.StatusTeapot)
			return
		}
		io.WriteString(w, `{"schema":"jitfs.prefetch/v9","ok":true}`)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	c2 := NewClient(sock, time.Second)
	defer c2.Close()
	if _, err := c2.Health(context.Background()); err == nil || !strings.Contains(err.Error(), "v9") {
		t.Errorf("other schema: %v", err)
	}
	_, err = c2.Status(context.Background())
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusTeapot || ae.Reason != "http" {
		t.Errorf("non-JSON error: %v", err)
	}
}

func TestServerOptionsValidate(t *testing.T) {
	for _, o := range []ServerOptions{
		{Mountpoint: "rel", Backend: &fakeBackend{}},
		{Mountpoint: "", Backend: &fakeBackend{}},
		{Mountpoint: "/m"},
		{Mountpoint: "/m", Backend: &fakeBackend{}, MaxItems: -1},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	if err := (ServerOptions{Mountpoint: "/m", Backend: &fakeBackend{}}).Validate(); err != nil {
		t.Error(err)
	}
	long := "/" + strings.Repeat("d", 120)
	if _, err := NewServer(ServerOptions{Mountpoint: "/m", Backend: &fakeBackend{}, SocketPath: long}); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("overlong socket path: %v", err)
	}
}

func TestDefaultSocket(t *testing.T) {
	for _, tc := range []struct{ mount, want string }{
		{"/mnt/jitfs", "/run/jitfs/mnt-jitfs.sock"},
		{"/mnt/jitfs/", "/run/jitfs/mnt-jitfs.sock"},
		{"/", "/run/jitfs/-.sock"},
		{"/mnt/my-show", "/run/jitfs/mnt-my%2Dshow.sock"},
		{"/mnt/my/show", "/run/jitfs/mnt-my-show.sock"},
		{"/.hidden/a b", "/run/jitfs/%2Ehidden-a%20b.sock"},
		{"/shows/sh_010.v2", "/run/jitfs/shows-sh_010.v2.sock"},
	} {
		if got := DefaultSocket(tc.mount); got != tc.want {
			t.Errorf("DefaultSocket(%q) = %q, want %q", tc.mount, got, tc.want)
		}
	}
	a := DefaultSocket("/" + strings.Repeat("x", 200) + "/a")
	b := DefaultSocket("/" + strings.Repeat("x", 200) + "/b")
	if a == b || len(a) > maxSocketPath || len(b) > maxSocketPath || !strings.HasPrefix(a, "/run/jitfs/xxxx") || !strings.Contains(a, "~") {
		t.Errorf("long mountpoints: %q and %q", a, b)
	}
}

func TestFindSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "mnt-show.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	socketOf := func(m string) string { return filepath.Join(dir, escapeMountpoint(m)+".sock") }
	if got, err := findSocket("/mnt/show/seq/a.exr", socketOf); err != nil || got != sock {
		t.Errorf("findSocket = %q, %v; want %q", got, err, sock)
	}
	if _, err := findSocket("/elsewhere/a", socketOf); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("no mount: %v", err)
	}
	t.Setenv(EnvSocket, "/tmp/explicit.sock")
	if got, err := FindSocket("anything"); err != nil || got != "/tmp/explicit.sock" {
		t.Errorf("with %s: %q, %v", EnvSocket, got, err)
	}
}
