package namespace

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jitfs/jitfs/gcs"
)

// entry is one name in a directory, pinned when first seen.
type entry struct {
	ino   uint64
	isDir bool
	attrs gcs.Attrs // files only
}

func (e *entry) entry(p string) Entry {
	return Entry{Path: p, IsDir: e.isDir, Ino: e.ino, Attrs: e.attrs}
}

type listState int

const (
	listNone listState = iota
	listRunning
	listDone
)

// dir is the listing state of one "/"-delimited prefix.
type dir struct {
	ns   *Namespace
	path string // relative to the root, "" for the root

	// mu guards the listing state. INVARIANT: once in entries, a name keeps
	// its generation until a TTL re-list replaces the map.
	mu        sync.Mutex
	state     listState
	entries   map[string]*entry
	firstPage chan struct{} // closed when the first page (or an error) is in
	finished  chan struct{} // closed when the listing ends
	listErr   error
	listedAt  time.Time
	// ahead: completed by a parent's listing ahead and not yet read.
	ahead bool
	// largeTree: this directory's flat listing did not fit in one page, so
	// a subdirectory it did not cover lists its own names at once beside
	// its flat listing instead of after it.
	largeTree bool
	// background: listed ahead of any caller, and not yet asked for.
	background bool
	// namesFirst, while a flat listing runs beside a delimiter one, is
	// closed when the delimiter listing's first page is in.
	namesFirst chan struct{}
}

// startList begins listing the directory if it is not listed (or its TTL
// ran out, or its last listing failed) and returns the channels to wait on.
func (d *dir) startList() (first, finished chan struct{}) {
	d.mu.Lock()
	if d.state == listDone && d.staleLocked() {
		d.state = listNone
	}
	if d.ahead {
		d.ahead = false
		d.ns.Stats.AheadUsed.Add(1)
	}
	wasBackground := d.background
	if wasBackground {
		d.background = false
		d.ns.Stats.AheadBackgroundUsed.Add(1)
	}
	if d.state == listNone {
		d.launchLocked(false)
	}
	first, finished = d.firstPage, d.finished
	d.mu.Unlock()
	if wasBackground {
		// A walker reached a directory listed ahead of it: list ahead of
		// its next step too.
		d.ns.listChildren(d)
	}
	return first, finished
}

// launchLocked starts the listing goroutine; background marks a listing
// no caller is waiting for yet.
func (d *dir) launchLocked(background bool) {
	d.state = listRunning
	d.listErr = nil
	d.background = background
	d.firstPage = make(chan struct{})
	d.finished = make(chan struct{})
	ns := d.ns
	ns.mu.Lock()
	closed := ns.closed
	if !closed {
		ns.listing.Add(1)
	}
	ns.mu.Unlock()
	if closed {
		d.listErr, d.state = ErrClosed, listDone
		close(d.firstPage)
		close(d.finished)
		return
	}
	go d.list(d.firstPage, d.finished, background)
}

// staleLocked tells whether a finished listing must be made again: it
// failed, or its TTL ran out.
func (d *dir) staleLocked() bool {
	ttl := d.ns.opts.TTL
	return d.listErr != nil || (ttl > 0 && d.ns.opts.Now().Sub(d.listedAt) > ttl)
}

// list runs detached from any one request: a listing that a cancelled
// lookup started still completes for the next one.
func (d *dir) list(first, finished chan struct{}, background bool) {
	ns := d.ns
	defer ns.listing.Done()
	if d.loadStored(first, finished) {
		return
	}
	later := false
	if !background {
		// Once the directory is listed, list ahead of a walker's next step
		// (bounded; a listing started that way starts no more until a
		// walker reaches it: see startList), unless flat pages still
		// running will (listAhead).
		defer func() {
			if !later {
				ns.listChildren(d)
			}
		}()
	}
	ns.Stats.Listings.Add(1)
	var fresh map[string]*entry
	var err error
	if ns.flat != nil {
		fresh, later, err = d.listAhead(first, background)
	} else {
		fresh, _, err = d.listDelimited(ns.ctx, func() { close(first) })
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.listErr = err
	} else {
		if ns.opts.TTL == 0 {
			// Without a TTL nothing once seen is forgotten: keep names a
			// direct lookup pinned that the listing did not return.
			for name, e := range d.entries {
				if _, ok := fresh[name]; !ok {
					fresh[name] = e
				}
			}
		}
		d.entries = fresh
	}
	// Only this goroutine closes first, and only once: a failed listing
	// may not have.
	select {
	case <-first:
	default:
		close(first)
	}
	d.listedAt = ns.opts.Now()
	d.state = listDone
	d.namesFirst = nil
	if err == nil && ns.opts.Store != nil {
		ns.opts.Store.SaveDir(d.path, d.listingLocked())
	}
	close(finished)
}

