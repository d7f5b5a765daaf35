package jitfsdata

import (
	"embed"
	"io/fs"
)

//go:embed testdata/scene
var scene embed.FS

// Scene returns the sample show, rooted at its top directory.
func Scene() fs.FS {
	sub, err := fs.Sub(scene, "testdata/scene")
	if err != nil {
		panic(err) // the embedded path is fixed at build time
	}
	return sub
}
