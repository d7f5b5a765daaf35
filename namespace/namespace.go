package namespace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/jitfs/jitfs/gcs"
)

// Remote is what a Namespace needs of the bucket. *gcs.Client fits.
type Remote interface {
	Stat(ctx context.Context, name string) (gcs.Attrs, error)
	ListPage(ctx context.Context, prefix, token string, pageSize int) (gcs.Page, error)
}

// Options configures a Namespace.
type Options struct {
	Remote Remote
	// Prefix is the object prefix at the namespace's root ("" or "a/b/").
	Prefix string
	// TTL re-lists a directory, and may re-pin generations, once its
	// listing is older than this; 0 pins everything for the lifetime.
	TTL time.Duration
	// PageSize is the listing page size (default 1000).
	PageSize int
	// NegativeEntries bounds the names remembered absent by direct lookups
	// (default 131072).
	NegativeEntries int64
	// Now is the clock TTLs are measured on (default time.Now).
	Now func() time.Time
	// Store, when set, keeps every completed listing: a directory it holds
	// is served from it without a request, so a restarted daemon answers
	// what it had listed with no list or stat request. With a TTL, a stored
	// listing older than the TTL is listed again.
	Store Store
	// ListAhead, when above 0, lists a directory met cold as one flat
	// listing of its whole prefix (every object at any depth, up to about
	// this many objects), which completes the directory and every
	// subdirectory whose names it covers, so a walk down a small tree costs
	// one request, not one per level. Past the bound the directory is
	// listed as without it. Remote must then be a FlatLister.
	// DefaultListAhead is the usual value; 0 is off.
	ListAhead int
	// ListAheadSubdirs bounds the subdirectories a directory's listing
	// starts listing in the background once it is done (when ListAhead is
	// on), so that a walker's next step is listed before it gets there;
	// a directory so listed starts its own only when a walker reaches it.
	// 0 means DefaultListAheadSubdirs; below 0, none.
	ListAheadSubdirs int
}

// DefaultListAheadSubdirs: enough for a walker's next few steps, at most
// backgroundSlots listings at a time per namespace.
const DefaultListAheadSubdirs = 16

// backgroundSlots bounds the background listings of one namespace running
// at once: they must never crowd out a listing a caller waits for.
const backgroundSlots = 4

// DefaultListAhead bounds a listing ahead to five pages of GCS's largest
// size: a few hundred KiB of names and at most five round trips, while a
// walk that stays inside it costs one.
const DefaultListAhead = 5000

// FlatLister is a Remote that also lists a prefix without a delimiter:
// every object under it, at any depth, in name order (Page.Prefixes
// empty). *gcs.Client fits.
type FlatLister interface {
	ListFlatPage(ctx context.Context, prefix, token string, pageSize int) (gcs.Page, error)
}

// Store persists a Namespace's completed listings (one snapshot's: a
// Store never holds two namespaces' listings). Save errors are the
// Store's to log: a listing that could not be kept is listed again after a
// restart, nothing worse.
type Store interface {
	// LoadDir returns the stored listing of dir (a path relative to the
	// root, "" for the root), or false.
	LoadDir(dir string) (Listing, bool)
	// SaveDir keeps the complete listing of dir, replacing any before.
	SaveDir(dir string, l Listing)
}

// Listing is one directory's complete listing as a Store keeps it.
type Listing struct {
	ListedAt time.Time
	// Dirs are the names of subdirectories.
	Dirs []string
	// Files are the pinned objects; Attrs.Name is the full object name.
	Files []gcs.Attrs
}

// Entry is one name of the namespace.
type Entry struct {
	// Path is relative to the namespace root ("" is the root itself).
	Path  string
	IsDir bool
	// Ino is stable for the Namespace's lifetime: the same path keeps its
	// number, a new generation of a file included.
	Ino uint64
	// Attrs is the pinned object (files only).
	Attrs gcs.Attrs
}

// Name is the entry's last path element.
func (e Entry) Name() string { return e.Path[strings.LastIndexByte(e.Path, '/')+1:] }

// RootIno is the inode number of the namespace root.
const RootIno = 1

var (
	// ErrNotExist: no such name. It satisfies errors.Is(err, fs.ErrNotExist).
	ErrNotExist = fs.ErrNotExist
	// ErrNotDir: a path element before the last is a file.
	ErrNotDir = errors.New("namespace: not a directory")
	// ErrClosed: the Namespace was closed.
	ErrClosed = errors.New("namespace: closed")
)

