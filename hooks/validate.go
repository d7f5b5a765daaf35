package hooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"path"
	"strings"
	"time"
)

// maxPathBytes is Linux's PATH_MAX: no file the DCC can open is longer.
const maxPathBytes = 4096

// rejection is a request the server refuses: an HTTP status, a reason
// code for the counters and clients, and a message for people.
type rejection struct {
	status int
	reason string
	msg    string
}

func (r *rejection) Error() string { return r.reason + ": " + r.msg }

func reject(reason, format string, args ...any) *rejection {
	return &rejection{status: http.StatusBadRequest, reason: reason, msg: fmt.Sprintf(format, args...)}
}

// The rejection reasons. They are part of the protocol: clients may
// branch on them and the status reply counts by them.
const (
	reasonTooLarge     = "too_large" // 413
	reasonReadError    = "read_error"
	reasonBadJSON      = "bad_json"
	reasonBadSchema    = "bad_schema"
	reasonBadScope     = "bad_scope"
	reasonBadPriority  = "bad_priority"
	reasonBadWait      = "bad_wait"
	reasonBadJob       = "bad_job"
	reasonBadItem      = "bad_item"
	reasonBadRange     = "bad_range"
	reasonBadPattern   = "bad_pattern"
	reasonBadFrames    = "bad_frames"
	reasonBadPath      = "bad_path"
	reasonRelativePath = "relative_path"
	reasonNULByte      = "nul_byte"
	reasonPathEscapes  = "path_escapes"
	reasonTooManyItems = "too_many_items"
	reasonBusy         = "busy" // 503: the engine holds as much work as it may
	reasonBadSince     = "bad_since"
	reasonNoPrefetch   = "no_prefetch"        // 404: an output area's daemon
	reasonNoOutputs    = "no_outputs"         // 404: a daemon without an output area
	reasonNotFound     = "not_found"          // 404
	reasonBadMethod    = "method_not_allowed" // 405
)

// validator turns request bodies into what the backend may see. It holds
// no state between requests, so handlers share one.
type validator struct {
	mount    string // clean and absolute
	prefix   string // mount + "/", or "/" when the mount is the root
	maxItems int
	maxWait  time.Duration
	// listDir names a directory's entries; the daemon answers from its
	// namespace, the fuzzer from a fake.
	listDir func(dir string) ([]string, error)
}

func newValidator(mount string, maxItems int, maxWait time.Duration, listDir func(string) ([]string, error)) *validator {
	prefix := mount + "/"
	if mount == "/" {
		prefix = "/"
	}
	return &validator{mount: mount, prefix: prefix, maxItems: maxItems, maxWait: maxWait, listDir: listDir}
}

// resolve checks one absolute path the client sent. A path inside the
// mount yields its clean mount-relative name; a path outside it is not an
// error (another daemon's mount, or /usr/share/fonts) and yields
// inside=false. A ".." that leads outside the mount is an error, because
// a hook that normalises its paths never sends one: it is a bug or a probe.
func (v *validator) resolve(raw string) (rel string, inside bool, rej *rejection) {
	switch {
	case raw == "":
		return "", false, reject(reasonBadPath, "empty path")
	case len(raw) > maxPathBytes:
		return "", false, reject(reasonBadPath, "path of %d bytes is longer than %d", len(raw), maxPathBytes)
	case strings.IndexByte(raw, 0) >= 0:
		return "", false, reject(reasonNULByte, "path %q contains a NUL byte", raw)
	case raw[0] != '/':
		return "", false, reject(reasonRelativePath, "path %q is relative; send absolute paths as the DCC opens them", raw)
	}
	c := path.Clean(raw)
	if c != v.mount && !strings.HasPrefix(c, v.prefix) {
		if hasDotDot(raw) {
			return "", false, reject(reasonPathEscapes, "path %q leaves the mount %s through ..", raw, v.mount)
		}
		return "", false, nil
	}
	if c == v.mount {
		return "", false, reject(reasonBadPath, "path %q is the mount root, not a file", raw)
	}
	return c[len(v.prefix):], true, nil
}

func hasDotDot(p string) bool {
	for p != "" {
		var comp string
		comp, p, _ = strings.Cut(p, "/")
		if comp == ".." {
			return true
		}
	}
	return false
}

// plan is a validated prefetch request: the backend's Prefetch and what
// the reply already knows before the backend is asked.
type plan struct {
	p         Prefetch
	requestID string
	clampedMS int64
	unmanaged []string
	missing   []string
	failed    []ItemError
}

