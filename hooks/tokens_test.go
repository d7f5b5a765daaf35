package hooks

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestTranslateTokens(t *testing.T) {
	for in, want := range map[string]string{
		"/m/plate.####.exr":      "/m/plate.%04d.exr",
		"/m/plate.#.exr":         "/m/plate.%01d.exr",
		"/m/plate.#########.exr": "/m/plate.%09d.exr",
		"/m/plate.@@@@.exr":      "/m/plate.%04d.exr",
		"/m/plate.@.exr":         "/m/plate.%01d.exr",
		"/m/plate.$F4.exr":       "/m/plate.%04d.exr",
		"/m/plate.$F.exr":        "/m/plate.%d.exr",
		"/m/plate.$F2":           "/m/plate.%02d",
		"/m/plate$F":             "/m/plate%d",
		"/m/plate.%04d.exr":      "/m/plate.%04d.exr",
		"/m/%V/p_%v.##.exr":      "/m/%V/p_%v.%02d.exr",
		"/m/100%%/a.###.exr":     "/m/100%%/a.%03d.exr",
		"/m/tex.<UDIM>.tx":       "/m/tex.<UDIM>.tx",
		"/m/tex.<UVTILE>.tx":     "/m/tex.<UVTILE>.tx",
		"/m/$HOME/a.exr":         "/m/$HOME/a.exr", // not $F: literal
		"/m/a.##.@@@.exr":        "/m/a.%02d.%03d.exr",
		"/m/plain.exr":           "/m/plain.exr",
		"/m/plate.$F1.exr":       "/m/plate.%01d.exr",
		"/m/plate.$F9.exr":       "/m/plate.%09d.exr",
		"/m/plate.${F4}.exr":     "/m/plate.%04d.exr",
		"/m/plate.${F4}_v2.exr":  "/m/plate.%04d_v2.exr",
		"/m/plate${F}0.exr":      "/m/plate%d0.exr",
		"/m/${HOME}/a.exr":       "/m/${HOME}/a.exr", // not ${F...}: literal
		"/m/p.$F4.$F.exr":        "/m/p.%04d.%d.exr",
	} {
		got, err := TranslateTokens(in)
		if err != nil || got != want {
			t.Errorf("TranslateTokens(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"/m/p.##########.exr", "/m/p.@@@@@@@@@@", "/m/p.$FF.exr", "/m/p.$FSTART", "/m/p.$F0.exr", "/m/p.$F_x",
		// $F10 is not $F1 then "0", nor $F4x $F4 then "x": Houdini reads
		// the longest name.
		"/m/p.$F10.exr", "/m/p.$F4x.exr", "/m/p.$F4_v2.exr",
		"/m/p.${F10}.exr", "/m/p.${FF}.exr", "/m/p.${F4.exr"} {
		if got, err := TranslateTokens(in); err == nil {
			t.Errorf("TranslateTokens(%q) = %q, want an error", in, got)
		}
	}
}

// A translated pattern expands as its DCC would name the files.
func TestTranslatedPatternsExpand(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		frames  []int
		want    []string
	}{
		{"/m/p.####.exr", []int{7, 1001, 12345}, []string{"/m/p.0007.exr", "/m/p.1001.exr", "/m/p.12345.exr"}},
		{"/m/p.$F.exr", []int{7, 1001}, []string{"/m/p.7.exr", "/m/p.1001.exr"}},
		{"/m/p.$F3.exr", []int{7}, []string{"/m/p.007.exr"}},
		{"/m/p.@@.exr", []int{7, 100}, []string{"/m/p.07.exr", "/m/p.100.exr"}},
		{"/m/p.#.exr", []int{7, 100}, []string{"/m/p.7.exr", "/m/p.100.exr"}},
	} {
		pp, err := TranslateTokens(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ExpandPattern(pp, tc.frames, nil)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q over %v = %q, %v; want %q", tc.pattern, tc.frames, got, err, tc.want)
		}
	}
}

func TestFormatAndMatchTiles(t *testing.T) {
	for tile, want := range map[int]string{1001: "u1_v1", 1002: "u2_v1", 1010: "u10_v1", 1011: "u1_v2", 1012: "u2_v2", 1999: "u9_v100"} {
		if got := FormatTile(UVTileToken, tile); got != want {
			t.Errorf("FormatTile(<UVTILE>, %d) = %q, want %q", tile, got, want)
		}
		if got, ok := matchTile(UVTileToken, "c."+want+".tx", "c.", ".tx"); !ok || got != tile {
			t.Errorf("matchTile(c.%s.tx) = %d, %v; want %d", want, got, ok, tile)
		}
	}
	if got := FormatTile(UDIMToken, 1012); got != "1012" {
		t.Errorf("FormatTile(<UDIM>, 1012) = %q", got)
	}
	for _, n := range []string{"c.u0_v1.tx", "c.u11_v1.tx", "c.u01_v1.tx", "c.u1_v0.tx", "c.u1_v101.tx", "c.u1v1.tx", "c.u1_v1.tx.bak", "c.1001.tx", "c.ua_v1.tx", "c.u1_v.tx"} {
		if tile, ok := matchTile(UVTileToken, n, "c.", ".tx"); ok {
			t.Errorf("matchTile(%q) = %d, want no tile", n, tile)
		}
	}
	got, err := MatchTiles("c.<UVTILE>.tx", []string{"c.u1_v1.tx", "c.1001.tx", "c.u2_v3.tx", "d.u1_v1.tx"})
	if want := []string{"c.u1_v1.tx", "c.u2_v3.tx"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("MatchTiles(<UVTILE>) = %q, %v; want %q", got, err, want)
	}
	got, err = MatchTiles("c.<UDIM>.tx", []string{"c.u1_v1.tx", "c.1001.tx", "c.0999.tx"})
	if want := []string{"c.1001.tx"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("MatchTiles(<UDIM>) = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{"c.<UDIM>.<UVTILE>.tx", "c.<UVTILE>.<UVTILE>.tx", "c.tx"} {
		if _, err := MatchTiles(bad, nil); err == nil {
			t.Errorf("MatchTiles(%q) accepted", bad)
		}
	}
}

// The daemon lists a <UVTILE> pattern's directory as it does a <UDIM>
// one, and fills given tiles in the u<U>_v<V> spelling.
func TestPrefetchUVTile(t *testing.T) {
	ts := startServer(t, nil, nil)
	tex := filepath.Join(ts.mount, "tex")
	if err := os.MkdirAll(tex, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"c.u1_v1.tx", "c.u2_v1.tx", "c.u1_v2.tx", "c.1001.tx", "c.u0_v1.tx"} {
		if err := os.WriteFile(filepath.Join(tex, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reply, err := ts.c.Prefetch(context.Background(), PrefetchRequest{Scope: ScopeJob, Items: []Item{
		{Seq: &Seq{Pattern: tex + "/c.<UVTILE>.tx"}},
		{Seq: &Seq{Pattern: tex + "/given.<UVTILE>.tx", Tiles: []int{1012}}},
		{Seq: &Seq{Pattern: tex + "/none.<UVTILE>.tx"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var rels []string
	for _, w := range ts.b.lastPrefetch(t).Wants {
		rels = append(rels, w.Rel)
	}
	want := []string{"tex/c.u1_v1.tx", "tex/c.u1_v2.tx", "tex/c.u2_v1.tx", "tex/given.u2_v2.tx"}
	if !reflect.DeepEqual(rels, want) {
		t.Errorf("wants %q\nwant %q", rels, want)
	}
	if wantMissing := []string{tex + "/none.<UVTILE>.tx"}; !reflect.DeepEqual(reply.Missing, wantMissing) {
		t.Errorf("missing %q, want %q", reply.Missing, wantMissing)
	}
	for _, p := range []string{ts.mount + "/c.<UDIM>.<UVTILE>.tx", ts.mount + "/<UVTILE>/c.tx"} {
		_, err := ts.c.Prefetch(context.Background(), PrefetchRequest{Scope: ScopeJob, Items: []Item{{Seq: &Seq{Pattern: p}}}})
		if err == nil || !strings.Contains(err.Error(), "bad_pattern") {
			t.Errorf("pattern %q: %v, want bad_pattern", p, err)
		}
	}
}

func TestHasFrameToken(t *testing.T) {
	for p, want := range map[string]bool{
		"a.####.exr": true, "a.$F4.exr": true, "a.${F}.exr": true, "a.%04d.exr": true, "a.$FF.exr": true,
		"my file.tex": false, "a.<UDIM>.tx": false, "$HOME/a": false, "100% done.exr": false, "a.%V.exr": false,
	} {
		if got := HasFrameToken(p); got != want {
			t.Errorf("HasFrameToken(%q) = %v, want %v", p, got, want)
		}
	}
}
