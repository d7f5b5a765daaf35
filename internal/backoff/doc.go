// Package backoff is the jittered exponential backoff of jitfs's retry
// loops: GCS requests (package gcs) and output uploads and deletes
// (package output). One implementation keeps their timing alike, so a
// GCS outage is retried at the same pace whichever path meets it.
//
// A delay is drawn uniformly from [b/2, 3b/2) around a base b that starts
// at the initial delay and doubles after every delay up to a maximum. The
// jitter spreads the retries of many clients that failed together (a
// render farm's nodes after one outage) so they do not come back in step.
package backoff
