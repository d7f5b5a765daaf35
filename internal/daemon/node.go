package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/metastore"
	"github.com/jitfs/jitfs/namespace"
	"github.com/jitfs/jitfs/telemetry"
)

// NodeConfig configures the node daemon: one process serving every task
// of every job on the node over one cache and one staging root.
type NodeConfig struct {
	CacheDir  string
	CacheSize int64
	// StagingDir is the root of the output areas' staging directories, one
	// per output prefix (StagingDirFor), so a retried task resumes what its
	// predecessor staged. StagingSize bounds each area's staged bytes.
	StagingDir  string
	StagingSize int64
	// Socket is the control socket (DefaultNodeSocket when empty); each
	// task's hook socket is made beside it.
	Socket      string
	SocketGroup string
	// Endpoint is a GCS emulator's address ("" for Google Cloud Storage).
	Endpoint       string
	AttemptTimeout time.Duration
	// Zone sends every bucket client's object reads through a zone cache.
	Zone      gcs.ZoneOptions
	OpTimeout time.Duration
	// JobGrace is how long a job's snapshot and pins outlive its last
	// task (default DefaultJobGrace): the next task of the job on this node
	// usually attaches within it and finds the job's files pinned.
	JobGrace     time.Duration
	Passthrough  bool
	AllowOther   bool
	StrictVerify bool
	// PrefetchWorkers is each job's prefetch engine's worker count.
	PrefetchWorkers int
	// Speculate fetches ahead of readers that send no hooks, per job.
	Speculate Speculation
	// LearnBucket and LearnPrefix ("" or ending in "/") are where jobs'
	// learning is shared with other nodes (learnshare.go); no bucket, no
	// sharing.
	LearnBucket, LearnPrefix string
	// Output is the template of every task's output areas (upload workers,
	// backoff, delays); its bucket, prefix, mountpoint and staging are the
	// task's.
	Output OutputConfig
	// Affinity publishes where the cache's bytes are (affinity.go).
	Affinity AffinityConfig
	Log      *slog.Logger
	// Telemetry is the process's metrics; nil records none.
	Telemetry *telemetry.Telemetry
}

// DefaultJobGrace is how long a job outlives its last task by default.
const DefaultJobGrace = 10 * time.Minute

// Node is the running node daemon.
type Node struct {
	cfg   NodeConfig
	log   *slog.Logger
	Cache *cache.Cache
	Store *metastore.Store

	tel *telemetry.Telemetry
	// nodeAttr labels every series of the node's.
	nodeAttr attribute.KeyValue
	ops      *telemetry.Metrics
	met      *telemetry.Metrics

	ln     net.Listener
	lnInfo os.FileInfo
	srv    *http.Server

	// mu guards the maps below and every job's task set. It is never held
	// while mounting, unmounting or waiting on GCS: attach and detach do
	// that work outside it, holding the job's own lock.
	mu      sync.Mutex
	buckets map[string]*bucketClient
	jobs    map[string]*job
	tasks   map[string]*task
	orphans map[string]*orphan // staging dir -> area uploading a gone task's outputs
	closing bool
	// attaching counts attaches in progress: Close waits for them, so a
	// task half set up is never left mounted.
	attaching sync.WaitGroup
	wg        sync.WaitGroup
	closed    closeOnce
	tasksDir  string // live tasks' records, for a restart after a crash
	aff       affinity

	ls *learnSharing // nil without NodeConfig.LearnBucket
}

// bucketClient is one GCS client per bucket, shared by every job, and the
// listings jobs share through it.
type bucketClient struct {
	once   sync.Once
	err    error
	gc     *gcs.Client
	shared *namespace.SharedListings
}

