package hooks

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// fakeOutputs is an output area as the server sees it.
type fakeOutputs struct {
	waits []time.Duration
	res   FlushResult
}

func (o *fakeOutputs) Flush(ctx context.Context, f Flush) (FlushResult, error) {
	o.waits = append(o.waits, f.Wait)
	return o.res, nil
}

func (o *fakeOutputs) OutputStatus(since uint64) OutputStatus {
	var evs []DurableOutput
	for _, s := range []uint64{3, 7, 9} {
		if s > since {
			evs = append(evs, DurableOutput{Seq: s, Path: "/m/f"})
		}
	}
	return OutputStatus{LastDurableSeq: 9, Durable: evs}
}

func TestFlushAndOutputStatus(t *testing.T) {
	out := &fakeOutputs{res: FlushResult{NotDurable: []OutputFile{{Path: "/m/a.exr", State: "failed", Error: "403"}}, NotDurableTotal: 1}}
	sock := filepath.Join(t.TempDir(), "s.sock")
	s, err := NewServer(ServerOptions{Mountpoint: "/m", Outputs: out, SocketPath: sock, MaxWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer s.Close()
	cl := NewClient(sock, 5*time.Second)
	defer cl.Close()
	ctx := context.Background()

	rep, err := cl.Flush(ctx, FlushRequest{WaitMS: 5000, RequestID: "r"})
	if err != nil || rep.Durable || rep.NotDurableTotal != 1 || rep.NotDurable[0].State != "failed" || rep.RequestID != "r" {
		t.Fatalf("flush: %+v %v", rep, err)
	}
	if rep.WaitClampedMS != 1000 || out.waits[0] != time.Second {
		t.Fatalf("wait not clamped: %+v %v", rep, out.waits)
	}
	st, err := cl.StatusSince(ctx, 7)
	if err != nil || st.Outputs == nil || len(st.Outputs.Durable) != 1 || st.Outputs.Durable[0].Seq != 9 {
		t.Fatalf("status since 7: %+v %v", st.Outputs, err)
	}
	// An output area's daemon has no prefetch engine, and says so.
	_, err = cl.Prefetch(ctx, PrefetchRequest{Scope: ScopeJob, Items: []Item{{Path: "/m/x"}}})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Reason != reasonNoPrefetch {
		t.Fatalf("prefetch on an output daemon: %v", err)
	}
	if _, err := cl.Flush(ctx, FlushRequest{WaitMS: -1}); !errors.As(err, &apiErr) || apiErr.Reason != reasonBadWait {
		t.Fatalf("negative wait: %v", err)
	}
}

func TestFlushOnAPrefetchDaemon(t *testing.T) {
	ts := startServer(t, nil, nil)
	cl := NewClient(ts.sock, 5*time.Second)
	defer cl.Close()
	_, err := cl.Flush(context.Background(), FlushRequest{})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Reason != reasonNoOutputs {
		t.Fatalf("flush on a prefetch daemon: %v", err)
	}
	st, err := cl.Status(context.Background())
	if err != nil || st.Outputs != nil {
		t.Fatalf("status of a prefetch daemon: %+v %v", st.Outputs, err)
	}
}
