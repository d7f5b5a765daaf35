#!/usr/bin/env bash
# Installs the Debian 12 packages that testdata/traces/build.sh needs to
# build the scene corpus and record real renders and image-sequence jobs
# under strace. Idempotent: it prints nothing and touches no package list
# when all are present.
# Not part of CI (the renderers are ~400 MB and the recording takes minutes).
set -euo pipefail

pkgs=(
	blender          # 3.4.1: Cycles CPU renders, and bpy builds the .blend files and textures
	blender-data     # ships materials_library_vx/sample_materials.blend (the nested library) and studio lights
	ffmpeg           # 5.1: encodes the plate sequence (image2 demuxer, EXR decoder, libx264)
	openimageio-tools # oiiotool 2.4 (built with OpenColorIO 2.1): makes the plates, converts them frame by frame
	python3          # build.sh's manifest and README table, gen_ocio.py
	python3-numpy    # bpy image generation (fixed-seed noise)
	python3-openvdb  # writes the VDB volume sequence (Blender 3.4's Mantaflow bake crashes on Debian)
	fonts-dejavu-core # the text object's font
	libegl-mesa0     # Eevee renders through Mesa's surfaceless EGL (llvmpipe): no X, no GPU
	libgl1-mesa-dri
	povray           # 3.7
	povray-examples  # the shipped scenes copied into the corpus
	povray-includes  # their system includes
	strace           # the recorder
	util-linux       # unshare -n: renders run with no network
	zstd             # build.sh compresses nothing itself; kept for inspecting traces by hand
)

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
echo "install-renderers: installing ${missing[*]}" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
