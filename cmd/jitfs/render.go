package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// frameReport is what a sample-scene frame read.
type frameReport struct {
	Files, Probes, Stats int
	BytesRead            int64
}

// renderFrame reads what a renderer would for one frame of a sample-scene
// shot under root: the scene file, texture look-ups along a search path
// (with the absent names real renderers probe), a slice of a linked
// library, UDIM tiles, this frame's simulation cache, and repeated stats.
func renderFrame(root, scene string, frame int) (frameReport, error) {
	var rep frameReport
	read := func(rel string, off, n int64) error {
		p := filepath.Join(root, rel)
		for i := 0; i < 3; i++ { // renderers stat the same file again and again
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("render: %w", err)
			}
			rep.Stats++
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("render: %w", err)
		}
		defer f.Close()
		var r io.Reader = f
		if n > 0 {
			// A slice is read as a renderer reads a library's blocks. The
			// kernel's read-ahead past the slice would land asynchronously,
			// in whichever step of the demo it finishes in (or, cut short
			// by the restart, be fetched again after it): the demo counts
			// what each frame reads, so the slice is read without it.
			_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
			r = io.NewSectionReader(f, off, n)
		}
		k, err := io.Copy(io.Discard, r)
		if err != nil {
			return fmt.Errorf("render: read %s: %w", rel, err)
		}
		rep.Files++
		rep.BytesRead += k
		return nil
	}
	sf, err := os.Open(filepath.Join(root, scene))
	if err != nil {
		return rep, fmt.Errorf("render: %w", err)
	}
	defer sf.Close()
	if err := read(scene, 0, 0); err != nil {
		return rep, err
	}
	var search []string
	sc := bufio.NewScanner(sf)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "search":
			search = f[1:]
		case "library":
			off, _ := strconv.ParseInt(f[2], 10, 64)
			n, _ := strconv.ParseInt(f[3], 10, 64)
			err = read(f[1], off, n)
		case "texture":
			err = resolve(root, search, f[1], &rep, func(rel string) error { return read(rel, 0, 0) })
		case "udim":
			lo, hi, _ := strings.Cut(f[2], "-")
			a, _ := strconv.Atoi(lo)
			b, _ := strconv.Atoi(hi)
			for t := a; t <= b && err == nil; t++ {
				name := strings.ReplaceAll(f[1], "<UDIM>", strconv.Itoa(t))
				err = resolve(root, search, name, &rep, func(rel string) error { return read(rel, 0, 0) })
			}
		case "sequence":
			err = read(fmt.Sprintf(f[1], frame), 0, 0)
		}
		if err != nil {
			return rep, err
		}
	}
	return rep, sc.Err()
}

// resolve finds name along the search path, counting the misses.
func resolve(root string, search []string, name string, rep *frameReport, found func(string) error) error {
	for _, dir := range search {
		rel := filepath.Join(dir, name)
		_, err := os.Stat(filepath.Join(root, rel))
		if errors.Is(err, fs.ErrNotExist) {
			rep.Probes++
			continue
		}
		if err != nil {
			return fmt.Errorf("render: %w", err)
		}
		return found(rel)
	}
	return fmt.Errorf("render: %s not found on search path %v", name, search)
}
