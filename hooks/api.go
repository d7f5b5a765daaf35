package hooks

import (
	"context"
	"errors"
	"time"

	"github.com/jitfs/jitfs/gcs"
)

// Schema is the version every request and reply carries.
const Schema = "jitfs.prefetch/v1"

// Scope says why items are wanted; it sets their default priority band.
type Scope string

// The scopes, in the engine's priority order (a read blocked right now,
// which is the FUSE layer's own, outranks them all).
const (
	ScopeFrame     Scope = "frame"     // the frame starting now; usually with wait_ms
	ScopeMiss      Scope = "miss"      // the DCC is opening it now and nobody predicted it
	ScopeJob       Scope = "job"       // needed by every frame of the job
	ScopeLookahead Scope = "lookahead" // frames N+1..N+K
	ScopeSequence  Scope = "job_seq"   // the rest of the task's frame range
)

// Job identifies who asked, so pins and progress are per job.
type Job struct {
	ID    string `json:"id"`
	Task  string `json:"task,omitempty"`
	Shot  string `json:"shot,omitempty"`
	DCC   string `json:"dcc,omitempty"`
	Scene string `json:"scene,omitempty"`
	PID   int    `json:"pid,omitempty"`
	Host  string `json:"host,omitempty"`
}

// Range is a byte range of a file, for large files of which a frame reads
// a few percent (mmapped libraries, tiled textures).
type Range struct {
	Off int64 `json:"off"`
	Len int64 `json:"len"`
}

// Want is one concrete file the backend should make resident: a path
// relative to the mount root (clean, no leading slash), after the server
// resolved, checked and expanded what the client sent.
type Want struct {
	Rel string
	// Abs is the path as the client named it, for replies.
	Abs    string
	Ranges []Range // nil: the whole file
}

// Prefetch is a validated prefetch request as the backend sees it.
type Prefetch struct {
	Job      Job
	Scope    Scope
	Frame    *int
	Priority int // 0..100; the scope's band when the client sent none
	Wait     time.Duration
	Wants    []Want

	// RequestID is the client's, if it sent one: a waiting request's
	// progress (Status.Waits) is found by it.
	RequestID string
}

// ItemState is what became of one wanted file.
type ItemState string

// The states a reply reports.
const (
	Resident ItemState = "resident" // every wanted byte is in the cache
	Queued   ItemState = "queued"   // accepted, not resident yet
	Missing  ItemState = "missing"  // no such object in the bucket
	Failed   ItemState = "failed"   // the fetch failed (GCS outage, full disk); see the log
)

// Result is the backend's answer for one Want, in request order.
type Result struct {
	State ItemState
	Err   string // for Failed
}

// Release is a validated release request.
type Release struct {
	Job   string
	Scope Scope // ScopeFrame or ScopeJob
	Frame *int
	Rels  []string // optional: only these files
}

// JobStatus is one job's progress.
type JobStatus struct {
	ID            string `json:"id"`
	Wanted        int64  `json:"wanted_files"`
	Resident      int64  `json:"resident_files"`
	BytesWanted   int64  `json:"bytes_wanted"`
	BytesResident int64  `json:"bytes_resident"`
	PinnedBytes   int64  `json:"pinned_bytes"`
	// Missing counts the names the job asked for that are not in the
	// bucket (they are not kept in Wanted).
	Missing int64 `json:"missing_files"`
}

// ErrBusy is wrapped by a Backend that refuses a prefetch because the work
// it already holds is at its bound; the server answers 503 "busy" and the
// request changes nothing. A client may retry later.
var ErrBusy = errors.New("busy")

