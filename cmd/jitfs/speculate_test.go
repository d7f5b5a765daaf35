package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
)

// TestSpeculationSiblings: a reader walking an image sequence with no
// hooks gets the next frames fetched before it opens them (requests seen
// at the proxy before the opens), reads the right bytes, and the status
// counts every prediction used or wasted; --speculate none does nothing.
func TestSpeculationSiblings(t *testing.T) {
	w := newWorld(t, false)
	want := map[string][]byte{}
	frame := func(n int) string { return fmt.Sprintf("seq/plate.%04d.exr", n) }
	for n := 1001; n <= 1040; n++ {
		want[frame(n)] = w.PutRandom("show/"+frame(n), 50_000+n)
	}
	sock := filepath.Join(t.TempDir(), "hooks.sock")
	d := w.mountForTest("show", "", "--socket", sock)
	waitFor(t, "the hook socket", time.Minute, func() bool { _, err := os.Stat(sock); return err == nil })
	for _, n := range []int{1001, 1002} {
		mustEqualBytes(t, frame(n), mustRead(t, d.path(frame(n))), want[frame(n)])
	}
	// Frames 1003 and on are fetched while the reader is still on 1002.
	waitFor(t, "frames fetched ahead of the reader", 2*time.Minute, func() bool { return w.Proxy.MediaReqs.Load() >= 2+4 })
	for n := 1003; n <= 1040; n++ {
		mustEqualBytes(t, frame(n), mustRead(t, d.path(frame(n))), want[frame(n)])
	}
	// Each frame crossed the link once, whoever fetched it.
	if got := w.Proxy.MediaReqs.Load(); got != 40 {
		t.Fatalf("%d data requests for 40 frames", got)
	}
	var sp *hooks.SpeculationStatus
	waitFor(t, "the speculator idle", time.Minute, func() bool {
		sp = jitfsStatus(t, sock).Speculation
		return sp != nil && sp.Fetched == sp.Predicted
	})
	if sp.Used < 30 || sp.Used+sp.Wasted > sp.Predicted || sp.Predicted > 38 {
		t.Fatalf("speculation %+v: 38 frames could be predicted, at least 30 of them read ahead", *sp)
	}
	d.Stop()

	// Off: nothing is predicted however orderly the reader.
	w2 := newWorld(t, false)
	for n := 1001; n <= 1010; n++ {
		w2.PutRandom("show/"+frame(n), 1000)
	}
	sock2 := filepath.Join(t.TempDir(), "hooks.sock")
	d2 := w2.mountForTest("show", "", "--socket", sock2, "--speculate", "none")
	waitFor(t, "the hook socket", time.Minute, func() bool { _, err := os.Stat(sock2); return err == nil })
	for n := 1001; n <= 1010; n++ {
		mustRead(t, d2.path(frame(n)))
	}
	if got := w2.Proxy.MediaReqs.Load(); got != 10 {
		t.Fatalf("speculation off: %d data requests for 10 frames read", got)
	}
	if sp := jitfsStatus(t, sock2).Speculation; sp != nil {
		t.Fatalf("speculation off, yet status reports %+v", *sp)
	}
}