// Stats are cumulative counters.
type Stats struct {
	// Listings counts directory listings started (each may be many pages).
	Listings atomic.Int64
	// StoredListings counts directories answered from Options.Store.
	StoredListings atomic.Int64
	// DirectLookups counts names asked for one by one while their
	// directory's listing was still running.
	DirectLookups atomic.Int64
	// NegativeLookups counts lookups answered "absent".
	NegativeLookups atomic.Int64
	// AheadPages counts the flat listing requests of Options.ListAhead.
	AheadPages atomic.Int64
	// AheadDirs counts the subdirectories those listings completed, and
	// AheadUsed those of them a lookup or listing then read: each is a
	// listing request (a round trip) saved.
	AheadDirs, AheadUsed atomic.Int64
	// AheadBackground counts the listings of ListAheadSubdirs, and
	// AheadBackgroundUsed those a lookup or listing then asked for.
	AheadBackground, AheadBackgroundUsed atomic.Int64
	// AheadFallbacks counts directories whose flat listing stopped at the
	// bound, so they were listed with a delimiter as well; AheadWasted
	// counts requests made in vain (a delimiter listing started beside a
	// flat one that then covered the whole directory).
	AheadFallbacks, AheadWasted atomic.Int64
}

// AheadStats is what Options.ListAhead spent and saved, in requests.
type AheadStats struct {
	// Requests is the flat listing requests made.
	Requests int64 `json:"requests"`
	// Saved is the directory listings they made needless: subdirectories
	// they completed that a lookup or listing then read, each at least
	// one request, and a round trip, saved.
	Saved int64 `json:"saved"`
	// Unread is the subdirectories they completed that nothing read.
	Unread int64 `json:"unread"`
	// Fallbacks is the directories past the bound, listed with a
	// delimiter as well; Wasted the delimiter requests a flat listing
	// made needless after they were sent.
	Fallbacks int64 `json:"fallbacks"`
	Wasted    int64 `json:"wasted"`
	// Background is the listings started ahead of a walker, and
	// BackgroundUsed those a lookup or listing then asked for.
	Background     int64 `json:"background"`
	BackgroundUsed int64 `json:"background_used"`
}

// Ahead sums up the listing-ahead counters.
func (s *Stats) Ahead() AheadStats {
	dirs, used := s.AheadDirs.Load(), s.AheadUsed.Load()
	return AheadStats{Requests: s.AheadPages.Load(), Saved: used, Unread: max(0, dirs-used),
		Fallbacks: s.AheadFallbacks.Load(), Wasted: s.AheadWasted.Load(),
		Background: s.AheadBackground.Load(), BackgroundUsed: s.AheadBackgroundUsed.Load()}
}

// Namespace is one snapshot of a bucket prefix. See the package comment.
type Namespace struct {
	opts   Options
	ctx    context.Context // listings run under it; Close cancels it
	cancel context.CancelFunc
	ino    atomic.Uint64

	mu   sync.Mutex
	dirs map[string]*dir // by path relative to the root ("" for the root)
	// listing counts listing goroutines, so that Close returns only once
	// none can still save a listing to the Store.
	listing sync.WaitGroup
	closed  bool // under mu: no listing starts once set

	// neg remembers names found absent by direct lookups in directories
	// whose listing was still in progress. Best effort: a dropped entry
	// only costs one more request.
	neg *ristretto.Cache[string, struct{}]

	flat  FlatLister    // nil: no listing ahead
	slots chan struct{} // one per background listing running

	Stats Stats
}

