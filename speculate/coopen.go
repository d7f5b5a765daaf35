package speculate

import (
	"container/list"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jitfs/jitfs/namespace"
)

// Co-open learning. A session is a burst of opens through one Speculator
// (one mount, or one job's view of a source): it starts with an open when
// none is running, and its first file leads what follows. It ends after a
// quiet gap, after a window, or when the leader's file (or another frame of
// its sequence) is opened again, as a render loop starting its next frame
// does. When a session ends, its leader's group learns which files
// followed. When a leader starts a session again (on the next frame, in
// the next job, after a restart), the followers seen in most of its
// sessions are looked up and fetched before they are opened.
//
// Names are normalised on their frame number (the last run of 2 to 9
// digits in the base name), so a group learned on plate.1001.exr applies to
// plate.1002.exr; a follower that is a frame of the leader's (or a nearby)
// frame is remembered both literally and relative to the leader's frame,
// and whichever the later sessions confirm is kept. A leader without a
// frame number learns instead the step each sequence among its followers
// moves by from one session to the next. Frames of the leader's own
// sequence are not followers: the sibling and sequence kinds fetch those.

const (
	// coGap is the quiet time that ends a session. A cold open that reads
	// a large file before the next open stretches the gap, so it is
	// generous.
	coGap = 5 * time.Second
	// coWindow bounds a session's length: a render that never pauses is
	// cut into sessions, each led by its first file.
	coWindow = 60 * time.Second
	// coLife is how long a prediction may wait to be opened before it
	// counts as wasted.
	coLife = 2 * coWindow
	// coMaxFollowers bounds the files learned per session and predicted
	// per leader; coMaxEntries, the followers a leader keeps (literal and
	// frame-relative forms of one file are two).
	coMaxFollowers = 64
	coMaxEntries   = 2 * coMaxFollowers
	// coMaxLeaders bounds the groups remembered (least recently led
	// forgotten first), in memory and on disk.
	coMaxLeaders = 4096
	// coDecay halves a group's counts once it has led this many sessions,
	// so what it opened lately outweighs what it opened long ago.
	coDecay = 16
	// coMaxOff is how far a follower's frame may be from its leader's to be
	// learned relative to it.
	coMaxOff = 4
	// coMaxPending bounds the predictions waiting to be opened.
	coMaxPending = 256
	// coWorkers resolves and fetches a group's followers in parallel: an
	// include chain is many small files, each a round trip.
	coWorkers = 16
	// coSaveEvery is how often learned groups are written while they
	// change (and once more when the Speculator closes).
	coSaveEvery = 30 * time.Second
	// coMaxRecent bounds the files remembered as opened lately.
	coMaxRecent = 8192
	// coMaxFile bounds the file read back: a larger one is not ours.
	coMaxFile = 64 << 20
)

// frameName is a path split around its frame number.
type frameName struct {
	pre, post string
	width     int // of the frame's digits; 0 without a frame number
	frame     int
}

