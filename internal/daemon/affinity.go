package daemon

import (
	"cmp"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/internal/nomadmeta"
	"github.com/jitfs/jitfs/namespace"
	"github.com/jitfs/jitfs/telemetry"
)

// Where the bytes are: the node reports how many bytes its cache holds of
// each source its jobs have read (kept after the jobs end: the bytes stay)
// and of each job, in the status, as metrics and, with AffinityConfig.Nomad,
// as Nomad node metadata that render jobs match with an affinity
// (docs/affinity.md).
//
// Per source, the cache keeps a counter per tracked prefix that moves with
// every change of an object's bytes (cache.TrackPrefix): a status call or
// a scrape reads counters, never walks the cache. Per job, the bytes are
// the resident part of the generations the job pinned, summed over its
// pinned files as the job's status line does; metrics and the publisher
// reuse the last sum for jobSampleAge rather than walk on every scrape.

// AffinityConfig configures the publishing of where the node's bytes are.
type AffinityConfig struct {
	// Nomad receives the node metadata (nomadmeta.MetaSources and
	// MetaJobs); nil publishes nothing.
	Nomad *nomadmeta.Client
	// Interval is the least time between two publishes
	// (nomadmeta.DefaultInterval when 0).
	Interval time.Duration
	// MinBytes is how much of a source or a job the node must hold for its
	// key to be published (DefaultAffinityMinBytes when 0): a node that
	// read a scene's first file holds none of what makes it worth
	// preferring.
	MinBytes int64
}

// DefaultAffinityMinBytes is the default AffinityConfig.MinBytes.
const DefaultAffinityMinBytes = 256 << 20

const (
	// metricsTop bounds the sources and the jobs reported as metric series
	// each; the rest are summed into one "other" series, so a node that
	// has served a thousand sources exports 21 series, not a thousand.
	metricsTop = 20
	// nomadSources and nomadJobs bound the keys published: 16 keys are
	// 207 bytes of metadata.
	nomadSources = 16
	nomadJobs    = 8
	// maxSources bounds the sources remembered; past it, those the cache
	// holds nothing of and no job uses are forgotten.
	maxSources = 256
	// jobSampleAge is how long a sum of the jobs' bytes serves metrics
	// and the publisher before it is made again.
	jobSampleAge = 10 * time.Second
	// sourcesFile, in the cache directory, lists the sources the node has
	// served, so a restarted daemon counts them again.
	sourcesFile = "sources.json"
)

// affinity is the node's record of its sources and its jobs' bytes.
type affinity struct {
	mu      sync.Mutex
	sources map[string][2]string // canonical source -> bucket, prefix
	jobs    []JobBytes           // the last sum of the jobs' bytes
	jobsAt  time.Time
	pub     *nomadmeta.Publisher
	pruning atomic.Bool // forgetEmptySources is running
	// used is when (in seq, counting trackSource calls) a job last began
	// reading each source: a prune keeps the sources a job began reading
	// after it looked at the jobs.
	used map[string]uint64
	seq  uint64
}

// JobBytes is what the node holds of one job.
type JobBytes struct {
	Job   string
	Bytes int64
}

// startAffinity tracks the sources a previous daemon served and starts
// the Nomad publisher when one is configured.
func (n *Node) startAffinity() {
	n.aff.sources, n.aff.used = map[string][2]string{}, map[string]uint64{}
	b, err := os.ReadFile(filepath.Join(n.cfg.CacheDir, sourcesFile))
	var list [][2]string
	if err == nil {
		err = json.Unmarshal(b, &list)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		// Only the report suffers: sources are listed again as jobs use them.
		n.log.Warn("node: the list of sources served is unreadable; starting without it", "err", err)
	default:
		for _, s := range list {
			if s[0] == "" {
				continue
			}
			n.aff.sources[nomadmeta.Source(s[0], s[1])] = s
			n.Cache.TrackPrefix(s[0], s[1])
		}
	}
	if c := n.cfg.Affinity.Nomad; c != nil {
		n.aff.pub = nomadmeta.Start(nomadmeta.Options{Client: c, Interval: n.cfg.Affinity.Interval,
			Want: n.nomadMeta, Log: n.log.With("component", "nomad-meta")})
		n.log.Info("node: publishing where the cache's bytes are as Nomad node metadata", "addr", c.Addr,
			"keys", []string{nomadmeta.MetaSources, nomadmeta.MetaJobs})
	}
}

// stopAffinity stops publishing. The keys stay on the Nomad node: the
// cache outlives the daemon, and the next daemon publishes anew.
func (n *Node) stopAffinity() {
	if n.aff.pub != nil {
		n.aff.pub.Stop()
	}
}

