package nomadmeta

import (
	"crypto/sha256"
	"encoding/hex"
)

// The node metadata keys the daemon publishes.
const (
	// MetaSources lists the keys of the sources the node holds bytes of.
	MetaSources = "jitfs_sources"
	// MetaJobs lists the keys of the jobs whose bytes the node holds.
	MetaJobs = "jitfs_jobs"
)

// KeyLen is the length of a key in hex digits: 48 bits, so a farm's few
// thousand sources collide with odds of about one in ten million, and a
// list of 16 keys stays under 210 bytes of metadata.
const KeyLen = 12

// Key is the short stable name of a source or a job in node metadata: the
// first KeyLen hex digits of the SHA-256 of s. A source is named by its
// canonical form (Source); a job by its ID.
func Key(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:KeyLen]
}

// Source is a source's canonical form, gs://BUCKET/PREFIX with PREFIX
// empty or ending in "/": how the node daemon names what its jobs read,
// and what `jitfs affinity-key` makes of any spelling of a gs:// URL.
func Source(bucket, prefix string) string { return "gs://" + bucket + "/" + prefix }
