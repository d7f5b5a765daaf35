package zonecache

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// logWatch is an Options.Log that closes found when a line holding want
// is written (it never calls t.Log: nginx may write after the test ends).
type logWatch struct {
	want  string
	found chan struct{}
	mu    sync.Mutex
	buf   []byte
	done  bool
}

func (l *logWatch) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	if !l.done && bytes.Contains(l.buf, []byte(l.want)) {
		l.done = true
		close(l.found)
	}
	return len(b), nil
}

const mib = 1 << 20

// TestRangedReadsMatchOrigin: whatever the range, the zone returns exactly
// the origin's bytes with the origin's Content-Range, for small objects,
// names holding '/', spaces and other characters a path escapes or leaves
// alone (sent as %2F, %20, ...), and a 41 MiB object
// read at ranges that start and end off every slice boundary.
func TestRangedReadsMatchOrigin(t *testing.T) {
	w := newWorld(t)
	z := startZone(t, w, Options{})

	small := map[string][]byte{
		"a":                               randomBytes(1, 100),
		"shots/sh010/tex/wood.exr":        randomBytes(2, 70<<10),
		"shots/sh 010/my textures/a b.tx": randomBytes(3, 3*mib+17),
		"odd/a+b&c=d;e@f,g:h$ (1) [x] tëxture~%.exr": randomBytes(16, 5000),
	}
	for name, data := range small {
		gen := w.put(t, name, data)
		n := int64(len(data))
		for _, r := range [][2]int64{{0, 1}, {0, n}, {n / 3, n/3 + n/4 + 1}, {n - 1, n}} {
			wantRange(t, z.URL(), name, gen, data, r[0], r[1])
		}
		status, body, _ := get(t, z.URL(), name, gen, 0, -1)
		if status != http.StatusOK || !bytes.Equal(body, data) {
			t.Fatalf("%s whole: status %d, %d bytes, want 200 and the origin's %d", name, status, len(body), n)
		}
	}

	big := randomBytes(4, 41*mib+12345)
	gen := w.put(t, "plates/plate.1001.exr", big)
	n := int64(len(big))
	for _, r := range [][2]int64{
		{0, 1},
		{mib - 1, mib + 1},                 // across one slice boundary
		{5*mib + 3, 13*mib + 7},            // many slices, unaligned both ends
		{8 * mib, 16 * mib},                // one jitfs part, aligned
		{n - 12345 - 100, n},               // into the short last slice
		{n - 1, n},                         // the last byte
		{17*mib + 65536, 17*mib + 2*65536}, // one jitfs block
	} {
		wantRange(t, z.URL(), "plates/plate.1001.exr", gen, big, r[0], r[1])
	}
	// And all of it, again through cached slices.
	status, body, _ := get(t, z.URL(), "plates/plate.1001.exr", gen, 0, -1)
	if status != http.StatusOK || !bytes.Equal(body, big) {
		t.Fatalf("big whole: status %d, %d bytes, want 200 and the origin's %d", status, len(body), n)
	}
}

// TestSecondReadIsCached: a range read twice reaches the origin once.
func TestSecondReadIsCached(t *testing.T) {
	w := newWorld(t)
	z := startZone(t, w, Options{})
	data := randomBytes(5, 3*mib)
	gen := w.put(t, "tex/a.tx", data)

	wantRange(t, z.URL(), "tex/a.tx", gen, data, 100, 2*mib+100)
	reqs, before := w.origin()
	if len(reqs) == 0 {
		t.Fatal("a cold read made no origin request")
	}
	wantRange(t, z.URL(), "tex/a.tx", gen, data, 100, 2*mib+100)
	wantRange(t, z.URL(), "tex/a.tx", gen, data, 200, 300)
	after, bytesAfter := w.origin()
	if len(after) != len(reqs) || bytesAfter != before {
		t.Fatalf("cached reads reached the origin: %d requests and %d bytes after the first read, %d and %d after the second",
			len(reqs), before, len(after), bytesAfter)
	}
	_, _, h := get(t, z.URL(), "tex/a.tx", gen, 200, 300)
	if got := h.Get("X-Jitfs-Zone-Cache"); got != "HIT" {
		t.Errorf("X-Jitfs-Zone-Cache %q on a cached range, want HIT", got)
	}
}

