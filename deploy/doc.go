// Package deploy holds the shipped deployment files (a Nomad render job,
// systemd units, the zone cache). Its only code embeds the zone cache's
// files (ZoneCache) so a Go binary can start one. Its test parses the Nomad
// job with HCL's own parser and the node daemon's unit with a small
// unit-file parser, and checks what the files promise to the operator, so
// a broken job or a regression of a fixed deployment bug fails the test
// run.
//
// jitfs-daemon.service is the node daemon (`jitfs daemon`): one per node,
// owning the node's cache and output staging and serving every task's
// mounts, with its socket at /run/jitfs/daemon.sock. The Nomad job
// jitfs-render.nomad.hcl attaches its tasks to it (`jitfs run --daemon
// ... --job ${NOMAD_JOB_ID}`), so several tasks of many jobs share a node
// and its cache. jitfs-mount@ and jitfs-output@ are single long-running
// mounts and output areas, each with a cache or staging of its own.
//
// zone-cache/ is the zone cache shared by many nodes of one zone: stock
// nginx with the slice module, rendered and started by zone-cache/start.sh
// (docs/zone.md); internal/zonecache runs it from the embedded copy.
//
// Where systemd-analyze is installed, TestUnitsVerify runs `systemd-analyze
// verify` on every unit here (scripts/test.sh does the same for the
// template units).
package deploy