// New makes an empty Namespace; nothing is listed before it is asked.
func New(opts Options) (*Namespace, error) {
	if opts.Remote == nil {
		return nil, errors.New("namespace: Remote is required")
	}
	if opts.Prefix != "" && !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	if strings.HasPrefix(opts.Prefix, "/") || strings.Contains(opts.Prefix, "//") {
		return nil, fmt.Errorf("namespace: invalid prefix %q", opts.Prefix)
	}
	if opts.TTL < 0 {
		return nil, fmt.Errorf("namespace: negative TTL %v", opts.TTL)
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 1000
	}
	if opts.NegativeEntries <= 0 {
		opts.NegativeEntries = 1 << 17
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ListAhead < 0 {
		return nil, fmt.Errorf("namespace: negative ListAhead %d", opts.ListAhead)
	}
	if opts.ListAheadSubdirs == 0 {
		opts.ListAheadSubdirs = DefaultListAheadSubdirs
	}
	var flat FlatLister
	if opts.ListAhead > 0 {
		var ok bool
		if flat, ok = opts.Remote.(FlatLister); !ok {
			return nil, fmt.Errorf("namespace: ListAhead needs a Remote that lists flat (%T does not)", opts.Remote)
		}
	}
	neg, err := ristretto.NewCache(&ristretto.Config[string, struct{}]{
		NumCounters: 10 * opts.NegativeEntries, MaxCost: opts.NegativeEntries, BufferItems: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("namespace: negative cache: %w", err)
	}
	ns := &Namespace{opts: opts, dirs: map[string]*dir{}, neg: neg, flat: flat,
		slots: make(chan struct{}, backgroundSlots)}
	ns.ctx, ns.cancel = context.WithCancel(context.Background())
	ns.ino.Store(RootIno)
	return ns, nil
}

// Close stops listings still running, waits for them, and frees the
// negative cache. Calls made after Close fail with ErrClosed or the error
// of a stopped listing.
func (ns *Namespace) Close() {
	ns.mu.Lock()
	ns.closed = true
	ns.mu.Unlock()
	ns.cancel()
	ns.listing.Wait()
	ns.neg.Close()
}

// Prefix is the object prefix at the root ("" or ending in "/").
func (ns *Namespace) Prefix() string { return ns.opts.Prefix }

// ObjectPrefix is the object prefix that lists directory dir.
func (ns *Namespace) ObjectPrefix(dir string) string {
	if dir == "" {
		return ns.opts.Prefix
	}
	return ns.opts.Prefix + dir + "/"
}

// TTL is Options.TTL (0: pinned for the lifetime).
func (ns *Namespace) TTL() time.Duration { return ns.opts.TTL }

func (ns *Namespace) nextIno() uint64 { return ns.ino.Add(1) }

// CleanPath checks a path relative to the root and returns it without
// leading, trailing or doubled slashes. "." and ".." elements are refused:
// a namespace path never leaves its root.
func CleanPath(p string) (string, error) {
	parts := strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
	for _, el := range parts {
		if !ValidName(el) {
			return "", fmt.Errorf("namespace: invalid path %q", p)
		}
	}
	return strings.Join(parts, "/"), nil
}

// ValidName reports whether n can be one path element.
func ValidName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.Contains(n, "/")
}

// Lookup resolves a path relative to the root, walking its directories
// (each listed at most once, as LookupIn does).
func (ns *Namespace) Lookup(ctx context.Context, p string) (Entry, error) {
	p, err := CleanPath(p)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrNotExist, err)
	}
	e := Entry{IsDir: true, Ino: RootIno}
	if p == "" {
		return e, nil
	}
	dirPath := ""
	for _, name := range strings.Split(p, "/") {
		if !e.IsDir {
			return Entry{}, fmt.Errorf("%s: %w", p, ErrNotDir)
		}
		if e, err = ns.LookupIn(ctx, dirPath, name); err != nil {
			return Entry{}, err
		}
		dirPath = e.Path
	}
	return e, nil
}

// LookupIn resolves one name in directory dir, which the caller knows to
// be a directory of this namespace (the root, or a path Lookup returned as
// one). It waits for the listing's first page, never for the whole of a
// large directory: a name not yet listed is asked for directly. A wait cut
// short by ctx returns an error wrapping ctx's cause.
func (ns *Namespace) LookupIn(ctx context.Context, dirPath, name string) (Entry, error) {
	full := joinPath(dirPath, name)
	if !ValidName(name) {
		return Entry{}, fmt.Errorf("%q: %w", full, ErrNotExist)
	}
	d := ns.dir(dirPath)
	d.mu.Lock()
	e := d.entries[name]
	seeded := d.state == listNone
	d.mu.Unlock()
	if e != nil && seeded {
		// Named by a listing ahead of a larger tree: the name exists, and
		// the directory need not be listed until a name it lacks is asked.
		return e.entry(full), nil
	}
	first, finished := d.startList()
	select {
	case <-first:
	case <-ctx.Done():
		return Entry{}, ns.waitErr(ctx, d)
	}
	d.mu.Lock()
	e = d.entries[name]
	done := d.state == listDone
	listErr := d.listErr
	names := d.namesFirst
	d.mu.Unlock()
	if e != nil {
		return e.entry(full), nil
	}
	if !done && names != nil {
		// The first page was a flat one, and the directory's own names
		// are on their way: cheaper to wait for them than to ask.
		select {
		case <-names:
		case <-ctx.Done():
			return Entry{}, ns.waitErr(ctx, d)
		}
		d.mu.Lock()
		e, done, listErr = d.entries[name], d.state == listDone, d.listErr
		d.mu.Unlock()
		if e != nil {
			return e.entry(full), nil
		}
	}
	select {
	case <-finished:
		done = true
		d.mu.Lock()
		e, listErr = d.entries[name], d.listErr
		d.mu.Unlock()
		if e != nil {
			return e.entry(full), nil
		}
	default:
	}
	if done {
		if listErr != nil {
			return Entry{}, listErr
		}
		ns.Stats.NegativeLookups.Add(1)
		return Entry{}, fmt.Errorf("%q: %w", full, ErrNotExist)
	}
	return ns.lookupDirect(ctx, d, name)
}