// Status is the daemon's prefetch and cache state.
type Status struct {
	QueueDepth       int64   `json:"queue_depth"`
	InFlight         int64   `json:"in_flight"`
	BytesOutstanding int64   `json:"bytes_outstanding"`
	PrefetchedBytes  int64   `json:"prefetched_bytes"`
	WastedBytes      int64   `json:"wasted_bytes"` // prefetched, then evicted unread
	CacheUsedBytes   int64   `json:"cache_used_bytes"`
	CacheBudgetBytes int64   `json:"cache_budget_bytes"`
	HitRatio         float64 `json:"hit_ratio"` // of bytes read through the mount
	PinnedBytes      int64   `json:"pinned_bytes"`
	// LearnedPredicted counts files the daemon predicted for a job's next
	// frame from the frames it served; LearnedUsed, those the frame then
	// opened. 1 - used/predicted is the predictor's waste ratio.
	LearnedPredicted int64 `json:"learned_predicted"`
	LearnedUsed      int64 `json:"learned_used"`
	// MissingFiles counts prefetched names that were not in the bucket;
	// RefusedFiles, files of requests refused because the engine was at
	// its bound (see the hook API's limits). Both cumulative.
	MissingFiles int64       `json:"missing_files"`
	RefusedFiles int64       `json:"refused_files"`
	Jobs         []JobStatus `json:"jobs"`
	// Speculation is what the daemon fetched ahead of readers that sent
	// no hooks (nil when it is off).
	Speculation *SpeculationStatus `json:"speculation,omitempty"`
	// Zone is the zone cache's state (nil without --zone-cache).
	Zone *gcs.ZoneStatus `json:"zone,omitempty"`
	// Fetching is what is being fetched from GCS (or the zone cache) now,
	// and Blocked the reads waiting for those bytes: each at most
	// MaxNow, the oldest first (GET /v1/status answers [] for none).
	Fetching []ActiveFetch `json:"fetching"`
	Blocked  []BlockedRead `json:"blocked"`
	// Waits is the progress of each prefetch request waiting right now
	// (wait_ms > 0), oldest first, at most MaxWaitsShown of them: what
	// `jitfs prefetch --wait` polls to show how far its files are.
	Waits []WaitProgress `json:"waits"`
}

// MaxNow bounds Status.Fetching and Status.Blocked: the oldest are what an
// operator looks for, and a busy node has thousands of fetches at once.
const MaxNow = 50

// ActiveFetch is one range of a file being fetched now.
type ActiveFetch struct {
	Path string `json:"path"` // relative to the mount root
	// Offset is where the range starts; BytesDone counts what arrived of
	// its BytesTotal.
	Offset     int64 `json:"offset"`
	BytesDone  int64 `json:"bytes_done"`
	BytesTotal int64 `json:"bytes_total"`
	AgeMS      int64 `json:"age_ms"`
	// Job and Task asked for it (empty when unknown). Band is why: a
	// prefetch scope (frame, miss, job, lookahead, job_seq), "prefetch"
	// for one that named none, "speculative", "read" for a reader's miss
	// or "readahead" for a sequential reader's next parts.
	Job  string `json:"job,omitempty"`
	Task string `json:"task,omitempty"`
	Band string `json:"band"`
	PID  int    `json:"pid,omitempty"` // the reader, for reads; the hook's caller, if it said
}

// BlockedRead is one read in the FUSE layer waiting for bytes.
type BlockedRead struct {
	Path   string `json:"path"` // relative to the mount root
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
	// BytesDone and BytesTotal are the progress of the fetch the read
	// waits for.
	BytesDone  int64 `json:"bytes_done"`
	BytesTotal int64 `json:"bytes_total"`
	AgeMS      int64 `json:"age_ms"`
	// PID is the reading process; Job and Task, whom the mount serves
	// (empty for a mount of its own).
	PID  int    `json:"pid"`
	Job  string `json:"job,omitempty"`
	Task string `json:"task,omitempty"`
}

// MaxWaitsShown bounds Status.Waits: a status reply stays small however
// many hooks wait at once.
const MaxWaitsShown = 100

// WaitProgress is one waiting prefetch request's progress. Counts are of
// the files handed to the engine (after expansion, without the missing
// names and paths outside the mount the server already answered).
type WaitProgress struct {
	RequestID string `json:"request_id,omitempty"`
	Job       string `json:"job,omitempty"`
	// Started is when the request reached the engine (unix seconds).
	Started       float64 `json:"started"`
	Files         int     `json:"files"`
	ResidentFiles int     `json:"resident_files"`
	MissingFiles  int     `json:"missing_files"` // found missing while fetching
	FailedFiles   int     `json:"failed_files"`
	// Bytes is the wanted bytes of the files whose size is known (a size
	// is known once the file is resolved); BytesKnown says every size is,
	// so Bytes is the total. BytesResident includes what has arrived of
	// files still being fetched.
	Bytes         int64 `json:"bytes"`
	BytesKnown    bool  `json:"bytes_known"`
	BytesResident int64 `json:"bytes_resident"`
	// Slowest is the pending file the request has waited on longest: the
	// one being fetched the longest, else the first still queued. Nil
	// once nothing is pending.
	Slowest *PendingFile `json:"slowest,omitempty"`
}

// PendingFile is a file a waiting request still waits for.
type PendingFile struct {
	Path string `json:"path"` // relative to the mount
	// Bytes is what has arrived of it; Size is what is wanted of it, 0
	// while unknown.
	Bytes    int64 `json:"bytes"`
	Size     int64 `json:"size"`
	Fetching bool  `json:"fetching"` // false: still queued
	// AgeMS is how long it has been fetched, or, while queued, how long
	// the request has waited.
	AgeMS int64 `json:"age_ms"`
}