// StartNode opens the cache, the metadata store and the staging root,
// recovers what a previous daemon left (dead mounts, staged outputs, jobs),
// and serves the control socket.
func StartNode(ctx context.Context, cfg NodeConfig) (*Node, error) {
	cfg.Log = orDiscard(cfg.Log)
	if cfg.Socket == "" {
		cfg.Socket = DefaultNodeSocket
	}
	if cfg.JobGrace <= 0 {
		cfg.JobGrace = DefaultJobGrace
	}
	if cfg.StagingDir == "" {
		return nil, errors.New("node: no staging directory")
	}
	n := &Node{cfg: cfg, log: cfg.Log, buckets: map[string]*bucketClient{}, jobs: map[string]*job{},
		tasks: map[string]*task{}, orphans: map[string]*orphan{}, tasksDir: filepath.Join(cfg.CacheDir, "tasks")}
	var err error
	n.nodeAttr = attribute.String("node", cfg.Socket)
	nodeAttr := n.nodeAttr
	if n.tel, n.ops, err = operationMetrics(cfg.Telemetry, nodeAttr); err != nil {
		return nil, err
	}
	if n.Cache, err = cache.New(cache.Options{Dir: cfg.CacheDir, Budget: cfg.CacheSize, Strict: cfg.StrictVerify, KeepOpen: keepOpen, Logger: cfg.Log}); err != nil {
		return nil, err
	}
	start := time.Now()
	if n.Store, err = metastore.Open(metastore.Options{Path: filepath.Join(cfg.CacheDir, "meta.db"), Logger: cfg.Log}); err != nil {
		n.Cache.Close()
		return nil, err
	}
	if ok, why := n.Store.Rebuilt(); ok {
		n.log.Error("node: the metadata store was torn or corrupt and starts empty; listings are made again from GCS", "reason", why)
	}
	if err := os.MkdirAll(n.tasksDir, 0o755); err != nil {
		n.closeStores()
		return nil, fmt.Errorf("node: %w", err)
	}
	if err := os.MkdirAll(cfg.StagingDir, 0o755); err != nil {
		n.closeStores()
		return nil, fmt.Errorf("node: staging directory: %w", err)
	}
	if cfg.LearnBucket != "" {
		if n.ls, err = startLearnSharing(n); err != nil {
			n.closeStores()
			return nil, err
		}
	}
	n.recoverTasks()
	if err := n.restoreJobs(); err != nil {
		n.closeStores()
		return nil, err
	}
	n.recoverStaging(ctx)
	n.startAffinity()
	if err := n.listen(); err != nil {
		n.Close()
		return nil, err
	}
	if n.met, err = telemetry.New(n.tel.Meters, n.snapshot, nodeAttr); err != nil {
		n.Close()
		return nil, err
	}
	n.log.Info("node daemon ready", "socket", cfg.Socket, "cache_dir", cfg.CacheDir, "budget_bytes", cfg.CacheSize,
		"staging_dir", cfg.StagingDir, "jobs", len(n.jobs), "startup", time.Since(start).Round(time.Millisecond))
	// Only once the daemon serves: a start that fails prints one line.
	used, budget := n.Cache.Used()
	warnCacheSize(cfg.CacheDir, budget, used, cfg.Log)
	return n, nil
}

func (n *Node) closeStores() {
	if n.ls != nil {
		n.ls.close()
	}
	n.Store.Close()
	n.Cache.Close()
}

// Socket is the control socket's path.
func (n *Node) Socket() string { return n.cfg.Socket }

func (n *Node) listen() error {
	ln, fi, err := hooks.ListenSocket(n.cfg.Socket, n.cfg.SocketGroup, n.log)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.ln, n.lnInfo = ln, fi
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/attach", n.handleAttach)
	mux.HandleFunc("POST /v1/tasks/{id}/flush", n.handleFlush)
	mux.HandleFunc("DELETE /v1/tasks/{id}", n.handleDetach)
	mux.HandleFunc("POST /v1/jobs/{id}/release", n.handleRelease)
	mux.HandleFunc("GET /v1/status", n.handleStatus)
	mux.HandleFunc("GET /v1/health", n.handleHealth)
	mux.HandleFunc("GET /v1/tasks/{id}", n.handleTask)
	n.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ConnContext: withCaller}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("node: control socket stopped", "err", err)
		}
	}()
	return nil
}

// bucket returns the shared client of a bucket, opening and checking it
// on first use.
func (n *Node) bucket(ctx context.Context, name string) (*bucketClient, error) {
	n.mu.Lock()
	b := n.buckets[name]
	if b == nil {
		b = &bucketClient{}
		n.buckets[name] = b
	}
	n.mu.Unlock()
	b.once.Do(func() {
		gc, err := openBucket(ctx, gcs.Options{Bucket: name, Endpoint: n.cfg.Endpoint, AttemptTimeout: n.cfg.AttemptTimeout, Metrics: n.ops,
			Zone: n.cfg.Zone, Logger: n.log})
		// Published under mu: status and metrics read them there.
		n.mu.Lock()
		b.gc, b.err = gc, err
		if err == nil {
			b.shared = namespace.NewSharedListings(gc, 0, nil)
		}
		n.mu.Unlock()
	})
	if b.err != nil {
		// A failed open is not remembered: the bucket may exist later, or
		// the failure was the link's.
		n.mu.Lock()
		if n.buckets[name] == b {
			delete(n.buckets, name)
		}
		n.mu.Unlock()
		return nil, b.err
	}
	return b, nil
}

// snapshot is the node's counters for the metrics' observable instruments.
func (n *Node) snapshot() telemetry.Snapshot {
	snap := cacheSnapshot(n.Cache)
	n.mu.Lock()
	for _, b := range n.buckets {
		if b.gc != nil {
			snap.GCSRetries += b.gc.Stats.Retries.Load()
			snap.GCSBytes += b.gc.Stats.BytesRead.Load()
		}
	}
	n.mu.Unlock()
	// Only the engines' counters: a scrape must not walk every job's
	// pinned files as the status does.
	n.mu.Lock()
	jobs := make([]*job, 0, len(n.jobs))
	for _, j := range n.jobs {
		jobs = append(jobs, j)
	}
	n.mu.Unlock()
	for _, j := range jobs {
		j.vmu.Lock()
		for _, v := range j.views {
			st := v.engine.Status()
			snap.Pinned += st.PinnedBytes
			snap.PrefetchQueue += st.QueueDepth
			snap.PrefetchInFlight += st.InFlight
			addSpeculation(&snap, v.spec)
			addListAhead(&snap, v.ns)
		}
		j.vmu.Unlock()
	}
	n.residentMetrics(&snap)
	return snap
}

