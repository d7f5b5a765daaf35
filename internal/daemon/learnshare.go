package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitfs/jitfs/internal/learnshare"
	"github.com/jitfs/jitfs/prefetch"
)

// Learning shared across nodes (NodeConfig.LearnBucket, docs/learn-shared.md).
// A job's view of a source publishes what it learned (its frames' files,
// generalised, and the source's co-open groups) as this node's object
// under the learn prefix: every learnEvery while it changes, when a task
// detaches and when the job ends, always in the background. A job's view
// created on this node first reads the other nodes' objects for the job
// and source, so its first frame here is prefetched from what they saw.

const (
	// learnEvery is how often changed knowledge is published while tasks
	// run; a detach and a job's end publish at once.
	learnEvery = 30 * time.Second
	// learnReadTimeout bounds the reading of other nodes' objects when a
	// job's view of a source is made: a first attach waits for it, as it
	// waits for the bucket's check.
	learnReadTimeout = 10 * time.Second
	// learnPublishTimeout bounds one upload.
	learnPublishTimeout = 30 * time.Second
	// learnCloseWait is how long a stopping daemon lets uploads in flight
	// finish before it abandons them.
	learnCloseWait = 5 * time.Second
)

// learnSharing is the node's side of it.
type learnSharing struct {
	bucket, prefix string
	node           string
	log            *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	stop   chan struct{}  // ends the ticker
	wg     sync.WaitGroup // the ticker and the uploads in flight

	published, unchanged, publishErrors, read, ignored, readErrors, coopenGroups atomic.Int64
	// failing is set once a publish error was logged, and cleared by a
	// publish that succeeds: an outage is one log line, not one per view.
	failing atomic.Bool
}

// viewLearn is one view's publishing state.
type viewLearn struct {
	seq atomic.Int64 // of the latest snapshot taken: a publish never waits on an upload
	// sum is the hash of the content last uploaded: an unchanged snapshot
	// is dropped before it is encoded.
	sum atomic.Pointer[[32]byte]
	// mu is held by the view's upload, so they run one at a time; done is
	// the latest snapshot uploaded (or found unchanged).
	mu   sync.Mutex
	done int64
}

func startLearnSharing(n *Node) (*learnSharing, error) {
	id, err := learnshare.NodeID(filepath.Join(n.cfg.CacheDir, "learn"))
	if err != nil {
		return nil, err
	}
	ls := &learnSharing{bucket: n.cfg.LearnBucket, prefix: n.cfg.LearnPrefix, node: id, log: n.log.With("learn_prefix", "gs://"+n.cfg.LearnBucket+"/"+n.cfg.LearnPrefix)}
	ls.ctx, ls.cancel = context.WithCancel(context.Background())
	ls.stop = make(chan struct{})
	ls.wg.Add(1)
	go func() {
		defer ls.wg.Done()
		t := time.NewTicker(learnEvery)
		defer t.Stop()
		for {
			select {
			case <-ls.stop:
				return
			case <-t.C:
				for _, j := range n.jobList() {
					n.learnPublish(j)
				}
			}
		}
	}()
	ls.log.Info("node: learning shared across nodes", "node_id", id)
	return ls, nil
}

