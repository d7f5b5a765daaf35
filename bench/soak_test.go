package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jitfs/jitfs/internal/wan"
	"github.com/jitfs/jitfs/trace"
)

func loadTrace(t *testing.T, name string) *Workload {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "testdata", "traces", name+".jsonl.zst"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, evs, err := trace.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWorkload(name, h, evs)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestSoakShort is the CI form of the reliability soak (`jitfs bench
// --soak` is the long one): real traces replayed by four replayers at
// once, cold, warm and after a restart, over a link with round trips, on
// fresh caches. Every operation that succeeded when the trace was recorded
// must succeed: the passthrough backing-id race failed such opens with EIO.
func TestSoakShort(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the soak mounts FUSE filesystems with passthrough: run as root (scripts/test.sh does)")
	}
	wls := []*Workload{loadTrace(t, "blender_sh010_eevee_f03"), loadTrace(t, "povray_balcony"), loadTrace(t, "povray_mtmand")}
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	network := func(up string) (string, func() error, error) {
		// Latency only: no bandwidth cap, so no private namespace needed.
		s, err := wan.Start(up, wan.Link{RTT: 10 * time.Millisecond}, nil)
		if err != nil {
			return "", nil, err
		}
		return s.Addr(), s.Close, nil
	}
	rep, err := Soak(context.Background(), SoakConfig{Workloads: wls, Rounds: rounds, Replayers: 4, Network: network, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	want := int64(rounds * len(SoakPhases) * 4 * len(wls))
	if rep.Replays != want {
		t.Errorf("replays = %d, want %d", rep.Replays, want)
	}
	if rep.Ops == 0 {
		t.Error("the soak replayed no operations")
	}
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d replays, %d operations, 0 failed, in %.1f s", rep.Replays, rep.Ops, rep.Wall)
}
