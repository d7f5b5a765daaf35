package daemon

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/jitfs/jitfs/output"
)

// orphan is an output area no task serves any more whose staged files the
// node keeps uploading: what a killed or detached task had closed, or
// what a killed daemon left. No mount: only the uploaders run.
type orphan struct {
	dir    string
	cancel context.CancelFunc
	done   chan struct{}
}

// stop ends the uploads (what is left stays journalled) and waits.
func (o *orphan) stop() {
	o.cancel()
	<-o.done
}

// recoverStaging adopts every staging directory under the root: a daemon
// killed with outputs staged resumes their uploads at once, before any
// task asks.
func (n *Node) recoverStaging(ctx context.Context) {
	ents, err := os.ReadDir(n.cfg.StagingDir)
	if err != nil {
		n.log.Warn("node: read staging root", "dir", n.cfg.StagingDir, "err", err)
		return
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		bucket, prefix, ok := stagingSource(e.Name())
		if !ok {
			continue
		}
		n.adoptStaging(bucket, prefix, filepath.Join(n.cfg.StagingDir, e.Name()))
	}
}

// adoptStaging uploads what the staging directory holds, if anything,
// until it is durable or nothing can progress without help (interrupted
// or failed files, which the next task for the prefix or `jitfs flush
// --retry-failed` sees).
func (n *Node) adoptStaging(bucket, prefix, dir string) {
	ctx, cancel := context.WithCancel(context.Background())
	o := &orphan{dir: dir, cancel: cancel, done: make(chan struct{})}
	// Registered before the area is opened (and its staging lock taken),
	// so that a task attaching to the same prefix meanwhile waits for it.
	n.mu.Lock()
	if n.closing || n.orphans[dir] != nil {
		n.mu.Unlock()
		cancel()
		return
	}
	n.orphans[dir] = o
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		defer close(o.done)
		defer func() {
			n.mu.Lock()
			if n.orphans[dir] == o {
				delete(n.orphans, dir)
			}
			n.mu.Unlock()
		}()
		n.uploadOrphan(ctx, bucket, prefix, dir)
	}()
}

// uploadOrphan opens a staging directory without a mount and flushes it.
func (n *Node) uploadOrphan(ctx context.Context, bucket, prefix, dir string) {
	log := n.log.With("staging_dir", dir, "bucket", bucket, "prefix", prefix)
	bc, err := n.bucket(ctx, bucket)
	if err != nil {
		log.Error("node: staged outputs cannot be uploaded now; they stay staged for the next task or restart", "err", err)
		return
	}
	c := n.cfg.Output
	area, err := output.New(output.Options{Remote: bc.gc, Bucket: bucket, Prefix: prefix, StagingDir: dir, StagingBytes: n.cfg.StagingSize,
		Workers: c.Workers, MaxBackoff: c.MaxBackoff, UploadDelay: c.UploadDelay, UploadCutShort: c.UploadCutShort,
		InitialBackoff: min(250*time.Millisecond, c.MaxBackoff), Logger: log, Metrics: n.ops})
	if err != nil {
		log.Error("node: open staged outputs", "err", err)
		return
	}
	defer func() {
		if err := area.Close(); err != nil {
			log.Warn("node: close staged outputs", "err", err)
		}
	}()
	st := area.Status(^uint64(0))
	pending := 0
	for state, k := range st.Counts {
		if state != output.StateInterrupted && state != output.StateFailed && state != output.StateCutShort {
			pending += k
		}
	}
	if pending == 0 || ctx.Err() != nil {
		return
	}
	log.Info("node: uploading outputs staged by a task that is gone", "files", pending)
	res := area.Flush(ctx, false)
	switch {
	case res.Durable:
		log.Info("node: staged outputs of a gone task are durable")
	case ctx.Err() == nil:
		log.Warn("node: some staged outputs of a gone task cannot be uploaded without help", "not_durable", len(res.NotDurable))
	}
}

// stopOrphan ends the node's own uploads from a staging directory that a
// task is about to serve again; the task's area resumes them.
func (n *Node) stopOrphan(dir string) {
	n.mu.Lock()
	o := n.orphans[dir]
	n.mu.Unlock()
	if o != nil {
		o.stop()
	}
}
