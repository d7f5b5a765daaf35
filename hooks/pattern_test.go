package hooks

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseFrames(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
	}{
		{"12", []int{12}},
		{"1001-1005", []int{1001, 1002, 1003, 1004, 1005}},
		{"1001-1010x3", []int{1001, 1004, 1007, 1010}},
		{"1001-1009x3", []int{1001, 1004, 1007}},
		{"5-5", []int{5}},
		{" 1, 3-4 ,2 ", []int{1, 3, 4, 2}},
		{"1-3,2-5", []int{1, 2, 3, 4, 5}}, // duplicates dropped, first order kept
		{"-3--1", []int{-3, -2, -1}},
		{"-2-2x2", []int{-2, 0, 2}},
		{"0", []int{0}},
		{"999999999", []int{999999999}},
	} {
		got, err := ParseFrames(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseFrames(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseFramesErrors(t *testing.T) {
	for _, in := range []string{
		"", " ", ",", "1,", ",1", "1,,2", "a", "1-", "-", "1-a", "1x2", "1-5x", "1-5x0", "1-5x-1",
		"5-1", "1-5x2x3", "1--5", "1.5", "+1", "1 - 5", "1000000000", "1-1000000000", "0x10",
	} {
		if got, err := ParseFrames(in); err == nil {
			t.Errorf("ParseFrames(%q) = %v, want an error", in, got)
		}
	}
}

// An absurd range must be refused from its size, without being built.
func TestParseFramesBounded(t *testing.T) {
	for _, in := range []string{"1-999999999", "-999999999-999999999", "1-100000,1", "1-60000,70001-130000"} {
		if _, err := ParseFrames(in); !errors.Is(err, ErrTooManyItems) {
			t.Errorf("ParseFrames(%q): %v, want ErrTooManyItems", in, err)
		}
	}
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := ParseFrames("-999999999-999999999x1"); err == nil {
			t.Fatal("no error")
		}
	})
	if allocs > 10 {
		t.Errorf("refusing an absurd range made %.0f allocations", allocs)
	}
	if got, err := ParseFrames("1-100000"); err != nil || len(got) != DefaultMaxItems {
		t.Errorf("ParseFrames(1-100000): %d frames, %v", len(got), err)
	}
}

func TestExpandPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		frames  []int
		views   []string
		want    []string
	}{
		{"/m/plate.%04d.exr", []int{1, 1001}, nil, []string{"/m/plate.0001.exr", "/m/plate.1001.exr"}},
		{"/m/p.%d.exr", []int{7, 12345}, nil, []string{"/m/p.7.exr", "/m/p.12345.exr"}},
		{"/m/p.%09d", []int{-1}, nil, []string{"/m/p.-00000001"}},
		{"/m/p.%04d", []int{-1, -12345}, nil, []string{"/m/p.-001", "/m/p.-12345"}},
		{"/m/%V/p_%v.%03d.exr", []int{1, 2}, []string{"left", "right"},
			[]string{"/m/left/p_l.001.exr", "/m/right/p_r.001.exr", "/m/left/p_l.002.exr", "/m/right/p_r.002.exr"}},
		{"/m/100%%/%V.exr", nil, []string{"é-view"}, []string{"/m/100%/é-view.exr"}},
		{"/m/%v.exr", nil, []string{"éa"}, []string{"/m/é.exr"}},
		{"/m/a.%04d.%04d.exr", []int{3}, nil, []string{"/m/a.0003.0003.exr"}},
		{"/m/tex.<UDIM>.exr", nil, nil, []string{"/m/tex.<UDIM>.exr"}},
		{"/m/plain", nil, nil, []string{"/m/plain"}},
	} {
		got, err := ExpandPattern(tc.pattern, tc.frames, tc.views)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ExpandPattern(%q, %v, %v) = %q, %v; want %q", tc.pattern, tc.frames, tc.views, got, err, tc.want)
		}
	}
}

func TestExpandPatternErrors(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		frames  []int
		views   []string
		errHas  string
	}{
		{"/m/p.%4d", []int{1}, nil, "unknown token"},
		{"/m/p.%s", []int{1}, nil, "unknown token"},
		{"/m/p.%", nil, nil, "lone %"},
		{"/m/p.%0d", []int{1}, nil, "%0Nd"},
		{"/m/p.%010d", []int{1}, nil, "%0Nd"},
		{"/m/p.%00d", []int{1}, nil, "%0Nd"},
		{"/m/p.%04x", []int{1}, nil, "%0Nd"},
		{"/m/p.%04d", nil, nil, "no frames"},
		{"/m/p.exr", []int{1}, nil, "no frame token"},
		{"/m/%V.exr", nil, nil, "no views"},
		{"/m/p.exr", nil, []string{"left"}, "no %V"},
		{"/m/%V.exr", nil, []string{"a/b"}, "contains /"},
		{"/m/%V.exr", nil, []string{""}, "empty view"},
		{"/m/%V.exr", nil, []string{".."}, "view name"},
		{"/m/%V.exr", nil, []string{"a\x00"}, "NUL"},
		{"/m/%d", []int{1_000_000_000}, nil, "out of range"},
	} {
		got, err := ExpandPattern(tc.pattern, tc.frames, tc.views)
		if err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("ExpandPattern(%q, %v, %q) = %q, %v; want an error containing %q", tc.pattern, tc.frames, tc.views, got, err, tc.errHas)
		}
	}
	frames := make([]int, 50_001)
	if _, err := ExpandPattern("/m/%V.%d", frames, []string{"l", "r"}); !errors.Is(err, ErrTooManyItems) {
		t.Errorf("100,002 paths: %v, want ErrTooManyItems", err)
	}
}

func TestMatchUDIM(t *testing.T) {
	for _, tc := range []struct {
		name string
		tile int
		ok   bool
	}{
		{"c.1001.exr", 1001, true},
		{"c.1999.exr", 1999, true},
		{"c.1000.exr", 0, false},
		{"c.2000.exr", 0, false},
		{"c.0999.exr", 0, false},
		{"c.10a1.exr", 0, false},
		{"c.1001.exr.bak", 0, false},
		{"d.1001.exr", 0, false},
		{"c.10011.exr", 0, false},
	} {
		tile, ok := matchUDIM(tc.name, "c.", ".exr")
		if tile != tc.tile && tc.ok || ok != tc.ok {
			t.Errorf("matchUDIM(%q) = %d, %v; want %d, %v", tc.name, tile, ok, tc.tile, tc.ok)
		}
	}
	if _, _, _, err := tileParts("a.<UDIM>.<UDIM>.exr"); err == nil {
		t.Error("two <UDIM> tokens accepted")
	}
}
