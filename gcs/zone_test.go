package gcs_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/internal/testworld"
)

// standIn is an HTTP stand-in for the zone cache in front of the world's
// emulator: it forwards each request, or fails it in one of the ways a
// zone cache can (an error, a hang, a trickle, a refusal, a wrong object).
// The real zone cache (nginx, deploy/zone-cache) is tested in
// internal/zonecache and end to end in cmd/jitfs; this one lets the
// client's side of the contract be driven into each failure.
type standIn struct {
	srv   *httptest.Server
	mode  atomic.Value // "ok", "hang", "500", "403", "gen", "slow"
	reqs  atomic.Int64
	mu    sync.Mutex
	uris  []string
	token string // last X-Jitfs-Zone-Token seen
	hang  chan struct{}
}

func newStandIn(t *testing.T, w *testworld.World) *standIn {
	t.Helper()
	origin, _ := url.Parse("http://" + w.Emu.Addr())
	rp := httputil.NewSingleHostReverseProxy(origin)
	s := &standIn{hang: make(chan struct{})}
	s.mode.Store("ok")
	s.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if s.mode.Load() == "500" {
				rw.WriteHeader(http.StatusInternalServerError)
				return
			}
			rw.WriteHeader(http.StatusOK)
			return
		}
		s.reqs.Add(1)
		s.mu.Lock()
		s.uris = append(s.uris, r.RequestURI)
		s.token = r.Header.Get("X-Jitfs-Zone-Token")
		s.mu.Unlock()
		switch s.mode.Load() {
		case "hang":
			select {
			case <-s.hang:
			case <-r.Context().Done():
			}
			return
		case "500":
			http.Error(rw, "origin unreachable", http.StatusBadGateway)
			return
		case "403":
			http.Error(rw, "forbidden", http.StatusForbidden)
			return
		case "gen":
			rw.Header().Set("X-Goog-Generation", "1")
		case "slow":
			// Bytes keep coming, a little at a time: never a stall, far
			// below the least rate a read accepts.
			rw.Header().Set("Content-Range", "bytes "+strings.TrimPrefix(r.Header.Get("Range"), "bytes=")+"/999999999")
			rw.WriteHeader(http.StatusPartialContent)
			for {
				if _, err := rw.Write([]byte{0}); err != nil {
					return
				}
				rw.(http.Flusher).Flush()
				select {
				case <-time.After(time.Millisecond):
				case <-r.Context().Done():
					return
				case <-s.hang:
					return
				}
			}
		}
		rp.ServeHTTP(rw, r)
	}))
	t.Cleanup(func() { close(s.hang); s.srv.Close() })
	return s
}

func zoneClient(t *testing.T, w *testworld.World, s *standIn, token string) *gcs.Client {
	t.Helper()
	return w.NewClient(t, gcs.Options{Bucket: w.Bucket, InitialBackoff: time.Millisecond, AttemptTimeout: 5 * time.Second,
		Zone: gcs.ZoneOptions{URL: s.srv.URL, Token: token, Timeout: 300 * time.Millisecond, Retry: 10 * time.Millisecond}})
}

func TestZoneReadsGoThroughTheZoneCache(t *testing.T) {
	w := setup(t)
	s := newStandIn(t, w)
	c := zoneClient(t, w, s, "sesame")
	name := "shots/sh 010/tex/wall.1001.exr"
	want := testworld.RandBytes(name, 300<<10)
	w.Put(name, want)
	a := w.Stat(t, name)
	p := make([]byte, 100<<10)
	if err := c.ReadRange(context.Background(), name, a.Generation, 12345, p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, want[12345:12345+len(p)]) {
		t.Fatal("bytes through the zone cache differ from the object's")
	}
	z := c.Zone()
	if z == nil || z.Reads != 1 || z.Bytes != int64(len(p)) || !z.Up {
		t.Fatalf("zone status %+v", z)
	}
	if c.Stats.BytesRead.Load() != 0 {
		t.Fatalf("%d bytes read from GCS directly", c.Stats.BytesRead.Load())
	}
	s.mu.Lock()
	uri, tok := s.uris[0], s.token
	s.mu.Unlock()
	// One URL per generation, '/' escaped, so every node shares the entry.
	wantURI := "/storage/v1/b/b/o/shots%2Fsh%20010%2Ftex%2Fwall.1001.exr?alt=media&generation=" + strconv.FormatInt(a.Generation, 10)
	if uri != wantURI || tok != "sesame" {
		t.Fatalf("zone request %q token %q, want %q token sesame", uri, tok, wantURI)
	}
}

