package bench

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// fillerShot lists one generated shot's files, at sizes a show's files
// have (a few MiB, a simulation larger). No renderer reads them: they are
// what a pre-sync copies besides the frame's files.
func fillerShot(shot string) []fillerSpec {
	var files []fillerSpec
	for f := 1001; f <= 1008; f++ {
		files = append(files, fillerSpec{fmt.Sprintf("plates/%s/plate.%d.exr", shot, f), 2 << 20})
	}
	for f := 1001; f <= 1008; f++ {
		files = append(files, fillerSpec{fmt.Sprintf("cache/%s/sim.%d.bin", shot, f), 512 << 10})
	}
	return append(files,
		fillerSpec{"cache/" + shot + "/fluid.vdb", 12 << 20},
		fillerSpec{"assets/textures/" + shot + "/set_diffuse.tex", 4 << 20},
		fillerSpec{"assets/textures/" + shot + "/set_normal.tex", 4 << 20},
	)
}

type fillerSpec struct {
	path string
	size int64
}

// fillerTime is every generated file's modification time: fixed, so two
// generations are the same tree.
var fillerTime = time.Unix(1_700_000_000, 0)

// Filler returns generated files standing in for the rest of a show, size
// bytes in all: shots named from firstShot in steps of ten (sh030, sh040, …
// for 30), each with plates, simulation caches and textures; the last file
// is cut short to make the total exact. `jitfs demo` serves it beside its
// six-MiB sample, so that a pre-sync copies a show in proportion to the
// frame a renderer reads, as on a farm whose show is hundreds of GB.
//
// Nothing is held: a file's bytes are Content(name, size), made when the
// file is opened or read, so they are the same on every call and do not
// compress. ReadFile returns them without a second copy.
func Filler(size int64, firstShot int) fs.FS {
	f := &filler{files: map[string]int64{}, dirs: map[string][]fs.DirEntry{".": nil}}
	for shot := firstShot; size > 0; shot += 10 {
		for _, t := range fillerShot(fmt.Sprintf("sh%03d", shot)) {
			if size <= 0 {
				break
			}
			n := min(t.size, size)
			size -= n
			f.add(t.path, n)
		}
	}
	for _, ents := range f.dirs {
		slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	}
	return f
}

// filler is the fs.FS Filler returns. It is read-only once built, so safe
// for concurrent use.
type filler struct {
	files map[string]int64
	dirs  map[string][]fs.DirEntry
}

func (f *filler) add(name string, size int64) {
	f.files[name] = size
	child := fs.DirEntry(fillerInfo{name: path.Base(name), size: size})
	for dir := path.Dir(name); ; dir = path.Dir(dir) {
		_, seen := f.dirs[dir]
		f.dirs[dir] = append(f.dirs[dir], child)
		if seen {
			return
		}
		child = fillerInfo{name: path.Base(dir), dir: true}
	}
}

func (f *filler) stat(op, name string) (fillerInfo, error) {
	if !fs.ValidPath(name) {
		return fillerInfo{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if size, ok := f.files[name]; ok {
		return fillerInfo{name: path.Base(name), size: size}, nil
	}
	if _, ok := f.dirs[name]; ok {
		return fillerInfo{name: path.Base(name), dir: true}, nil
	}
	return fillerInfo{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
}

func (f *filler) Open(name string) (fs.File, error) {
	info, err := f.stat("open", name)
	if err != nil {
		return nil, err
	}
	if info.dir {
		return &fillerDir{info: info, ents: f.dirs[name]}, nil
	}
	return &fillerFile{info: info, Reader: bytes.NewReader(Content(name, info.size))}, nil
}

func (f *filler) Stat(name string) (fs.FileInfo, error) { return f.stat("stat", name) }

func (f *filler) ReadFile(name string) ([]byte, error) {
	info, err := f.stat("read", name)
	if err != nil {
		return nil, err
	}
	if info.dir {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrInvalid}
	}
	return Content(name, info.size), nil
}

func (f *filler) ReadDir(name string) ([]fs.DirEntry, error) {
	info, err := f.stat("readdir", name)
	if err != nil {
		return nil, err
	}
	if !info.dir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrInvalid}
	}
	return slices.Clone(f.dirs[name]), nil
}

// fillerInfo is both a generated file's fs.FileInfo and its fs.DirEntry.
type fillerInfo struct {
	name string
	size int64
	dir  bool
}

func (i fillerInfo) Name() string               { return i.name }
func (i fillerInfo) Size() int64                { return i.size }
func (i fillerInfo) ModTime() time.Time         { return fillerTime }
func (i fillerInfo) IsDir() bool                { return i.dir }
func (i fillerInfo) Sys() any                   { return nil }
func (i fillerInfo) Type() fs.FileMode          { return i.Mode().Type() }
func (i fillerInfo) Info() (fs.FileInfo, error) { return i, nil }

func (i fillerInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}

type fillerFile struct {
	info fillerInfo
	*bytes.Reader
}

func (f *fillerFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *fillerFile) Close() error               { return nil }

type fillerDir struct {
	info fillerInfo
	ents []fs.DirEntry
}

func (d *fillerDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *fillerDir) Close() error               { return nil }

func (d *fillerDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: fs.ErrInvalid}
}

// ReadDir follows fs.ReadDirFile: n > 0 returns at most n entries and
// io.EOF at the end, n <= 0 the rest at once.
func (d *fillerDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if n <= 0 {
		ents := slices.Clone(d.ents)
		d.ents = nil
		return ents, nil
	}
	if len(d.ents) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(d.ents))
	ents := d.ents[:n:n]
	d.ents = d.ents[n:]
	return ents, nil
}
