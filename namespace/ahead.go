package namespace

import (
	"context"
	"sort"
	"strings"

	"github.com/jitfs/jitfs/gcs"
)

// closedChan stands for the channels of a directory completed by another
// directory's listing: there is nothing to wait for.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// delimRun is a delimiter listing of a directory running beside its flat
// listing.
type delimRun struct {
	first, done chan struct{}
	cancel      context.CancelFunc
	fresh       map[string]*entry
	pages       int
	err         error
}

func (d *dir) startDelimited() *delimRun {
	ctx, cancel := context.WithCancel(d.ns.ctx)
	r := &delimRun{first: make(chan struct{}), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(r.done)
		defer cancel()
		r.fresh, r.pages, r.err = d.listDelimited(ctx, func() { close(r.first) })
		select {
		case <-r.first:
		default:
			close(r.first) // failed before its first page
		}
	}()
	return r
}

// listAhead lists the directory as one flat listing of its whole prefix,
// bounded by Options.ListAhead objects, and completes every subdirectory
// whose names the listing covered. GCS lists in name order, so the names
// under a prefix P/ are one run of the listing: once a name outside P/
// follows one inside, P/ is complete. The directory itself is complete
// only when the flat listing ends within the bound; otherwise its own
// names come from a delimiter listing as without listing ahead, started
// as soon as the first flat page shows the tree is larger than a page (or
// at once, when the parent's tree was and a caller is waiting: a
// directory the parent's flat listing could not cover is likely large
// too). Correctness never depends on the bound.
//
// first is closed after the first flat page. The directory's listing
// ends with whichever of the two listings completes it first: the flat
// pages after the first go on alone for the subdirectories, never
// holding up the directory. It returns the listing, or the error that
// ended it.
func (d *dir) listAhead(first chan struct{}, background bool) (fresh map[string]*entry, childrenLater bool, err error) {
	ns := d.ns
	var delim *delimRun
	startDelim := func() {
		delim = d.startDelimited()
		d.mu.Lock()
		d.namesFirst = delim.first
		d.mu.Unlock()
	}
	if !background && d.path != "" && ns.parentLarge(d.path) {
		startDelim()
	}
	f := &flatRun{d: d, w: aheadWalk{prefix: ns.ObjectPrefix(d.path)}, fresh: map[string]*entry{}}
	complete, ok := f.page()
	if complete {
		// first, if still open, is closed by list with the listing
		// marked done: a lookup woken by it must not find the directory
		// still running and ask for an absent name directly.
		if delim != nil {
			delim.cancel()
			<-delim.done
			ns.Stats.AheadWasted.Add(int64(delim.pages))
		}
		return f.fresh, false, nil
	}
	if !ok && delim == nil && ns.ctx.Err() != nil {
		return nil, false, ErrClosed
	}
	// The flat listing failed (the delimiter listing answers alone: a
	// flat listing is an optimisation, never the only way to a name), or
	// the tree is larger than a page.
	if delim == nil {
		startDelim()
	}
	if !ok {
		select {
		case <-delim.first:
		case <-ns.ctx.Done():
		}
	}
	close(first)
	more := ok && f.got < ns.opts.ListAhead // f is the continuation's from here
	if more {
		flatDone := make(chan bool, 1)
		ns.listing.Add(1) // within this listing's own count: Close waits for it
		go func() {
			defer ns.listing.Done()
			complete := f.rest()
			d.mu.Lock()
			f.finished = true
			abandoned := f.abandoned
			d.mu.Unlock()
			flatDone <- complete
			if abandoned && !background {
				// Listed after the flat pages, which may have completed
				// some of them.
				ns.listChildren(d)
			}
		}()
		select {
		case complete := <-flatDone:
			if complete {
				delim.cancel()
				<-delim.done
				ns.Stats.AheadWasted.Add(int64(delim.pages))
				return f.fresh, false, nil
			}
		case <-delim.done:
		}
	}
	<-delim.done
	d.mu.Lock()
	f.abandoned = true // later flat pages are for the subdirectories only
	childrenLater = more && !f.finished
	d.mu.Unlock()
	ns.Stats.AheadFallbacks.Add(1)
	return delim.fresh, childrenLater, delim.err
}

