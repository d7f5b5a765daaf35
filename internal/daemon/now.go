package daemon

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/hooks"
)

// nowScope is the part of the cache's record of what is in flight that
// one status shows: a source's objects (bucket and prefix; paths are
// shown relative to it) and, on the node, one job's. The cache is the
// node's, shared by every job, so without the job a status would show
// another job's fetches as its own.
type nowScope struct {
	c              *cache.Cache
	bucket, prefix string
	// job, when set, keeps what that job asked for, and what nobody named
	// a job for (a hook request without one, through this job's engine).
	job string
}

// add fills st.Fetching and st.Blocked, the oldest hooks.MaxNow of each.
// A scope without a cache (a test's) adds nothing.
func (s nowScope) add(st *hooks.Status) {
	if s.c == nil {
		return
	}
	now := s.c.Now(func(m cache.Meta, who cache.Asker) bool {
		return m.Bucket == s.bucket && strings.HasPrefix(m.Name, s.prefix) && (s.job == "" || who.Job == "" || who.Job == s.job)
	}, hooks.MaxNow)
	t := time.Now()
	procs := map[int]int{}
	st.Fetching = make([]hooks.ActiveFetch, 0, len(now.Fetches))
	for _, f := range now.Fetches {
		st.Fetching = append(st.Fetching, hooks.ActiveFetch{Path: strings.TrimPrefix(f.Object.Name, s.prefix), Offset: f.Off,
			BytesDone: f.Done, BytesTotal: f.Total, AgeMS: t.Sub(f.Since).Milliseconds(),
			Job: f.Who.Job, Task: f.Who.Task, Band: f.Band, PID: process(procs, f.Who.PID)})
	}
	st.Blocked = make([]hooks.BlockedRead, 0, len(now.Blocked))
	for _, b := range now.Blocked {
		st.Blocked = append(st.Blocked, hooks.BlockedRead{Path: strings.TrimPrefix(b.Object.Name, s.prefix), Offset: b.Off,
			Length: b.Len, BytesDone: b.Done, BytesTotal: b.Total, AgeMS: t.Sub(b.Since).Milliseconds(),
			PID: process(procs, b.Who.PID), Job: b.Who.Job, Task: b.Who.Task})
	}
}

// process is the process (thread group) of thread tid: the kernel names
// the thread that sent a FUSE request, and an operator looks for the
// renderer's pid, not one of its threads'. Looked up when a status asks,
// never on the read path; seen caches the answers of one status. A thread
// gone since keeps its own id.
func process(seen map[int]int, tid int) int {
	if tid <= 0 {
		return tid
	}
	if pid, ok := seen[tid]; ok {
		return pid
	}
	pid := tid
	if f, err := os.Open("/proc/" + strconv.Itoa(tid) + "/status"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "Tgid:"); ok {
				if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
					pid = n
				}
				break
			}
		}
		f.Close()
	}
	seen[tid] = pid
	return pid
}
