package daemon

import (
	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/nomadmeta"
	"github.com/jitfs/jitfs/namespace"
)

// The node daemon's control API: HTTP and JSON on the node socket
// (DefaultNodeSocket), spoken by `jitfs run`, `jitfs status` and
// `jitfs prefetch --release`. Its schema is NodeSchema; docs/node.md
// describes it.
//
//	POST   /v1/attach                 AttachRequest; the reply streams: one AttachReply line, then nothing
//	                                  until the task detaches. The task lives as long as that connection:
//	                                  a `jitfs run` killed outright is detached when its connection drops,
//	                                  and a daemon that dies ends the stream, which is how the task learns it.
//	POST   /v1/tasks/{id}/flush       FlushTaskRequest -> FlushTaskReply
//	DELETE /v1/tasks/{id}             detach: unmount the task's directories (outputs keep uploading)
//	POST   /v1/jobs/{id}/release      the job's prefetch pins end; with no task attached, its snapshot too
//	GET    /v1/status                 NodeStatus
//	GET    /v1/health                 200 when a node daemon answers
//	GET    /v1/tasks/{id}             200 while the task is attached, 404 after
//
// A caller other than root may attach a task only at directories it owns
// (SO_PEERCRED): the socket's group is trusted with the node's credentials
// for GCS, not with mounting over the node's own files.
const NodeSchema = "jitfs.node/v1"

// DefaultNodeSocket is where `jitfs daemon` listens and `jitfs run` looks.
const DefaultNodeSocket = "/run/jitfs/daemon.sock"

// EnvNodeSocket names the variable through which `jitfs run` finds the
// node daemon when it is not at DefaultNodeSocket.
const EnvNodeSocket = "JITFS_DAEMON"

// Source is one bucket prefix served at a task's directory.
type Source struct {
	Bucket string `json:"bucket"`
	Prefix string `json:"prefix"` // "" or ending in "/"
	Dir    string `json:"dir"`    // absolute
}

// AttachRequest asks the node daemon to serve one task's directories.
type AttachRequest struct {
	Schema string `json:"schema"`
	// Job is the job the task belongs to; "" makes the task its own job.
	Job string `json:"job"`
	// Name says who the task is in logs and status (e.g. the scheduler's
	// allocation id); the daemon picks the task id.
	Name    string   `json:"name,omitempty"`
	PID     int      `json:"pid"`
	Mounts  []Source `json:"mounts"`
	Outputs []Source `json:"outputs"`
}

// AttachReply is the first line of the attach stream.
type AttachReply struct {
	Schema string `json:"schema"`
	// Error is set when the task could not be attached; nothing is
	// mounted then.
	Error string `json:"error,omitempty"`
	Task  string `json:"task,omitempty"`
	Job   string `json:"job,omitempty"`
	// Socket is the task's hook API (JITFS_SOCKET for its command).
	Socket string `json:"socket,omitempty"`
}

// FlushTaskRequest asks for a task's outputs to be durable.
type FlushTaskRequest struct {
	WaitMS      int64 `json:"wait_ms"`
	RetryFailed bool  `json:"retry_failed,omitempty"`
}

// FlushTaskReply is one result per output area of the task.
type FlushTaskReply struct {
	Schema  string        `json:"schema"`
	Outputs []OutputFlush `json:"outputs"`
}

// OutputFlush is one output area's flush result.
type OutputFlush struct {
	Dir        string `json:"dir"`
	StagingDir string `json:"staging_dir"`
	hooks.FlushResult
}

