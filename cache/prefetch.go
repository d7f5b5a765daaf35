package cache

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/semaphore"
)

// Fetch makes [off,end) of the object resident without copying it to a
// reader: the prefetch engine's way in. Its fills draw on their own byte
// budget (Options.PrefetchBytes), waiting for room, and never take the
// slots a blocked reader or read-ahead needs; a reader that wants a block
// Fetch is fetching shares the fill. Blocks already present or in flight cost no request, so fetching
// a resident file is free. It returns the bytes it fetched itself.
func (h *Handle) Fetch(ctx context.Context, off, end int64) (int64, error) {
	return h.fetch(ctx, off, end, h.o.c.pf)
}

// Speculate is Fetch for fetching ahead of readers that sent no hooks:
// its fills draw on a budget of their own (Options.SpeculationBytes), so
// however much is being fetched ahead, a hook's prefetch and a blocked
// reader never wait behind it.
func (h *Handle) Speculate(ctx context.Context, off, end int64) (int64, error) {
	return h.fetch(ctx, off, end, h.o.c.spec)
}

func (h *Handle) fetch(ctx context.Context, off, end int64, sem *semaphore.Weighted) (int64, error) {
	o := h.o
	c := o.c
	bs, ps := c.opts.BlockSize, c.opts.PartSize
	size := o.meta.Size
	end = min(end, size)
	if off < 0 || off >= end {
		return 0, nil
	}
	lastB := (end + bs - 1) / bs
	var mine, waits []*fill
	seen := map[*fill]bool{}
	pos := off
	verified := false
	who := askerOf(ctx)
	for pos < end {
		// Reserve the most this fill can be; the unused rest is returned
		// once its real extent is known.
		weight := min(ps, end-pos+bs)
		if size <= c.opts.WholeObjectMax {
			weight = size
		}
		weight = max(weight, 1)
		if err := sem.Acquire(ctx, weight); err != nil {
			return 0, err
		}
		o.mu.Lock()
		if o.data == nil && !o.memOnly {
			o.mu.Unlock()
			sem.Release(weight)
			return 0, errors.New("cache: closed")
		}
		if !verified && len(o.unverified) > 0 {
			// Data kept from before a restart is checked before it is
			// trusted as resident, as a read would check it.
			o.verifySpansLocked(off/bs*bs, lastB*bs)
		}
		verified = true
		// Fills already fetching blocks of the range are waited for, not
		// repeated; a new fill takes at most a part.
		b, e, ok := o.nextMissingLocked(pos/bs, lastB*bs, ps, func(f *fill) {
			if !seen[f] {
				seen[f] = true
				waits = append(waits, f)
			}
		})
		if !ok {
			o.mu.Unlock()
			sem.Release(weight)
			break
		}
		var fs, fe int64
		if size <= c.opts.WholeObjectMax && o.npresent == 0 && len(o.inflight) == 0 && len(o.mem) == 0 {
			// Small objects are fetched whole so their CRC32C is checked
			// before any byte counts as present.
			fs, fe = 0, size
		} else {
			fs, fe = b*bs, min(e*bs, size)
		}
		if n := max(fe-fs, 1); n < weight {
			sem.Release(weight - n)
			weight = n
		}
		f := o.newFillLocked(fs, fe, true, trace.SpanContextFromContext(ctx), who)
		f.pfWeight, f.pfSem = weight, sem // released by runFill when done
		o.launchFillLocked(f)
		o.prefetched += fe - fs
		o.mu.Unlock()
		mine = append(mine, f)
		pos = fe
	}
	var fetched int64
	for _, f := range append(mine, waits...) {
		select {
		case <-f.stored:
		case <-ctx.Done():
			return fetched, ctx.Err()
		}
		if f.err != nil {
			return fetched, f.err
		}
	}
	for _, f := range mine {
		fetched += f.end - f.start
	}
	if sem == c.spec {
		c.Stats.SpeculatedBytes.Add(fetched)
	} else {
		c.Stats.PrefetchedBytes.Add(fetched)
	}
	return fetched, nil
}

// Resident reports whether every block of [off,end) is in the cache.
func (h *Handle) Resident(off, end int64) bool {
	o := h.o
	bs := o.c.opts.BlockSize
	end = min(end, o.meta.Size)
	o.mu.Lock()
	defer o.mu.Unlock()
	for b := max(off, 0) / bs; b*bs < end; b++ {
		if !o.has(b) {
			return false
		}
	}
	return true
}

// Size is the object's size.
func (h *Handle) Size() int64 { return h.o.meta.Size }

// Demote marks the handle's object to be evicted before others once no
// handle has it open: a job released it. A later read clears the mark.
func (h *Handle) Demote() { h.o.evictFirst.Store(true) }

// Arrived returns a function that tells how many bytes of the object are
// in the cache: a prefetch's progress through a large file, part by part.
// Unlike the handle's methods it stays safe to call once the handle is
// closed, so a progress report never races the fetch it watches ending.
func (h *Handle) Arrived() func() int64 {
	o := h.o
	return func() int64 {
		o.mu.Lock()
		defer o.mu.Unlock()
		return min(o.npresent*o.c.opts.BlockSize, o.meta.Size)
	}
}