// TestPiecewise: a small range of a big object pulls only the slices that
// cover it, never the whole object.
func TestPiecewise(t *testing.T) {
	w := newWorld(t)
	z := startZone(t, w, Options{})
	big := randomBytes(6, 41*mib)
	gen := w.put(t, "geo/cache.vdb", big)

	wantRange(t, z.URL(), "geo/cache.vdb", gen, big, 20*mib+100, 20*mib+200)
	reqs, n := w.origin()
	if len(reqs) != 1 || reqs[0].Range != fmt.Sprintf("bytes=%d-%d", 20*mib, 21*mib-1) {
		t.Fatalf("origin requests %+v, want one for the slice bytes=%d-%d", reqs, 20*mib, 21*mib-1)
	}
	if n > mib+64<<10 {
		t.Fatalf("origin sent %d bytes for a 100-byte range, want one slice (%d)", n, mib)
	}
	wantRange(t, z.URL(), "geo/cache.vdb", gen, big, 30*mib-10, 32*mib+10)
	reqs, n = w.origin()
	if len(reqs) != 5 || n > 5*mib+64<<10 {
		t.Fatalf("after a range over 4 slices: %d origin requests and %d bytes, want 5 slices in all", len(reqs), n)
	}
}

// TestCollapsedMisses: 8 nodes reading one cold range at once cause one
// origin request per slice (proxy_cache_lock). The origin holds the first
// request until every reader has sent its own, so the other 7 arrive while
// the first slice is still a miss in flight.
func TestCollapsedMisses(t *testing.T) {
	w := newWorld(t)
	z := startZone(t, w, Options{})
	data := randomBytes(7, 5*mib)
	gen := w.put(t, "tex/shared.tx", data)

	release := make(chan struct{})
	var once sync.Once
	w.mu.Lock()
	w.hold = func(r originReq) <-chan struct{} {
		held := false
		once.Do(func() { held = true })
		if held {
			return release
		}
		return nil
	}
	w.mu.Unlock()

	const readers = 8
	off, end := int64(mib/2), int64(3*mib+mib/2) // 4 slices
	var sent, wg sync.WaitGroup
	errs := make(chan error, readers)
	read := func() {
		defer wg.Done()
		written := false
		trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
			if !written {
				written = true
				sent.Done()
			}
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			http.MethodGet, objectURL(z.URL(), "tex/shared.tx", gen), nil)
		if err != nil {
			errs <- err
			return
		}
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end-1))
		resp, err := (&http.Client{Timeout: hangGuard}).Do(req)
		if !written {
			sent.Done()
		}
		if err != nil {
			errs <- err
			return
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(resp.Body); err != nil {
			errs <- err
			return
		}
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(buf.Bytes(), data[off:end]) {
			errs <- fmt.Errorf("status %d, %d bytes differ from the origin's", resp.StatusCode, buf.Len())
		}
	}
	sent.Add(1)
	wg.Add(1)
	go read()
	w.waitSeen(t, func(originReq) bool { return true })
	sent.Add(readers - 1)
	wg.Add(readers - 1)
	for i := 1; i < readers; i++ {
		go read()
	}
	sent.Wait()
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	reqs, _ := w.origin()
	perSlice := map[string]int{}
	for _, r := range reqs {
		perSlice[r.Range]++
	}
	if len(perSlice) != 4 || len(reqs) != 4 {
		t.Fatalf("%d readers of 4 cold slices made %d origin requests %v, want one per slice", readers, len(reqs), perSlice)
	}
}

