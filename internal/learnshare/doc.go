// Package learnshare is the format and the GCS side of learning shared
// across nodes: what one node daemon learned of a job's reading of a
// source (its frames' files, generalised on the frame number, and the
// source's co-open groups) is published under a learn prefix, and read by
// the other nodes when they start a task of the same job, so a node's
// first frame of a job is prefetched from what others saw.
//
// # Where it lives
//
// One object per node per job and source:
//
//	PREFIX/v1/<hash(job)>/<hash(source)>/<node id>
//
// The hashes are the first 16 bytes of SHA-256, in hex, of the job id and
// of gs://BUCKET/PREFIX/ of the source; the node id is the host name and a
// random id kept in the cache directory (NodeID), so a node overwrites its
// own object and never another's. Readers list the directory, take the
// newest MaxObjects objects not their own, and merge them.
//
// # Wire format
//
// A header of 24 bytes, big-endian, then the payload:
//
//	magic "JITFSLRN" | version uint32 (1) | CRC-32C (Castagnoli) of the payload | payload length | JSON length
//
// The payload is a zstd frame of one JSON object, Record. An object larger
// than MaxObjectBytes, with another magic or version, a bad length or
// checksum, a JSON larger than MaxJSONBytes, values learning never makes,
// or another job or source than the path says, is ignored (Decode's
// errors wrap ErrMalformed or ErrVersion). A change to Record that old
// readers would misread takes a new version number and a new path
// segment (v2/), so nodes of both versions work side by side, each
// reading its own.
//
// # Errors
//
// Nothing here is fatal to a render: sharing only ever saves round trips.
// The caller logs and counts what fails.
package learnshare