// flatRun is one flat listing ahead, page by page.
type flatRun struct {
	d     *dir
	w     aheadWalk
	fresh map[string]*entry // the directory's own names
	token string
	got   int // objects listed
	pages int
	// abandoned, under d.mu: the directory's listing ended without this
	// one, which must no longer add names to it. finished, under d.mu:
	// the pages after the first are done. Whichever of the two is set
	// last starts the directory's background listings (listChildren).
	abandoned, finished bool
}

// page lists the next flat page, completes the subdirectories it shows
// complete, names what it saw in those it stopped inside (without a TTL:
// see seed), and adds the directory's own names. It tells whether the
// listing is complete, and whether the page was listed at all.
func (f *flatRun) page() (complete, ok bool) {
	d := f.d
	ns := d.ns
	if ns.ctx.Err() != nil {
		return false, false
	}
	ns.Stats.AheadPages.Add(1)
	p, err := ns.flat.ListFlatPage(ns.ctx, f.w.prefix, f.token, min(ns.opts.PageSize, ns.opts.ListAhead-f.got))
	if err != nil {
		return false, false
	}
	f.got += len(p.Objects)
	f.pages++
	for _, a := range p.Objects {
		f.w.add(a)
	}
	if p.Next == "" {
		f.w.closeAll()
	}
	for _, c := range f.w.done {
		ns.adopt(joinPath(d.path, c.rel), c.entries)
	}
	f.w.done = f.w.done[:0]
	if ns.opts.TTL == 0 {
		for _, o := range f.w.open {
			ns.seed(joinPath(d.path, o.rel), o.entries)
		}
	}
	d.mu.Lock()
	if !f.abandoned {
		for name, e := range f.w.top.entries {
			d.mergeLocked(f.fresh, name, e)
		}
	}
	if f.pages == 1 && p.Next != "" {
		d.largeTree = true
	}
	d.mu.Unlock()
	clear(f.w.top.entries)
	f.token = p.Next
	return p.Next == "", true
}

// rest lists the pages after the first up to the bound, and tells
// whether the listing completed.
func (f *flatRun) rest() bool {
	for f.got < f.d.ns.opts.ListAhead {
		complete, ok := f.page()
		if !ok {
			return false
		}
		if complete {
			return true
		}
	}
	return false
}

// parentLarge tells whether the parent of directory p had a flat listing
// larger than one page.
func (ns *Namespace) parentLarge(p string) bool {
	parent := ""
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		parent = p[:i]
	}
	ns.mu.Lock()
	pd := ns.dirs[parent]
	ns.mu.Unlock()
	if pd == nil {
		return false
	}
	pd.mu.Lock()
	defer pd.mu.Unlock()
	return pd.largeTree
}