// lookupDirect answers one name in a directory whose listing has more
// pages to go: a one-item listing of name/ and, if that is empty, a stat.
func (ns *Namespace) lookupDirect(ctx context.Context, d *dir, name string) (Entry, error) {
	full := joinPath(d.path, name)
	object := ns.ObjectPrefix(d.path) + name
	if _, ok := ns.neg.Get(object); ok {
		ns.Stats.NegativeLookups.Add(1)
		return Entry{}, fmt.Errorf("%q: %w", full, ErrNotExist)
	}
	ns.Stats.DirectLookups.Add(1)
	var e *entry
	p, err := ns.opts.Remote.ListPage(ctx, object+"/", "", 1)
	if err != nil {
		return Entry{}, fmt.Errorf("namespace: lookup of prefix %s/: %w", object, err)
	}
	if len(p.Objects) > 0 || len(p.Prefixes) > 0 {
		e = &entry{isDir: true}
	} else {
		a, err := ns.opts.Remote.Stat(ctx, object)
		switch {
		case err == nil:
			e = &entry{attrs: a}
		case errors.Is(err, gcs.ErrNotFound):
			ns.neg.Set(object, struct{}{}, 1)
			// Set is buffered: without Wait, the next lookup of the same
			// name (a renderer probing again) could miss it.
			ns.neg.Wait()
			ns.Stats.NegativeLookups.Add(1)
			return Entry{}, fmt.Errorf("%q: %w", full, ErrNotExist)
		default:
			return Entry{}, fmt.Errorf("namespace: lookup of object %s: %w", object, err)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.entries[name]; ok {
		return old.entry(full), nil // the listing pinned it meanwhile
	}
	e.ino = ns.nextIno()
	d.entries[name] = e
	return e.entry(full), nil
}

// List returns the entries of directory dirPath, sorted by name, once its
// listing is complete.
func (ns *Namespace) List(ctx context.Context, dirPath string) ([]Entry, error) {
	dirPath, err := CleanPath(dirPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotExist, err)
	}
	if dirPath != "" {
		e, err := ns.Lookup(ctx, dirPath)
		if err != nil {
			return nil, err
		}
		if !e.IsDir {
			return nil, fmt.Errorf("%s: %w", dirPath, ErrNotDir)
		}
	}
	return ns.ListDir(ctx, dirPath)
}

// ListDir is List for a path the caller knows to be a directory (as
// LookupIn): it does not walk the path first.
func (ns *Namespace) ListDir(ctx context.Context, dirPath string) ([]Entry, error) {
	d := ns.dir(dirPath)
	_, finished := d.startList()
	select {
	case <-finished:
	case <-ctx.Done():
		return nil, ns.waitErr(ctx, d)
	}
	d.mu.Lock()
	if d.listErr != nil {
		err := d.listErr
		d.mu.Unlock()
		return nil, err
	}
	list := make([]Entry, 0, len(d.entries))
	for name, e := range d.entries {
		list = append(list, e.entry(joinPath(dirPath, name)))
	}
	d.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Path < list[j].Path })
	return list, nil
}

func (ns *Namespace) waitErr(ctx context.Context, d *dir) error {
	return fmt.Errorf("namespace: waiting for the listing of %s: %w", ns.ObjectPrefix(d.path), context.Cause(ctx))
}

// dir returns the listing state of dirPath, creating it empty.
func (ns *Namespace) dir(dirPath string) *dir {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	d := ns.dirs[dirPath]
	if d == nil {
		d = &dir{ns: ns, path: dirPath, entries: map[string]*entry{}}
		ns.dirs[dirPath] = d
	}
	return d
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// PinnedFiles calls fn for every file the Namespace has pinned so far, in
// no order (a node's status sums what a job holds). fn must not call back
// into the Namespace.
func (ns *Namespace) PinnedFiles(fn func(Entry)) {
	ns.mu.Lock()
	dirs := make([]*dir, 0, len(ns.dirs))
	for _, d := range ns.dirs {
		dirs = append(dirs, d)
	}
	ns.mu.Unlock()
	for _, d := range dirs {
		d.mu.Lock()
		for name, e := range d.entries {
			if !e.isDir {
				fn(e.entry(joinPath(d.path, name)))
			}
		}
		d.mu.Unlock()
	}
}
