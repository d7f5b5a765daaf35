package cache_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/internal/progress"
	"github.com/jitfs/jitfs/internal/testworld"
)

// halfwaySource reports half of each range received, then holds it until
// open is closed: a fetch caught mid-transfer on a slow link.
type halfwaySource struct {
	cache.Source
	started chan struct{}
	open    chan struct{}
}

func (s *halfwaySource) ReadRange(ctx context.Context, name string, gen, off int64, p []byte) error {
	progress.Add(ctx, int64(len(p)/2))
	s.started <- struct{}{}
	<-s.open
	return s.Source.ReadRange(ctx, name, gen, off, p)
}

// TestNowShowsFetchesAndBlockedReads catches a reader's miss and a
// prefetch mid-transfer: Now names each fill with who asked and how far
// its bytes are, the read blocked on the first with its reader, filters
// and bounds what it returns, and forgets both once the bytes are stored.
func TestNowShowsFetchesAndBlockedReads(t *testing.T) {
	e := newEnv(t)
	_, mRead := e.put(t, "tex/read.bin", 4<<20)
	_, mPre := e.put(t, "tex/pre.bin", 4<<20)
	src := &halfwaySource{Source: e.GCS, started: make(chan struct{}, 16), open: make(chan struct{})}
	c := newCache(t, filepath.Join(t.TempDir(), "c"), 1<<30)
	if now := c.Now(nil, 0); len(now.Fetches)+len(now.Blocked) != 0 {
		t.Fatalf("idle cache: %+v", now)
	}
	hr, err := c.Open(mRead, src)
	if err != nil {
		t.Fatal(err)
	}
	defer hr.Close()
	hp, err := c.Open(mPre, src)
	if err != nil {
		t.Fatal(err)
	}
	defer hp.Close()

	reader := cache.Asker{Job: "j1", Task: "t1", PID: 4242}
	prefetcher := cache.Asker{Job: "j2", Task: "t9", Band: "frame"}
	var wg sync.WaitGroup
	var readErr, fetchErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, readErr = hr.ReadAt(cache.WithAsker(context.Background(), reader), make([]byte, 100_000), 1<<20)
	}()
	go func() {
		defer wg.Done()
		_, fetchErr = hp.Fetch(cache.WithAsker(context.Background(), prefetcher), 0, 4<<20)
	}()
	released := false
	defer func() {
		if !released {
			close(src.open)
		}
	}()

	var now cache.Now
	var readFill, preFill *cache.FetchNow
	testworld.WaitFor(t, "the read's fill, the prefetch's and the blocked read", func() bool {
		now = c.Now(nil, 0)
		readFill, preFill = nil, nil
		for i, f := range now.Fetches {
			switch f.Object.Name {
			case mRead.Name:
				readFill = &now.Fetches[i]
			case mPre.Name:
				preFill = &now.Fetches[i]
			}
		}
		// Each fill has reported its first half once the source holds it.
		return readFill != nil && preFill != nil && len(now.Blocked) == 1 &&
			readFill.Done > 0 && preFill.Done > 0 && len(src.started) >= 2
	})
	if readFill.Band != cache.BandRead || readFill.Who != reader || readFill.Done != readFill.Total/2 ||
		readFill.Off > 1<<20 || readFill.Off+readFill.Total < 1<<20+100_000 {
		t.Errorf("the reader's fill: %+v", *readFill)
	}
	if preFill.Band != "frame" || preFill.Who != prefetcher || preFill.Total != 4<<20 || preFill.Done != 2<<20 {
		t.Errorf("the prefetch's fill: %+v", *preFill)
	}
	b := now.Blocked[0]
	if b.Object.Name != mRead.Name || b.Off != 1<<20 || b.Len != 100_000 || b.Who != reader ||
		b.Done != readFill.Done || b.Total != readFill.Total {
		t.Errorf("blocked read: %+v, its fill %+v", b, *readFill)
	}
	for _, since := range []time.Time{readFill.Since, preFill.Since, b.Since} {
		if since.IsZero() || since.After(time.Now()) {
			t.Errorf("start time %v", since)
		}
	}
	if now.FetchesTotal != len(now.Fetches) || now.BlockedTotal != 1 {
		t.Errorf("totals: %d fetches (%d listed), %d blocked", now.FetchesTotal, len(now.Fetches), now.BlockedTotal)
	}
	for i := 1; i < len(now.Fetches); i++ {
		if now.Fetches[i].Since.Before(now.Fetches[i-1].Since) {
			t.Errorf("fetches not oldest first: %+v", now.Fetches)
		}
	}

	// A filter sees the asker; a bound keeps the oldest and counts the rest.
	mine := c.Now(func(m cache.Meta, who cache.Asker) bool { return who.Job == "j2" }, 0)
	if len(mine.Fetches) != 1 || mine.Fetches[0].Object.Name != mPre.Name || len(mine.Blocked) != 0 {
		t.Errorf("job j2's: %+v", mine)
	}
	one := c.Now(nil, 1)
	if len(one.Fetches) != 1 || one.Fetches[0].Since != now.Fetches[0].Since || one.FetchesTotal != len(now.Fetches) {
		t.Errorf("bounded to 1: %+v (all: %+v)", one, now.Fetches)
	}

	close(src.open)
	released = true
	wg.Wait()
	if readErr != nil || fetchErr != nil {
		t.Fatalf("read: %v; fetch: %v", readErr, fetchErr)
	}
	testworld.WaitFor(t, "nothing in flight once the bytes are stored", func() bool {
		now = c.Now(nil, 0)
		return len(now.Fetches)+len(now.Blocked) == 0
	})
}