// Close detaches every task (unmounting its directories; staged outputs
// stay journalled), keeps every job's snapshot in the metadata store for
// the next daemon, and releases the cache. Later calls return the
// first's result.
func (n *Node) Close() error { return n.closed.do(n.close) }

func (n *Node) close() error {
	var errs []error
	n.mu.Lock()
	n.closing = true
	n.mu.Unlock()
	n.attaching.Wait()
	n.mu.Lock()
	tasks := make([]*task, 0, len(n.tasks))
	for _, t := range n.tasks {
		tasks = append(tasks, t)
	}
	n.mu.Unlock()
	if n.met != nil {
		n.met.Close()
	}
	n.stopAffinity()
	for _, t := range tasks {
		if err := n.detach(t, "daemon stopping"); err != nil {
			errs = append(errs, err)
		}
	}
	if n.srv != nil {
		// Attach streams end here: their tasks are detached already.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = n.srv.Shutdown(ctx)
		cancel()
		n.srv.Close()
		if fi, err := os.Lstat(n.cfg.Socket); err == nil && os.SameFile(fi, n.lnInfo) {
			os.Remove(n.cfg.Socket)
		}
	}
	n.mu.Lock()
	jobs := make([]*job, 0, len(n.jobs))
	for _, j := range n.jobs {
		jobs = append(jobs, j)
	}
	orphans := make([]*orphan, 0, len(n.orphans))
	for _, o := range n.orphans {
		orphans = append(orphans, o)
	}
	n.mu.Unlock()
	for _, o := range orphans {
		o.stop()
	}
	for _, j := range jobs {
		j.closeViews()
	}
	n.wg.Wait()
	if n.ls != nil {
		// Before the clients it uploads through close.
		n.ls.close()
	}
	n.mu.Lock()
	for _, b := range n.buckets {
		if b.gc != nil {
			b.gc.Close()
		}
	}
	n.mu.Unlock()
	if err := n.Store.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := n.Cache.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Status is the node's state: every job and task, cache and metadata.
func (n *Node) Status() NodeStatus {
	used, budget := n.Cache.Used()
	rebuilt, why := n.Store.Rebuilt()
	st := NodeStatus{Schema: NodeSchema, PID: os.Getpid(), Socket: n.cfg.Socket, CacheDir: n.cfg.CacheDir,
		CacheUsedBytes: used, CacheBudgetBytes: budget, StagingDir: n.cfg.StagingDir,
		Metadata: MetadataStatus{Path: filepath.Join(n.cfg.CacheDir, "meta.db"), Pending: n.Store.Pending(),
			Dropped: n.Store.Dropped(), Rebuilt: rebuilt, RebuiltReason: why}}
	n.mu.Lock()
	jobs := make([]*job, 0, len(n.jobs))
	for _, j := range n.jobs {
		jobs = append(jobs, j)
	}
	for _, b := range n.buckets {
		if b.shared != nil {
			st.ListingsShared += b.shared.Reused.Load()
		}
		if b.gc != nil {
			if z := b.gc.Zone(); z != nil {
				st.Zones = append(st.Zones, *z)
			}
		}
	}
	for dir := range n.orphans {
		st.Recovering = append(st.Recovering, dir)
	}
	n.mu.Unlock()
	sort.Strings(st.Recovering)
	sort.Slice(st.Zones, func(a, b int) bool { return st.Zones[a].Bucket < st.Zones[b].Bucket })
	for _, j := range jobs {
		st.Jobs = append(st.Jobs, j.status(n))
	}
	st.LearnShared = n.learnStatus(jobs)
	sort.Slice(st.Jobs, func(a, b int) bool { return st.Jobs[a].ID < st.Jobs[b].ID })
	n.noteJobs(st.Jobs)
	st.Sources, st.SourcesCounting = n.sourceStatus()
	st.NomadMeta = n.nomadStatus()
	return st
}

func newID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func unixSecs(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// GCSCounters sums the node's GCS clients: bytes read, and list, stat and
// read requests.
func (n *Node) GCSCounters() (bytes, lists, stats, reads int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, b := range n.buckets {
		if b.gc != nil {
			s := &b.gc.Stats
			bytes += s.BytesRead.Load()
			lists += s.Lists.Load()
			stats += s.Stats.Load()
			reads += s.Reads.Load()
		}
	}
	return
}