// splitFrame finds the frame number of rel: the last run of 2 to 9 digits
// in its base name (shorter runs are more often an index: a1.inc, a2.inc).
func splitFrame(rel string) frameName {
	base := rel[strings.LastIndexByte(rel, '/')+1:]
	off := len(rel) - len(base)
	for j := len(base); j > 0; {
		if !isDigit(base[j-1]) {
			j--
			continue
		}
		i := j
		for i > 0 && isDigit(base[i-1]) {
			i--
		}
		if w := j - i; w >= 2 && w <= 9 {
			n, _ := strconv.Atoi(base[i:j])
			return frameName{pre: rel[:off+i], post: rel[off+j:], width: w, frame: n}
		}
		j = i
	}
	return frameName{pre: rel}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// key names the sequence (or, without a frame number, the file): NUL
// never occurs in a path, so a key never equals another path's.
func (f frameName) key() string {
	if f.width == 0 {
		return f.pre
	}
	return f.pre + "\x00" + strconv.Itoa(f.width) + "\x00" + f.post
}

// at is the sequence's name for frame n (padded to the width, never cut).
func (f frameName) at(n int) string {
	s := strconv.Itoa(n)
	for len(s) < f.width {
		s = "0" + s
	}
	return f.pre + s + f.post
}

// follower is a file learned to follow a leader: literal (Width 0, Pre is
// the path), a frame Off frames from the leader's, or (Seq, for a leader
// with no frame number: a scene opened once per frame) the next frame of
// a sequence that moved by Step from one session to the next, Last being
// the frame its latest session opened.
type follower struct {
	Pre   string `json:"p"`
	Post  string `json:"q,omitempty"`
	Width int    `json:"w,omitempty"`
	Off   int    `json:"o,omitempty"`
	Seq   bool   `json:"s,omitempty"`
	Last  int    `json:"l,omitempty"`
	Step  int    `json:"d,omitempty"`
	Hits  int    `json:"h"`
}

func (f *follower) same(g *follower) bool {
	return f.Pre == g.Pre && f.Post == g.Post && f.Width == g.Width && f.Off == g.Off && f.Seq == g.Seq
}

// coMaxStep bounds a sequence follower's step (a render of every tenth
// frame steps by ten); a larger move is a new start, not a step.
const coMaxStep = 100

// group is what one leader was followed by: N sessions led, each
// follower's Hits among them, and the run of its predictions wasted.
type group struct {
	Key       string      `json:"k"`
	N         int         `json:"n"`
	Misses    int         `json:"m,omitempty"`
	Followers []*follower `json:"f"`
	elem      *list.Element
}

// memory is what co-open learning knows of one source. The Speculators of
// one file share one memory (jobs of one source on a node), so none
// overwrites what another learned.
type memory struct {
	file string // "" keeps it in memory only
	log  *slog.Logger

	mu     sync.Mutex
	groups map[string]*group
	lru    *list.List // of *group, most recently led first
	dirty  bool
	refs   int

	saveMu sync.Mutex // one write of the file at a time
}

var memories = struct {
	sync.Mutex
	m map[string]*memory
}{m: map[string]*memory{}}

// acquireMemory returns the memory of file, reading it on first use.
func acquireMemory(file string, log *slog.Logger) *memory {
	if file == "" {
		return newMemory("", log)
	}
	memories.Lock()
	defer memories.Unlock()
	m := memories.m[file]
	if m == nil {
		m = newMemory(file, log)
		m.load()
		memories.m[file] = m
	}
	m.mu.Lock()
	m.refs++
	m.mu.Unlock()
	return m
}

// release saves m and, once no Speculator holds it, lets it go.
func (m *memory) release() {
	if err := m.save(); err != nil {
		m.log.Warn("speculate: co-open groups not saved", "file", m.file, "err", err)
	}
	if m.file == "" {
		return
	}
	memories.Lock()
	defer memories.Unlock()
	m.mu.Lock()
	m.refs--
	last := m.refs <= 0
	m.mu.Unlock()
	if last && memories.m[m.file] == m {
		delete(memories.m, m.file)
	}
}

func newMemory(file string, log *slog.Logger) *memory {
	return &memory{file: file, log: log, groups: map[string]*group{}, lru: list.New()}
}

// len is the number of leaders remembered.
func (m *memory) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.groups)
}

