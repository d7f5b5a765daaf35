//go:build ignore

// gen-scene writes the sample show in internal/scene/scene deterministically:
// run `go generate ./internal/scene` from the repository root. Payloads are
// seeded pseudo-random bytes of realistic sizes (textures, a linked library,
// per-frame simulation caches), so what a frame reads, and what a pre-sync
// of the whole show would copy, are both known.
package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

func main() {
	// go generate runs this in the package's directory; anywhere else the
	// RemoveAll below would delete some other "scene" directory.
	if _, err := os.Stat("scene.go"); err != nil {
		fmt.Fprintln(os.Stderr, "gen-scene: run it with `go generate ./internal/scene`")
		os.Exit(2)
	}
	root := "scene"
	os.RemoveAll(root)
	put := func(name string, size int) {
		r := rand.New(rand.NewPCG(uint64(len(name)), uint64(size)))
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		write(filepath.Join(root, name), b)
	}
	put("assets/textures/brick_diffuse.tex", 192<<10)
	put("assets/textures/brick_normal.tex", 192<<10)
	put("assets/textures/sky_2k.tex", 768<<10)
	for _, t := range []int{1001, 1002, 1003, 1004} {
		put(fmt.Sprintf("assets/textures/udim/ground.%d.tex", t), 64<<10)
	}
	put("assets/lib/props.lib", 3<<20)
	for _, n := range []string{"rock_a", "rock_b", "tree_bark", "water_foam"} {
		put("assets/textures/unused/"+n+".tex", 256<<10)
	}
	for _, shot := range []string{"sh010", "sh020"} {
		for f := 1001; f <= 1008; f++ {
			put(fmt.Sprintf("cache/%s/sim.%04d.bin", shot, f), 48<<10)
		}
	}
	for _, shot := range []string{"sh010", "sh020"} {
		write(filepath.Join(root, "shots", shot, shot+".scene"), []byte(fmt.Sprintf(`# jitfs sample scene, shot %[1]s
# A renderer resolves each texture along the search path, probing names
# that do not exist before it finds the right one.
frames 1001-1008
search assets/textures/override assets/textures
library assets/lib/props.lib 0 262144
texture brick_diffuse.tex
texture brick_normal.tex
texture sky_2k.tex
udim udim/ground.<UDIM>.tex 1001-1004
sequence cache/%[1]s/sim.%%04d.bin
`, shot)))
	}
}

func write(p string, b []byte) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		panic(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		panic(err)
	}
}
