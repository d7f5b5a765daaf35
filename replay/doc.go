// Package replay re-issues the file operations of a trace against a
// directory: a jitfs mount, a peer filesystem's mount, or a plain local
// copy. It is how a pipeline engineer turns a recorded render into a
// benchmark that runs anywhere.
//
// Each traced process (pid) becomes one goroutine that issues its
// operations in order. By default operations go as fast as the filesystem
// answers, which measures the file layer rather than the renderer's think
// time, and processes keep the overlap they had in the render: those that
// ran at the same time (a renderer's threads, concurrent workers) replay
// concurrently, and one that began after another had ended (the frames of
// a shell loop, one process each) starts only once that one has finished.
// Pace keeps the recorded gaps instead, which orders processes by itself.
//
// Replay compares outcomes with the recording. An operation that
// succeeded when recorded but fails now is an error (the run fails); a
// lookup that failed when recorded and fails the same way is counted as
// an expected ENOENT; one that now succeeds is a mismatch, reported but
// not fatal (the tree may have gained files).
//
// strace cannot see which pages of an mmapped file a process touched, so
// an mmap event is replayed as a read of the whole mapped range: an upper
// bound on the bytes a renderer needs. Mount traces need no such guess,
// because page faults on a FUSE file arrive as reads.
package replay