// NodeStatus is GET /v1/status.
type NodeStatus struct {
	Schema           string `json:"schema"`
	PID              int    `json:"pid"`
	Socket           string `json:"socket"`
	CacheDir         string `json:"cache_dir"`
	CacheUsedBytes   int64  `json:"cache_used_bytes"`
	CacheBudgetBytes int64  `json:"cache_budget_bytes"`
	StagingDir       string `json:"staging_dir"`
	// Metadata is the persisted store of listings, generations and jobs.
	Metadata MetadataStatus `json:"metadata"`
	// ListingsShared counts listings a job took from another job's
	// (started no earlier than it) instead of listing again.
	ListingsShared int64 `json:"listings_shared"`
	// Zones is the zone cache's state as each bucket's client sees it
	// (empty without --zone-cache).
	Zones []gcs.ZoneStatus `json:"zones,omitempty"`
	Jobs  []JobStatus      `json:"jobs"`
	// Sources is every source a job on the node has read, and what the
	// cache holds of it, most first; kept after the jobs end (affinity.go).
	// SourcesCounting: a restarted cache is still counting what it found.
	Sources         []NodeSourceStatus `json:"sources"`
	SourcesCounting bool               `json:"sources_counting,omitempty"`
	// NomadMeta is the Nomad node metadata publisher (--nomad-meta).
	NomadMeta *nomadmeta.Status `json:"nomad_meta,omitempty"`
	// Recovering are output areas left by earlier tasks whose staged files
	// are still being uploaded.
	Recovering []string `json:"recovering,omitempty"`
	// LearnShared is learning shared across nodes (absent without
	// --learn-prefix).
	LearnShared *LearnSharedStatus `json:"learn_shared,omitempty"`
}

// NodeSourceStatus is what the node's cache holds of one source.
type NodeSourceStatus struct {
	Source string `json:"source"` // gs://BUCKET/PREFIX
	// Key names the source in Nomad node metadata (`jitfs affinity-key`).
	Key string `json:"key"`
	// ResidentBytes are on the cache disk, of Files object generations
	// under the prefix, whichever job fetched them.
	ResidentBytes int64 `json:"resident_bytes"`
	Files         int64 `json:"files"`
}

// MetadataStatus describes the persisted metadata store.
type MetadataStatus struct {
	Path    string `json:"path"`
	Pending int    `json:"pending_writes"`
	Dropped int64  `json:"dropped_writes"`
	// Rebuilt says the store was found torn or corrupt at start and
	// started empty (its listings are listed again from GCS).
	Rebuilt       bool   `json:"rebuilt"`
	RebuiltReason string `json:"rebuilt_reason,omitempty"`
}

// JobStatus is one job on the node.
type JobStatus struct {
	ID      string  `json:"id"`
	Started float64 `json:"started"` // Unix seconds: its listings are no older
	// Detached is when its last task detached (0 while one is attached);
	// the job ends at EndsAt unless a task attaches first.
	Detached float64        `json:"detached,omitempty"`
	EndsAt   float64        `json:"ends_at,omitempty"`
	Tasks    []TaskStatus   `json:"tasks"`
	Sources  []SourceStatus `json:"sources"`
	// ResidentBytes is what the cache holds of the generations the job
	// pinned (every file of the directories it listed, read by it or by
	// another job), so two jobs on one scene both count its bytes;
	// PinnedBytes, what its prefetches hold against eviction.
	ResidentBytes int64 `json:"resident_bytes"`
	PinnedBytes   int64 `json:"pinned_bytes"`
}

// TaskStatus is one attached task.
type TaskStatus struct {
	ID       string   `json:"id"`
	Name     string   `json:"name,omitempty"`
	PID      int      `json:"pid"`
	Attached float64  `json:"attached"`
	Socket   string   `json:"socket,omitempty"`
	Mounts   []string `json:"mounts"`
	Outputs  []string `json:"outputs"`
}

// SourceStatus is a job's snapshot of one bucket prefix.
type SourceStatus struct {
	Source         string `json:"source"` // gs://BUCKET/PREFIX
	Listings       int64  `json:"listings"`
	StoredListings int64  `json:"stored_listings"`
	Files          int64  `json:"files"` // generations pinned
	FileBytes      int64  `json:"file_bytes"`
	ResidentBytes  int64  `json:"resident_bytes"`
	PinnedBytes    int64  `json:"pinned_bytes"`
	// ListAhead is what listing ahead (--speculate metadata) spent and
	// saved: namespace.Stats.Ahead*.
	ListAhead namespace.AheadStats `json:"list_ahead"`
	// Prefetch is the job's prefetch engine for this source.
	Prefetch hooks.Status `json:"prefetch"`
}
