#!/usr/bin/env bash
# Installs the peers `jitfs bench` measures jitfs against, on Debian 12:
# rclone (Debian's package) and gcsfuse v3.11.4 (built with `go install`
# into /usr/local/bin, as Debian does not package it), and fuse3, whose
# fusermount3 they mount with. Idempotent: it prints nothing and touches
# nothing when all are present. The bench runs without them, and says so.
set -euo pipefail

GCSFUSE_VERSION=v3.11.4

if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi

missing=()
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
command -v rclone >/dev/null 2>&1 || missing+=(rclone)
if [ ${#missing[@]} -gt 0 ]; then
	echo "install-peers: installing ${missing[*]}" >&2
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v gcsfuse >/dev/null 2>&1; then
	if ! command -v go >/dev/null 2>&1; then
		echo "install-peers: gcsfuse is built with go install, and go is not on PATH" >&2
		exit 1
	fi
	echo "install-peers: building gcsfuse $GCSFUSE_VERSION into /usr/local/bin (a few minutes)" >&2
	log=$(mktemp)
	trap 'rm -f "$log"' EXIT
	if ! $SUDO env "PATH=$PATH" GOBIN=/usr/local/bin go install "github.com/googlecloudplatform/gcsfuse/v3@$GCSFUSE_VERSION" >"$log" 2>&1; then
		cat "$log" >&2
		exit 1
	fi
fi
