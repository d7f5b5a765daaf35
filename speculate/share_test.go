package speculate

import (
	"encoding/json"
	"errors"
	"testing"
)

// Groups exported by one Speculator and imported by another (another
// node's, with a memory of its own) predict there; groups it knows are
// its own, and malformed ones are refused whole.
func TestCoOpenShare(t *testing.T) {
	fa := &fetches{}
	a, clk := startCoOpen(t, chain, fa, Options{})
	render(a, clk, "scene.pov", "inc/a.inc", "lib/b.inc")
	pause(a, clk)
	raw, n, err := a.ExportCoOpen(16)
	if err != nil || n != 1 {
		t.Fatalf("exported %d groups (%v), want 1", n, err)
	}

	fb := &fetches{}
	b, clkb := startCoOpen(t, chain, fb, Options{})
	if added, err := b.ImportCoOpen(raw); err != nil || added != 1 {
		t.Fatalf("imported %d groups (%v), want 1", added, err)
	}
	if added, err := b.ImportCoOpen(raw); err != nil || added != 0 {
		t.Fatalf("imported a known group again: %d (%v)", added, err)
	}
	render(b, clkb, "scene.pov")
	settle(t, b)
	if got := fb.list(); len(got) != 2 || got[0] != "inc/a.inc" || got[1] != "lib/b.inc" {
		t.Fatalf("the importing node fetched %v, want the leader's two followers", got)
	}

	var gs []map[string]any
	if err := json.Unmarshal(raw, &gs); err != nil {
		t.Fatal(err)
	}
	gs[0]["n"] = 1000 // more sessions than learning ever keeps
	bad, _ := json.Marshal(gs)
	for _, r := range []json.RawMessage{bad, json.RawMessage(`{"k":1}`), json.RawMessage(`[null]`)} {
		if added, err := b.ImportCoOpen(r); !errors.Is(err, ErrBadCoOpen) || added != 0 {
			t.Errorf("%s: imported %d, err %v", r, added, err)
		}
	}
	a.Close()
	b.Close()
}
