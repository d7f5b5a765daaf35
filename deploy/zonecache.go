package deploy

import (
	"embed"
	"io/fs"
)

// The zone cache's files are embedded because `jitfs bench` and the tests
// start a zone cache from a Go binary that may run where the repository is
// not checked out (internal/zonecache writes them to a temp dir).
//
//go:embed zone-cache
var zoneCache embed.FS

// ZoneCache is deploy/zone-cache: start.sh, nginx.conf.template and the
// example systemd unit, at the root of the returned file system.
func ZoneCache() fs.FS {
	sub, err := fs.Sub(zoneCache, "zone-cache")
	if err != nil {
		// fs.Sub fails only on an invalid path, and "zone-cache" is valid.
		return zoneCache
	}
	return sub
}
