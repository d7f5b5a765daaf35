#!/usr/bin/env bash
# Runs every jitfs test on this machine, installing what a fresh Debian
# machine lacks. Usage: scripts/test.sh   (or: make test)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# tc shapes the emulated WAN of `jitfs bench` (internal/wan).
[ -x /usr/sbin/tc ] || command -v tc >/dev/null 2>&1 || need_apt+=(iproute2)
# The DCC hook tests render with Debian's Blender 3.4 headless, compare with
# strace, and build their VDB volumes with OpenVDB's Python module.
command -v blender >/dev/null 2>&1 || need_apt+=(blender)
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
dpkg -s python3-openvdb >/dev/null 2>&1 || need_apt+=(python3-openvdb) # for Blender's Python, not PATH's python3
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
# `jitfs bench` mounts its peers side by side with jitfs; rclone is a
# Debian package, so its rows are tested everywhere. gcsfuse takes minutes
# to build (scripts/install-peers.sh): its rows are tested where installed.
command -v rclone >/dev/null 2>&1 || need_apt+=(rclone)
# The zone cache (deploy/zone-cache, internal/zonecache) is stock nginx with
# the slice module; Debian's nginx-light has it. nginx lives in /usr/sbin.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  if [ "$(id -u)" -ne 0 ]; then echo "scripts/test.sh: need root to install ${need_apt[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # nginx's postinst starts the package's default site on port 80 where
  # systemd runs; the tests start their own nginx on free ports and need
  # none, so do not leave one serving.
  if [[ " ${need_apt[*]} " == *" nginx-light "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now nginx.service >/dev/null 2>&1 || true
  fi
fi
if [ ! -e /dev/fuse ]; then
  echo "scripts/test.sh: /dev/fuse is missing; the tests mount real FUSE filesystems" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: the mount tests need root (FUSE mounts, passthrough, dropping page caches)" >&2
  exit 1
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted" >&2; exit 1; fi
echo "== go vet"
go vet ./...
echo "== staticcheck (jitfs's own packages; third_party/go-fuse is upstream code carried with a patch)"
staticcheck="$(go env GOPATH)/bin/staticcheck"
[ -x "$staticcheck" ] || go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
"$staticcheck" $(go list ./... | grep -v /third_party/)
if command -v systemd-analyze >/dev/null 2>&1; then
  # The units name /usr/local/bin/jitfs, which a test machine need not
  # have: verify copies that run /bin/true instead. verify exits 0 on
  # unknown keys and bad values, so any output fails the run.
  echo "== systemd-analyze verify deploy/*.service deploy/zone-cache/*.service"
  unitdir=$(mktemp -d)
  for u in deploy/*.service deploy/zone-cache/*.service; do
    sed -e 's#/usr/local/bin/jitfs#/bin/true#' -e 's#/usr/local/lib/jitfs/zone-cache/start.sh#/bin/true#' \
      "$u" > "$unitdir/$(basename "$u" .service)example.service"
  done
  verify_out=$(cd "$unitdir" && systemd-analyze verify ./*.service 2>&1) || true
  rm -rf "$unitdir"
  if [ -n "$verify_out" ]; then echo "$verify_out" >&2; exit 1; fi
fi
echo "== Python hook tests (the Nuke callbacks against the nuke stub in nuke-callbacks/tests/stubs; the Blender extension zip; standard library only)"
python3 -m unittest discover -s nuke-callbacks/tests -t nuke-callbacks/tests
python3 -m unittest discover -s blender-hooks/tests -t blender-hooks/tests
python3 scripts/sync-hook-client.py --check
echo "== go test -race"
go test -race -count=1 -timeout 30m ./...
echo "== benchmarks, short mode (so they cannot rot; figures in docs/BENCHMARKS.md come from the full run)"
JITFS_BENCH_SIZE=$((64 << 20)) go test -short -count=1 -run '^$' -bench . -benchtime 1x -timeout 20m ./...
