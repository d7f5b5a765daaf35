package main

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/faultproxy"
	"github.com/jitfs/jitfs/internal/testworld"
)

// zoneStatus is the mount's zone cache state from `jitfs status --json`.
func zoneStatus(t *testing.T, d *jitfsd) hooks.StatusReply {
	t.Helper()
	out, code := runJitfs(t, "status", "--socket", hooks.DefaultSocket(d.mnt), "--json")
	if code != 0 {
		t.Fatalf("status: %s", out)
	}
	var st hooks.StatusReply
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if st.Zone == nil {
		t.Fatalf("status has no zone cache:\n%s", out)
	}
	return st
}

// TestZoneCorruptIsDetectedAndRefetched: a zone cache whose every answer
// has a flipped byte (a proxy that flips bytes in front of the origin) is
// caught by the node's CRC32C check: a small object is refetched from GCS
// before any byte is served; a large one, with --verify strict, likewise;
// with streaming verification, the mismatch is found once the object is
// whole, and the next open reads it from GCS. Either way the object's
// reads bypass the zone cache from then on.
func TestZoneCorruptIsDetectedAndRefetched(t *testing.T) {
	w := newWorld(t, false)
	small := w.PutRandom("tex/wall.tx", 1<<20)
	big := w.PutRandom("cache/smoke.vdb", 6<<20)
	fire := w.PutRandom("cache/fire.vdb", 6<<20)
	zone, err := faultproxy.Start(w.Emu.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zone.Close() })
	zone.CorruptMedia.Store(1 << 40) // every answer

	strict := w.mountForTest("", "", "--zone-cache", "http://"+zone.Addr(), "--verify", "strict")
	mustEqualBytes(t, "small object through a corrupt zone cache", mustRead(t, strict.path("tex/wall.tx")), small)
	mustEqualBytes(t, "large object through a corrupt zone cache, strict", mustRead(t, strict.path("cache/smoke.vdb")), big)
	if zone.MediaReqs.Load() == 0 {
		t.Fatal("nothing was read through the zone cache; the test checks nothing")
	}
	st := zoneStatus(t, strict)
	if st.Zone.Mismatches != 2 || !st.Zone.Up {
		t.Fatalf("zone status %+v: want 2 objects failed their check, zone still up", *st.Zone)
	}
	// The objects are complete and verified: a second read costs nothing.
	before := zone.MediaReqs.Load() + w.Proxy.MediaReqs.Load()
	mustEqualBytes(t, "reread", mustRead(t, strict.path("tex/wall.tx")), small)
	if after := zone.MediaReqs.Load() + w.Proxy.MediaReqs.Load(); after != before {
		t.Fatalf("%d fetches for a reread of a verified object", after-before)
	}
	strict.Stop()

	streaming := w.mountForTest("", "", "--zone-cache", "http://"+zone.Addr())
	cat := exec.Command("cat", streaming.path("cache/fire.vdb"))
	cat.Stdout = io.Discard
	cat.Run() // it may fail with EIO once the mismatch is found
	waitFor(t, "the mismatch to be found", time.Minute, func() bool {
		return strings.Contains(streaming.Log.String(), "reading it from GCS directly from now on")
	})
	fromGCS := w.Proxy.MediaBytes.Load()
	mustEqualBytes(t, "large object after a mismatch through the zone cache", mustRead(t, streaming.path("cache/fire.vdb")), fire)
	if got := w.Proxy.MediaBytes.Load() - fromGCS; got < int64(len(fire)) {
		t.Fatalf("only %d bytes refetched from GCS after the mismatch, want the object's %d", got, len(fire))
	}
}

// TestZoneDownIsBypassed: a zone cache that refuses connections costs a
// read nothing; the mount logs it once and reads from GCS.
func TestZoneDownIsBypassed(t *testing.T) {
	w := newWorld(t, false)
	want := w.PutRandom("tex/a.tx", 3<<20)
	w.PutRandom("tex/b.tx", 3<<20)
	d := w.mountForTest("", "", "--zone-cache", "http://"+testworld.ClosedAddr(t))
	mustEqualBytes(t, "read with the zone cache down", mustRead(t, d.path("tex/a.tx")), want)
	mustRead(t, d.path("tex/b.tx"))
	st := zoneStatus(t, d)
	if st.Zone.Up || st.Zone.Outages != 1 || st.Zone.Reads != 0 {
		t.Fatalf("zone status %+v", *st.Zone)
	}
	if n := strings.Count(d.Log.String(), "zone cache failed"); n != 1 {
		t.Fatalf("the outage was logged %d times, want once:\n%s", n, d.Log.String())
	}
}
