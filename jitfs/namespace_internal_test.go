package jitfs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jitfs/jitfs/internal/testworld"
)

// TestObjectBesideSameNamedPrefix checks the documented rule for an
// object "a" beside objects "a/…": the directory wins, whether the name is
// first looked up on its own or found by listing its parent, and the
// object "a" is not reachable through the mount.
func TestObjectBesideSameNamedPrefix(t *testing.T) {
	for _, first := range []string{"lookup", "readdir"} {
		t.Run(first, func(t *testing.T) {
			w := testworld.New(t, testworld.Options{})
			w.PutRandom("shot/a", 1000)
			want := w.PutRandom("shot/a/b", 2000)
			m := mountPassthrough(t, w)
			if first == "readdir" {
				ents, err := os.ReadDir(filepath.Join(m.dir, "shot"))
				if err != nil {
					t.Fatal(err)
				}
				if len(ents) != 1 || ents[0].Name() != "a" || !ents[0].IsDir() {
					t.Fatalf("listing of shot/: %v, want one directory a", ents)
				}
			}
			fi, err := os.Stat(filepath.Join(m.dir, "shot/a"))
			if err != nil {
				t.Fatal(err)
			}
			if !fi.IsDir() {
				t.Fatalf("shot/a is %v, want the directory (the prefix wins over the object)", fi.Mode())
			}
			got, err := os.ReadFile(filepath.Join(m.dir, "shot/a/b"))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Fatal("shot/a/b: wrong bytes")
			}
		})
	}
}