// learn records a session: leader led it, followers (distinct, in the
// order opened, none a frame of the leader's sequence) followed.
func (m *memory) learn(leader frameName, followers []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := leader.key()
	g := m.groups[k]
	if g == nil {
		if len(followers) == 0 {
			return // a file opened alone leads nothing: not worth a slot
		}
		g = &group{Key: k}
		m.insertLocked(g)
	}
	m.lru.MoveToFront(g.elem)
	g.N++
	// Per sequence, the furthest frame this session opened (motion blur
	// reads two): one step per session.
	var seqs map[string]frameName
	for _, rel := range followers {
		g.hitLocked(&follower{Pre: rel})
		f := splitFrame(rel)
		switch {
		case f.width == 0:
		case leader.width == 0:
			if seqs == nil {
				seqs = map[string]frameName{}
			}
			if o, ok := seqs[f.key()]; !ok || f.frame > o.frame {
				seqs[f.key()] = f
			}
		case abs(f.frame-leader.frame) <= coMaxOff:
			g.hitLocked(&follower{Pre: f.pre, Post: f.post, Width: f.width, Off: f.frame - leader.frame})
		}
	}
	for _, rel := range followers { // in the order opened
		f := splitFrame(rel)
		if o, ok := seqs[f.key()]; ok && o.frame == f.frame {
			delete(seqs, f.key())
			g.seqLocked(f)
		}
	}
	if len(g.Followers) > coMaxEntries {
		// Keep the most confirmed; among equals, the first opened.
		sort.SliceStable(g.Followers, func(i, j int) bool { return g.Followers[i].Hits > g.Followers[j].Hits })
		g.Followers = g.Followers[:coMaxEntries]
	}
	if g.N > coDecay {
		g.N /= 2
		kept := g.Followers[:0]
		for _, f := range g.Followers {
			if f.Hits /= 2; f.Hits > 0 {
				kept = append(kept, f)
			}
		}
		g.Followers = kept
	}
	m.dirty = true
}

func (g *group) hitLocked(f *follower) {
	for _, h := range g.Followers {
		if h.same(f) {
			h.Hits++
			return
		}
	}
	f.Hits = 1
	g.Followers = append(g.Followers, f)
}

// seqLocked moves g's sequence follower of f's sequence to f's frame. It
// counts a hit only when the frame moved (or on the first session): a
// file that keeps its number from one session to the next (a UDIM tile)
// is a literal follower, not a sequence.
func (g *group) seqLocked(f frameName) {
	for _, h := range g.Followers {
		if !h.Seq || h.Pre != f.pre || h.Post != f.post || h.Width != f.width {
			continue
		}
		if d := f.frame - h.Last; d != 0 {
			h.Step, h.Last = d, f.frame
			if abs(d) > coMaxStep {
				h.Step = 0
			}
			h.Hits++
		}
		return
	}
	g.Followers = append(g.Followers, &follower{Pre: f.pre, Post: f.post, Width: f.width, Seq: true, Last: f.frame, Hits: 1})
}

func (m *memory) insertLocked(g *group) {
	g.elem = m.lru.PushFront(g)
	m.groups[g.Key] = g
	for len(m.groups) > coMaxLeaders {
		old := m.lru.Back()
		m.lru.Remove(old)
		delete(m.groups, old.Value.(*group).Key)
	}
}

// predict lists what leader's group expects to follow it: the followers
// seen in most of its sessions (in every one, or twice at least once its
// predictions have been wasted), frame-relative ones at leader's frame.
func (m *memory) predict(leader frameName) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.groups[leader.key()]
	if g == nil {
		return nil
	}
	m.lru.MoveToFront(g.elem)
	var out []string
	seen := map[string]bool{}
	confirmed := func(f *follower) bool {
		return (f.Hits == g.N || 2*f.Hits > g.N) && (g.Misses == 0 || f.Hits >= 2)
	}
	for _, f := range g.Followers {
		if !confirmed(f) || f.Width == 0 && framed(g, f, confirmed) {
			continue
		}
		p := f.Pre
		switch {
		case f.Seq:
			if f.Step == 0 || f.Last+f.Step < 0 {
				continue
			}
			p = frameName{pre: f.Pre, post: f.Post, width: f.Width}.at(f.Last + f.Step)
		case f.Width > 0:
			if leader.width == 0 || leader.frame+f.Off < 0 {
				continue
			}
			p = frameName{pre: f.Pre, post: f.Post, width: f.Width}.at(leader.frame + f.Off)
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
			if len(out) == coMaxFollowers {
				break
			}
		}
	}
	return out
}

