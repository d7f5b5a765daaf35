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
// It closes first once the directory's first names are in: the flat
// page's, and when the tree is larger, the delimiter listing's first page
// too, so a lookup finds a name of a large directory without a request of
// its own. It returns the listing, or the error that ended it.
func (d *dir) listAhead(first chan struct{}, background bool) (map[string]*entry, error) {
	ns := d.ns
	prefix := ns.ObjectPrefix(d.path)
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
	w := aheadWalk{prefix: prefix}
	fresh := map[string]*entry{}
	firstClosed := false
	closeFirst := func() {
		close(first)
		firstClosed = true
	}
	token := ""
	got := 0
	complete := false
	for page := 0; ns.ctx.Err() == nil; page++ {
		size := min(ns.opts.PageSize, ns.opts.ListAhead-got)
		ns.Stats.AheadPages.Add(1)
		p, err := ns.flat.ListFlatPage(ns.ctx, prefix, token, size)
		if err != nil {
			// The delimiter listing below answers alone: a flat listing is
			// an optimisation, never the only way to a name.
			break
		}
		got += len(p.Objects)
		for _, a := range p.Objects {
			w.add(a)
		}
		if p.Next == "" {
			w.closeAll()
		}
		for _, c := range w.done {
			ns.adopt(joinPath(d.path, c.rel), c.entries)
		}
		w.done = w.done[:0]
		if ns.opts.TTL == 0 {
			for _, o := range w.open {
				ns.seed(joinPath(d.path, o.rel), o.entries)
			}
		}
		d.mu.Lock()
		for name, e := range w.top.entries {
			d.mergeLocked(fresh, name, e)
		}
		if page == 0 && p.Next != "" {
			d.largeTree = true
		}
		d.mu.Unlock()
		clear(w.top.entries)
		if p.Next == "" {
			complete = true
			break
		}
		if page == 0 {
			if delim == nil {
				startDelim()
			}
			closeFirst()
		}
		if got >= ns.opts.ListAhead {
			break
		}
		token = p.Next
	}
	if complete {
		// first, if still open, is closed by list with the listing
		// marked done: a lookup woken by it must not find the directory
		// still running and ask for an absent name directly.
		if delim != nil {
			delim.cancel()
			<-delim.done
			ns.Stats.AheadWasted.Add(int64(delim.pages))
		}
		return fresh, nil
	}
	if ns.ctx.Err() != nil && delim == nil {
		return nil, ErrClosed
	}
	ns.Stats.AheadFallbacks.Add(1)
	if delim == nil {
		startDelim()
	}
	if !firstClosed {
		// The flat listing failed at once: the directory's first names
		// are the delimiter listing's.
		select {
		case <-delim.first:
		case <-ns.ctx.Done():
		}
		closeFirst()
	}
	<-delim.done
	return delim.fresh, delim.err
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
