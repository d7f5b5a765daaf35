package bench

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"io/fs"
	"testing"
	"testing/fstest"
)

// fillerSum walks a filler and returns its total size, its file count and
// one hash over every path and byte, in walk order.
func fillerSum(t *testing.T, fsys fs.FS) (int64, int, [32]byte) {
	t.Helper()
	h := sha256.New()
	var total int64
	var files int
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() != int64(len(b)) {
			t.Errorf("%s: listed at %d bytes, read %d", p, info.Size(), len(b))
		}
		h.Write([]byte(p))
		h.Write(b)
		total += int64(len(b))
		files++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total, files, [32]byte(h.Sum(nil))
}

// TestFillerDeterministic: two generations of the same size are the same
// tree byte for byte, the total is exactly the size asked for, and the
// shots start where asked.
func TestFillerDeterministic(t *testing.T) {
	const size = 5<<20 + 12345 // a cut last file
	total1, files1, sum1 := fillerSum(t, Filler(size, 30))
	total2, files2, sum2 := fillerSum(t, Filler(size, 30))
	if total1 != size || total2 != size {
		t.Errorf("totals %d and %d, want %d", total1, total2, size)
	}
	if files1 != files2 || sum1 != sum2 {
		t.Errorf("two generations differ: %d files %x, %d files %x", files1, sum1, files2, sum2)
	}
	// Listing a show makes none of its bytes: a larger one is cheap here.
	big := Filler(100<<20, 30)
	for _, p := range []string{"plates/sh030/plate.1001.exr", "cache/sh030/fluid.vdb", "plates/sh040/plate.1001.exr", "plates/sh050/plate.1008.exr"} {
		if _, err := fs.Stat(big, p); err != nil {
			t.Errorf("no %s: %v", p, err)
		}
	}
	if _, err := fs.Stat(big, "plates/sh010"); err == nil {
		t.Errorf("a shot before the first one asked for")
	}
	if total, files, _ := fillerSum(t, Filler(0, 30)); total != 0 || files != 0 {
		t.Errorf("Filler(0) holds %d files, %d bytes", files, total)
	}
}

// TestFillerFS checks the generated tree against the fs.FS contracts
// (Open, ReadDir, ReadFile, Stat, Seek) on a small show.
func TestFillerFS(t *testing.T) {
	if err := fstest.TestFS(Filler(2<<20+100, 30), "plates/sh030/plate.1001.exr", "plates/sh030/plate.1002.exr"); err != nil {
		t.Fatal(err)
	}
}

// TestFillerIncompressible: a generated file does not shrink under a
// compressor, so a transport or a cache that compresses cannot flatter
// whoever moves it.
func TestFillerIncompressible(t *testing.T) {
	b, err := fs.ReadFile(Filler(3<<20, 30), "plates/sh030/plate.1001.exr")
	if err != nil {
		t.Fatal(err)
	}
	b = b[1<<20:][:256<<10] // a slice of the middle is enough, and quick
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	w.Write(b)
	w.Close()
	if z.Len() < len(b)*99/100 {
		t.Errorf("%d bytes compress to %d", len(b), z.Len())
	}
}