// TestGenerations: each generation is its own cache entry: after a new
// generation is uploaded under the same name, reading the old one still
// returns the old bytes, from the cache.
func TestGenerations(t *testing.T) {
	w := newWorld(t)
	z := startZone(t, w, Options{})
	v1, v2 := randomBytes(8, 2*mib+1), randomBytes(9, 2*mib+1)
	g1 := w.put(t, "lib/chars.blend", v1)
	wantRange(t, z.URL(), "lib/chars.blend", g1, v1, 0, 2*mib+1)
	g2 := w.put(t, "lib/chars.blend", v2)
	if g2 == g1 {
		t.Fatalf("the emulator gave the new upload the old generation %d", g1)
	}
	wantRange(t, z.URL(), "lib/chars.blend", g2, v2, 0, 2*mib+1)
	reqs, _ := w.origin()
	wantRange(t, z.URL(), "lib/chars.blend", g1, v1, 0, 2*mib+1)
	if after, _ := w.origin(); len(after) != len(reqs) {
		t.Fatalf("re-reading generation %d reached the origin: %+v", g1, after[len(reqs):])
	}
}

// TestRefused: the zone serves only pinned object reads; everything else is
// refused without contacting the origin, and /healthz answers locally.
func TestRefused(t *testing.T) {
	w := newWorld(t)
	z := startZone(t, w, Options{})
	gen := w.put(t, "a/b.exr", []byte("bytes"))
	obj := z.URL() + "/storage/v1/b/" + bucket + "/o/a%2Fb.exr"
	for _, c := range []struct {
		method, url string
		want        int
	}{
		{"GET", obj + "?alt=media", http.StatusBadRequest},
		{"GET", obj + fmt.Sprintf("?generation=%d", gen), http.StatusBadRequest},
		{"GET", obj, http.StatusBadRequest},
		{"GET", obj + "?alt=media&generation=latest", http.StatusBadRequest},
		{"GET", obj + fmt.Sprintf("?alt=media&generation=%d&generation=", gen), http.StatusBadRequest},
		{"GET", obj + fmt.Sprintf("?alt=json&generation=%d", gen), http.StatusBadRequest},
		{"GET", z.URL() + "/storage/v1/b/" + bucket + "/o", http.StatusNotFound},
		{"GET", z.URL() + "/storage/v1/b/" + bucket + "/o?prefix=a%2F&delimiter=%2F", http.StatusNotFound},
		{"GET", z.URL() + "/storage/v1/b/" + bucket, http.StatusNotFound},
		{"GET", z.URL() + "/upload/storage/v1/b/" + bucket + "/o?uploadType=media&name=x", http.StatusNotFound},
		{"POST", obj + fmt.Sprintf("?alt=media&generation=%d", gen), http.StatusMethodNotAllowed},
		{"PUT", obj + fmt.Sprintf("?alt=media&generation=%d", gen), http.StatusMethodNotAllowed},
		{"DELETE", obj + fmt.Sprintf("?alt=media&generation=%d", gen), http.StatusMethodNotAllowed},
		{"GET", z.URL() + "/healthz", http.StatusOK},
	} {
		status, body, _ := do(t, client, c.method, c.url, 0, -1)
		if status != c.want {
			t.Errorf("%s %s: status %d, want %d: %.100s", c.method, c.url, status, c.want, body)
		}
	}
	if reqs, _ := w.origin(); len(reqs) != 0 {
		t.Fatalf("refused requests reached the origin: %+v", reqs)
	}
	// The same object, asked for properly, is served: the refusals above
	// were about the requests, not the object.
	if status, body, _ := get(t, z.URL(), "a/b.exr", gen, 0, -1); status != http.StatusOK || string(body) != "bytes" {
		t.Fatalf("the pinned read: status %d, body %q", status, body)
	}
	if status, _, _ := do(t, client, http.MethodHead, objectURL(z.URL(), "a/b.exr", gen), 0, -1); status != http.StatusOK {
		t.Fatalf("HEAD of the pinned read: status %d, want 200", status)
	}
}

