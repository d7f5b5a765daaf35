package learnshare

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jitfs/jitfs/prefetch"
)

func sample() Record {
	return Record{Job: "J", Source: "gs://b/show/", Node: "n1-abc", Written: 1_800_000_000,
		Frames: []prefetch.FrameFile{{Parts: []string{"seq/plate.", ".exr"}, Runs: []prefetch.FrameRun{{Off: 1000, Width: 4}}}, {Parts: []string{"tex/wall.tx"}}},
		CoOpen: json.RawMessage(`[{"k":"scene.pov","n":2,"f":[{"p":"inc/a.inc","h":2}]}]`)}
}

func TestRoundTrip(t *testing.T) {
	b, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	r, err := Decode(b, "J", "gs://b/show/")
	if err != nil {
		t.Fatal(err)
	}
	if r.Node != "n1-abc" || len(r.Frames) != 2 || !bytes.Equal(r.CoOpen, sample().CoOpen) {
		t.Fatalf("decoded %+v", r)
	}
}

// Every way an object can be wrong is an error of its own kind, never a
// record.
func TestDecodeRefuses(t *testing.T) {
	good, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	badFrames := sample()
	badFrames.Frames = []prefetch.FrameFile{{Parts: []string{"../../etc/passwd"}}}
	bf, err := Encode(badFrames)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		b    []byte
		job  string
		want error
	}{
		{"garbage", []byte("this is not a learnshare object at all"), "J", ErrMalformed},
		{"empty", nil, "J", ErrMalformed},
		{"truncated", good[:len(good)-5], "J", ErrMalformed},
		{"flipped", mod(func(b []byte) []byte { b[len(b)-2] ^= 1; return b }), "J", ErrMalformed},
		{"version 2", mod(func(b []byte) []byte { binary.BigEndian.PutUint32(b[8:], 2); return b }), "J", ErrVersion},
		{"oversized", append(bytes.Clone(good), make([]byte, MaxObjectBytes)...), "J", ErrMalformed},
		{"another job", good, "K", ErrMalformed},
		{"bad frames", bf, "J", ErrMalformed},
	} {
		if _, err := Decode(c.b, c.job, "gs://b/show/"); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// An object that would pass the bound is refused at Encode.
func TestEncodeBound(t *testing.T) {
	r := sample()
	var big []prefetch.FrameFile
	for i := range prefetch.MaxFrameFiles {
		big = append(big, prefetch.FrameFile{Parts: []string{strings.Repeat(string(rune('a'+i%26)), 3000) + string(rune('0'+i%10))}})
	}
	r.Frames = big
	r.CoOpen = json.RawMessage(`"` + randomish(2<<20) + `"`)
	if _, err := Encode(r); err == nil {
		t.Fatal("an object above the bound was encoded")
	}
}

// randomish is incompressible text.
func randomish(n int) string {
	var b strings.Builder
	x := uint64(88172645463325252)
	for b.Len() < n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789"[x%36])
	}
	return b.String()
}
