package daemon

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/internal/metastore"
	"github.com/jitfs/jitfs/jitfs"
	"github.com/jitfs/jitfs/namespace"
	"github.com/jitfs/jitfs/prefetch"
	"github.com/jitfs/jitfs/speculate"
	"github.com/jitfs/jitfs/telemetry"
)

// job is one job on the node: its snapshot of each source it reads (one
// Namespace per source, shared by every task of the job) and its prefetch
// engines. Its tasks, detach time and timer are guarded by Node.mu.
type job struct {
	id      string
	started time.Time

	tasks    map[string]*task
	pending  int // tasks being attached: the job cannot end meanwhile
	detached time.Time
	timer    *time.Timer
	// ended is set when the job starts ending; endDone closes once its
	// pins and snapshot are gone and it has left Node.jobs.
	ended   bool
	endDone chan struct{}

	// pmu orders the job's writes to the metadata store, each made from
	// the state current when it is written: the last write is the latest
	// state, whatever order detaches and attaches raced in.
	pmu sync.Mutex

	vmu   sync.Mutex // guards views; held while one is created
	views map[string]*view

	// ops records the FUSE operations of the job's task mounts, labelled
	// job_id (Prometheus gives "job" to the scrape target): a farm
	// engineer asks which job's reads are slow. Not
	// by task or mountpoint: a node runs thousands of tasks a day, and a
	// cumulative exporter would keep every one's series until the daemon
	// restarts (the SDK caps an instrument at 2000 series, after which
	// they would all fold into its overflow series). GCS series stay the
	// node's: one fetch serves every job that reads the object.
	ops *telemetry.Metrics
}

// view is a job's snapshot of one bucket prefix.
type view struct {
	bucket, prefix string
	ns             *namespace.Namespace
	engine         *prefetch.Engine
	spec           *speculate.Speculator // nil with speculation off
	learn          *viewLearn            // publishing what it learned (learnshare.go)
}

// viewList is the job's views at this moment, for work done outside vmu.
func (j *job) viewList() []*view {
	j.vmu.Lock()
	defer j.vmu.Unlock()
	views := make([]*view, 0, len(j.views))
	for _, v := range j.views {
		views = append(views, v)
	}
	return views
}

func sourceKey(bucket, prefix string) string { return bucket + "/" + prefix }

func (n *Node) newJob(id string, started time.Time) *job {
	j := &job{id: id, started: started, tasks: map[string]*task{}, views: map[string]*view{}, endDone: make(chan struct{}), ops: n.ops}
	// Instruments of one name are one instrument: this only adds the
	// job's label to what the node's already record.
	if met, err := telemetry.New(n.tel.Meters, nil, n.nodeAttr, attribute.String("job_id", id)); err == nil {
		j.ops = met
	} else {
		n.log.Warn("node: job metrics carry no job label", "job", id, "err", err)
	}
	return j
}

// view returns the job's snapshot of bucket/prefix, creating it on first
// use: its listings come from the metadata store when a previous daemon
// (or an earlier task) made them for this job, else from the bucket, never
// older than the job's start.
func (j *job) view(ctx context.Context, n *Node, bucket, prefix string) (*view, error) {
	key := sourceKey(bucket, prefix)
	// The bucket is opened (and checked, over the network) before the
	// job's lock is taken: status and release never wait on GCS.
	bc, err := n.bucket(ctx, bucket)
	if err != nil {
		return nil, err
	}
	// So is what other nodes learned of the job, for a view made now.
	var taught *learned
	if n.ls != nil {
		j.vmu.Lock()
		fresh := j.views[key] == nil
		j.vmu.Unlock()
		if fresh {
			taught = n.learnRead(ctx, j.id, bucket, prefix)
		}
	}
	j.vmu.Lock()
	defer j.vmu.Unlock()
	if v := j.views[key]; v != nil {
		return v, nil
	}
	ns, err := namespace.New(namespace.Options{Remote: bc.shared.Since(j.started), Prefix: prefix,
		Store: sinceStore{Store: n.Store.Listings(j.id, key), started: j.started}, ListAhead: n.cfg.Speculate.listAhead()})
	if err != nil {
		return nil, err
	}
	v := &view{bucket: bucket, prefix: prefix, ns: ns, learn: &viewLearn{}}
	v.engine, err = prefetch.New(prefetch.Options{Resolver: v, Cache: n.Cache, Source: bc.gc,
		Workers: n.cfg.PrefetchWorkers, Logger: n.log.With("job", j.id)})
	if err != nil {
		ns.Close()
		return nil, err
	}
	// Speculation follows the job, not a process or a task: tasks come and
	// go, the job's reading of a directory is one stream.
	v.spec = n.cfg.Speculate.start(ns, n.Cache, bc.gc, bucket, coopenFile(n.cfg.CacheDir, bucket, prefix), j.id, n.log.With("job", j.id))
	n.learnTeach(v, taught)
	j.views[key] = v
	n.trackSource(bucket, prefix)
	return v, nil
}

