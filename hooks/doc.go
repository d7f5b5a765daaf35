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
//
// Server serves the API; Client calls it (the CLI uses it). The Backend
// contract is in api.go, the wire types in wire.go, and ParseFrames and
// ExpandPattern expand the compact sequence form.
//
// # Wire format
//
// POST /v1/prefetch, POST /v1/release, GET /v1/status and GET /v1/health,
// each body a JSON object carrying "schema": "jitfs.prefetch/v1". Items
// are absolute paths or sequence patterns: printf frame tokens (%d, %0Nd)
// over frame lists such as "1001-1100x2", %V and %v over views, and
// <UDIM> or <UVTILE> (u1_v1 for tile 1001), filled from given tiles or
// from a listing of the directory through the mount. The wire has one
// spelling of a frame token; TranslateTokens turns what people type
// (####, @@@@, $F, $F4) into it on the client's side. Within v1 fields are only added: the server ignores
// request fields it does not know, and clients must ignore unknown reply
// fields.
//
// # Errors
//
// Every refusal is an ErrorReply with a reason code ("bad_json",
// "path_escapes", "too_many_items", ...) counted in the status reply; the
// Client returns it as an *APIError. Validation, including pattern
// expansion and UDIM listing, finishes before the Backend is called, so a
// refused request never reaches the engine. A wait_ms above the limit is
// clamped rather than refused. A panic in a handler is recovered, logged
// once and answered with a 500, so no input can take the daemon down.
//
// # Concurrency
//
// The server handles requests concurrently and holds no lock while
// calling the Backend, which must be safe for concurrent use. A prefetch
// with a wait holds its request's goroutine until the Backend returns;
// Close cancels every request's context, so waits end at once. Client is
// safe for concurrent use.
//
// # Security
//
// The socket is created with mode 0660 (and optionally a group) before it
// becomes reachable at its path, a stale socket is replaced only if
// nothing answers on it, and a live one is never taken over.
package hooks
