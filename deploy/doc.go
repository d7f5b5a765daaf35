// Package deploy holds the shipped deployment files (a Nomad render job,
// systemd units) and no code: its test parses the Nomad job with HCL's own
// parser and checks what the files promise to the operator, so a broken
// job or a regression of a fixed deployment bug fails the test run.
// scripts/test.sh also runs `systemd-analyze verify` on the units where
// systemd-analyze is installed.
package deploy
