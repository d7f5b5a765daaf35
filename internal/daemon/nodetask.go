package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/jitfs"
)

// task is one attached `jitfs run`: its directories, served by the node.
type task struct {
	id, name string
	pid      int
	job      *job
	attached time.Time

	scenes []*taskScene
	outs   []*Output
	hooks  *hooks.Server

	detachOnce sync.Once
	detachErr  error
	done       chan struct{} // closed once detached
}

type taskScene struct {
	src Source
	v   *view
	fs  *jitfs.FS
	srv *fuse.Server
}

func (t *task) status() TaskStatus {
	st := TaskStatus{ID: t.id, Name: t.name, PID: t.pid, Attached: unixSecs(t.attached), Mounts: []string{}, Outputs: []string{}}
	if t.hooks != nil {
		st.Socket = t.hooks.SocketPath()
	}
	for _, s := range t.scenes {
		st.Mounts = append(st.Mounts, s.src.Dir)
	}
	for _, o := range t.outs {
		st.Outputs = append(st.Outputs, o.Config.Mountpoint)
	}
	return st
}

// taskRecord is what the node keeps on disk of a live task, so that a
// daemon restarted after a crash can detach the task's dead mounts.
type taskRecord struct {
	ID   string   `json:"id"`
	Job  string   `json:"job"`
	Dirs []string `json:"dirs"`
}

// StagingDirFor is the staging directory of an output prefix under root:
// keyed by bucket and prefix, so a task retried on the same node resumes
// what its predecessor staged there.
func StagingDirFor(root, bucket, prefix string) string {
	return filepath.Join(root, url.PathEscape(bucket+"/"+strings.TrimSuffix(prefix, "/")))
}

// stagingSource is StagingDirFor's inverse on the directory's name.
func stagingSource(name string) (bucket, prefix string, ok bool) {
	s, err := url.PathUnescape(name)
	if err != nil || s == "" {
		return "", "", false
	}
	bucket, prefix, _ = strings.Cut(s, "/")
	if bucket == "" {
		return "", "", false
	}
	if prefix != "" {
		prefix += "/"
	}
	return bucket, prefix, true
}

// checkAttach refuses a request that could not be served whole.
func checkAttach(req AttachRequest) error {
	if len(req.Mounts)+len(req.Outputs) == 0 {
		return errors.New("no mount and no output")
	}
	seen := map[string]bool{}
	for _, s := range append(append([]Source{}, req.Mounts...), req.Outputs...) {
		switch {
		case s.Bucket == "":
			return fmt.Errorf("%s: no bucket", s.Dir)
		case !filepath.IsAbs(s.Dir):
			return fmt.Errorf("directory %q is not absolute", s.Dir)
		case s.Prefix != "" && !strings.HasSuffix(s.Prefix, "/"):
			return fmt.Errorf("prefix %q does not end in /", s.Prefix)
		case seen[filepath.Clean(s.Dir)]:
			return fmt.Errorf("%s is given twice", s.Dir)
		}
		seen[filepath.Clean(s.Dir)] = true
	}
	return nil
}

// attach serves a task's directories. On error nothing stays mounted.
// The task is published (in status, to detach and to Close) only once it
// is whole; until then the job counts it as pending, so it cannot end.
func (n *Node) attach(ctx context.Context, req AttachRequest, caller *Caller) (*task, error) {
	if err := checkAttach(req); err != nil {
		return nil, err
	}
	if err := caller.mayMount(req); err != nil {
		return nil, err
	}
	t := &task{id: newID(), name: req.Name, pid: req.PID, attached: time.Now(), done: make(chan struct{})}
	jobID := req.Job
	if jobID == "" {
		jobID = "task-" + t.id // a task with no job is its own job
	}
	j, err := n.joinJob(jobID)
	if err != nil {
		return nil, err
	}
	defer n.attaching.Done()
	t.job = j
	ok := false
	defer func() {
		if !ok {
			n.teardown(t)
			n.leaveJob(j, nil)
		}
	}()
	if err := n.writeTaskRecord(t, req); err != nil {
		return nil, err
	}
	for _, s := range req.Mounts {
		v, err := j.view(ctx, n, s.Bucket, s.Prefix)
		if err != nil {
			return nil, err
		}
		if err := n.mountScene(t, v, s); err != nil {
			return nil, err
		}
	}
	for _, s := range req.Outputs {
		if err := n.mountOutput(ctx, t, s); err != nil {
			return nil, err
		}
	}
	if err := n.taskHooks(t); err != nil {
		return nil, err
	}
	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		return nil, errors.New("the node daemon is stopping")
	}
	j.pending--
	j.tasks[t.id] = t
	n.tasks[t.id] = t
	n.mu.Unlock()
	ok = true
	n.log.Info("node: task attached", "task", t.id, "name", t.name, "job", j.id, "pid", t.pid,
		"mounts", len(t.scenes), "outputs", len(t.outs), "socket", t.hooks.SocketPath())
	return t, nil
}