// now is what the job is fetching, and reading blocked, of the view's
// source now.
func (v *view) now(c *cache.Cache, job string) nowScope {
	return nowScope{c: c, bucket: v.bucket, prefix: v.prefix, job: job}
}

// Resolve is the engine's way into the job's snapshot.
func (v *view) Resolve(ctx context.Context, rel string) (cache.Meta, error) {
	e, err := v.ns.Lookup(ctx, rel)
	if err != nil {
		return cache.Meta{}, err
	}
	if e.IsDir {
		return cache.Meta{}, fmt.Errorf("%s: %w", rel, jitfs.ErrNotFile)
	}
	a := e.Attrs
	return cache.Meta{Bucket: v.bucket, Name: a.Name, Gen: a.Generation, Size: a.Size, CRC32C: a.CRC32C, HasCRC32C: a.HasCRC32C}, nil
}

// sinceStore serves a job only listings made since it started: a job that
// reuses an ended job's id never inherits that job's listings.
type sinceStore struct {
	namespace.Store
	started time.Time
}

func (s sinceStore) LoadDir(dir string) (namespace.Listing, bool) {
	l, ok := s.Store.LoadDir(dir)
	if !ok || l.ListedAt.Before(s.started) {
		return namespace.Listing{}, false
	}
	return l, true
}

// closeViews ends the job's engines (their pins go) and snapshots.
func (j *job) closeViews() {
	j.vmu.Lock()
	defer j.vmu.Unlock()
	for k, v := range j.views {
		v.engine.Close()
		if v.spec != nil {
			v.spec.Close()
		}
		v.ns.Close()
		delete(j.views, k)
	}
}

// record is the job as the metadata store keeps it.
func (j *job) record() metastore.Job {
	return metastore.Job{ID: j.id, Started: j.started, Detached: j.detached}
}

// status is the job's line of the node status. It takes Node.mu for the
// task set, then the job's own lock: never both at once.
func (j *job) status(n *Node) JobStatus {
	n.mu.Lock()
	st := JobStatus{ID: j.id, Started: unixSecs(j.started), Detached: unixSecs(j.detached)}
	if !j.detached.IsZero() {
		st.EndsAt = unixSecs(j.detached.Add(n.cfg.JobGrace))
	}
	for _, t := range j.tasks {
		st.Tasks = append(st.Tasks, t.status())
	}
	n.mu.Unlock()
	sort.Slice(st.Tasks, func(a, b int) bool { return st.Tasks[a].ID < st.Tasks[b].ID })
	views := j.viewList()
	for _, v := range views {
		ss := SourceStatus{Source: "gs://" + v.bucket + "/" + v.prefix, Listings: v.ns.Stats.Listings.Load(),
			StoredListings: v.ns.Stats.StoredListings.Load(), ListAhead: v.ns.Stats.Ahead(), Prefetch: v.engine.Status()}
		ss.Prefetch.Speculation = speculationStatus(v.spec)
		v.now(n.Cache, j.id).add(&ss.Prefetch)
		v.ns.PinnedFiles(func(e namespace.Entry) {
			ss.Files++
			ss.FileBytes += e.Attrs.Size
			ss.ResidentBytes += n.Cache.ResidentBytes(cache.Meta{Bucket: v.bucket, Name: e.Attrs.Name, Gen: e.Attrs.Generation})
		})
		ss.PinnedBytes = ss.Prefetch.PinnedBytes
		st.ResidentBytes += ss.ResidentBytes
		st.PinnedBytes += ss.PinnedBytes
		st.Sources = append(st.Sources, ss)
	}
	sort.Slice(st.Sources, func(a, b int) bool { return st.Sources[a].Source < st.Sources[b].Source })
	return st
}

