package cache

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"sort"
	"strings"
)

// Usage by prefix: the node daemon reports how many bytes it holds of
// each source (bucket prefix) its jobs read, so a scheduler can prefer
// the nodes that already hold a job's bytes. Walking every object per
// status call or metrics scrape would cost O(objects) under Cache.mu each
// time; instead each tracked prefix keeps a counter that moves with every
// change of an object's bytes on disk (account, eviction), and only
// TrackPrefix walks the index, once per new prefix.

// PrefixUsage is what the cache holds of the objects of one bucket whose
// names begin with Prefix.
type PrefixUsage struct {
	Bucket, Prefix string
	// Bytes is allocated on the cache disk (as Used counts them); Objects
	// is the object generations with any byte on disk.
	Bytes, Objects int64
}

// objUsage is an object's part in the prefix counters. Guarded by
// Cache.mu, not Object.mu: the counters move under Cache.mu alone.
type objUsage struct {
	// bucket and name are empty until the object is named: objects found
	// at start are known by key alone until their journal header is read
	// (nameFromJournals) or an Open names them.
	bucket, name string
	// bytes is what the counters hold of the object: it follows account's
	// deltas, so a counter never sees a change twice.
	bytes int64
}

// TrackPrefix starts counting the bytes the cache holds of bucket's
// objects under prefix ("" for the whole bucket). What is cached already
// is counted at once. Tracking a prefix twice is one tracking.
func (c *Cache) TrackPrefix(bucket, prefix string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.tracked[bucket] {
		if p.Prefix == prefix {
			return
		}
	}
	p := &PrefixUsage{Bucket: bucket, Prefix: prefix}
	for _, o := range c.objects {
		if o.u.bucket == bucket && o.u.bytes > 0 && strings.HasPrefix(o.u.name, prefix) {
			p.Bytes += o.u.bytes
			p.Objects++
		}
	}
	if c.tracked == nil {
		c.tracked = map[string][]*PrefixUsage{}
	}
	c.tracked[bucket] = append(c.tracked[bucket], p)
	if !c.naming && !c.closed {
		// Only a cache whose usage is asked for reads its journals: a
		// standalone mount never does.
		c.naming = true
		c.wg.Add(1)
		go c.nameFromJournals()
	}
}

// UntrackPrefix stops counting a prefix.
func (c *Cache) UntrackPrefix(bucket, prefix string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := c.tracked[bucket]
	for i, p := range ps {
		if p.Prefix == prefix {
			c.tracked[bucket] = append(ps[:i:i], ps[i+1:]...)
			break
		}
	}
	if len(c.tracked[bucket]) == 0 {
		delete(c.tracked, bucket)
	}
}

// Usage returns every tracked prefix's counters, sorted by bucket and
// prefix. complete is false from the first TrackPrefix until the objects
// found at start are named from their journals: until then their bytes
// are in Used but in no prefix.
func (c *Cache) Usage() (usage []PrefixUsage, complete bool) {
	c.mu.Lock()
	for _, ps := range c.tracked {
		for _, p := range ps {
			usage = append(usage, *p)
		}
	}
	// With nothing tracked, nothing is missing from the (no) counters.
	complete = !c.naming || c.named.Load()
	c.mu.Unlock()
	sort.Slice(usage, func(a, b int) bool {
		if usage[a].Bucket != usage[b].Bucket {
			return usage[a].Bucket < usage[b].Bucket
		}
		return usage[a].Prefix < usage[b].Prefix
	})
	return usage, complete
}

// usageAddLocked moves o's bytes in the counters by delta. An object
// evicted between its fill's stat and this call is no longer indexed: its
// bytes left the counters with it.
func (c *Cache) usageAddLocked(o *Object, delta int64) {
	if delta == 0 || c.objects[o.key] != o {
		return
	}
	before := o.u.bytes
	o.u.bytes += delta
	c.usageMoveLocked(o, before, o.u.bytes)
}

// usageDropLocked takes an evicted object out of the counters.
func (c *Cache) usageDropLocked(o *Object) {
	c.usageMoveLocked(o, o.u.bytes, 0)
	o.u.bytes = 0
}

// nameLocked names an object known by key alone, and counts its bytes
// under the prefixes that hold it.
func (c *Cache) nameLocked(o *Object, bucket, name string) {
	if o.u.bucket != "" || bucket == "" {
		return
	}
	o.u.bucket, o.u.name = bucket, name
	c.usageMoveLocked(o, 0, o.u.bytes)
}

func (c *Cache) usageMoveLocked(o *Object, before, after int64) {
	if o.u.bucket == "" || before == after {
		return
	}
	for _, p := range c.tracked[o.u.bucket] {
		if !strings.HasPrefix(o.u.name, p.Prefix) {
			continue
		}
		p.Bytes += after - before
		switch {
		case before <= 0 && after > 0:
			p.Objects++
		case before > 0 && after <= 0:
			p.Objects--
		}
	}
}

// nameFromJournals names the objects found at start by reading each one's
// journal header (its first line), in the background once a prefix is
// tracked: start-up itself reads no file, and a restarted node's
// per-source bytes are whole once this is done (Usage's complete). An
// object opened meanwhile is named by its Open.
func (c *Cache) nameFromJournals() {
	defer c.wg.Done()
	defer c.named.Store(true)
	c.mu.Lock()
	var keys []string
	for k, o := range c.objects {
		if o.u.bucket == "" {
			keys = append(keys, k)
		}
	}
	c.mu.Unlock()
	for _, k := range keys {
		select {
		case <-c.done:
			return
		default:
		}
		_, jnl := c.paths(k)
		m, ok := readJournalMeta(jnl)
		if !ok || m.key() != k {
			// Unreadable, or another object's header: the object's next
			// Open rewrites it; its bytes stay counted in Used only.
			continue
		}
		c.mu.Lock()
		if o := c.objects[k]; o != nil {
			c.nameLocked(o, m.Bucket, m.Name)
		}
		c.mu.Unlock()
	}
}

// readJournalMeta reads the object a journal names from its header line.
func readJournalMeta(path string) (Meta, bool) {
	f, err := os.Open(path)
	if err != nil {
		return Meta{}, false
	}
	defer f.Close()
	// A header is a JSON object naming one object: GCS names are at most
	// 1,024 bytes, so 4 KiB always holds the whole line.
	buf := make([]byte, 4096)
	n, _ := io.ReadFull(f, buf)
	nl := bytes.IndexByte(buf[:n], '\n')
	if nl < 0 {
		return Meta{}, false
	}
	var h journalHeader
	if json.Unmarshal(buf[:nl], &h) != nil || h.V != journalVersion || h.Bucket == "" {
		return Meta{}, false
	}
	return h.Meta, true
}
