package scene

import (
	"embed"
	"io/fs"
)

//go:generate go run gen-scene.go

//go:embed scene
var files embed.FS

// FS returns the sample show, rooted at its top directory.
func FS() fs.FS {
	sub, err := fs.Sub(files, "scene")
	if err != nil {
		panic(err) // the embedded path is fixed at build time
	}
	return sub
}
