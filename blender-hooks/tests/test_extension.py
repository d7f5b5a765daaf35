"""The extension zip that build_extension.py builds, checked against what
Blender 4.2 requires of an extension (no Blender 4.2 runs here: the rules
below are those of Blender's manifest validation, bl_pkg's
pkg_manifest_is_valid_or_error, and its extension docs).

  python3 -m unittest discover -s blender-hooks/tests -t blender-hooks/tests

Python 3.11+ (tomllib). Blender 3.4 loading the same zip is
TestBlenderExtension in cmd/jitfs/blender_test.go.
"""

import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
HOOKS = os.path.dirname(HERE)
BUILD = os.path.join(HOOKS, "build_extension.py")
ADDON = os.path.join(HOOKS, "jitfs_prefetch.py")

# Every field Blender 4.2 requires in blender_manifest.toml, with its type.
REQUIRED = {"schema_version": str, "id": str, "version": str, "name": str, "tagline": str, "maintainer": str,
            "type": str, "blender_version_min": str, "license": list}
PERMISSIONS = {"files", "network", "clipboard", "camera", "microphone"}
TERSE_MAX = 64  # tagline and permission reasons
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def terse_error(value):
    """Blender's rule for a tagline or a permission's reason, or None."""
    if not value.strip() or value != value.strip():
        return "empty, or leading/trailing white space"
    if len(value) > TERSE_MAX:
        return "longer than %d characters" % TERSE_MAX
    if not (value[-1].isalnum() or value[-1] in ")]}"):
        return "ends with punctuation"
    return None


def build(out):
    p = subprocess.run([sys.executable, BUILD, "--out", out], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("build_extension.py failed: %s" % p.stderr)
    return p.stdout.strip()


def bl_info():
    with open(ADDON) as f:
        for node in ast.parse(f.read()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "bl_info" for t in node.targets):
                return ast.literal_eval(node.value)
    raise AssertionError("no bl_info in " + ADDON)


class TestExtensionZip(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="jitfs-ext-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.zip = build(os.path.join(self.tmp, "a"))
        with zipfile.ZipFile(self.zip) as z:
            self.names = z.namelist()
            self.files = dict((n, z.read(n)) for n in self.names)
            self.infos = z.infolist()

    def manifest(self):
        return tomllib.loads(self.files["jitfs_prefetch/blender_manifest.toml"].decode("utf-8"))

    def test_layout_is_one_package_with_its_manifest(self):
        # Blender 4.2 accepts an extension's files in one folder of the
        # archive (bl_pkg's pkg_zipfile_detect_subdir_or_none: the manifest
        # at the root, or in exactly one top folder); Blender 3.x's
        # Install... unpacks that folder into scripts/addons as the package
        # jitfs_prefetch, where a root-level __init__.py would be no package.
        self.assertEqual(os.path.basename(self.zip), "jitfs_prefetch-%s.zip" % self.manifest()["version"])
        self.assertEqual(sorted(self.names), ["jitfs_prefetch/__init__.py", "jitfs_prefetch/blender_manifest.toml"])
        with open(ADDON, "rb") as f:
            self.assertEqual(self.files["jitfs_prefetch/__init__.py"], f.read())
        self.assertTrue(zipfile.is_zipfile(self.zip))

    def test_manifest_has_every_field_blender_4_2_requires(self):
        m = self.manifest()
        for key, typ in REQUIRED.items():
            with self.subTest(key):
                self.assertIn(key, m)
                self.assertIsInstance(m[key], typ)
                self.assertTrue(m[key], "%s is empty" % key)
        self.assertEqual(m["schema_version"], "1.0.0")
        self.assertEqual(m["type"], "add-on")
        self.assertEqual(m["blender_version_min"], "4.2.0")
        self.assertRegex(m["version"], SEMVER)
        # The id is the package name: an identifier, no "__", no leading or
        # trailing "_"; it must match the folder Blender 3.x installs.
        pkg = m["id"]
        self.assertTrue(pkg.isidentifier() and "__" not in pkg and not pkg.startswith("_") and not pkg.endswith("_"))
        self.assertEqual(self.names[0].split("/")[0], pkg)
        for s in ("name", "maintainer"):
            self.assertEqual(m[s], m[s].strip())
        self.assertIsNone(terse_error(m["tagline"]), m["tagline"])
        self.assertTrue(all(isinstance(x, str) and x.startswith("SPDX:") for x in m["license"]), m["license"])
        # It talks to a Unix socket and looks for files: both declared,
        # each with a reason Blender accepts.
        self.assertEqual(set(m["permissions"]), {"network", "files"})
        self.assertTrue(set(m["permissions"]) <= PERMISSIONS)
        for k, reason in m["permissions"].items():
            self.assertIsNone(terse_error(reason), "%s: %r" % (k, reason))
        unknown = set(m) - set(REQUIRED) - {"website", "tags", "permissions", "blender_version_max", "copyright",
                                            "platforms", "wheels"}
        self.assertEqual(unknown, set())

    def test_legacy_bl_info_is_kept_and_agrees(self):
        info = bl_info()
        self.assertEqual(info["blender"], (3, 0, 0))
        self.assertEqual(".".join(str(n) for n in info["version"]), self.manifest()["version"])

    def test_build_is_reproducible(self):
        again = build(os.path.join(self.tmp, "b"))
        with open(self.zip, "rb") as a, open(again, "rb") as b:
            self.assertEqual(a.read(), b.read())
        for i in self.infos:
            self.assertEqual(i.date_time, (1980, 1, 1, 0, 0, 0))
            self.assertEqual(i.external_attr >> 16, 0o100644)

    def test_build_refuses_a_version_mismatch(self):
        # A copy of the sources whose manifest names another version.
        src = os.path.join(self.tmp, "src")
        os.makedirs(src)
        for n in ("build_extension.py", "jitfs_prefetch.py", "blender_manifest.toml"):
            shutil.copy(os.path.join(HOOKS, n), src)
        mpath = os.path.join(src, "blender_manifest.toml")
        with open(mpath) as f:
            text = f.read()
        with open(mpath, "w") as f:
            f.write(re.sub(r'^version = "[^"]*"', 'version = "9.9.9"', text, flags=re.M))
        p = subprocess.run([sys.executable, os.path.join(src, "build_extension.py"), "--out", os.path.join(self.tmp, "c")],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("9.9.9", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "c", "jitfs_prefetch-9.9.9.zip")))


if __name__ == "__main__":
    unittest.main()