// listDelimited lists the directory's own names page by page, making each
// visible at once, and calls onFirst after the first page. It returns the
// listing and how many requests it made.
func (d *dir) listDelimited(ctx context.Context, onFirst func()) (map[string]*entry, int, error) {
	ns := d.ns
	prefix := ns.ObjectPrefix(d.path)
	fresh := map[string]*entry{}
	token := ""
	for page := 0; ; page++ {
		if ctx.Err() != nil {
			return nil, page, ErrClosed
		}
		p, err := ns.opts.Remote.ListPage(ctx, prefix, token, ns.opts.PageSize)
		if err != nil {
			return nil, page + 1, fmt.Errorf("namespace: list %s: %w", prefix, err)
		}
		d.mu.Lock()
		for _, pre := range p.Prefixes {
			name := strings.TrimSuffix(strings.TrimPrefix(pre, prefix), "/")
			if ValidName(name) {
				d.mergeLocked(fresh, name, &entry{isDir: true})
			}
		}
		for _, a := range p.Objects {
			name := strings.TrimPrefix(a.Name, prefix)
			if ValidName(name) {
				d.mergeLocked(fresh, name, &entry{attrs: a})
			}
		}
		d.mu.Unlock()
		if page == 0 && onFirst != nil {
			onFirst()
		}
		if p.Next == "" {
			return fresh, page + 1, nil
		}
		token = p.Next
	}
}

// loadStored answers the listing from the Store when it holds one (within
// the TTL), and reports whether it did. Only a directory never listed in
// this Namespace is loaded: a re-list after the TTL goes to the bucket.
func (d *dir) loadStored(first, finished chan struct{}) bool {
	ns := d.ns
	if ns.opts.Store == nil {
		return false
	}
	d.mu.Lock()
	fresh := d.listedAt.IsZero()
	d.mu.Unlock()
	if !fresh {
		return false
	}
	l, ok := ns.opts.Store.LoadDir(d.path)
	if !ok || (ns.opts.TTL > 0 && ns.opts.Now().Sub(l.ListedAt) > ns.opts.TTL) {
		return false
	}
	prefix := ns.ObjectPrefix(d.path)
	d.mu.Lock()
	defer d.mu.Unlock()
	fresh2 := map[string]*entry{}
	for _, name := range l.Dirs {
		if ValidName(name) {
			d.mergeLocked(fresh2, name, &entry{isDir: true})
		}
	}
	for _, a := range l.Files {
		name := strings.TrimPrefix(a.Name, prefix)
		if ValidName(name) && prefix+name == a.Name {
			d.mergeLocked(fresh2, name, &entry{attrs: a})
		}
	}
	for name, e := range d.entries {
		if _, ok := fresh2[name]; !ok {
			fresh2[name] = e // pinned by a direct lookup meanwhile
		}
	}
	d.entries = fresh2
	d.listedAt = l.ListedAt
	d.state = listDone
	ns.Stats.StoredListings.Add(1)
	close(first)
	close(finished)
	return true
}

// listingLocked is the directory's listing as a Store keeps it.
func (d *dir) listingLocked() Listing {
	l := Listing{ListedAt: d.listedAt}
	for name, e := range d.entries {
		if e.isDir {
			l.Dirs = append(l.Dirs, name)
		} else {
			l.Files = append(l.Files, e.attrs)
		}
	}
	return l
}

// mergeLocked adds a listed name to the listing being built, keeping an
// entry already pinned (by an earlier listing or a direct lookup) when it
// is still the same kind and, without a TTL, the same generation.
func (d *dir) mergeLocked(fresh map[string]*entry, name string, e *entry) {
	if prev, ok := fresh[name]; ok {
		// A prefix and an object of the same name: the directory wins,
		// as in every POSIX view of a bucket.
		if prev.isDir {
			return
		}
	}
	if old, ok := d.entries[name]; ok && old.isDir == e.isDir {
		if e.isDir || d.ns.opts.TTL == 0 || old.attrs.Generation == e.attrs.Generation {
			fresh[name] = old
			return
		}
		e.ino = old.ino // new generation, same path
	}
	if e.ino == 0 {
		e.ino = d.ns.nextIno()
	}
	fresh[name] = e
	// Visible at once to lookups that do not wait for the whole listing.
	if _, ok := d.entries[name]; !ok {
		d.entries[name] = e
	}
}
