package hooks

import "fmt"

// The wire types: the JSON bodies of jitfs.prefetch/v1 as hooks, the CLI
// and the Client send and receive them. docs/hook-api.md is their
// specification. Within v1 fields are only ever added, so the server
// ignores request fields it does not know and clients must ignore reply
// fields they do not know.

// JobInfo is the job identity a request carries: the backend's Job plus
// what only the log and the hooks' authors need.
type JobInfo struct {
	Job
	DCCVersion string `json:"dcc_version,omitempty"`
	// FrameRange is the task's [first, last] frame (not the scene's);
	// informational.
	FrameRange []int `json:"frame_range,omitempty"`
}

// PrefetchRequest is the body of POST /v1/prefetch.
type PrefetchRequest struct {
	Schema    string  `json:"schema"`
	RequestID string  `json:"request_id,omitempty"` // echoed in the reply and the log
	SentAt    float64 `json:"sent_at,omitempty"`    // unix seconds, client clock
	Job       JobInfo `json:"job"`
	Scope     Scope   `json:"scope"`
	// Frame is the frame starting (scope frame) or that triggered the
	// request (lookahead); absent for job scopes.
	Frame *int `json:"frame,omitempty"`
	// Priority is 0..100; absent means the scope's band (Scope.Priority).
	Priority *int `json:"priority,omitempty"`
	// WaitMS > 0 holds the reply until every item is resident or the wait
	// runs out; the server clamps it to its MaxWait.
	WaitMS int64  `json:"wait_ms,omitempty"`
	Items  []Item `json:"items"`
}

// Item is one file, or a sequence of files: exactly one of Path and Seq.
type Item struct {
	// Path is absolute, exactly as the DCC will open it.
	Path string `json:"path,omitempty"`
	Seq  *Seq   `json:"seq,omitempty"`
	// Ranges limits the prefetch to these byte ranges of the file (of
	// every file, for a Seq); none means the whole file.
	Ranges []Range `json:"ranges,omitempty"`

	// Informational: logged and kept for debugging predictors.
	Kind      string `json:"kind,omitempty"`   // image, udim_tile, image_seq_frame, library, ...
	Source    string `json:"source,omitempty"` // the datablock or node.knob that named it
	Frame     *int   `json:"frame,omitempty"`
	FileFrame *int   `json:"file_frame,omitempty"`
	Tile      *int   `json:"tile,omitempty"`
	Required  *bool  `json:"required,omitempty"`
}

// Seq is a compact sequence: Pattern expanded over Frames, Views and
// UDIM tiles (see ExpandPattern and ParseFrames).
type Seq struct {
	// Pattern is an absolute path with printf tokens (%d, %0Nd, %V, %v,
	// %%) and at most one tile token, <UDIM> or <UVTILE>, in its file
	// name. Hand-written tokens (####, $F4, @@@@) are the client's to
	// translate (TranslateTokens): the protocol keeps one spelling.
	Pattern string `json:"pattern"`
	// Frames is a frame list such as "1001-1100x2,1200"; required exactly
	// when Pattern has a frame token.
	Frames string `json:"frames,omitempty"`
	// Views fill %V (the name) and %v (its first letter).
	Views []string `json:"views,omitempty"`
	// Tiles fill <UDIM> or <UVTILE>; without them the server lists the directory
	// through the mount and takes the tiles that exist.
	Tiles []int `json:"tiles,omitempty"`
}

// ItemError is a file that failed, with the backend's reason.
type ItemError struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// PrefetchReply is the body of a 200 reply to POST /v1/prefetch. Counts
// are of distinct files after expansion; every file is in exactly one of
// resident, queued, missing or failed, and paths outside the mount are
// listed in unmanaged and not counted as accepted.
type PrefetchReply struct {
	Schema    string `json:"schema"`
	RequestID string `json:"request_id,omitempty"`
	Accepted  int    `json:"accepted"` // files handed to the engine
	Resident  int    `json:"resident"`
	Queued    int    `json:"queued"`
	// Missing are files (and UDIM patterns without a tile) not in the
	// bucket: the hook's "missing files" report.
	Missing   []string    `json:"missing"`
	Unmanaged []string    `json:"unmanaged"` // outside this daemon's mount
	Failed    []ItemError `json:"failed"`
	// Pending lists the files still queued when a wait ran out; empty
	// unless TimedOut.
	Pending  []string `json:"pending"`
	WaitedMS int64    `json:"waited_ms"`
	TimedOut bool     `json:"timed_out"`
	// WaitClampedMS is the wait the server used when it cut a longer
	// wait_ms down to its limit; 0 otherwise.
	WaitClampedMS int64 `json:"wait_clamped_ms,omitempty"`
}

