package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Options configures a Cache. Zero values take the defaults below.
type Options struct {
	// Dir is the cache directory (local SSD). Required.
	Dir string
	// Budget is the byte budget for cached data on disk. Required.
	Budget int64
	// HighWater and LowWater are fractions of Budget: eviction starts above
	// HighWater and stops below LowWater (defaults 0.95 and 0.85).
	HighWater, LowWater float64
	// BlockSize is the unit of presence and of random reads (64 KiB).
	BlockSize int64
	// PartSize is the ranged GET size for sequential readers (8 MiB).
	PartSize int64
	// WholeObjectMax: objects up to this size are fetched whole (2 MiB).
	WholeObjectMax int64
	// ReadAheadParts bounds read-ahead per handle, in parts (4).
	ReadAheadParts int
	// ReorderWindow is how far a read may land from the furthest point a
	// handle has read and still continue its sequential run (4 MiB). The
	// kernel sends one file's reads in parallel (jitfs mounts with 1 MiB
	// read-ahead and up to 64 requests in flight) and they arrive slightly
	// shuffled; a read further away is a random read and ends the run.
	ReorderWindow int64
	// Fetches bounds concurrent foreground fetches (16); ReadAheadFetches
	// bounds concurrent read-ahead fetches on top of that (8), so read-ahead
	// can never take the slot a blocked read is waiting for.
	Fetches, ReadAheadFetches int
	// PrefetchBytes bounds the bytes in flight for the prefetch engine
	// (Handle.Fetch; default 64 MiB). It is a byte budget, not a count,
	// so thousands of small files go many at a time while large parts
	// stay within memory; it is separate from the slots above, so
	// prefetch never takes one a blocked reader or read-ahead needs.
	PrefetchBytes int64
	// SpeculationBytes bounds the bytes in flight for Handle.Speculate
	// (default 64 MiB), apart from PrefetchBytes: fetching ahead of
	// readers that sent no hooks never holds up a hook's prefetch, nor a
	// blocked reader.
	SpeculationBytes int64
	// KeepOpen is how many complete objects keep their files open once
	// closed (0: none), so reopening a recently read file costs no system
	// call: two descriptors each.
	KeepOpen int
	// Strict serves no byte of an object larger than WholeObjectMax before
	// the whole object is fetched and checked against its CRC32C: a read
	// waits for all of it. Without it such objects are served as their
	// ranges arrive and checked when complete (GCS checksums whole objects
	// only); see docs/integrity.md. With Strict, an object the cache disk
	// cannot store fails its reads (ErrNotStored) rather than be served
	// unchecked.
	Strict bool
	// MemoryBytes bounds the fetched bytes held in memory because the cache
	// disk refused them (full or failing), so they are served again without
	// another fetch (default 256 MiB). Past it the least recently read go.
	MemoryBytes int64
	// FetchTimeout bounds one fill, retries included (5m).
	FetchTimeout time.Duration
	// Logger receives operational messages (default slog.Default()).
	Logger *slog.Logger
}

// Validate checks and fills in defaults.
func (o *Options) Validate() error {
	if o.Dir == "" {
		return errors.New("cache: no cache directory given")
	}
	if o.Budget <= 0 {
		return fmt.Errorf("cache: budget must be positive, got %d", o.Budget)
	}
	if o.HighWater == 0 {
		o.HighWater = 0.95
	}
	if o.LowWater == 0 {
		o.LowWater = 0.85
	}
	if !(o.LowWater > 0 && o.LowWater < o.HighWater && o.HighWater <= 1) {
		return fmt.Errorf("cache: watermarks need 0 < low (%v) < high (%v) <= 1", o.LowWater, o.HighWater)
	}
	if o.BlockSize == 0 {
		o.BlockSize = 64 << 10
	}
	if o.BlockSize < 4096 || o.BlockSize&(o.BlockSize-1) != 0 {
		return fmt.Errorf("cache: block size %d must be a power of two >= 4096", o.BlockSize)
	}
	if o.PartSize == 0 {
		o.PartSize = 8 << 20
	}
	if o.PartSize < o.BlockSize || o.PartSize%o.BlockSize != 0 {
		return fmt.Errorf("cache: part size %d must be a multiple of the block size %d", o.PartSize, o.BlockSize)
	}
	if o.WholeObjectMax == 0 {
		o.WholeObjectMax = 2 << 20
	}
	if o.ReadAheadParts == 0 {
		o.ReadAheadParts = 4
	}
	if o.ReorderWindow == 0 {
		o.ReorderWindow = 4 << 20
	}
	if o.ReorderWindow < 0 {
		return fmt.Errorf("cache: reorder window %d must not be negative", o.ReorderWindow)
	}
	if o.Fetches == 0 {
		o.Fetches = 16
	}
	if o.ReadAheadFetches == 0 {
		o.ReadAheadFetches = 8
	}
	if o.PrefetchBytes == 0 {
		o.PrefetchBytes = 64 << 20
	}
	if o.SpeculationBytes == 0 {
		o.SpeculationBytes = 64 << 20
	}
	if o.SpeculationBytes < o.PartSize {
		return fmt.Errorf("cache: SpeculationBytes (%d) must hold at least one part (%d)", o.SpeculationBytes, o.PartSize)
	}
	if o.PrefetchBytes < o.PartSize {
		return fmt.Errorf("cache: PrefetchBytes (%d) must hold at least one part (%d)", o.PrefetchBytes, o.PartSize)
	}
	if o.MemoryBytes == 0 {
		o.MemoryBytes = 256 << 20
	}
	if o.MemoryBytes < 0 {
		return fmt.Errorf("cache: MemoryBytes %d must not be negative", o.MemoryBytes)
	}
	if o.FetchTimeout == 0 {
		o.FetchTimeout = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}