// TestZoneFallsBackAndReturns: a zone cache that fails, hangs or answers
// with the wrong generation costs no read; GCS answers, and once the zone
// cache's health probe passes again, reads go back through it.
func TestZoneFallsBackAndReturns(t *testing.T) {
	w := setup(t)
	s := newStandIn(t, w)
	c := zoneClient(t, w, s, "")
	want := w.PutRandom("a.bin", 64<<10)
	a := w.Stat(t, "a.bin")
	read := func() {
		t.Helper()
		p := make([]byte, len(want))
		if err := c.ReadRange(context.Background(), "a.bin", a.Generation, 0, p); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, want) {
			t.Fatal("wrong bytes")
		}
	}
	for i, mode := range []string{"500", "hang", "gen", "403", "slow"} {
		s.mode.Store(mode)
		direct := c.Stats.BytesRead.Load()
		read()
		if got := c.Stats.BytesRead.Load() - direct; got != int64(len(want)) {
			t.Fatalf("%s: %d bytes from GCS directly, want %d", mode, got, len(want))
		}
		z := c.Zone()
		if z.Up || z.Outages != int64(i+1) || z.LastError == "" {
			t.Fatalf("%s: zone status %+v", mode, z)
		}
		// Down: the next read does not ask it at all.
		before := s.reqs.Load()
		read()
		if s.reqs.Load() != before && !c.Zone().Up {
			t.Fatalf("%s: a read asked a zone cache that is down", mode)
		}
		s.mode.Store("ok")
		testworld.WaitFor(t, "the zone cache back in use", func() bool { return c.Zone().Up })
		read()
		if c.Zone().Reads == 0 {
			t.Fatalf("%s: no read through the zone cache after it came back", mode)
		}
	}
}

// TestZoneMismatchBypassesTheObject: once told an object failed its check,
// the client reads it from GCS only; other objects still use the zone.
func TestZoneMismatchBypassesTheObject(t *testing.T) {
	w := setup(t)
	s := newStandIn(t, w)
	c := zoneClient(t, w, s, "")
	want := w.PutRandom("bad.bin", 8<<10)
	w.PutRandom("good.bin", 8<<10)
	bad, good := w.Stat(t, "bad.bin"), w.Stat(t, "good.bin")
	c.Mismatch("bad.bin", bad.Generation)
	c.Mismatch("bad.bin", bad.Generation) // counted once
	before := s.reqs.Load()
	p := make([]byte, len(want))
	if err := c.ReadRange(context.Background(), "bad.bin", bad.Generation, 0, p); err != nil || !bytes.Equal(p, want) {
		t.Fatalf("read: %v", err)
	}
	if s.reqs.Load() != before {
		t.Fatal("a distrusted object was read through the zone cache")
	}
	if err := c.ReadRange(context.Background(), "good.bin", good.Generation, 0, p); err != nil {
		t.Fatal(err)
	}
	z := c.Zone()
	if s.reqs.Load() != before+1 || z.Mismatches != 1 || z.Bypassed != 1 || !z.Up {
		t.Fatalf("zone status %+v, %d requests", z, s.reqs.Load()-before)
	}
}

func TestZoneOptionsRejected(t *testing.T) {
	for _, u := range []string{"ftp://x", "localhost:80", "http://", "http://h/?a=b"} {
		_, err := gcs.New(context.Background(), gcs.Options{Bucket: "b", Endpoint: "127.0.0.1:1", Zone: gcs.ZoneOptions{URL: u}})
		if err == nil || !strings.Contains(err.Error(), "zone cache URL") {
			t.Errorf("%q: %v", u, err)
		}
	}
}
