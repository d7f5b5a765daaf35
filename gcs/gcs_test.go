package gcs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/internal/testworld"
)

// setup is a versioned bucket "b" and a client that retries quickly, so
// fault tests do not wait out production backoffs.
func setup(t *testing.T) *testworld.World {
	t.Helper()
	return testworld.New(t, testworld.Options{Bucket: "b", Versioning: true,
		Client: gcs.Options{InitialBackoff: time.Millisecond, AttemptTimeout: time.Second}})
}

func TestStatListAndRangedReadsPinnedToGeneration(t *testing.T) {
	w := setup(t)
	c := w.GCS
	ctx := context.Background()
	w.Put("dir/a", []byte("first version"))
	w.Put("dir/sub/x", []byte("x"))
	a, err := c.Stat(ctx, "dir/a")
	if err != nil || a.Size != 13 || a.Generation == 0 || !a.HasCRC32C {
		t.Fatalf("stat: %+v %v", a, err)
	}
	w.Put("dir/a", []byte("second version!"))
	p := make([]byte, 7)
	if err := c.ReadRange(ctx, "dir/a", a.Generation, 6, p); err != nil || string(p) != "version" {
		t.Fatalf("pinned read: %q %v", p, err)
	}
	page, err := c.ListPage(ctx, "dir/", "", 0)
	if err != nil || len(page.Objects) != 1 || len(page.Prefixes) != 1 || page.Prefixes[0] != "dir/sub/" {
		t.Fatalf("list: %+v %v", page, err)
	}
	if _, err := c.Stat(ctx, "dir/none"); !errors.Is(err, gcs.ErrNotFound) || !gcs.IsPermanent(err) {
		t.Fatalf("missing object: %v", err)
	}
	if err := c.ReadRange(ctx, "dir/a", a.Generation+12345, 0, p); !errors.Is(err, gcs.ErrNotFound) {
		t.Fatalf("vanished generation: %v", err)
	}
}

func TestRetriesTransientFaultsThenGivesUp(t *testing.T) {
	w := setup(t)
	c, proxy := w.GCS, w.Proxy
	ctx := context.Background()
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(i * 31 / 7)
	}
	w.Put("o", want)
	a, _ := c.Stat(ctx, "o")
	p := make([]byte, 1<<20)
	proxy.FailMedia.Store(2)
	proxy.TruncateMedia.Store(1)
	if err := c.ReadRange(ctx, "o", a.Generation, 0, p); err != nil {
		t.Fatalf("transient faults not retried: %v", err)
	}
	if string(p) != string(want) {
		t.Fatal("wrong bytes after faults")
	}
	// Two 503s are our retries; the storage client resumes a truncated
	// body itself, which the proxy sees as one more request.
	if c.Stats.Retries.Load() != 2 || proxy.MediaReqs.Load() != 4 {
		t.Fatalf("retries = %d, media requests = %d; want 2 and 4", c.Stats.Retries.Load(), proxy.MediaReqs.Load())
	}
	proxy.Outage.Store(true)
	err := c.ReadRange(ctx, "o", a.Generation, 0, p)
	if err == nil || gcs.IsPermanent(err) {
		t.Fatalf("outage: %v", err)
	}
	if err := (&gcs.Options{Bucket: "bad/name"}).Validate(); err == nil {
		t.Fatal("bad bucket name accepted")
	}
}

func TestMissingBucket(t *testing.T) {
	w := setup(t)
	c := w.NewClient(t, gcs.Options{Bucket: "absent"})
	if err := c.CheckBucket(context.Background()); !errors.Is(err, gcs.ErrBucketNotFound) {
		t.Fatalf("missing bucket: %v", err)
	}
}
