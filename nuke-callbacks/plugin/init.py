# jitfs: registers the prefetch callbacks of jitfs_nuke.py. Nuke runs every
# init.py on NUKE_PATH in every mode, farm renders included (menu.py only
# with the GUI), with this directory on sys.path. Nothing else belongs here:
# a broken or missing piece must never stop Nuke from starting.
try:
    import jitfs_nuke
    jitfs_nuke.register()
except Exception as e:
    try:
        import sys
        sys.stderr.write("jitfs: nuke: callbacks not registered: %s: %s\n" % (type(e).__name__, e))
    except Exception:
        pass