// close stops the ticker and waits a little for uploads in flight.
func (ls *learnSharing) close() {
	close(ls.stop)
	done := make(chan struct{})
	go func() {
		ls.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(learnCloseWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	ls.cancel()
	<-done
}

func (n *Node) jobList() []*job {
	n.mu.Lock()
	defer n.mu.Unlock()
	jobs := make([]*job, 0, len(n.jobs))
	for _, j := range n.jobs {
		jobs = append(jobs, j)
	}
	return jobs
}

func sourceURL(bucket, prefix string) string { return "gs://" + bucket + "/" + prefix }

// learned is what other nodes published for a job and source, merged.
type learned struct {
	frames []prefetch.FrameFile
	coopen []json.RawMessage
}

// learnRead reads what other nodes published for job's reading of
// bucket/prefix. Nothing it meets is an error to the caller: an object
// that does not check out is logged and counted, a failed listing too.
func (n *Node) learnRead(ctx context.Context, job, bucket, prefix string) *learned {
	ls := n.ls
	ctx, cancel := context.WithTimeout(ctx, learnReadTimeout)
	defer cancel()
	bc, err := n.bucket(ctx, ls.bucket)
	if err != nil {
		ls.readErrors.Add(1)
		ls.log.Warn("node: shared learning not read", "job", job, "err", err)
		return nil
	}
	src := sourceURL(bucket, prefix)
	recs, ign, err := learnshare.Read(ctx, bc.gc, learnshare.Dir(ls.prefix, job, src), ls.node, job, src)
	if err != nil {
		ls.readErrors.Add(1)
		ls.log.Warn("node: shared learning not read", "job", job, "source", src, "err", err)
		return nil
	}
	for _, i := range ign {
		if learnshare.Malformed(i.Err) {
			ls.ignored.Add(1)
			ls.log.Warn("node: shared learning object ignored", "object", i.Name, "err", i.Err)
		} else {
			ls.readErrors.Add(1)
			ls.log.Warn("node: shared learning object not read", "object", i.Name, "err", i.Err)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	l := &learned{}
	seen := map[string]bool{}
	for _, r := range recs { // newest first: its files first
		for _, f := range r.Frames {
			k, _ := json.Marshal(f)
			if !seen[string(k)] && len(l.frames) < prefetch.MaxFrameFiles {
				seen[string(k)] = true
				l.frames = append(l.frames, f)
			}
		}
		if len(r.CoOpen) > 0 {
			l.coopen = append(l.coopen, r.CoOpen)
		}
	}
	ls.read.Add(int64(len(recs)))
	ls.log.Info("node: shared learning read", "job", job, "source", src, "objects", len(recs), "frame_files", len(l.frames))
	return l
}

// learnTeach gives a fresh view what other nodes learned.
func (n *Node) learnTeach(v *view, l *learned) {
	if l == nil {
		return
	}
	if len(l.frames) > 0 {
		v.engine.TeachFrames(l.frames)
	}
	for _, raw := range l.coopen {
		added, err := v.spec.ImportCoOpen(raw)
		if err != nil {
			n.ls.ignored.Add(1)
			n.ls.log.Warn("node: shared co-open groups ignored", "source", sourceURL(v.bucket, v.prefix), "err", err)
			continue
		}
		n.ls.coopenGroups.Add(int64(added))
	}
}

// learnPublish publishes, in the background, what each of the job's views
// learned, if it changed since its last publication.
func (n *Node) learnPublish(j *job) {
	if n.ls == nil {
		return
	}
	views := j.viewList()
	for _, v := range views {
		n.publishView(j.id, v)
	}
}

// publishView takes the view's knowledge now (cheap, in memory) and
// uploads it in the background. Uploads of one view run one at a time, a
// snapshot older than one already uploaded is dropped, and one equal to
// the last uploaded costs nothing.
func (n *Node) publishView(job string, v *view) {
	ls := n.ls
	frames := v.engine.FrameKnowledge(job)
	rec := learnshare.Record{Job: job, Source: sourceURL(v.bucket, v.prefix), Node: ls.node, Frames: frames}
	groups := learnshare.MaxCoOpenGroups
	var err error
	if rec.CoOpen, _, err = v.spec.ExportCoOpen(groups); err != nil {
		ls.log.Warn("node: co-open groups not shared", "err", err)
	}
	if len(rec.Frames) == 0 && len(rec.CoOpen) == 0 {
		return
	}
	body, _ := json.Marshal(rec)
	sum := sha256.Sum256(body)
	vl := v.learn
	if p := vl.sum.Load(); p != nil && *p == sum {
		ls.unchanged.Add(1)
		return
	}
	rec.Written = time.Now().Unix()
	data, err := learnshare.Encode(rec)
	for err != nil && (groups > 1 || len(rec.Frames) > 1) {
		// Past the bound: half the groups (the most recently led kept),
		// then half the files, until it fits.
		if groups > 1 {
			groups /= 2
			rec.CoOpen, _, _ = v.spec.ExportCoOpen(groups)
		} else {
			rec.Frames = rec.Frames[:len(rec.Frames)/2]
		}
		data, err = learnshare.Encode(rec)
	}
	if err != nil {
		ls.publishErrors.Add(1)
		ls.log.Warn("node: shared learning not published", "job", job, "err", err)
		return
	}
	seq := vl.seq.Add(1)
	ls.wg.Add(1)
	go func() {
		defer ls.wg.Done()
		vl.mu.Lock()
		defer vl.mu.Unlock()
		if seq <= vl.done {
			return // a later snapshot is uploaded already
		}
		if p := vl.sum.Load(); p != nil && *p == sum {
			vl.done = seq
			ls.unchanged.Add(1)
			return
		}
		bc, err := n.bucket(ls.ctx, ls.bucket)
		if err == nil {
			ctx, cancel := context.WithTimeout(ls.ctx, learnPublishTimeout)
			err = learnshare.Publish(ctx, bc.gc, learnshare.Dir(ls.prefix, job, rec.Source), ls.node, data)
			cancel()
		}
		if err != nil {
			ls.publishErrors.Add(1)
			if ls.failing.CompareAndSwap(false, true) {
				ls.log.Warn("node: shared learning not published (further failures are counted, not logged, until one succeeds)", "job", job, "err", err)
			}
			return
		}
		ls.failing.Store(false)
		vl.done = seq
		vl.sum.Store(&sum)
		ls.published.Add(1)
		ls.log.Debug("node: shared learning published", "job", job, "source", rec.Source, "bytes", len(data), "frame_files", len(rec.Frames))
	}()
}

// learnStatus is the node status's learn_shared.
func (n *Node) learnStatus(jobs []*job) *LearnSharedStatus {
	ls := n.ls
	if ls == nil {
		return nil
	}
	st := &LearnSharedStatus{Prefix: sourceURL(ls.bucket, ls.prefix), Node: ls.node, Published: ls.published.Load(),
		Unchanged: ls.unchanged.Load(), PublishErrors: ls.publishErrors.Load(), Read: ls.read.Load(), Ignored: ls.ignored.Load(),
		ReadErrors: ls.readErrors.Load(), CoOpenGroups: ls.coopenGroups.Load()}
	for _, j := range jobs {
		j.vmu.Lock()
		for _, v := range j.views {
			p, u := v.engine.SharedStats()
			st.Predictions += p
			st.PredictionsUsed += u
		}
		j.vmu.Unlock()
	}
	return st
}

// LearnSharedStatus is learning shared across nodes (--learn-prefix), in
// the node status.
type LearnSharedStatus struct {
	Prefix string `json:"prefix"` // gs://BUCKET/PREFIX/
	Node   string `json:"node"`   // this node's id in object names
	// Published counts objects uploaded; Unchanged, publications skipped
	// because the view's knowledge had not changed since its last upload;
	// PublishErrors, uploads that failed or knowledge past the bound.
	Published     int64 `json:"published"`
	Unchanged     int64 `json:"unchanged"`
	PublishErrors int64 `json:"publish_errors"`
	// Read counts other nodes' objects merged into a job's view; Ignored,
	// objects (or their co-open groups) that did not check out; ReadErrors,
	// listings and reads that failed.
	Read       int64 `json:"read"`
	Ignored    int64 `json:"ignored"`
	ReadErrors int64 `json:"read_errors"`
	// CoOpenGroups counts co-open groups taken from other nodes.
	CoOpenGroups int64 `json:"coopen_groups"`
	// Predictions are files of a job's first frame here (and the one
	// after) predicted from other nodes' frames, for the jobs on the node
	// now; PredictionsUsed, those the frame then opened.
	Predictions     int64 `json:"predictions"`
	PredictionsUsed int64 `json:"predictions_used"`
}