// joinJob finds or starts the job and counts a task pending in it. A job
// still ending (its pins being released, its snapshot forgotten) is waited
// for, and a fresh one started: the new task never sees the old listings.
// On success the caller must call n.attaching.Done.
func (n *Node) joinJob(id string) (*job, error) {
	for {
		n.mu.Lock()
		if n.closing {
			n.mu.Unlock()
			return nil, errors.New("the node daemon is stopping")
		}
		j := n.jobs[id]
		if j != nil && j.ended {
			n.mu.Unlock()
			<-j.endDone
			continue
		}
		if j == nil {
			j = n.newJob(id, time.Now())
			n.jobs[id] = j
		}
		if j.timer != nil {
			j.timer.Stop()
			j.timer = nil
		}
		j.detached = time.Time{}
		j.pending++
		n.attaching.Add(1)
		n.mu.Unlock()
		n.persistJob(j)
		return j, nil
	}
}

// leaveJob takes a task (t, or a pending one when t is nil) out of its
// job; a job left with none starts its grace period.
func (n *Node) leaveJob(j *job, t *task) {
	n.mu.Lock()
	if t != nil {
		delete(n.tasks, t.id)
		delete(j.tasks, t.id)
	} else {
		j.pending--
	}
	idle := len(j.tasks) == 0 && j.pending == 0 && !j.ended
	if idle {
		j.detached = time.Now()
		if !n.closing {
			n.scheduleEndLocked(j)
		}
	}
	n.mu.Unlock()
	if idle {
		n.persistJob(j)
	}
}

func (n *Node) mountScene(t *task, v *view, s Source) error {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	mp, err := checkMountpoint(s.Dir, n.log)
	if err != nil {
		return err
	}
	hidden := hiddenFiles(mp)
	bc, err := n.bucket(context.Background(), s.Bucket)
	if err != nil {
		return err
	}
	fsys, err := jitfs.New(jitfs.Options{Remote: bc.gc, Cache: n.Cache, Namespace: v.ns, OpTimeout: n.cfg.OpTimeout,
		Passthrough: n.cfg.Passthrough, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		Logger: n.log.With("job", t.job.id, "task", t.id), Metrics: t.job.ops, Job: t.job.id, Task: t.id})
	if err != nil {
		return err
	}
	srv, err := fsys.Mount(mp, jitfs.MountOptions{FsName: "gs://" + s.Bucket + "/" + s.Prefix, AllowOther: n.cfg.AllowOther})
	if err != nil {
		fsys.Close()
		return err
	}
	fsys.SetOpenObserver(observer(v.engine, v.spec))
	warnHidden(hidden, mp, n.log)
	s.Dir = mp
	t.scenes = append(t.scenes, &taskScene{src: s, v: v, fs: fsys, srv: srv})
	return nil
}

func (n *Node) mountOutput(ctx context.Context, t *task, s Source) error {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	staging := StagingDirFor(n.cfg.StagingDir, s.Bucket, s.Prefix)
	// What an earlier task left staged for this prefix is the new task's
	// to finish: the area it is uploaded from moves to the new mount.
	n.stopOrphan(staging)
	c := n.cfg.Output
	c.Bucket, c.Prefix, c.Mountpoint, c.StagingDir, c.StagingSize = s.Bucket, s.Prefix, s.Dir, staging, n.cfg.StagingSize
	c.Endpoint, c.AllowOther, c.Socket = n.cfg.Endpoint, n.cfg.AllowOther, "none"
	c.Log, c.Telemetry = n.log.With("job", t.job.id, "task", t.id), n.cfg.Telemetry
	o, err := StartOutput(ctx, c)
	if err != nil {
		return err
	}
	t.outs = append(t.outs, o)
	return nil
}