// restoreJobs brings back the jobs a previous daemon kept. None has a task
// now: each ends a grace period after its last detach (or after now, when
// the previous daemon died with tasks attached), unless a task of it
// attaches first and finds its snapshot as it was.
func (n *Node) restoreJobs() error {
	recs, err := n.Store.Jobs()
	if err != nil {
		return fmt.Errorf("node: metadata: %w", err)
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range recs {
		j := n.newJob(r.ID, r.Started)
		j.detached = r.Detached
		if j.detached.IsZero() {
			j.detached = now
		}
		n.jobs[j.id] = j
		n.scheduleEndLocked(j)
	}
	if len(recs) > 0 {
		n.log.Info("node: jobs restored from the metadata store", "jobs", len(recs))
	}
	return nil
}

// scheduleEndLocked arms the job's end a grace period after its last
// detach.
func (n *Node) scheduleEndLocked(j *job) {
	if j.timer != nil {
		j.timer.Stop()
	}
	wait := max(0, time.Until(j.detached.Add(n.cfg.JobGrace)))
	j.timer = time.AfterFunc(wait, func() { n.endJob(j, false) })
}

// endJob ends a job with no task attached or being attached: its pins are
// released, its snapshot dropped and forgotten by the metadata store. A
// task of the same id arriving meanwhile waits, then starts the job
// afresh. now ends it at once (a release); otherwise only once its grace
// period is over (a timer that fired just as a task came and went is
// stale).
func (n *Node) endJob(j *job, now bool) bool {
	n.mu.Lock()
	if j.ended || len(j.tasks) > 0 || j.pending > 0 || n.closing || n.jobs[j.id] != j ||
		(!now && time.Since(j.detached) < n.cfg.JobGrace) {
		n.mu.Unlock()
		return false
	}
	j.ended = true
	if j.timer != nil {
		j.timer.Stop()
	}
	n.mu.Unlock()
	n.learnPublish(j)
	j.closeViews()
	j.pmu.Lock()
	if err := n.Store.DeleteJob(j.id); err != nil {
		n.log.Warn("node: forget job in the metadata store", "job", j.id, "err", err)
	}
	j.pmu.Unlock()
	n.mu.Lock()
	delete(n.jobs, j.id)
	n.mu.Unlock()
	close(j.endDone)
	why := "grace period over"
	if now {
		why = "released"
	}
	n.log.Info("node: job ended; its pins and snapshot are released", "job", j.id, "why", why)
	return true
}

// persistJob writes the job's current state to the metadata store.
func (n *Node) persistJob(j *job) {
	j.pmu.Lock()
	defer j.pmu.Unlock()
	n.mu.Lock()
	rec, ended := j.record(), j.ended
	n.mu.Unlock()
	if ended {
		return
	}
	if err := n.Store.PutJob(rec); err != nil {
		n.log.Warn("node: record job in the metadata store", "job", j.id, "err", err)
	}
}

// release ends a job's prefetch pins now, and its snapshot too when no
// task of it is attached (a running task's files never change version
// under it). It reports whether the job was on the node.
func (n *Node) release(ctx context.Context, id string) (bool, error) {
	n.mu.Lock()
	j := n.jobs[id]
	n.mu.Unlock()
	if j == nil {
		return false, nil
	}
	views := j.viewList()
	for _, v := range views {
		if err := v.engine.Release(ctx, hooks.Release{Job: id, Scope: hooks.ScopeJob}); err != nil {
			return true, err
		}
	}
	n.endJob(j, true)
	return true, nil
}