// planner accumulates one request's wants, deduplicated by Rel, within
// the item and range budgets.
type planner struct {
	v         *validator
	wants     []Want
	index     map[string]int // Rel -> index in wants
	unmanaged []string
	seenOut   map[string]struct{}
	items     int // paths produced by expansion, duplicates included
	ranges    int
	udims     []udimSet
	udimAt    map[int]int // index in wants of a placeholder -> index in udims
}

// udimSet is a <UDIM> or <UVTILE> path waiting for its directory listing, which
// happens only after the whole request has been validated.
type udimSet struct {
	tok                         string // UDIMToken or UVTileToken
	abs, relDir, prefix, suffix string
	ranges                      []Range
}

func (pl *planner) spend(n int) *rejection {
	pl.items += n
	if pl.items > pl.v.maxItems {
		return reject(reasonTooManyItems, "the request names more than %d files after expansion", pl.v.maxItems)
	}
	return nil
}

// add records one concrete path the client named.
func (pl *planner) add(abs string, ranges []Range) *rejection {
	rel, inside, rej := pl.v.resolve(abs)
	if rej != nil {
		return rej
	}
	if !inside {
		if _, dup := pl.seenOut[abs]; !dup {
			pl.seenOut[abs] = struct{}{}
			pl.unmanaged = append(pl.unmanaged, abs)
		}
		return nil
	}
	return pl.addRel(rel, abs, ranges)
}

func (pl *planner) addRel(rel, abs string, ranges []Range) *rejection {
	pl.ranges += len(ranges)
	if pl.ranges > pl.v.maxItems {
		return reject(reasonTooManyItems, "the request names more than %d byte ranges after expansion", pl.v.maxItems)
	}
	pl.wants, pl.index = mergeWant(pl.wants, pl.index, Want{Rel: rel, Abs: abs, Ranges: ranges})
	return nil
}

// mergeWant appends w, or folds it into the earlier want of the same
// file: the whole file covers any ranges, otherwise the ranges add up.
// The first Abs is kept.
func mergeWant(wants []Want, index map[string]int, w Want) ([]Want, map[string]int) {
	if i, dup := index[w.Rel]; dup {
		old := &wants[i]
		if old.Ranges != nil && w.Ranges != nil {
			old.Ranges = append(old.Ranges, w.Ranges...)
		} else {
			old.Ranges = nil
		}
		return wants, index
	}
	index[w.Rel] = len(wants)
	// Each want gets its own copy: the engine may sort or trim ranges.
	w.Ranges = append([]Range(nil), w.Ranges...)
	return append(wants, w), index
}

func (v *validator) decode(body []byte, into any) *rejection {
	if err := json.Unmarshal(body, into); err != nil {
		return reject(reasonBadJSON, "%v", err)
	}
	return nil
}

func checkSchema(s string) *rejection {
	if s != Schema {
		return reject(reasonBadSchema, "schema %q: this daemon speaks %s", s, Schema)
	}
	return nil
}