// SpeculationStatus counts fetching ahead without hooks: files predicted,
// fetched, then opened (used) or never (wasted), their bytes, and streams
// that stopped after a run of misses. Cumulative.
type SpeculationStatus struct {
	Predicted int64 `json:"predicted_files"`
	Fetched   int64 `json:"fetched_files"`
	Used      int64 `json:"used_files"`
	Wasted    int64 `json:"wasted_files"`
	Bytes     int64 `json:"predicted_bytes"`
	// UsedBytes and WastedBytes split Bytes as Used and Wasted split
	// Predicted.
	UsedBytes   int64 `json:"used_bytes"`
	WastedBytes int64 `json:"wasted_bytes"`
	Stopped     int64 `json:"stopped_streams"`
	// Kinds counts the predictions each kind made (siblings, sequences,
	// coopen).
	Kinds map[string]int64 `json:"predicted_by_kind,omitempty"`
}

// Backend is what the server needs of the daemon: the prefetch engine.
type Backend interface {
	// Prefetch queues the wants and, when p.Wait > 0, returns once every
	// want is resident or the wait ran out (ctx ends it early too). It
	// returns one Result per want, in order.
	Prefetch(ctx context.Context, p Prefetch) ([]Result, error)
	Release(ctx context.Context, r Release) error
	Status() Status
}

// OutputFile is an output written through an output area that is not
// durable in GCS yet.
type OutputFile struct {
	Path   string `json:"path"`   // absolute, under the mountpoint
	Object string `json:"object"` // gs://BUCKET/NAME
	// State is open, queued, uploading, retrying, failed, interrupted, cut_short or
	// deleting (a removed file whose object is being deleted).
	State string `json:"state"`
	Size  int64  `json:"size"`
	Error string `json:"error,omitempty"` // the last upload error
	// ClosedAt is when its last writer closed it (unix seconds; 0 while
	// open): how long a flush has been waiting on it.
	ClosedAt float64 `json:"closed_at,omitempty"`
}

// DurableOutput is a "frame durable" event: one output reached GCS and
// GCS confirmed its size and CRC32C.
type DurableOutput struct {
	// Seq increases with every event, also across daemon restarts (with
	// gaps): poll GET /v1/status?durable_since=Seq for newer ones.
	Seq        uint64  `json:"seq"`
	Path       string  `json:"path"`
	Object     string  `json:"object"`
	Generation int64   `json:"generation"`
	Size       int64   `json:"size"`
	CRC32C     string  `json:"crc32c"`     // 8 hex digits
	ClosedAt   float64 `json:"closed_at"`  // unix seconds: the last writer's close
	DurableAt  float64 `json:"durable_at"` // unix seconds
}

// OutputStatus is an output area's state, in GET /v1/status.
type OutputStatus struct {
	Bucket             string `json:"bucket"`
	Prefix             string `json:"prefix"`
	StagingDir         string `json:"staging_dir"`
	StagedBytes        int64  `json:"staged_bytes"`
	StagingBudgetBytes int64  `json:"staging_budget_bytes"`
	// Files counts the outputs that are not durable, by state.
	Files             map[string]int `json:"files"`
	DurableFiles      int64          `json:"durable_files"` // since the daemon started
	DurableBytes      int64          `json:"durable_bytes"`
	Retries           int64          `json:"retries"`
	PermanentFailures int64          `json:"permanent_failures"`
	LastDurableSeq    uint64         `json:"last_durable_seq"`
	// Durable holds the recent events after durable_since (all kept ones
	// without it), oldest first; the daemon keeps the last 1000.
	Durable []DurableOutput `json:"durable"`
	// NotDurable lists up to 1000 outputs that are not durable, by path;
	// NotDurableTotal counts them all.
	NotDurable      []OutputFile `json:"not_durable"`
	NotDurableTotal int          `json:"not_durable_total"`
}

// Flush is a validated flush request.
type Flush struct {
	Wait        time.Duration
	RetryFailed bool
}

// FlushResult is the output area's answer to a flush.
type FlushResult struct {
	Durable         bool
	NotDurable      []OutputFile
	NotDurableTotal int
	TimedOut        bool
}

// Outputs is what the server needs of a daemon serving an output area.
type Outputs interface {
	// Flush returns once every output written so far is durable, nothing
	// can progress without help (interrupted, cut_short or failed files), or the
	// wait ran out (ctx ends it early too).
	Flush(ctx context.Context, f Flush) (FlushResult, error)
	OutputStatus(durableSince uint64) OutputStatus
}
