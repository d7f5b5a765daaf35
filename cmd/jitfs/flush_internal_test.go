package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitfs/jitfs/hooks"
)

// TestFlushTimeoutIsNotDurable: when --timeout runs out while the daemon
// holds a waiting flush (the daemon answers only at the end of the wait it
// was given, as a daemon busy retrying does), the command still reports
// what is not durable instead of failing with the client's own deadline
// (which exited 1, not 75, for any --timeout over the daemon's 60 s).
// The stand-in daemon speaks the flush wire format only: the exit code
// with a real daemon is checked by the output tests in output_test.go.
func TestFlushTimeoutIsNotDurable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var waiting atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req hooks.FlushRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if req.WaitMS > 0 {
			// Hold past the client's deadline: the race the margin and
			// the final no-wait request exist for.
			waiting.Add(1)
			<-r.Context().Done()
			return
		}
		json.NewEncoder(w).Encode(hooks.FlushReply{Schema: hooks.Schema, NotDurableTotal: 1,
			NotDurable: []hooks.OutputFile{{Path: "/out/a.exr", State: "retrying"}}})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	cl := hooks.NewClient(sock, 30*time.Second)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	rep, err := flushOnce(ctx, cl, true, false)
	if err != nil {
		t.Fatalf("flush that ran out of time: %v (want a not-durable report, exit 75)", err)
	}
	if rep.Durable || rep.NotDurableTotal != 1 || !rep.TimedOut {
		t.Errorf("report %+v, want not durable with one output, timed out", rep)
	}
	if waiting.Load() == 0 {
		t.Error("the waiting request never reached the daemon")
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("ctx: %v", ctx.Err())
	}
}