// adopt completes directory p with a listing another directory's flat
// listing made, unless p is being listed or holds a listing still good.
// The names are pinned as a listing of p's own would pin them.
func (ns *Namespace) adopt(p string, entries map[string]*entry) {
	s := ns.dir(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == listRunning || (s.state == listDone && !s.staleLocked()) {
		return
	}
	fresh := make(map[string]*entry, len(entries))
	for name, e := range entries {
		s.mergeLocked(fresh, name, e)
	}
	if ns.opts.TTL == 0 {
		for name, e := range s.entries {
			if _, ok := fresh[name]; !ok {
				fresh[name] = e
			}
		}
	}
	s.entries = fresh
	s.listErr = nil
	s.listedAt = ns.opts.Now()
	s.state = listDone
	s.firstPage, s.finished = closedChan, closedChan
	s.ahead = true
	ns.Stats.AheadDirs.Add(1)
	if ns.opts.Store != nil {
		ns.opts.Store.SaveDir(s.path, s.listingLocked())
	}
}

// seed gives directory p, never listed, the names a flat listing that
// stopped inside it has seen so far: each exists, so a lookup of one needs
// no listing of p (LookupIn). Only without a TTL: a seeded name is never
// re-listed until a lookup misses.
func (ns *Namespace) seed(p string, entries map[string]*entry) {
	s := ns.dir(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != listNone {
		return
	}
	for name, e := range entries {
		if old, ok := s.entries[name]; ok && (old.isDir || !e.isDir) {
			continue
		}
		c := *e
		c.ino = ns.nextIno()
		s.entries[name] = &c
	}
}

// aheadWalk turns a flat listing, name by name in order, into the
// listings of the directories under the listed one, each handed over
// (done) as soon as a name past its prefix shows it complete.
type aheadWalk struct {
	prefix string
	top    aheadDir // the listed directory; its names are taken page by page
	// open is the chain of subdirectories the last name was in, outermost
	// first.
	open []*aheadDir
	done []*aheadDir
}

type aheadDir struct {
	rel     string // relative to the listed directory
	entries map[string]*entry
}

// add places one object. Its path elements name directories, as a
// delimiter listing would show them: a placeholder ("a/b/") makes its
// directories and nothing in them, and an element no path can name ("",
// ".", "..") hides everything past it.
func (w *aheadWalk) add(a gcs.Attrs) {
	rest, ok := strings.CutPrefix(a.Name, w.prefix)
	if !ok {
		return
	}
	parts := strings.Split(rest, "/")
	cur := &w.top
	if cur.entries == nil {
		cur.entries = map[string]*entry{}
	}
	depth := 0 // of cur in open: 0 is the listed directory
	rel := ""
	for _, name := range parts[:len(parts)-1] {
		if !ValidName(name) {
			w.closeFrom(depth)
			return
		}
		rel = joinPath(rel, name)
		cur.entries[name] = &entry{isDir: true} // a directory wins over a file
		if depth < len(w.open) && w.open[depth].rel == rel {
			cur = w.open[depth]
		} else {
			w.closeFrom(depth)
			cur = &aheadDir{rel: rel, entries: map[string]*entry{}}
			w.open = append(w.open, cur)
		}
		depth++
	}
	w.closeFrom(depth)
	if name := parts[len(parts)-1]; ValidName(name) {
		if prev, ok := cur.entries[name]; !ok || !prev.isDir {
			cur.entries[name] = &entry{attrs: a}
		}
	}
}

// closeFrom hands over the open directories from depth on: the name just
// seen is outside them, and every later one is too.
func (w *aheadWalk) closeFrom(depth int) {
	if depth >= len(w.open) {
		return
	}
	w.done = append(w.done, w.open[depth:]...)
	w.open = w.open[:depth]
}

// closeAll ends the walk: the listing returned everything.
func (w *aheadWalk) closeAll() { w.closeFrom(0) }

// listChildren lists in the background, a few at a time, the first
// ListAheadSubdirs subdirectories of d (in name order, as walkers go)
// that nothing has listed or is listing.
func (ns *Namespace) listChildren(d *dir) {
	if ns.flat == nil || ns.opts.ListAheadSubdirs <= 0 {
		return
	}
	d.mu.Lock()
	var subs []string
	for name, e := range d.entries {
		if e.isDir {
			subs = append(subs, name)
		}
	}
	d.mu.Unlock()
	sort.Strings(subs)
	started := 0
	for _, name := range subs {
		if started == ns.opts.ListAheadSubdirs {
			return
		}
		s := ns.dir(joinPath(d.path, name))
		s.mu.Lock()
		idle := s.state == listNone
		s.mu.Unlock()
		if !idle {
			continue
		}
		ns.mu.Lock()
		if ns.closed {
			ns.mu.Unlock()
			return
		}
		ns.listing.Add(1)
		ns.mu.Unlock()
		started++
		go func() {
			defer ns.listing.Done()
			select {
			case ns.slots <- struct{}{}:
			case <-ns.ctx.Done():
				return
			}
			defer func() { <-ns.slots }()
			s.mu.Lock()
			if s.state != listNone { // a caller got there first
				s.mu.Unlock()
				return
			}
			ns.Stats.AheadBackground.Add(1)
			s.launchLocked(true)
			finished := s.finished
			s.mu.Unlock()
			select {
			case <-finished:
			case <-ns.ctx.Done():
			}
		}()
	}
}
