#!/usr/bin/env python3
"""Copies nuke-callbacks/plugin/jitfs_client.py into blender-hooks/jitfs_prefetch.py.

The Blender add-on must be one file (Blender installs an add-on .py on its
own), so it carries the shared hook client between its CLIENT markers.
Run this after editing the client; TestHookClientCopiesAgree fails until then.
Usage: python3 scripts/sync-hook-client.py [--check]
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = os.path.join(ROOT, "nuke-callbacks", "plugin", "jitfs_client.py")
ADDON = os.path.join(ROOT, "blender-hooks", "jitfs_prefetch.py")
BEGIN = "# ---- CLIENT BEGIN (a copy of nuke-callbacks/plugin/jitfs_client.py; keep identical) ----\n"
END = "# ---- CLIENT END ----\n"


def main():
    with open(CLIENT) as f:
        client = f.read()
    with open(ADDON) as f:
        addon = f.read()
    i, j = addon.find(BEGIN), addon.find(END)
    if i < 0 or j < i:
        sys.exit("sync-hook-client: markers missing in " + ADDON)
    want = addon[:i + len(BEGIN)] + client + addon[j:]
    if "--check" in sys.argv:
        if want != addon:
            sys.exit("sync-hook-client: blender-hooks/jitfs_prefetch.py has a stale client copy; run python3 scripts/sync-hook-client.py")
        return
    if want != addon:
        with open(ADDON, "w") as f:
            f.write(want)


main()