// TestAllowList: with --allow 127.0.0.2/32 a client at 127.0.0.1 is refused
// and one at 127.0.0.2 is served.
func TestAllowList(t *testing.T) {
	w := newWorld(t)
	z := startZone(t, w, Options{Allow: []string{"127.0.0.2/32"}})
	data := randomBytes(10, 1000)
	gen := w.put(t, "tex/x.tx", data)
	u := objectURL(z.URL(), "tex/x.tx", gen)
	if status, _, _ := do(t, dialFrom("127.0.0.1"), http.MethodGet, u, 0, 10); status != http.StatusForbidden {
		t.Fatalf("from 127.0.0.1: status %d, want 403", status)
	}
	// Refused before anything else: a bad method or an unpinned read from
	// outside the list is 403 too, not 405 or 400.
	if status, _, _ := do(t, dialFrom("127.0.0.1"), http.MethodPost, u, 0, -1); status != http.StatusForbidden {
		t.Fatalf("POST from 127.0.0.1: status %d, want 403", status)
	}
	if reqs, _ := w.origin(); len(reqs) != 0 {
		t.Fatalf("refused reads reached the origin: %+v", reqs)
	}
	status, body, _ := do(t, dialFrom("127.0.0.2"), http.MethodGet, u, 0, 10)
	if status != http.StatusPartialContent || !bytes.Equal(body, data[:10]) {
		t.Fatalf("from 127.0.0.2: status %d, body %q, want 206 and the origin's bytes", status, body)
	}
}

// TestToken: with --token-file, only a request carrying the file's token
// (exactly: not another case) is served, and the token never reaches the
// origin.
func TestToken(t *testing.T) {
	w := newWorld(t)
	const token = "zoneToken-0123456789.abc"
	tf := filepath.Join(t.TempDir(), "zone-token")
	if err := os.WriteFile(tf, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	z := startZone(t, w, Options{TokenFile: tf})
	data := randomBytes(11, 1000)
	gen := w.put(t, "tex/y.tx", data)
	for _, bad := range [][]string{nil, {"X-Jitfs-Zone-Token", "wrong"}, {"X-Jitfs-Zone-Token", strings.ToLower(token)},
		{"X-Jitfs-Zone-Token", token + "x"}, {"X-Jitfs-Zone-Token", "zoneToken-0123456789xabc"}} {
		if status, _, _ := get(t, z.URL(), "tex/y.tx", gen, 0, 10, bad...); status != http.StatusForbidden {
			t.Errorf("token %q: status %d, want 403", bad, status)
		}
	}
	if reqs, _ := w.origin(); len(reqs) != 0 {
		t.Fatalf("refused reads reached the origin: %+v", reqs)
	}
	status, body, _ := get(t, z.URL(), "tex/y.tx", gen, 0, 10, "X-Jitfs-Zone-Token", token,
		"Authorization", "Bearer node-secret")
	if status != http.StatusPartialContent || !bytes.Equal(body, data[:10]) {
		t.Fatalf("right token: status %d, body %q, want 206 and the origin's bytes", status, body)
	}
	// Without --origin-token-file the origin is read anonymously: neither
	// the zone token nor the node's own credentials go to it.
	for _, r := range mustOrigin(w) {
		if r.ZoneToken != "" || r.Authorization != "" {
			t.Fatalf("the node's headers reached the origin: %+v", r)
		}
	}
}

func mustOrigin(w *world) []originReq {
	reqs, _ := w.origin()
	return reqs
}

// TestAccessMustBeChosen: with none of --allow, --token-file and --open,
// start.sh refuses to start (the zone never serves a private bucket to
// whoever reaches it by default), and --open with an allow-list is refused
// as a contradiction.
func TestAccessMustBeChosen(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatalf("%v (scripts/test.sh installs nginx-light)", err)
	}
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{}, "say who may read"},
		{Options{Open: true, Allow: []string{"10.0.0.0/8"}}, "cannot be combined"},
		{Options{Allow: []string{"10.0.0.0/8; allow all"}}, "--allow"},
		{Options{TokenFile: "/nonexistent/token"}, "--token-file"},
		{Options{Open: true, Slice: 100000}, "--slice"},
		{Options{Open: true, Origin: "http://h/storage/v1"}, "--origin"},
	} {
		o := c.o
		o.CacheDir = t.TempDir()
		o.MaxSize = 1 << 30
		if o.Origin == "" {
			o.Origin = w.proxy.URL
		}
		p, err := Start(ctx, o)
		if err == nil {
			p.Close()
			t.Errorf("%+v: started, want a refusal naming %q", c.o, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %q, want it to name %q", c.o, err, c.want)
		}
	}
}

