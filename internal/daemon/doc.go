// Package daemon wires a running jitfs daemon, once, for the jitfs
// command, the bench and the tests that mount in process.
//
// A scene mount (StartScene) is a GCS client, the local cache, the jitfs
// filesystem, its FUSE server, and, unless its socket is "none", the
// prefetch engine and the hook API that feeds it, with the mount's
// telemetry snapshot registered for collection. An output area
// (StartOutput) is a GCS client, the staging area that uploads closed
// files, its filesystem and FUSE server, and the hook API for flush and
// status.
//
// Both check what can be checked before mounting (the mountpoint, the
// bucket, the trace path), so a bad start is one error and nothing left
// behind, and both Close in the one safe order: the hook API and the
// engine first (they resolve paths through the mount), then the mount
// (detached if files are still open, so the daemon can exit), then what
// the mount used (trace, cache or staging area, client).
//
// The node daemon (StartNode, `jitfs daemon`) is one process serving
// every task of every job on a node over one cache, one metadata store
// (internal/metastore, in the cache directory) and one staging root.
// node.go opens and recovers them, serves the control socket and closes;
// nodejob.go is a job: one namespace.Namespace per source it reads,
// shared by its tasks and persisted through the store, listed through the
// bucket's namespace.SharedListings never earlier than the job's start,
// a prefetch engine per source, and its end a grace period after its last
// task detaches (or on release); nodetask.go attaches and detaches a task
// (its scene mounts over its job's namespaces, its output areas staged by
// prefix with StagingDirFor, its hook socket) and keeps a record of each
// live task so that a daemon restarted after a crash detaches their dead
// mounts; nodeorphan.go uploads what staging directories hold when no task
// serves them (a detached task's, or every one found at start);
// learnshare.go publishes what each job's view learned (frames,
// co-open groups) under the learn prefix and reads the other nodes' when a
// view is made (internal/learnshare, docs/learn-shared.md);
// nodeapi.go is the jitfs.node/v1 control API's schema, nodehttp.go its
// handlers and nodeclient.go the client `jitfs run`, `jitfs status` and
// `jitfs prefetch --release` use. A task lives as long as its attach
// request's connection. affinity.go reports where the node's bytes are:
// per source (the cache's per-prefix counters, kept after the jobs end)
// and per job, in the status, the metrics and, through internal/nomadmeta,
// Nomad node metadata. now.go puts what the cache is fetching now, and the
// reads blocked on it, into each status: a mount's status shows all of
// it, a job's source only what that job asked for, and a read's thread is
// named by its process.
// docs/node.md describes it for operators.
//
// Flags, signals, exit codes and the lines printed for users stay in
// cmd/jitfs: this package logs through the configured logger and returns
// errors.
package daemon
