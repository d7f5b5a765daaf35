package cache

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/jitfs/jitfs/internal/progress"
)

// Asker says whom a fetch or a read is for, so that what the node is doing
// now (Cache.Now) can name who asked. The cache only carries it: the FUSE
// layer names, once per open (Handle.SetAsker), the opening process and
// the task its mount serves; the
// prefetch engine the job, task and scope of the request.
type Asker struct {
	Job, Task string
	// Band is the prefetch scope ("frame", "job", "lookahead", ...) of a
	// Handle.Fetch; empty, the cache names the fill by its kind: "read" for
	// a reader's miss, "readahead", "prefetch" or "speculative".
	Band string
	PID  int // the process that opened the file, for reads
}

type askerKey struct{}

// WithAsker returns ctx naming who the reads and fetches under it are for.
func WithAsker(ctx context.Context, a Asker) context.Context {
	return context.WithValue(ctx, askerKey{}, a)
}

func askerOf(ctx context.Context) Asker {
	a, _ := ctx.Value(askerKey{}).(Asker)
	return a
}

// The bands the cache gives fills whose asker named none.
const (
	BandRead        = "read"
	BandReadAhead   = "readahead"
	BandPrefetch    = "prefetch"
	BandSpeculative = "speculative"
)

// FetchNow is one fill in flight: a range of an object being fetched from
// the source (GCS or the zone cache).
type FetchNow struct {
	Object Meta
	Off    int64 // where the range starts
	// Done counts the bytes received so far of Total, the range's length.
	Done, Total int64
	Since       time.Time
	Band        string
	Who         Asker
}

// BlockedNow is one read waiting for bytes being fetched.
type BlockedNow struct {
	Object   Meta
	Off, Len int64 // what the reader wants
	// Done and Total are the progress of the fill the read waits on.
	Done, Total int64
	Since       time.Time
	Who         Asker
}

// Now is what the cache is doing at one moment, oldest first.
type Now struct {
	Fetches []FetchNow
	Blocked []BlockedNow
	// FetchesTotal and BlockedTotal count what matched, also beyond the
	// bound the lists were cut to.
	FetchesTotal, BlockedTotal int
}

// activity records the fills in flight and the reads blocked on them. An
// entry is added and removed once per fill or blocked read, under mu; the
// bytes a fill has received move with atomics in the fill itself
// (fill.got), so the bytes' path takes no lock.
type activity struct {
	mu      sync.Mutex
	fills   map[*fill]struct{}
	blocked map[*blockedRead]struct{}
}

// blockedRead is a read waiting on fill f (guarded by activity.mu: a read
// that waits on a second fill moves to it).
type blockedRead struct {
	o        *Object
	off, len int64
	f        *fill
	since    time.Time
	who      Asker
}

func (a *activity) addFill(f *fill) {
	a.mu.Lock()
	if a.fills == nil {
		a.fills = map[*fill]struct{}{}
	}
	a.fills[f] = struct{}{}
	a.mu.Unlock()
}

func (a *activity) endFill(f *fill) {
	a.mu.Lock()
	delete(a.fills, f)
	a.mu.Unlock()
}

// block records that a read of [off,off+n) waits on f; it returns br
// (moved to f) when the read was already recorded, as when it waits on a
// second fill.
func (a *activity) block(br *blockedRead, o *Object, off, n int64, f *fill, who Asker) *blockedRead {
	a.mu.Lock()
	defer a.mu.Unlock()
	if br != nil {
		br.f = f
		return br
	}
	if a.blocked == nil {
		a.blocked = map[*blockedRead]struct{}{}
	}
	br = &blockedRead{o: o, off: off, len: n, f: f, since: time.Now(), who: who}
	a.blocked[br] = struct{}{}
	return br
}

func (a *activity) unblock(br *blockedRead) {
	if br == nil {
		return
	}
	a.mu.Lock()
	delete(a.blocked, br)
	a.mu.Unlock()
}

// Now reports the fills in flight and the reads blocked on them for which
// keep (nil: all) is true, each list its limit oldest (limit <= 0: all).
// keep runs under the registry's lock: it must be quick and take no lock
// of the cache's.
func (c *Cache) Now(keep func(m Meta, who Asker) bool, limit int) Now {
	var now Now
	a := &c.act
	a.mu.Lock()
	for f := range a.fills {
		if keep == nil || keep(f.o.meta, f.who) {
			now.Fetches = append(now.Fetches, FetchNow{Object: f.o.meta, Off: f.start, Done: f.got.Load(),
				Total: f.end - f.start, Since: f.since, Band: f.band(), Who: f.who})
		}
	}
	for br := range a.blocked {
		if keep == nil || keep(br.o.meta, br.who) {
			now.Blocked = append(now.Blocked, BlockedNow{Object: br.o.meta, Off: br.off, Len: br.len,
				Done: br.f.got.Load(), Total: br.f.end - br.f.start, Since: br.since, Who: br.who})
		}
	}
	a.mu.Unlock()
	now.FetchesTotal, now.BlockedTotal = len(now.Fetches), len(now.Blocked)
	slices.SortFunc(now.Fetches, func(x, y FetchNow) int { return x.Since.Compare(y.Since) })
	slices.SortFunc(now.Blocked, func(x, y BlockedNow) int { return x.Since.Compare(y.Since) })
	if limit > 0 {
		now.Fetches = now.Fetches[:min(limit, len(now.Fetches))]
		now.Blocked = now.Blocked[:min(limit, len(now.Blocked))]
	}
	return now
}

// band names what a fill is for: the asker's band for a prefetch that
// named one, else the fill's kind.
func (f *fill) band() string {
	switch {
	case f.pfSem != nil && f.pfSem == f.o.c.spec:
		if f.who.Band != "" {
			return f.who.Band
		}
		return BandSpeculative
	case f.pfWeight > 0:
		if f.who.Band != "" {
			return f.who.Band
		}
		return BandPrefetch
	case f.readAhead:
		return BandReadAhead
	}
	return BandRead
}

// counted returns ctx counting the bytes the source delivers into f.got.
func (f *fill) counted(ctx context.Context) context.Context {
	return progress.With(ctx, &f.got)
}
