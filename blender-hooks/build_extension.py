#!/usr/bin/env python3
"""Builds the jitfs prefetch add-on as a Blender extension zip, reproducibly.

  python3 blender-hooks/build_extension.py [--out DIR]   (default: the current directory)

prints the path of DIR/jitfs_prefetch-VERSION.zip. The zip holds one folder,
jitfs_prefetch/, with the add-on as __init__.py and blender_manifest.toml:

  * Blender 4.2+ installs it as an extension (an extension's files may sit in
    one folder of the archive), reading the manifest;
  * Blender 3.x installs the same zip from Preferences > Add-ons > Install...
    (which unpacks it into scripts/addons/) and reads bl_info.

Reproducible: the same sources give the same bytes on any machine. Entries are
sorted, dated 1980-01-01, mode 0644, and stored uncompressed, because deflate's
output depends on the zlib version; the add-on is 60 kB.
Standard library only, Python 3.7+.
"""

import argparse
import ast
import os
import re
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ADDON = os.path.join(HERE, "jitfs_prefetch.py")
MANIFEST = os.path.join(HERE, "blender_manifest.toml")
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry


def bl_info_version(source):
    """bl_info["version"] of the add-on source, as "X.Y.Z"."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "bl_info" for t in node.targets):
            info = ast.literal_eval(node.value)
            return ".".join(str(n) for n in info["version"])
    raise SystemExit("build_extension: no bl_info in " + ADDON)


def manifest_field(text, key):
    """A top-level string field of the manifest. tomllib is Python 3.11+ and
    the build must run wherever the add-on's own Python does."""
    m = re.search(r'^%s\s*=\s*"([^"]*)"\s*$' % re.escape(key), text, re.M)
    if m is None:
        raise SystemExit("build_extension: no %s in %s" % (key, MANIFEST))
    return m.group(1)


def build(out_dir):
    with open(ADDON, "rb") as f:
        addon = f.read()
    with open(MANIFEST, "rb") as f:
        manifest = f.read()
    text = manifest.decode("utf-8")
    pkg, version = manifest_field(text, "id"), manifest_field(text, "version")
    # Blender 3.x shows bl_info's version, 4.2+ the manifest's: one release,
    # one number.
    if bl_info_version(addon.decode("utf-8")) != version:
        raise SystemExit("build_extension: blender_manifest.toml has version %s, bl_info %s" % (
            version, bl_info_version(addon.decode("utf-8"))))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "%s-%s.zip" % (pkg, version))
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for name, data in sorted({pkg + "/__init__.py": addon, pkg + "/blender_manifest.toml": manifest}.items()):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.create_system = 3  # Unix, so the mode below is read
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_STORED
            z.writestr(info, data)
    os.replace(tmp, path)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=".", help="directory to write the zip into")
    args = ap.parse_args()
    print(build(args.out))


if __name__ == "__main__":
    sys.exit(main())
