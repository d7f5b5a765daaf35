// Package zonecache starts and stops a jitfs zone cache (deploy/zone-cache:
// stock nginx with the slice module, rendered and run by start.sh) from Go,
// for `jitfs bench` and tests. The zone cache is not jitfs code: this
// package runs exactly what an operator runs, from the copy embedded in
// package deploy, so a bench or test exercises the shipped files and works
// without the repository checked out.
//
// # Processes
//
// start.sh execs nginx, so the process Start runs is nginx's master. It
// runs in a process group of its own: nginx's workers outlive a killed
// master and keep serving its port, so Kill signals the whole group
// (master, workers, cache manager, and start.sh's origin-token watcher) to
// model a zone cache killed halfway, and Stop ends with the same sweep so
// no process outlives a Proc.
//
// # Readiness
//
// Start returns once GET /healthz answers 200, polled; the wait is bounded
// only by the caller's context, and it fails early, with nginx's own error
// lines, when nginx exits (a port taken, a bad argument).
//
// # Errors
//
// Errors start with "zonecache:"; Available's error says how to install
// nginx, and tests fail on it rather than skip (scripts/test.sh installs
// nginx-light).
package zonecache