// TestOriginToken: the zone sends the origin its own token, never a node's
// Authorization, and picks up a new token when the file changes (as a
// sidecar refreshing a GCE metadata-server token rewrites it).
func TestOriginToken(t *testing.T) {
	w := newWorld(t)
	tf := filepath.Join(t.TempDir(), "origin-token")
	if err := os.WriteFile(tf, []byte("ya29.first-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reloading := &logWatch{want: "origin token changed", found: make(chan struct{})}
	z := startZone(t, w, Options{OriginTokenFile: tf, Log: reloading})
	data := randomBytes(12, 4096)
	gen := w.put(t, "tex/z.tx", data)
	status, body, _ := get(t, z.URL(), "tex/z.tx", gen, 0, 100, "Authorization", "Bearer node-secret")
	if status != http.StatusPartialContent || !bytes.Equal(body, data[:100]) {
		t.Fatalf("status %d, want 206 and the origin's bytes", status)
	}
	reqs := mustOrigin(w)
	if len(reqs) != 1 || reqs[0].Authorization != "Bearer ya29.first-token" {
		t.Fatalf("origin requests %+v, want one with the zone's token", reqs)
	}

	// Rename over the file, as a sidecar should; once start.sh says it is
	// reloading, read new objects until one reaches the origin with the
	// new token (old workers may still answer for a moment).
	tmp := tf + ".new"
	if err := os.WriteFile(tmp, []byte("ya29.second-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, tf); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reloading.found:
	case <-time.After(hangGuard):
		t.Fatal("start.sh never noticed the new origin token")
	}
	for i := 0; ; i++ {
		name := fmt.Sprintf("tex/poll%d.tx", i)
		g := w.put(t, name, data)
		status, _, _ := get(t, z.URL(), name, g, 0, 100, "Authorization", "Bearer node-secret")
		if status != http.StatusPartialContent {
			t.Fatalf("%s: status %d during the reload", name, status)
		}
		r := requestsFor(mustOrigin(w), name)
		if len(r) != 1 {
			t.Fatalf("%s: %d origin requests", name, len(r))
		}
		if r[0].Authorization == "Bearer ya29.second-token" {
			break
		}
		if r[0].Authorization != "Bearer ya29.first-token" {
			t.Fatalf("%s reached the origin with Authorization %q", name, r[0].Authorization)
		}
		if i > 1000 {
			t.Fatal("1000 reads after the reload still carried the old origin token")
		}
	}
}

// TestStopRestart: Stop (SIGTERM) ends nginx cleanly, master and workers,
// and a restart on the same cache dir serves the cached bytes without the
// origin.
func TestStopRestart(t *testing.T) {
	w := newWorld(t)
	z := startZone(t, w, Options{})
	data := randomBytes(15, 2*mib)
	gen := w.put(t, "tex/s.tx", data)
	wantRange(t, z.URL(), "tex/s.tx", gen, data, 0, 2*mib)
	// Waits on the last slice's fill, if it is still going (TestKillRestart).
	wantRange(t, z.URL(), "tex/s.tx", gen, data, 2*mib-1, 2*mib)
	before := len(mustOrigin(w))
	z.mu.Lock()
	pgid := z.cmd.Process.Pid
	z.mu.Unlock()
	if err := z.Stop(); err != nil {
		t.Fatal(err)
	}
	if alive, err := groupAlive(pgid); alive || err != nil {
		t.Fatalf("after Stop, nginx's process group %d still has live processes (%v)", pgid, err)
	}
	if _, err := client.Get(z.URL() + "/healthz"); err == nil {
		t.Fatal("the zone still answers after Stop")
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := z.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	wantRange(t, z.URL(), "tex/s.tx", gen, data, 5, 2*mib-5)
	if after := mustOrigin(w); len(after) != before {
		t.Fatalf("cached bytes after a stop and restart reached the origin: %+v", after[before:])
	}
}

// TestKillRestart: a zone cache killed (SIGKILL to master and workers) and
// restarted on the same cache dir serves what it had cached without an
// origin request, including after being killed while a slice was in
// flight.
func TestKillRestart(t *testing.T) {
	w := newWorld(t)
	z := startZone(t, w, Options{})
	data := randomBytes(13, 6*mib)
	gen := w.put(t, "plates/p.exr", data)
	wantRange(t, z.URL(), "plates/p.exr", gen, data, 10, 2*mib+10)
	// The read's last slice may still be filling after its last byte was
	// sent; a read of that slice's end waits on the fill (the cache lock)
	// and returns once the slice is in the cache, so the kill below cannot
	// catch it half written.
	wantRange(t, z.URL(), "plates/p.exr", gen, data, 3*mib-1, 3*mib)
	before := len(mustOrigin(w))

	// Kill halfway: the origin holds slice 4 while nginx waits for it.
	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	w.mu.Lock()
	w.hold = func(r originReq) <-chan struct{} {
		if r.Range == fmt.Sprintf("bytes=%d-%d", 4*mib, 5*mib-1) {
			return release
		}
		return nil
	}
	w.mu.Unlock()
	halfway := make(chan error, 1)
	go func() {
		req, err := http.NewRequest(http.MethodGet, objectURL(z.URL(), "plates/p.exr", gen), nil)
		if err != nil {
			halfway <- err
			return
		}
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", 4*mib, 5*mib-1))
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		halfway <- nil
	}()
	w.waitSeen(t, func(r originReq) bool { return r.Range == fmt.Sprintf("bytes=%d-%d", 4*mib, 5*mib-1) })

	z.mu.Lock()
	pgid := z.cmd.Process.Pid
	z.mu.Unlock()
	if err := z.Kill(); err != nil {
		t.Fatal(err)
	}
	releaseOnce.Do(func() { close(release) })
	if alive, err := groupAlive(pgid); alive || err != nil {
		t.Fatalf("after Kill, nginx's process group %d still has live processes (%v)", pgid, err)
	}
	if err := <-halfway; err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := z.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	wantRange(t, z.URL(), "plates/p.exr", gen, data, 10, 2*mib+10)
	wantRange(t, z.URL(), "plates/p.exr", gen, data, mib+5, mib+6)
	if after := mustOrigin(w); len(after) != before+1 {
		t.Fatalf("cached ranges after a restart reached the origin: %+v", after[before+1:])
	}
	// The slice that was in flight when nginx died is fetched again, whole
	// and right.
	wantRange(t, z.URL(), "plates/p.exr", gen, data, 4*mib, 5*mib)
	wantRange(t, z.URL(), "plates/p.exr", gen, data, 4*mib+7, 4*mib+9)
	if after := mustOrigin(w); len(after) != before+2 {
		t.Fatalf("origin requests after the restart: %+v, want one for the slice killed in flight", after[before+1:])
	}
}