// prefetch validates a POST /v1/prefetch body completely, expanding its
// patterns, before anything reaches the backend.
func (v *validator) prefetch(body []byte) (*plan, *rejection) {
	var req PrefetchRequest
	if rej := v.decode(body, &req); rej != nil {
		return nil, rej
	}
	if rej := checkSchema(req.Schema); rej != nil {
		return nil, rej
	}
	if !req.Scope.Valid() {
		return nil, reject(reasonBadScope, "scope %q: want frame, miss, job, lookahead or job_seq", req.Scope)
	}
	prio := req.Scope.Priority()
	if req.Priority != nil {
		if *req.Priority < 0 || *req.Priority > 100 {
			return nil, reject(reasonBadPriority, "priority %d: want 0..100", *req.Priority)
		}
		prio = *req.Priority
	}
	if req.WaitMS < 0 {
		return nil, reject(reasonBadWait, "wait_ms %d is negative", req.WaitMS)
	}
	pln := &plan{requestID: req.RequestID}
	// A wait longer than the limit is clamped, not refused: the prefetch
	// is still worth doing, and a hook configured for a longer wait than
	// this daemon allows should not lose its frame's files.
	wait := time.Duration(min(req.WaitMS, math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
	if wait > v.maxWait {
		wait = v.maxWait
		pln.clampedMS = v.maxWait.Milliseconds()
	}
	if len(req.Items) > v.maxItems {
		return nil, reject(reasonTooManyItems, "%d items: at most %d", len(req.Items), v.maxItems)
	}
	pl := &planner{v: v, index: map[string]int{}, seenOut: map[string]struct{}{}, udimAt: map[int]int{}}
	for i, it := range req.Items {
		if rej := pl.item(it); rej != nil {
			rej.msg = fmt.Sprintf("items[%d]: %s", i, rej.msg)
			return nil, rej
		}
	}
	if rej := pl.listUDIMs(pln); rej != nil {
		return nil, rej
	}
	pln.p = Prefetch{RequestID: req.RequestID, Job: req.Job.Job, Scope: req.Scope, Frame: req.Frame, Priority: prio, Wait: wait, Wants: pl.wants}
	pln.unmanaged = pl.unmanaged
	return pln, nil
}

func (pl *planner) item(it Item) *rejection {
	if (it.Path == "") == (it.Seq == nil) {
		return reject(reasonBadItem, "give exactly one of path and seq")
	}
	for _, r := range it.Ranges {
		if r.Off < 0 || r.Len <= 0 || r.Off > math.MaxInt64-r.Len {
			return reject(reasonBadRange, "range {off %d, len %d}: want off >= 0, len > 0", r.Off, r.Len)
		}
	}
	ranges := it.Ranges
	if len(ranges) == 0 {
		ranges = nil
	}
	if it.Seq == nil {
		if rej := pl.spend(1); rej != nil {
			return rej
		}
		return pl.add(it.Path, ranges)
	}
	return pl.seq(*it.Seq, ranges)
}

func (pl *planner) seq(s Seq, ranges []Range) *rejection {
	budget := pl.v.maxItems - pl.items
	var frames []int
	if s.Frames != "" {
		var err error
		if frames, err = parseFrames(s.Frames, budget); err != nil {
			return patternRejection(reasonBadFrames, err)
		}
	}
	tok, err := tileToken(s.Pattern)
	if err != nil {
		return patternRejection(reasonBadPattern, err)
	}
	hasUDIM := tok != ""
	if len(s.Tiles) > 0 && !hasUDIM {
		return reject(reasonBadPattern, "tiles were given but pattern %q has no %s or %s", s.Pattern, UDIMToken, UVTileToken)
	}
	for _, t := range s.Tiles {
		if t < minUDIM || t > maxUDIM {
			return reject(reasonBadPattern, "tile %d: want %d..%d", t, minUDIM, maxUDIM)
		}
	}
	paths, err := expandPattern(s.Pattern, frames, s.Views, budget)
	if err != nil {
		return patternRejection(reasonBadPattern, err)
	}
	if !hasUDIM {
		if rej := pl.spend(len(paths)); rej != nil {
			return rej
		}
		for _, p := range paths {
			if rej := pl.add(p, ranges); rej != nil {
				return rej
			}
		}
		return nil
	}
	if len(s.Tiles) > 0 {
		// Both lengths are bounded by the body; check before building.
		if len(paths)*len(s.Tiles) > budget {
			return reject(reasonTooManyItems, "pattern %q gives %d paths x %d tiles, more than %d files", s.Pattern, len(paths), len(s.Tiles), pl.v.maxItems)
		}
		if rej := pl.spend(len(paths) * len(s.Tiles)); rej != nil {
			return rej
		}
		for _, p := range paths {
			if _, _, _, err := tileParts(path.Base(p)); err != nil || strings.Contains(path.Dir(p), tok) {
				return reject(reasonBadPattern, "pattern %q: %s may appear once, in the file name only", s.Pattern, tok)
			}
			for _, t := range s.Tiles {
				if rej := pl.add(strings.Replace(p, tok, FormatTile(tok, t), 1), ranges); rej != nil {
					return rej
				}
			}
		}
		return nil
	}
	for _, p := range paths {
		rel, inside, rej := pl.v.resolve(p)
		if rej != nil {
			return rej
		}
		if !inside {
			if rej := pl.spend(1); rej != nil {
				return rej
			}
			if rej := pl.add(p, nil); rej != nil {
				return rej
			}
			continue
		}
		// Check the clean name: cleaning could have moved the token.
		dir, name := path.Split(rel)
		_, prefix, suffix, err := tileParts(name)
		if err != nil || strings.Contains(dir, tok) {
			return reject(reasonBadPattern, "pattern %q: %s may appear once, in the file name only", s.Pattern, tok)
		}
		// A placeholder keeps the tiles in request order; it has no Rel,
		// so it never merges with a file.
		pl.udimAt[len(pl.wants)] = len(pl.udims)
		pl.wants = append(pl.wants, Want{Abs: p})
		pl.udims = append(pl.udims, udimSet{tok: tok, abs: p, relDir: strings.TrimSuffix(dir, "/"), prefix: prefix, suffix: suffix, ranges: ranges})
	}
	return nil
}

// listUDIMs lists the directories of <UDIM> patterns without tiles and
// puts the tiles that exist where the pattern was. A directory that does
// not exist, or holds no tile, makes the pattern missing; one that cannot
// be listed, failed.
func (pl *planner) listUDIMs(pln *plan) *rejection {
	if len(pl.udims) == 0 {
		return nil
	}
	listed := map[string][]string{}
	listErr := map[string]error{}
	wants, index := make([]Want, 0, len(pl.wants)), make(map[string]int, len(pl.wants))
	for i, w := range pl.wants {
		ui, isUDIM := pl.udimAt[i]
		if !isUDIM {
			wants, index = mergeWant(wants, index, w)
			continue
		}
		u := pl.udims[ui]
		names, seen := listed[u.relDir]
		err := listErr[u.relDir]
		if !seen && err == nil {
			names, err = pl.v.listDir(path.Join(pl.v.mount, u.relDir))
			listed[u.relDir], listErr[u.relDir] = names, err
		}
		switch {
		case errors.Is(err, fs.ErrNotExist):
			pln.missing = append(pln.missing, u.abs)
			continue
		case err != nil:
			pln.failed = append(pln.failed, ItemError{Path: u.abs, Error: "listing the tiles: " + err.Error()})
			continue
		}
		found := 0
		for _, n := range names {
			tile, ok := matchTile(u.tok, n, u.prefix, u.suffix)
			if !ok {
				continue
			}
			if rej := pl.spend(1); rej != nil {
				return rej
			}
			if pl.ranges += len(u.ranges); pl.ranges > pl.v.maxItems {
				return reject(reasonTooManyItems, "the request names more than %d byte ranges after expansion", pl.v.maxItems)
			}
			rel := n
			if u.relDir != "" {
				rel = u.relDir + "/" + n
			}
			wants, index = mergeWant(wants, index, Want{Rel: rel, Abs: strings.Replace(u.abs, u.tok, FormatTile(u.tok, tile), 1), Ranges: u.ranges})
			found++
		}
		if found == 0 {
			pln.missing = append(pln.missing, u.abs)
		}
	}
	pl.wants = wants
	return nil
}

func patternRejection(reason string, err error) *rejection {
	if errors.Is(err, ErrTooManyItems) {
		reason = reasonTooManyItems
	}
	return reject(reason, "%s", strings.TrimPrefix(err.Error(), "hooks: "))
}

// release validates a POST /v1/release body.
func (v *validator) release(body []byte) (Release, string, []string, *rejection) {
	var req ReleaseRequest
	if rej := v.decode(body, &req); rej != nil {
		return Release{}, "", nil, rej
	}
	if rej := checkSchema(req.Schema); rej != nil {
		return Release{}, "", nil, rej
	}
	if req.Job.ID == "" {
		return Release{}, "", nil, reject(reasonBadJob, "job.id is required: releases are per job")
	}
	switch req.Scope {
	case ScopeJob:
	case ScopeFrame:
		if req.Frame == nil {
			return Release{}, "", nil, reject(reasonBadJob, "scope frame needs a frame")
		}
	default:
		return Release{}, "", nil, reject(reasonBadScope, "scope %q: a release is for a frame or a job", req.Scope)
	}
	if len(req.Paths) > v.maxItems {
		return Release{}, "", nil, reject(reasonTooManyItems, "%d paths: at most %d", len(req.Paths), v.maxItems)
	}
	rel := Release{Job: req.Job.ID, Scope: req.Scope, Frame: req.Frame}
	unmanaged := []string{}
	seen := map[string]struct{}{}
	for i, p := range req.Paths {
		r, inside, rej := v.resolve(p)
		if rej != nil {
			rej.msg = fmt.Sprintf("paths[%d]: %s", i, rej.msg)
			return Release{}, "", nil, rej
		}
		if !inside {
			unmanaged = append(unmanaged, p)
			continue
		}
		if _, dup := seen[r]; !dup {
			seen[r] = struct{}{}
			rel.Rels = append(rel.Rels, r)
		}
	}
	return rel, req.RequestID, unmanaged, nil
}
