package daemon

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/internal/nomadmeta"
	"github.com/jitfs/jitfs/telemetry"
)

// TestTopNSumsTheRest: the metrics keep the n largest series, ties in
// label order, and sum the rest into "other".
func TestTopNSumsTheRest(t *testing.T) {
	l := []telemetry.Labeled{lb("c", 5), lb("a", 9), lb("b", 5), lb("d", 1), lb("e", 2)}
	got := topN(l, 3)
	want := []telemetry.Labeled{lb("a", 9), lb("b", 5), lb("c", 5), lb("other", 3)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("topN = %v, want %v", got, want)
	}
	if got := topN([]telemetry.Labeled{lb("a", 1)}, 3); len(got) != 1 {
		t.Fatalf("topN of fewer than n added %v", got)
	}
}

// TestKeyListIsBoundedAndStable: the most bytes are chosen, listed in key
// order, so bytes moving between them change nothing published.
func TestKeyListIsBoundedAndStable(t *testing.T) {
	l := []telemetry.Labeled{lb("ccc", 30), lb("aaa", 10), lb("bbb", 20), lb("ddd", 5)}
	if got := keyList(l, 3); got != "aaa,bbb,ccc" {
		t.Fatalf("keyList = %q", got)
	}
	l = []telemetry.Labeled{lb("ccc", 10), lb("aaa", 30), lb("bbb", 20), lb("ddd", 5)}
	if got := keyList(l, 3); got != "aaa,bbb,ccc" {
		t.Fatalf("keyList after the bytes moved = %q", got)
	}
	if got := keyList(nil, 3); got != "" {
		t.Fatalf("keyList of nothing = %q", got)
	}
}

// testNode is a node with a cache and no socket: enough for the sources'
// record.
func testNode(t *testing.T, dir string) *Node {
	t.Helper()
	c, err := cache.New(cache.Options{Dir: dir, Budget: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n := &Node{cfg: NodeConfig{CacheDir: dir}, log: orDiscard(nil), Cache: c, jobs: map[string]*job{}}
	n.startAffinity()
	return n
}

// TestSourcesKeptAcrossRestartAndBounded: the sources read are kept in
// the cache directory for the next daemon, and past maxSources those the
// cache holds nothing of and no job reads are forgotten.
func TestSourcesKeptAcrossRestartAndBounded(t *testing.T) {
	dir := t.TempDir()
	n := testNode(t, dir)
	n.trackSource("b", "show/")
	n.trackSource("b", "")
	n.trackSource("b", "show/")
	n.Cache.Close()
	n2 := testNode(t, dir)
	st, _ := n2.sourceStatus()
	var got []string
	for _, s := range st {
		got = append(got, s.Source+" "+s.Key)
	}
	want := []string{"gs://b/ " + nomadmeta.Key("gs://b/"), "gs://b/show/ " + nomadmeta.Key("gs://b/show/")}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("sources after a restart: %v, want %v", got, want)
	}
	for i := range maxSources {
		n2.trackSource("b", fmt.Sprintf("s%d/", i))
	}
	n2.wg.Wait() // the prune the bound started
	n2.aff.mu.Lock()
	left := len(n2.aff.sources)
	n2.aff.mu.Unlock()
	if left >= maxSources {
		t.Fatalf("%d sources remembered past the bound of %d", left, maxSources)
	}
	if u, _ := n2.Cache.Usage(); len(u) != left {
		t.Fatalf("the cache tracks %d prefixes for %d sources remembered", len(u), left)
	}
	n2.Cache.Close()
	if n3 := testNode(t, dir); len(n3.aff.sources) != left {
		t.Fatalf("a restart remembers %d sources, want the %d kept", len(n3.aff.sources), left)
	}
}

func lb(label string, v int64) telemetry.Labeled { return telemetry.Labeled{Label: label, Value: v} }
