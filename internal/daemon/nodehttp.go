package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jitfs/jitfs/hooks"
)

const maxControlBody = 1 << 20

type errorReply struct {
	Schema string `json:"schema"`
	Error  string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, errorReply{Schema: NodeSchema, Error: fmt.Sprintf(format, args...)})
}

// handleAttach serves a task for as long as its connection lasts.
func (n *Node) handleAttach(w http.ResponseWriter, r *http.Request) {
	var req AttachRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, AttachReply{Schema: NodeSchema, Error: "bad request: " + err.Error()})
		return
	}
	// Mounting is not cut short by the caller going away half-way: the
	// task is detached right after instead, so nothing is left mounted.
	// The body is drained to its end: only then does the server watch the
	// connection, and cancel the request's context when it closes.
	io.Copy(io.Discard, r.Body)
	t, err := n.attach(context.WithoutCancel(r.Context()), req, callerOf(r.Context()))
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, AttachReply{Schema: NodeSchema, Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, AttachReply{Schema: NodeSchema, Task: t.id, Job: t.job.id, Socket: t.hooks.SocketPath()})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	select {
	case <-r.Context().Done():
		// The `jitfs run` that attached is gone (killed outright): its
		// command is gone with it, so the directories are not needed.
		n.detach(t, "the attached jitfs run went away")
	case <-t.done:
	}
}

func (n *Node) task(w http.ResponseWriter, r *http.Request) *task {
	id := r.PathValue("id")
	n.mu.Lock()
	t := n.tasks[id]
	n.mu.Unlock()
	if t == nil {
		writeError(w, http.StatusNotFound, "no task %q on this node", id)
	}
	return t
}

func (n *Node) handleFlush(w http.ResponseWriter, r *http.Request) {
	t := n.task(w, r)
	if t == nil {
		return
	}
	var req FlushTaskRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad request: %v", err)
		return
	}
	wait := time.Duration(req.WaitMS) * time.Millisecond
	rep := FlushTaskReply{Schema: NodeSchema, Outputs: []OutputFlush{}}
	for _, o := range t.outs {
		res, err := outputsAPI{o: o}.Flush(r.Context(), hooks.Flush{Wait: wait, RetryFailed: req.RetryFailed})
		if err != nil {
			writeError(w, http.StatusInternalServerError, "flush %s: %v", o.Config.Mountpoint, err)
			return
		}
		rep.Outputs = append(rep.Outputs, OutputFlush{Dir: o.Config.Mountpoint, StagingDir: o.Config.StagingDir, FlushResult: res})
	}
	writeJSON(w, http.StatusOK, rep)
}

func (n *Node) handleDetach(w http.ResponseWriter, r *http.Request) {
	t := n.task(w, r)
	if t == nil {
		return
	}
	if err := n.detach(t, "detached by jitfs run"); err != nil {
		writeError(w, http.StatusInternalServerError, "detach: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, errorReply{Schema: NodeSchema})
}

func (n *Node) handleRelease(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	found, err := n.release(r.Context(), id)
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, "release %s: %v", id, err)
	case !found:
		writeError(w, http.StatusNotFound, "no job %q on this node", id)
	default:
		writeJSON(w, http.StatusOK, errorReply{Schema: NodeSchema})
	}
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.Status())
}

// handleHealth answers without taking any lock a busy job holds: the cheap
// question "is a node daemon there".
func (n *Node) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, errorReply{Schema: NodeSchema})
}

// handleTask answers whether the task is attached (200) or not (404).
func (n *Node) handleTask(w http.ResponseWriter, r *http.Request) {
	if t := n.task(w, r); t != nil {
		writeJSON(w, http.StatusOK, errorReply{Schema: NodeSchema})
	}
}

// Caller is the process on the other end of the control socket
// (SO_PEERCRED).
type Caller struct {
	UID, GID uint32
	PID      int32
}

type callerKey struct{}

// withCaller records the connection's peer credentials in its context.
func withCaller(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	var cerr error
	raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if cerr != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, callerKey{}, &Caller{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid})
}

func callerOf(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

// mayMount refuses to mount, as root, at a directory the caller does not
// own: the socket's group may attach tasks at their own directories, not
// over /etc. Root may attach anywhere.
func (c *Caller) mayMount(req AttachRequest) error {
	if c == nil {
		return errors.New("cannot tell who is asking (no peer credentials on the control socket)")
	}
	if c.UID == 0 {
		return nil
	}
	for _, s := range append(append([]Source{}, req.Mounts...), req.Outputs...) {
		// The directory, or its nearest existing ancestor (attach creates
		// the rest), must be the caller's.
		p := filepath.Clean(s.Dir)
		for {
			if real, err := filepath.EvalSymlinks(p); err == nil {
				fi, err := os.Stat(real)
				if err != nil {
					return fmt.Errorf("%s: %w", s.Dir, err)
				}
				if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != c.UID {
					return fmt.Errorf("%s: uid %d does not own %s; only root may attach a task at a directory it does not own", s.Dir, c.UID, real)
				}
				break
			}
			if p == "/" {
				return fmt.Errorf("%s: no existing ancestor", s.Dir)
			}
			p = filepath.Dir(p)
		}
	}
	return nil
}
