package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/jitfs/jitfs/cache"
	"github.com/jitfs/jitfs/gcs"
	"github.com/jitfs/jitfs/hooks"
	"github.com/jitfs/jitfs/namespace"
	"github.com/jitfs/jitfs/prefetch"
	"github.com/jitfs/jitfs/speculate"
	"github.com/jitfs/jitfs/telemetry"
)

// Speculation is the kinds of fetching ahead turned on for readers that
// send no hooks.
type Speculation struct {
	// Siblings fetches the next files of a directory read in listing
	// order (strides, UDIM tiles).
	Siblings bool
	// Sequences fetches the next frames of a file sequence a reader
	// walks (names that differ only in a frame number), wherever its
	// frames sit in the listing.
	Sequences bool
	// CoOpen starts the files learned to be opened together with the
	// one just opened (include chains, libraries and their textures).
	// What it learns is kept per source in the cache directory
	// (coopen/), for the next job and the next daemon.
	CoOpen bool
	// Metadata lists ahead of a walk, so a path deep in the tree costs
	// one round trip, not one per directory level.
	Metadata bool
}

// SpeculationKinds are the names ParseSpeculation takes, and the default.
const SpeculationKinds = "siblings,sequences,coopen,metadata"

// Any tells whether some kind is on.
func (sp Speculation) Any() bool {
	return sp.Siblings || sp.Sequences || sp.CoOpen || sp.Metadata
}

// listAhead is the namespace's Options.ListAhead for the kinds.
func (sp Speculation) listAhead() int {
	if sp.Metadata {
		return namespace.DefaultListAhead
	}
	return 0
}

// ParseSpeculation reads a comma-separated list of kinds; "none" (or "")
// turns every kind off.
func ParseSpeculation(v string) (Speculation, error) {
	var sp Speculation
	for _, k := range strings.Split(v, ",") {
		switch strings.TrimSpace(k) {
		case "", "none", "off":
		case "all":
			sp = Speculation{Siblings: true, Sequences: true, CoOpen: true, Metadata: true}
		case "siblings":
			sp.Siblings = true
		case "sequences":
			sp.Sequences = true
		case "coopen":
			sp.CoOpen = true
		case "metadata":
			sp.Metadata = true
		default:
			return sp, fmt.Errorf("unknown speculation %q (want a comma-separated list of %s, all or none)", k, SpeculationKinds)
		}
	}
	return sp, nil
}

// start makes the Speculator for a snapshot, or nil with every kind off.
// Its fetches are the cache's prefetch fetches: they wait on the
// prefetch budget, never on a blocked read's slots. Co-open learning
// keeps its groups in coopenFile (see coopenFile). Its fetches are
// shown in flight as job's (empty for a mount of its own).
func (sp Speculation) start(ns *namespace.Namespace, c *cache.Cache, src cache.Source, bucket, coopenFile, job string, log *slog.Logger) *speculate.Speculator {
	if !sp.Siblings && !sp.Sequences && !sp.CoOpen {
		return nil
	}
	fetch := func(ctx context.Context, e namespace.Entry) error {
		a := e.Attrs
		h, err := c.Open(cache.Meta{Bucket: bucket, Name: a.Name, Gen: a.Generation, Size: a.Size, CRC32C: a.CRC32C, HasCRC32C: a.HasCRC32C}, src)
		if err != nil {
			return err
		}
		defer h.Close()
		_, err = h.Speculate(cache.WithAsker(ctx, cache.Asker{Job: job, Band: cache.BandSpeculative}), 0, a.Size)
		return err
	}
	// Never more ahead of a stream than an eighth of the cache: under a
	// small budget, what speculation fetched would be evicted before it
	// was read, and fetched twice.
	// All streams together, never more than a quarter: speculation has
	// its own share of the cache, and pinned frames the rest.
	_, budget := c.Used()
	return speculate.New(ns, fetch, speculate.Options{Siblings: sp.Siblings, Sequences: sp.Sequences, CoOpen: sp.CoOpen,
		CoOpenFile: coopenFile, MaxBytes: max(1, min(64<<20, budget/8)), Budget: max(1, min(256<<20, budget/4)), Logger: log})
}

// coopenFile is where co-open learning keeps a source's groups: in the
// cache directory, so a restarted daemon, and every later job of the
// source on the node, starts with what earlier ones learned. One file per
// source (bucket and prefix): relative paths mean nothing across sources.
func coopenFile(cacheDir, bucket, prefix string) string {
	sum := sha256.Sum256([]byte(bucket + "/" + prefix))
	return filepath.Join(cacheDir, "coopen", hex.EncodeToString(sum[:16]))
}

// observer is what a mount tells of each open: the prefetch engine's
// frame learning and the speculator, either may be nil.
func observer(eng *prefetch.Engine, spec *speculate.Speculator) func(rel string) {
	return func(rel string) {
		if eng != nil {
			eng.Observe(rel)
		}
		if spec != nil {
			spec.Opened(rel)
		}
	}
}

// specBackend is the prefetch engine as the hook API sees it, its status
// carrying the speculator's counters, the zone cache's state and what is
// in flight now.
type specBackend struct {
	*prefetch.Engine
	spec *speculate.Speculator
	gc   *gcs.Client
	now  nowScope
}

func withSpeculation(eng *prefetch.Engine, spec *speculate.Speculator, gc *gcs.Client, now nowScope) hooks.Backend {
	return specBackend{eng, spec, gc, now}
}

func (b specBackend) Status() hooks.Status {
	st := b.Engine.Status()
	st.Speculation = speculationStatus(b.spec)
	if b.gc != nil {
		st.Zone = b.gc.Zone()
	}
	b.now.add(&st)
	return st
}

func speculationStatus(spec *speculate.Speculator) *hooks.SpeculationStatus {
	if spec == nil {
		return nil
	}
	s := &spec.Stats
	return &hooks.SpeculationStatus{Predicted: s.Predicted.Load(), Fetched: s.Fetched.Load(), Used: s.Used.Load(),
		Wasted: s.Wasted.Load(), Bytes: s.Bytes.Load(), UsedBytes: s.UsedBytes.Load(), WastedBytes: s.WastedBytes.Load(),
		Stopped: s.Stopped.Load(),
		Kinds:   map[string]int64{"siblings": s.Siblings.Load(), "sequences": s.Sequences.Load(), "coopen": s.CoOpen.Load()}}
}

// addListAhead adds a namespace's listing-ahead counters to a metrics
// snapshot.
func addListAhead(snap *telemetry.Snapshot, ns *namespace.Namespace) {
	a := ns.Stats.Ahead()
	snap.ListAheadFlat += a.Requests
	snap.ListAheadBackground += a.Background
	snap.ListAheadSaved += a.Saved + a.BackgroundUsed
	snap.ListAheadWasted += a.Wasted
}

// addSpeculation adds a speculator's counters to a metrics snapshot.
func addSpeculation(snap *telemetry.Snapshot, spec *speculate.Speculator) {
	if spec == nil {
		return
	}
	s := &spec.Stats
	snap.SpecPredicted += s.Predicted.Load()
	snap.SpecUsed += s.Used.Load()
	snap.SpecWasted += s.Wasted.Load()
	snap.SpecPredictedBytes += s.Bytes.Load()
	snap.SpecUsedBytes += s.UsedBytes.Load()
	snap.SpecWastedBytes += s.WastedBytes.Load()
}