// trackSource records that a job reads bucket/prefix: from now on the
// node reports the bytes it holds of it, also after the job ends. It is
// called with the job's view lock held, so it takes no job's lock itself.
func (n *Node) trackSource(bucket, prefix string) {
	src := nomadmeta.Source(bucket, prefix)
	n.aff.mu.Lock()
	defer n.aff.mu.Unlock()
	n.aff.seq++
	n.aff.used[src] = n.aff.seq
	if _, ok := n.aff.sources[src]; ok {
		return
	}
	n.Cache.TrackPrefix(bucket, prefix)
	n.aff.sources[src] = [2]string{bucket, prefix}
	n.saveSourcesLocked()
	if len(n.aff.sources) > maxSources && n.aff.pruning.CompareAndSwap(false, true) {
		n.mu.Lock()
		if !n.closing {
			n.wg.Add(1)
			go n.forgetEmptySources()
		} else {
			n.aff.pruning.Store(false)
		}
		n.mu.Unlock()
	}
}

// saveSourcesLocked writes the sources to the cache directory.
func (n *Node) saveSourcesLocked() {
	list := make([][2]string, 0, len(n.aff.sources))
	for _, s := range n.aff.sources {
		list = append(list, s)
	}
	slices.SortFunc(list, func(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	b, _ := json.Marshal(list)
	path := filepath.Join(n.cfg.CacheDir, sourcesFile)
	err := os.WriteFile(path+".tmp", b, 0o644)
	if err == nil {
		err = os.Rename(path+".tmp", path)
	}
	if err != nil {
		// Only a restarted daemon's report suffers: it counts the
		// sources again as jobs read them.
		n.log.Warn("node: record the sources served", "path", path, "err", err)
	}
}

// forgetEmptySources drops the sources the cache holds nothing of and no
// job on the node reads. It runs on its own goroutine: it takes every
// job's view lock, one at a time, and never with affinity.mu held.
func (n *Node) forgetEmptySources() {
	defer n.wg.Done()
	defer n.aff.pruning.Store(false)
	n.aff.mu.Lock()
	start := n.aff.seq
	n.aff.mu.Unlock()
	usage, complete := n.Cache.Usage()
	if !complete {
		return
	}
	n.mu.Lock()
	jobs := make([]*job, 0, len(n.jobs))
	for _, j := range n.jobs {
		jobs = append(jobs, j)
	}
	n.mu.Unlock()
	inUse := map[string]bool{}
	for _, j := range jobs {
		j.vmu.Lock()
		for _, v := range j.views {
			inUse[nomadmeta.Source(v.bucket, v.prefix)] = true
		}
		j.vmu.Unlock()
	}
	n.aff.mu.Lock()
	defer n.aff.mu.Unlock()
	for _, u := range usage {
		src := nomadmeta.Source(u.Bucket, u.Prefix)
		// A source tracked since the usage was read is not in it.
		if _, ok := n.aff.sources[src]; ok && u.Bytes == 0 && !inUse[src] && n.aff.used[src] <= start {
			delete(n.aff.sources, src)
			delete(n.aff.used, src)
			n.Cache.UntrackPrefix(u.Bucket, u.Prefix)
		}
	}
	n.saveSourcesLocked()
}

// sourceStatus is every source's bytes, most first; counting is true while
// a restarted cache is still naming what it found (the bytes grow to
// their whole as it does).
func (n *Node) sourceStatus() (out []NodeSourceStatus, counting bool) {
	usage, complete := n.Cache.Usage()
	for _, u := range usage {
		src := nomadmeta.Source(u.Bucket, u.Prefix)
		out = append(out, NodeSourceStatus{Source: src, Key: nomadmeta.Key(src), ResidentBytes: u.Bytes, Files: u.Objects})
	}
	slices.SortStableFunc(out, func(a, b NodeSourceStatus) int { return cmp.Compare(b.ResidentBytes, a.ResidentBytes) })
	return out, !complete
}

// noteJobs keeps the per-job bytes a status call just summed, for the
// metrics and the publisher.
func (n *Node) noteJobs(jobs []JobStatus) {
	s := make([]JobBytes, 0, len(jobs))
	for _, j := range jobs {
		s = append(s, JobBytes{j.ID, j.ResidentBytes})
	}
	n.aff.mu.Lock()
	n.aff.jobs, n.aff.jobsAt = s, time.Now()
	n.aff.mu.Unlock()
}

// jobBytes is each job's resident bytes, summed again when the last sum
// is older than jobSampleAge.
func (n *Node) jobBytes() []JobBytes {
	n.aff.mu.Lock()
	if time.Since(n.aff.jobsAt) < jobSampleAge {
		defer n.aff.mu.Unlock()
		return slices.Clone(n.aff.jobs)
	}
	n.aff.mu.Unlock()
	n.mu.Lock()
	jobs := make([]*job, 0, len(n.jobs))
	for _, j := range n.jobs {
		jobs = append(jobs, j)
	}
	n.mu.Unlock()
	s := make([]JobBytes, 0, len(jobs))
	for _, j := range jobs {
		s = append(s, JobBytes{j.id, j.residentBytes(n)})
	}
	n.aff.mu.Lock()
	n.aff.jobs, n.aff.jobsAt = s, time.Now()
	n.aff.mu.Unlock()
	return slices.Clone(s)
}

// residentBytes is what the cache holds of the generations the job pinned
// (JobStatus.ResidentBytes, without the rest of the status).
func (j *job) residentBytes(n *Node) int64 {
	var sum int64
	for _, v := range j.viewList() {
		v.ns.PinnedFiles(func(e namespace.Entry) {
			sum += n.Cache.ResidentBytes(cache.Meta{Bucket: v.bucket, Name: e.Attrs.Name, Gen: e.Attrs.Generation})
		})
	}
	return sum
}

// residentMetrics is the top sources and jobs by bytes for the metrics,
// the rest summed into "other".
func (n *Node) residentMetrics(snap *telemetry.Snapshot) {
	usage, _ := n.Cache.Usage()
	src := make([]telemetry.Labeled, 0, len(usage))
	for _, u := range usage {
		src = append(src, telemetry.Labeled{Label: nomadmeta.Source(u.Bucket, u.Prefix), Value: u.Bytes})
	}
	jb := n.jobBytes()
	jobs := make([]telemetry.Labeled, 0, len(jb))
	for _, j := range jb {
		jobs = append(jobs, telemetry.Labeled{Label: j.Job, Value: j.Bytes})
	}
	snap.SourceResident, snap.JobResident = topN(src, metricsTop), topN(jobs, metricsTop)
}

// topN keeps the n largest values (ties by label, so the series are
// stable) and sums the rest into "other".
func topN(l []telemetry.Labeled, n int) []telemetry.Labeled {
	slices.SortFunc(l, func(a, b telemetry.Labeled) int {
		return cmp.Or(cmp.Compare(b.Value, a.Value), cmp.Compare(a.Label, b.Label))
	})
	if len(l) <= n {
		return l
	}
	other := telemetry.Labeled{Label: "other"}
	for _, x := range l[n:] {
		other.Value += x.Value
	}
	return append(l[:n:n], other)
}

// nomadMeta is the metadata the node should carry: the keys of the
// sources and jobs it holds at least MinBytes of, the most held first
// chosen, listed in key order so that a change of bytes alone publishes
// nothing. It is not known while a restarted cache is still naming what
// it found: publishing then would withdraw keys the node still deserves.
func (n *Node) nomadMeta() (map[string]string, bool) {
	usage, complete := n.Cache.Usage()
	if !complete {
		return nil, false
	}
	minBytes := n.cfg.Affinity.MinBytes
	if minBytes <= 0 {
		minBytes = DefaultAffinityMinBytes
	}
	var src []telemetry.Labeled
	for _, u := range usage {
		if u.Bytes >= minBytes {
			src = append(src, telemetry.Labeled{Label: nomadmeta.Key(nomadmeta.Source(u.Bucket, u.Prefix)), Value: u.Bytes})
		}
	}
	var jobs []telemetry.Labeled
	for _, j := range n.jobBytes() {
		if j.Bytes >= minBytes {
			jobs = append(jobs, telemetry.Labeled{Label: nomadmeta.Key(j.Job), Value: j.Bytes})
		}
	}
	return map[string]string{nomadmeta.MetaSources: keyList(src, nomadSources), nomadmeta.MetaJobs: keyList(jobs, nomadJobs)}, true
}

// keyList is the n keys of the most bytes, sorted, comma-separated.
func keyList(l []telemetry.Labeled, n int) string {
	slices.SortFunc(l, func(a, b telemetry.Labeled) int {
		return cmp.Or(cmp.Compare(b.Value, a.Value), cmp.Compare(a.Label, b.Label))
	})
	keys := make([]string, 0, n)
	for i := 0; i < len(l) && i < n; i++ {
		keys = append(keys, l[i].Label)
	}
	slices.Sort(keys)
	return strings.Join(slices.Compact(keys), ",")
}

// nomadStatus is the publisher's state, nil when it is off.
func (n *Node) nomadStatus() *nomadmeta.Status {
	if n.aff.pub == nil {
		return nil
	}
	st := n.aff.pub.Status()
	return &st
}
