package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

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
	t, err := n.attach(context.WithoutCancel(r.Context()), req)
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