// taskHooks serves the task's hook API: prefetch through its job's engine
// for its first mount, flush and status for its first output area.
func (n *Node) taskHooks(t *task) error {
	opts := hooks.ServerOptions{SocketGroup: n.cfg.SocketGroup, Logger: n.log, Metrics: n.ops}
	if len(t.scenes) > 0 {
		s := t.scenes[0]
		opts.Mountpoint, opts.Backend, opts.ListDir = s.src.Dir, withSpeculation(s.v.engine, s.v.spec, nil, s.v.now(n.Cache, t.job.id)), s.fs.ListDir
	}
	if len(t.outs) > 0 {
		opts.Outputs = outputsAPI{o: t.outs[0]}
		if opts.Mountpoint == "" {
			opts.Mountpoint = t.outs[0].Config.Mountpoint
		}
	}
	// Beside the control socket, named as the mount's default socket is:
	// at the default location `jitfs prefetch PATH` finds it without
	// JITFS_SOCKET.
	opts.SocketPath = filepath.Join(filepath.Dir(n.cfg.Socket), filepath.Base(hooks.DefaultSocket(opts.Mountpoint)))
	if len(opts.SocketPath) > 107 {
		// Too long for sun_path beside a deep control socket: by task id
		// (the command gets it in JITFS_SOCKET).
		opts.SocketPath = filepath.Join(filepath.Dir(n.cfg.Socket), "task-"+t.id+".sock")
	}
	hs, err := hooks.NewServer(opts)
	if err != nil {
		return err
	}
	t.hooks = hs
	serveHooks(hs, n.log)
	return nil
}

// detach unmounts a task's directories and closes its output areas (what
// they staged keeps uploading from the node until durable). The task's
// job, when this was its last task, ends after the grace period.
func (n *Node) detach(t *task, why string) error {
	t.detachOnce.Do(func() {
		t.detachErr = n.teardown(t)
		n.leaveJob(t.job, t)
		n.learnPublish(t.job)
		n.log.Info("node: task detached", "task", t.id, "job", t.job.id, "why", why, "err", t.detachErr)
		close(t.done)
	})
	return t.detachErr
}

// teardown undoes what attach set up: the hook socket, the mounts, the
// output areas (their staged files go on uploading as orphans) and the
// task's record.
func (n *Node) teardown(t *task) error {
	var errs []error
	if t.hooks != nil {
		if err := t.hooks.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range t.scenes {
		if err := unmount(s.srv, s.src.Dir, n.log); err != nil {
			errs = append(errs, err)
		}
		s.fs.Close()
	}
	for _, o := range t.outs {
		if err := o.Close(); err != nil {
			errs = append(errs, err)
		}
		n.adoptStaging(o.Config.Bucket, o.Config.Prefix, o.Config.StagingDir)
	}
	os.Remove(filepath.Join(n.tasksDir, t.id+".json"))
	return errors.Join(errs...)
}

func (n *Node) writeTaskRecord(t *task, req AttachRequest) error {
	rec := taskRecord{ID: t.id, Job: t.job.id}
	for _, s := range append(append([]Source{}, req.Mounts...), req.Outputs...) {
		rec.Dirs = append(rec.Dirs, filepath.Clean(s.Dir))
	}
	b, _ := json.Marshal(rec)
	p := filepath.Join(n.tasksDir, t.id+".json")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("node: task record: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("node: task record: %w", err)
	}
	return nil
}

// recoverTasks detaches the dead mounts of tasks a killed daemon served:
// their readers have had ENOTCONN since it died, and a retried task
// mounts the same directories again.
func (n *Node) recoverTasks() {
	ents, err := os.ReadDir(n.tasksDir)
	if err != nil {
		n.log.Warn("node: read task records", "dir", n.tasksDir, "err", err)
		return
	}
	for _, e := range ents {
		p := filepath.Join(n.tasksDir, e.Name())
		b, err := os.ReadFile(p)
		var rec taskRecord
		if err == nil && json.Unmarshal(b, &rec) == nil {
			for _, d := range rec.Dirs {
				for deadMount(d) {
					if err := syscall.Unmount(d, syscall.MNT_DETACH); err != nil {
						n.log.Warn("node: detach a dead task mount", "dir", d, "err", err)
						break
					}
					n.log.Info("node: detached a dead mount of a task the previous daemon served", "dir", d, "task", rec.ID, "job", rec.Job)
				}
			}
		}
		os.Remove(p)
	}
}
