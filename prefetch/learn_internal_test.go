package prefetch

import "testing"

func TestAdvance(t *testing.T) {
	prev := map[string]string{
		shape("v2/seq/plate.1004.exr"): "v2/seq/plate.1004.exr",
	}
	for _, c := range []struct {
		p        string
		prev     map[string]string
		from, by int
		want     string
	}{
		{"v2/seq/plate.1005.exr", prev, 1, 2, "v2/seq/plate.1007.exr"}, // rose by one: tracks, v2 does not
		{"cache/f0999.bin", nil, 999, 1, "cache/f1000.bin"},
		{"cache/f9.bin", nil, 9, 1, "cache/f10.bin"},
		{"tex/wall_v2.png", nil, 7, 1, ""}, // no run equals the frame
		{"v2/seq/plate.1005.exr", nil, 1005, 2, "v2/seq/plate.1007.exr"},
	} {
		if got := advance(c.p, c.prev, c.from, c.by); got != c.want {
			t.Errorf("advance(%q, from %d by %d) = %q, want %q", c.p, c.from, c.by, got, c.want)
		}
	}
}