// framed tells whether literal follower f is a frame that a confirmed
// frame-relative follower of g, seen as often, also covers: learned on
// one frame, a file of the leader's frame is both, and the next frame
// tells them apart; until then the frame-relative one is the better bet.
func framed(g *group, f *follower, confirmed func(*follower) bool) bool {
	n := splitFrame(f.Pre)
	if n.width == 0 {
		return false
	}
	for _, t := range g.Followers {
		if t.Width == n.width && t.Pre == n.pre && t.Post == n.post && t.Hits >= f.Hits && confirmed(t) && (!t.Seq || t.Step != 0) {
			return true
		}
	}
	return false
}

// has tells whether key leads a group.
func (m *memory) has(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.groups[key] != nil
}

// used resets the run of wasted predictions of key's group.
func (m *memory) used(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if g := m.groups[key]; g != nil && g.Misses != 0 {
		g.Misses = 0
		m.dirty = true
	}
}

// wasted counts a wasted prediction of key's group and forgets the group
// after a run of limit; it tells whether it did.
func (m *memory) wasted(key string, limit int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.groups[key]
	if g == nil {
		return false
	}
	m.dirty = true
	if g.Misses++; g.Misses < limit {
		return false
	}
	m.lru.Remove(g.elem)
	delete(m.groups, key)
	return true
}

// The file: magic, CRC-32C of the payload, its length, and the payload
// (the groups as JSON, most recently led first). It is written to a
// temporary file and renamed over the old, so a crash leaves one or the
// other; one that does not check out is ignored.
const coMagic = "JITFSCO1"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// save writes the groups to the memory's file if they changed.
func (m *memory) save() error {
	if m.file == "" {
		return nil
	}
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	m.mu.Lock()
	if !m.dirty {
		m.mu.Unlock()
		return nil
	}
	gs := make([]*group, 0, len(m.groups))
	for e := m.lru.Front(); e != nil; e = e.Next() {
		gs = append(gs, e.Value.(*group))
	}
	m.dirty = false
	m.mu.Unlock()
	// One group at a time under the lock: an open waiting on it (Opened
	// learns and predicts through it) waits for one group, not all.
	payload := []byte{'['}
	var err error
	for i, g := range gs {
		m.mu.Lock()
		b, merr := json.Marshal(g)
		m.mu.Unlock()
		if merr != nil {
			err = merr
			break
		}
		if i > 0 {
			payload = append(payload, ',')
		}
		payload = append(payload, b...)
	}
	payload = append(payload, ']')
	if err == nil {
		err = writeAtomic(m.file, payload)
	}
	if err != nil {
		m.mu.Lock()
		m.dirty = true
		m.mu.Unlock()
	}
	return err
}

func writeAtomic(file string, payload []byte) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".coopen-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	head := make([]byte, len(coMagic)+8)
	copy(head, coMagic)
	binary.BigEndian.PutUint32(head[len(coMagic):], crc32.Checksum(payload, castagnoli))
	binary.BigEndian.PutUint32(head[len(coMagic)+4:], uint32(len(payload)))
	_, err = tmp.Write(append(head, payload...))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), file)
	}
	if err == nil {
		// The rename itself survives a crash only once the directory is
		// synced; without it the old groups stay, which is harmless.
		if d, derr := os.Open(dir); derr == nil {
			d.Sync()
			d.Close()
		}
	}
	return err
}

// errCorrupt marks a file that does not check out.
var errCorrupt = errors.New("corrupt")

