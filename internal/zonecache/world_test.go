package zonecache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitfs/jitfs/internal/emulator"
)

const bucket = "show"

// hangGuard bounds every wait of these tests: a hang fails the test instead
// of the run, and no wait relies on it to pass.
const hangGuard = 2 * time.Minute

// originReq is one request that reached the origin through the zone cache.
type originReq struct {
	URI, Range, Authorization, ZoneToken string
}

// world is the origin side of a zone cache: the GCS emulator behind a
// counting reverse proxy, which is what the zone cache is pointed at. The
// proxy sees exactly what the zone sends the origin: requests, their
// headers, and the bytes returned.
type world struct {
	emu   *emulator.Server
	proxy *httptest.Server

	mu    sync.Mutex
	reqs  []originReq
	bytes int64
	// hold, when set, is asked for each origin request; the response waits
	// until the returned channel is closed (nil: no wait).
	hold func(originReq) <-chan struct{}
	// seen is signalled (non-blocking) on every origin request.
	seen chan struct{}
	// ttfb and rate model a remote origin for BenchmarkSlice: each
	// response starts after ttfb and streams at rate bytes/s (0: loopback
	// speed). Set before the first request.
	ttfb time.Duration
	rate float64
}

func newWorld(t testing.TB) *world {
	t.Helper()
	emu, err := emulator.Start(emulator.Options{Bucket: bucket, Versioning: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Stop)
	target, err := url.Parse("http://" + emu.Addr())
	if err != nil {
		t.Fatal(err)
	}
	w := &world{emu: emu, seen: make(chan struct{}, 1)}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}
	w.proxy = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		req := originReq{URI: r.RequestURI, Range: r.Header.Get("Range"),
			Authorization: r.Header.Get("Authorization"), ZoneToken: r.Header.Get("X-Jitfs-Zone-Token")}
		w.mu.Lock()
		w.reqs = append(w.reqs, req)
		hold := w.hold
		w.mu.Unlock()
		select {
		case w.seen <- struct{}{}:
		default:
		}
		if hold != nil {
			if ch := hold(req); ch != nil {
				<-ch
			}
		}
		if w.ttfb > 0 {
			time.Sleep(w.ttfb) // the modelled origin's latency, not a wait for a condition
		}
		cw := &countingWriter{ResponseWriter: rw, rate: w.rate, start: time.Now()}
		rp.ServeHTTP(cw, r)
		w.mu.Lock()
		w.bytes += cw.n
		w.mu.Unlock()
	}))
	t.Cleanup(w.proxy.Close)
	return w
}

type countingWriter struct {
	http.ResponseWriter
	n     int64
	rate  float64 // bytes/s, 0: unpaced
	start time.Time
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	if c.rate > 0 {
		// Pace the stream: the modelled link's bandwidth.
		due := c.start.Add(time.Duration(float64(c.n) / c.rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
	}
	return n, err
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// origin is what reached the origin so far.
func (w *world) origin() ([]originReq, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]originReq(nil), w.reqs...), w.bytes
}

// put stores data as a new generation of name and returns the generation.
func (w *world) put(t testing.TB, name string, data []byte) int64 {
	t.Helper()
	w.emu.Put(bucket, name, data)
	obj, err := w.emu.GetObject(bucket, name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(obj.Content, data) {
		t.Fatalf("emulator holds %d bytes of %s, want the %d put", len(obj.Content), name, len(data))
	}
	return obj.Generation
}

// randomBytes is n bytes that differ at every offset in practice, so a
// range served from the wrong place fails the comparison.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// startZone starts a zone cache in front of w with o's access settings
// (Open when o says nothing) and stops it when the test ends.
func startZone(t testing.TB, w *world, o Options) *Proc {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatalf("%v (scripts/test.sh installs nginx-light)", err)
	}
	if o.Origin == "" {
		o.Origin = w.proxy.URL
	}
	if o.CacheDir == "" {
		o.CacheDir = t.TempDir()
	}
	if o.MaxSize == 0 {
		o.MaxSize = 1 << 30
	}
	if len(o.Allow) == 0 && o.TokenFile == "" {
		o.Open = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	p, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// objectURL is the node's request URL for name at gen (the request contract
// of docs/zone.md: the name path-escaped, so '/' travels as %2F).
func objectURL(base, name string, gen int64) string {
	return fmt.Sprintf("%s/storage/v1/b/%s/o/%s?alt=media&generation=%d", base, bucket, url.PathEscape(name), gen)
}

var client = &http.Client{Timeout: hangGuard}

// get fetches [off, end) of name@gen from the zone (end < 0: no Range
// header) with extra headers, returning the status, body and response
// headers.
func get(t *testing.T, base, name string, gen, off, end int64, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	return do(t, client, http.MethodGet, objectURL(base, name, gen), off, end, hdr...)
}

func do(t *testing.T, c *http.Client, method, u string, off, end int64, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if end >= 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end-1))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return resp.StatusCode, body, resp.Header
}

// wantRange checks a ranged read of [off, end) against data.
func wantRange(t *testing.T, base, name string, gen int64, data []byte, off, end int64) {
	t.Helper()
	status, body, h := get(t, base, name, gen, off, end)
	if status != http.StatusPartialContent {
		t.Fatalf("%s@%d [%d,%d): status %d, want 206: %.200s", name, gen, off, end, status, body)
	}
	if want := fmt.Sprintf("bytes %d-%d/%d", off, end-1, len(data)); h.Get("Content-Range") != want {
		t.Errorf("%s@%d [%d,%d): Content-Range %q, want %q", name, gen, off, end, h.Get("Content-Range"), want)
	}
	if !bytes.Equal(body, data[off:end]) {
		t.Fatalf("%s@%d [%d,%d): %d bytes differ from the origin's %d", name, gen, off, end, len(body), end-off)
	}
}

// requestsFor is the origin requests whose URI names name.
func requestsFor(reqs []originReq, name string) []originReq {
	var out []originReq
	esc := "/o/" + url.PathEscape(name) + "?"
	for _, r := range reqs {
		if strings.Contains(r.URI, esc) {
			out = append(out, r)
		}
	}
	return out
}

// waitSeen waits until the origin has seen a request satisfying ok.
func (w *world) waitSeen(t *testing.T, ok func(originReq) bool) {
	t.Helper()
	deadline := time.NewTimer(hangGuard)
	defer deadline.Stop()
	for {
		reqs, _ := w.origin()
		for _, r := range reqs {
			if ok(r) {
				return
			}
		}
		select {
		case <-w.seen:
		case <-deadline.C:
			t.Fatal("the origin never saw the request waited for")
		}
	}
}

// dialFrom is an HTTP client whose connections come from the local address
// ip (any 127.0.0.0/8 address works on Linux's loopback).
func dialFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Timeout: hangGuard, Transport: &http.Transport{DialContext: d.DialContext}}
}
