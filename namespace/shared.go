package namespace

import (
	"container/list"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jitfs/jitfs/gcs"
)

// SharedListings lets the namespaces of several jobs on one node share
// directory listings without ever giving a job a listing older than the
// job itself. A job's Remote (SharedListings.Since(jobStart)) answers the
// first page of a listing with a whole listing another job completed, if
// that listing began at or after jobStart; otherwise it lists through to
// the bucket and keeps the result for the jobs after it. So a directory
// costs one listing per job at most, and jobs that start together (the
// usual case: a job's tasks are dispatched to many nodes at once, and a
// node runs several jobs of one show) share one.
//
// Kept listings are bounded by the number of names they hold, least
// recently used dropped first; Stat and direct lookups pass through.
type SharedListings struct {
	remote   Remote
	maxNames int
	now      func() time.Time

	mu    sync.Mutex
	done  map[string]*list.Element // by key; values *sharedListing
	lru   *list.List               // front: most recently used
	names int
	// partial are listings being paged through, by prefix and next page
	// token.
	partial map[string]*sharedListing
	// flatStarted is when the flat listing a next-page token belongs to
	// began, by prefix and token.
	flatStarted map[string]time.Time

	// Reused counts listings answered from another job's listing.
	Reused atomic.Int64
}

type sharedListing struct {
	key     string // the prefix of a delimiter listing; flatKey of a flat page
	started time.Time
	page    gcs.Page
}

// NewSharedListings shares listings made through remote, keeping at most
// maxNames names (default 1,000,000: a few hundred MiB at most).
func NewSharedListings(remote Remote, maxNames int, now func() time.Time) *SharedListings {
	if maxNames <= 0 {
		maxNames = 1_000_000
	}
	if now == nil {
		now = time.Now
	}
	return &SharedListings{remote: remote, maxNames: maxNames, now: now, done: map[string]*list.Element{},
		lru: list.New(), partial: map[string]*sharedListing{}, flatStarted: map[string]time.Time{}}
}

// Since is the Remote of a job that started at t.
func (s *SharedListings) Since(t time.Time) Remote { return sinceRemote{s: s, t: t} }

type sinceRemote struct {
	s *SharedListings
	t time.Time
}

func (r sinceRemote) Stat(ctx context.Context, name string) (gcs.Attrs, error) {
	return r.s.remote.Stat(ctx, name)
}

// ListPage serves a one-item lookup (pageSize 1) from the bucket always:
// it is a lookup, not a listing to share.
func (r sinceRemote) ListPage(ctx context.Context, prefix, token string, pageSize int) (gcs.Page, error) {
	s := r.s
	if pageSize == 1 {
		return s.remote.ListPage(ctx, prefix, token, pageSize)
	}
	var acc *sharedListing
	s.mu.Lock()
	if token == "" {
		if el, ok := s.done[prefix]; ok {
			l := el.Value.(*sharedListing)
			if !l.started.Before(r.t) {
				s.lru.MoveToFront(el)
				s.Reused.Add(1)
				s.mu.Unlock()
				// The caller keeps the slices; they are never written.
				return gcs.Page{Objects: l.page.Objects, Prefixes: l.page.Prefixes}, nil
			}
		}
		acc = &sharedListing{key: prefix, started: s.now()}
	} else {
		acc = s.partial[prefix+"\x00"+token]
		delete(s.partial, prefix+"\x00"+token)
	}
	s.mu.Unlock()
	p, err := s.remote.ListPage(ctx, prefix, token, pageSize)
	if err != nil || acc == nil {
		return p, err
	}
	acc.page.Objects = append(acc.page.Objects, p.Objects...)
	acc.page.Prefixes = append(acc.page.Prefixes, p.Prefixes...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.Next != "" {
		if len(s.partial) >= 4096 {
			// Listings abandoned half-way (an error, a closed job) leave
			// their token behind: drop them all rather than grow.
			clear(s.partial)
		}
		s.partial[prefix+"\x00"+p.Next] = acc
		return p, nil
	}
	s.keepLocked(acc)
	return p, nil
}

// keepLocked stores a complete listing, replacing an older one of the
// same prefix, and drops the least recently used past the bound.
func (s *SharedListings) keepLocked(l *sharedListing) {
	n := len(l.page.Objects) + len(l.page.Prefixes)
	if n > s.maxNames {
		return
	}
	if el, ok := s.done[l.key]; ok {
		old := el.Value.(*sharedListing)
		if old.started.After(l.started) {
			return
		}
		s.names -= len(old.page.Objects) + len(old.page.Prefixes)
		s.lru.Remove(el)
	}
	s.done[l.key] = s.lru.PushFront(l)
	s.names += n
	for s.names > s.maxNames {
		el := s.lru.Back()
		old := el.Value.(*sharedListing)
		s.names -= len(old.page.Objects) + len(old.page.Prefixes)
		s.lru.Remove(el)
		delete(s.done, old.key)
	}
}

// ListFlatPage shares flat listings (Options.ListAhead) page by page: a
// page is reused by a job when the listing it belongs to began at or after
// the job's start, as whole delimiter listings are. Pages are kept with
// their next-page token, so a job reusing a first page pages on through
// the kept ones, and to the bucket past any dropped.
func (r sinceRemote) ListFlatPage(ctx context.Context, prefix, token string, pageSize int) (gcs.Page, error) {
	s := r.s
	f, ok := s.remote.(FlatLister)
	if !ok {
		return gcs.Page{}, fmt.Errorf("namespace: %T does not list flat", s.remote)
	}
	key := flatKey(prefix, token, pageSize)
	s.mu.Lock()
	if el, ok := s.done[key]; ok {
		l := el.Value.(*sharedListing)
		if !l.started.Before(r.t) {
			s.lru.MoveToFront(el)
			s.Reused.Add(1)
			s.mu.Unlock()
			return gcs.Page{Objects: l.page.Objects, Next: l.page.Next}, nil
		}
	}
	started := s.now()
	if token != "" {
		// A later page belongs to the listing its first page began.
		if t, ok := s.flatStarted[prefix+"\x00"+token]; ok {
			started = t
		}
	}
	s.mu.Unlock()
	p, err := f.ListFlatPage(ctx, prefix, token, pageSize)
	if err != nil {
		return p, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keepLocked(&sharedListing{key: key, started: started, page: gcs.Page{Objects: p.Objects, Next: p.Next}})
	if p.Next != "" {
		if len(s.flatStarted) >= 4096 {
			clear(s.flatStarted) // listings stopped at their bound leave these behind
		}
		s.flatStarted[prefix+"\x00"+p.Next] = started
	}
	return p, nil
}

// flatKey keeps flat pages apart from delimiter listings (no prefix holds
// a NUL) and from one another.
func flatKey(prefix, token string, pageSize int) string {
	return "\x00flat\x00" + prefix + "\x00" + token + "\x00" + strconv.Itoa(pageSize)
}
