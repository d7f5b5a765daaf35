// Package hooks serves the node-local hook API, jitfs.prefetch/v1: HTTP
// and JSON on a Unix socket owned by the daemon, through which Nuke and
// Blender hooks, render agents and the jitfs CLI tell the daemon what a
// job and a frame will read before the renderer opens it.
//
// The server is the trust boundary. It bounds request sizes and item
// counts, resolves every path inside the mount (rejecting "..", NUL bytes
// and paths outside it), expands sequence patterns, and only then hands
// concrete mount-relative files to the Backend, the prefetch engine. A
// malformed request gets a 4xx with a reason and changes nothing.
// docs/hook-api.md is the protocol's specification.
package hooks