// load reads the memory's file. A missing file is a first start; one that
// does not check out is ignored with a log line: the groups only drive
// fetching ahead, so starting empty costs round trips, never wrong data.
func (m *memory) load() {
	// A crash while saving leaves a temporary file behind; a save in
	// progress (of another source's file) is younger than a minute.
	if tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(m.file), ".coopen-*")); len(tmps) > 0 {
		for _, p := range tmps {
			if st, err := os.Stat(p); err == nil && time.Since(st.ModTime()) > time.Minute {
				os.Remove(p)
			}
		}
	}
	gs, err := readGroups(m.file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return
	case err != nil:
		m.log.Warn("speculate: co-open groups ignored, learning afresh", "file", m.file, "err", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	bad := 0
	for i := len(gs) - 1; i >= 0; i-- { // least recent first, so the LRU order is kept
		g := gs[i]
		if g == nil || !validGroup(g) || m.groups[g.Key] != nil {
			bad++
			continue
		}
		m.insertLocked(g)
	}
	if bad > 0 {
		m.log.Warn("speculate: co-open groups skipped as invalid", "file", m.file, "groups", bad)
	}
	m.log.Debug("speculate: co-open groups loaded", "file", m.file, "groups", len(m.groups))
}

func readGroups(file string) ([]*group, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > coMaxFile {
		return nil, fmt.Errorf("%w: %d bytes", errCorrupt, st.Size())
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	h := len(coMagic) + 8
	if len(b) < h || string(b[:len(coMagic)]) != coMagic {
		return nil, fmt.Errorf("%w: not a co-open file", errCorrupt)
	}
	sum, n := binary.BigEndian.Uint32(b[len(coMagic):]), binary.BigEndian.Uint32(b[len(coMagic)+4:])
	payload := b[h:]
	if uint64(n) != uint64(len(payload)) {
		return nil, fmt.Errorf("%w: %d bytes of payload, header says %d (truncated?)", errCorrupt, len(payload), n)
	}
	if crc32.Checksum(payload, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	var gs []*group
	if err := json.Unmarshal(payload, &gs); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	if len(gs) > coMaxLeaders {
		gs = gs[:coMaxLeaders]
	}
	return gs, nil
}

// validGroup checks what a file could hold that learning never makes.
func validGroup(g *group) bool {
	if g.Key == "" || len(g.Key) > 4096 || g.N < 1 || g.N > coDecay || g.Misses < 0 || len(g.Followers) > coMaxEntries {
		return false
	}
	for _, f := range g.Followers {
		if f == nil || f.Pre == "" || len(f.Pre)+len(f.Post) > 4096 || f.Hits < 1 || f.Hits > g.N ||
			f.Width < 0 || f.Width > 9 || abs(f.Off) > coMaxOff || f.Width == 0 && (f.Post != "" || f.Off != 0 || f.Seq) ||
			f.Seq && (f.Off != 0 || f.Last < 0 || abs(f.Step) > coMaxStep) || !f.Seq && (f.Last != 0 || f.Step != 0) {
			return false
		}
	}
	return true
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// coopen is a Speculator's co-open learning: the session being learned
// and the predictions waiting to be opened.
type coopen struct {
	s   *Speculator
	mem *memory

	mu        sync.Mutex
	now       func() time.Time // a test's clock
	sess      *session
	pend      map[string]pred // predicted, not opened yet
	pendBytes int64
	nextDue   time.Time       // the earliest pend deadline (zero: none)
	queued    map[string]bool // queued for lookup, not predicted yet
	// recent are the files opened lately (within coLife), which are
	// resident: predicting them would fetch nothing and count as used.
	recent   map[string]time.Time
	work     chan coWant
	lastSave time.Time
}

type session struct {
	leader      frameName
	start, last time.Time
	seen        map[string]bool
	followers   []string
}

// pred is a prediction waiting to be opened: the group that made it, and
// when it counts as wasted.
type pred struct {
	key  string
	due  time.Time
	size int64
}

type coWant struct {
	rel, key string
}

func newCoOpen(s *Speculator) *coopen {
	c := &coopen{s: s, mem: acquireMemory(s.opts.CoOpenFile, s.log), now: time.Now,
		pend: map[string]pred{}, queued: map[string]bool{}, recent: map[string]time.Time{}, work: make(chan coWant, coMaxPending)}
	c.lastSave = c.now()
	for range min(coWorkers, s.opts.Workers) {
		s.wg.Add(1)
		go c.worker()
	}
	s.wg.Add(1)
	go c.janitor()
	return c
}

// opened is Speculator.Opened's co-open part: it counts a prediction used,
// moves the session on, and queues a leader's followers. It never waits on
// more than the two mutexes, never held across I/O.
func (c *coopen) opened(rel string) {
	name := splitFrame(rel)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.expireLocked(now)
	delete(c.queued, rel) // opened before its lookup: not a prediction
	c.openedLocked(rel, now)
	if p, ok := c.pend[rel]; ok {
		delete(c.pend, rel)
		c.settleLocked(p.size)
		c.s.Stats.Used.Add(1)
		c.s.Stats.UsedBytes.Add(p.size)
		c.mem.used(p.key)
	}
	if c.sess != nil && (now.Sub(c.sess.last) > coGap || now.Sub(c.sess.start) > coWindow || name.key() == c.sess.leader.key()) {
		c.endLocked()
	}
	if c.sess == nil {
		c.sess = &session{leader: name, start: now, last: now, seen: map[string]bool{rel: true}}
		c.predictLocked(name, rel)
		return
	}
	c.sess.last = now
	if !c.sess.seen[rel] {
		c.sess.seen[rel] = true
		if len(c.sess.followers) < coMaxFollowers {
			c.sess.followers = append(c.sess.followers, rel)
		}
		// A file that leads a group of its own (a library and its
		// textures) starts it within another's session too.
		if c.mem.has(name.key()) {
			c.predictLocked(name, rel)
		}
	}
}

// openedLocked remembers rel as opened lately, forgetting the files
// opened too long ago when the bound is reached (all of them if that is
// not enough: it only saves fetches of what is resident).
func (c *coopen) openedLocked(rel string, now time.Time) {
	if len(c.recent) >= coMaxRecent {
		for p, t := range c.recent {
			if now.Sub(t) >= coLife {
				delete(c.recent, p)
			}
		}
		if len(c.recent) >= coMaxRecent/2 {
			clear(c.recent)
		}
	}
	c.recent[rel] = now
}

// endLocked learns the session and ends it.
func (c *coopen) endLocked() {
	c.mem.learn(c.sess.leader, c.sess.followers)
	c.sess = nil
}

// predictLocked queues the followers of leader (opened as rel) for lookup
// and fetch. A full queue drops the rest: speculation only ever helps.
func (c *coopen) predictLocked(leader frameName, rel string) {
	now := c.now()
	for _, p := range c.mem.predict(leader) {
		if _, ok := c.pend[p]; ok || p == rel || c.queued[p] {
			continue
		}
		if t, ok := c.recent[p]; ok && now.Sub(t) < coLife {
			continue
		}
		c.s.pending.Add(1)
		select {
		case c.work <- coWant{rel: p, key: leader.key()}:
			c.queued[p] = true
		default:
			c.s.pending.Add(-1)
			return
		}
	}
}

// reserveLocked takes size from the budget every stream shares
// (Options.Budget), or tells that it would go past it. c.mu is taken
// before s.mu, never after.
func (c *coopen) reserveLocked(size int64) bool {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aheadBytes+size > s.opts.Budget {
		return false
	}
	s.aheadBytes += size
	c.pendBytes += size
	return true
}

// settleLocked gives back what a prediction reserved, once it is opened
// or wasted.
func (c *coopen) settleLocked(size int64) {
	c.pendBytes -= size
	c.s.mu.Lock()
	c.s.aheadBytes -= size
	c.s.mu.Unlock()
}

// expireLocked counts the predictions left unopened too long as wasted.
func (c *coopen) expireLocked(now time.Time) {
	if c.nextDue.IsZero() || now.Before(c.nextDue) {
		return
	}
	c.nextDue = time.Time{}
	for rel, p := range c.pend {
		if now.Before(p.due) {
			if c.nextDue.IsZero() || p.due.Before(c.nextDue) {
				c.nextDue = p.due
			}
			continue
		}
		delete(c.pend, rel)
		c.settleLocked(p.size)
		c.s.Stats.Wasted.Add(1)
		c.s.Stats.WastedBytes.Add(p.size)
		if c.mem.wasted(p.key, c.s.opts.Misses) {
			c.s.Stats.Stopped.Add(1)
		}
	}
}

// worker looks a follower up through the snapshot and fetches it. Only
// then is it a prediction: a name no longer there, a directory, or a
// file past the byte bound is dropped uncounted.
func (c *coopen) worker() {
	s := c.s
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case w := <-c.work:
			c.fetch(w)
			s.pending.Add(-1)
		}
	}
}

func (c *coopen) fetch(w coWant) {
	s := c.s
	e, err := c.lookup(s.ctx, w.rel)
	c.mu.Lock()
	if !c.queued[w.rel] {
		c.mu.Unlock()
		return // opened meanwhile
	}
	delete(c.queued, w.rel)
	if err != nil || e.IsDir || e.Attrs.Size > s.opts.MaxFileBytes || c.pendBytes+e.Attrs.Size > s.opts.MaxBytes || len(c.pend) >= coMaxPending || !c.reserveLocked(e.Attrs.Size) {
		c.mu.Unlock()
		if err != nil && s.ctx.Err() == nil {
			s.log.Debug("speculate: co-open follower not found", "path", w.rel, "err", err)
		}
		return
	}
	due := c.now().Add(coLife)
	c.pend[w.rel] = pred{key: w.key, due: due, size: e.Attrs.Size}
	if c.nextDue.IsZero() || due.Before(c.nextDue) {
		c.nextDue = due
	}
	s.Stats.Predicted.Add(1)
	s.Stats.CoOpen.Add(1)
	s.Stats.Bytes.Add(e.Attrs.Size)
	c.mu.Unlock()
	if err := s.fetch(s.ctx, e); err != nil {
		if s.ctx.Err() == nil {
			s.log.Debug("speculate: co-open fetch failed", "path", w.rel, "err", err)
		}
		return
	}
	s.Stats.Fetched.Add(1)
}

// lookup resolves rel through the snapshot: by name when the Lister can
// (a namespace), else through its directory's listing.
func (c *coopen) lookup(ctx context.Context, rel string) (namespace.Entry, error) {
	if l, ok := c.s.list.(interface {
		Lookup(ctx context.Context, p string) (namespace.Entry, error)
	}); ok {
		return l.Lookup(ctx, rel)
	}
	dir := path.Dir(rel)
	if dir == "." {
		dir = ""
	}
	ents, err := c.s.list.ListDir(ctx, dir)
	if err != nil {
		return namespace.Entry{}, err
	}
	i := sort.Search(len(ents), func(i int) bool { return ents[i].Path >= rel })
	if i < len(ents) && ents[i].Path == rel {
		return ents[i], nil
	}
	return namespace.Entry{}, fmt.Errorf("%s: %w", rel, namespace.ErrNotExist)
}

// janitor ends idle sessions, expires predictions while nothing is
// opened, and saves what was learned now and then.
func (c *coopen) janitor() {
	defer c.s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.s.ctx.Done():
			return
		case <-t.C:
			c.tick()
		}
	}
}

func (c *coopen) tick() {
	c.mu.Lock()
	now := c.now()
	c.expireLocked(now)
	if c.sess != nil && now.Sub(c.sess.last) > coGap {
		c.endLocked()
	}
	save := now.Sub(c.lastSave) >= coSaveEvery
	if save {
		c.lastSave = now
	}
	c.mu.Unlock()
	if save {
		if err := c.mem.save(); err != nil {
			c.s.log.Warn("speculate: co-open groups not saved", "file", c.mem.file, "err", err)
		}
	}
}

// close learns the session in progress, counts what was predicted and
// never opened as wasted, and saves. The workers have stopped.
func (c *coopen) close() {
	c.mu.Lock()
	if c.sess != nil {
		c.endLocked()
	}
	for _, p := range c.pend {
		c.settleLocked(p.size)
		c.s.Stats.Wasted.Add(1)
		c.s.Stats.WastedBytes.Add(p.size)
	}
	clear(c.pend)
	c.mu.Unlock()
	c.mem.release()
}