// ReleaseRequest is the body of POST /v1/release.
type ReleaseRequest struct {
	Schema    string  `json:"schema"`
	RequestID string  `json:"request_id,omitempty"`
	Job       JobInfo `json:"job"`   // ID is required
	Scope     Scope   `json:"scope"` // ScopeFrame or ScopeJob
	Frame     *int    `json:"frame,omitempty"`
	// Paths limits the release to these files; none means all of the
	// frame's or job's.
	Paths []string `json:"paths,omitempty"`
}

// ReleaseReply is the body of a 200 reply to POST /v1/release.
type ReleaseReply struct {
	Schema    string   `json:"schema"`
	RequestID string   `json:"request_id,omitempty"`
	OK        bool     `json:"ok"`
	Unmanaged []string `json:"unmanaged"` // paths outside the mount, ignored
}

// StatusReply is the body of GET /v1/status: the engine's Status, with
// its fields inline, plus the server's own counters.
type StatusReply struct {
	Schema     string `json:"schema"`
	Mountpoint string `json:"mountpoint"`
	Version    string `json:"version"`
	Status
	// Outputs is present when the daemon serves an output area.
	Outputs *OutputStatus `json:"outputs,omitempty"`
	// Requests counts requests by endpoint (prefetch, release, status,
	// health, flush, other).
	Requests map[string]int64 `json:"requests"`
	// Rejected counts 4xx replies by reason (see ErrorReply.Reason).
	Rejected map[string]int64 `json:"rejected"`
	// Errors counts 5xx replies: engine errors and recovered panics.
	Errors int64 `json:"errors"`
}

// HealthReply is the body of GET /v1/health.
type HealthReply struct {
	Schema     string `json:"schema"`
	OK         bool   `json:"ok"`
	Mountpoint string `json:"mountpoint"`
	Version    string `json:"version"`
}

// ErrorReply is the body of every 4xx and 5xx reply.
type ErrorReply struct {
	Schema string `json:"schema"`
	// Error is for people: what was wrong, naming the item.
	Error string `json:"error"`
	// Reason is for programs and the status counters: a short code such
	// as "bad_json", "path_escapes" or "too_many_items".
	Reason string `json:"reason"`
}

// APIError is a 4xx or 5xx reply as the Client returns it.
type APIError struct {
	StatusCode int
	Reason     string
	Message    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("hooks: daemon replied %d %s: %s", e.StatusCode, e.Reason, e.Message)
}

// FlushRequest is the body of POST /v1/flush, served by daemons of output
// areas.
type FlushRequest struct {
	Schema    string `json:"schema"`
	RequestID string `json:"request_id,omitempty"`
	// WaitMS > 0 holds the reply until every output is durable or the wait
	// runs out; the server clamps it to its MaxWait (clients that wait
	// longer repeat the request).
	WaitMS int64 `json:"wait_ms,omitempty"`
	// RetryFailed re-queues uploads that failed permanently (after, say,
	// fixing the bucket's permissions) before waiting.
	RetryFailed bool `json:"retry_failed,omitempty"`
}

// FlushReply is the body of a 200 reply to POST /v1/flush.
type FlushReply struct {
	Schema    string `json:"schema"`
	RequestID string `json:"request_id,omitempty"`
	// Durable is true when every output written so far is in GCS, verified.
	Durable bool `json:"durable"`
	// NotDurable lists up to 1000 outputs that are not, with their state;
	// NotDurableTotal counts them all.
	NotDurable      []OutputFile `json:"not_durable"`
	NotDurableTotal int          `json:"not_durable_total"`
	WaitedMS        int64        `json:"waited_ms"`
	TimedOut        bool         `json:"timed_out"`
	WaitClampedMS   int64        `json:"wait_clamped_ms,omitempty"`
}
