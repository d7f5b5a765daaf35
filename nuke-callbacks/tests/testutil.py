"""Test helpers for nuke-callbacks: import paths, a recording stand-in for the
jitfs daemon, the wire's pattern expansion, and the fixture show.

Tests only; run with
  python3 -m unittest discover -s nuke-callbacks/tests -t nuke-callbacks/tests
"""

import http.server
import json
import os
import re
import socket
import socketserver
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN = os.path.join(os.path.dirname(HERE), "plugin")  # nuke-callbacks/plugin: what goes on NUKE_PATH
STUB = os.path.join(HERE, "stubs")       # the nuke stub and nuke_cli.py: never on NUKE_PATH

import sys  # noqa: E402

for _p in (STUB, PLUGIN):
    if _p not in sys.path:
        sys.path.insert(0, _p)

SCHEMA = "jitfs.prefetch/v1"


# ---------------------------------------------------------------------------
# The recording daemon

class Recorder(object):
    """Answers jitfs.prefetch/v1 on a Unix socket and records every request
    with the time.monotonic() at which it arrived.

    mode: "ok"; "hang" (accepts and never answers); "hang_after_health"
    (answers health, then hangs); "error500_after_health" (answers health,
    then 500 to everything)."""

    def __init__(self, sock_path, mountpoint, mode="ok"):
        self.sock_path = sock_path
        self.mountpoint = mountpoint
        self.mode = mode
        self.requests = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def address_string(self):
                return "unix"

            def _handle(self):
                t = time.monotonic()
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw.decode("utf-8")) if raw else None
                with owner.lock:
                    owner.requests.append({"t": t, "method": self.command, "path": self.path, "body": body})
                health = self.path == "/v1/health"
                if owner.mode == "hang" or (owner.mode == "hang_after_health" and not health):
                    owner.stop.wait()
                    self.close_connection = True
                    return
                if owner.mode == "error500_after_health" and not health:
                    self._reply(500, {"schema": SCHEMA, "error": "engine is shutting down", "reason": "engine"})
                    return
                self._reply(200, owner.answer(self.path, body))

            def _reply(self, status, obj):
                data = json.dumps(obj).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _handle
            do_POST = _handle

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        if os.path.exists(sock_path):
            os.unlink(sock_path)
        self.server = Server(sock_path, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def answer(self, path, body):
        if path == "/v1/health":
            return {"schema": SCHEMA, "ok": True, "mountpoint": self.mountpoint, "version": "recorder"}
        if path == "/v1/release":
            return {"schema": SCHEMA, "ok": True, "unmanaged": []}
        if path == "/v1/status":
            return {"schema": SCHEMA, "mountpoint": self.mountpoint, "jobs": []}
        paths = [p for it in (body or {}).get("items", []) for p in expand(it)]
        missing = [p for p in paths if not os.path.exists(p)]
        return {"schema": SCHEMA, "request_id": (body or {}).get("request_id", ""), "accepted": len(paths),
                "resident": len(paths) - len(missing), "queued": 0, "missing": missing, "unmanaged": [],
                "failed": [], "pending": [], "waited_ms": 0, "timed_out": False}

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        if os.path.exists(self.sock_path):
            os.unlink(self.sock_path)

    def prefetches(self):
        """[(t, scope, frame, path, item)] for every file of every prefetch,
        seq items expanded as the daemon would."""
        out = []
        with self.lock:
            reqs = list(self.requests)
        for r in reqs:
            if r["path"] != "/v1/prefetch" or not r["body"]:
                continue
            b = r["body"]
            for it in b.get("items", []):
                for p in expand(it):
                    out.append((r["t"], b.get("scope"), b.get("frame"), os.path.normpath(p), it))
        return out

    def bodies(self, path):
        with self.lock:
            return [r["body"] for r in self.requests if r["path"] == path]


class Hung(object):
    """A socket that accepts connections and never reads or answers."""

    def __init__(self, sock_path):
        self.sock_path = sock_path
        self.conns = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(sock_path)
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self.stop.set()
        self.thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()
        if os.path.exists(self.sock_path):
            os.unlink(self.sock_path)


# ---------------------------------------------------------------------------
# The wire's sequences, expanded as docs/hook-api.md says

def parse_frames(s):
    out = []
    for el in s.split(","):
        el = el.strip()
        m = re.match(r"^(-?\d+)(?:-(-?\d+)(?:x(\d+))?)?$", el)
        if not m:
            raise ValueError("bad frames %r" % s)
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        step = int(m.group(3) or 1)
        for f in range(a, b + 1, step):
            if f not in out:
                out.append(f)
    return out


def fmt_pattern(pattern, frame, view):
    def repl(m):
        t = m.group(0)
        if t == "%%":
            return "%"
        if t == "%V":
            return view
        if t == "%v":
            return view[:1]
        if t == "%d":
            return "%d" % frame
        return ("%0" + m.group(1) + "d") % frame
    return re.sub(r"%%|%V|%v|%d|%0([1-9])d", repl, pattern)


def expand(item):
    if "path" in item:
        return [item["path"]]
    s = item["seq"]
    frames = parse_frames(s["frames"]) if s.get("frames") else [None]
    views = s.get("views") or [None]
    return [fmt_pattern(s["pattern"], f, v) for f in frames for v in views]


# ---------------------------------------------------------------------------
# The fixture show

def _touch(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def make_show(root, mount=None):
    """Writes the test show under mount (default root/mnt) and returns a dict
    of what is where. The comp exercises two views (%V), Reads with offset +
    hold, start at + loop, and an expression + bounce, a Read inside a Group,
    a disabled Read, an OCIO config with a LUT search path and an
    OCIOFileTransform, a DeepRead, cameras reading and not reading their file,
    a Vectorfield, an AudioRead, a Precomp, a Write with reading=True, a missing file,
    an environment variable, a file outside the mount and a node the hook
    does not know (a ParticleCache: the filename filter's case).

    mount may be a directory the files are written into that differs from
    the paths in the scripts (see script_root)."""
    mount = mount or os.path.join(root, "mnt")
    return write_show(mount, mount, os.path.join(root, "local"))


def write_show(files_root, script_root, local, out=None):
    """Writes the show's files under files_root, with scripts naming them
    under script_root (the same directory, or a bucket seen through a
    mount), and a slate outside the mount under local. Write1 renders into
    out (default: inside script_root, which only a writable directory
    allows)."""
    m = script_root
    out = out or os.path.join(m, "renders", "comp")
    frames = range(1001, 1011)

    def put(rel, data=None):
        _touch(os.path.join(files_root, rel), data if data is not None else ("%s\n" % rel).encode() * 64)

    for v in ("left", "right"):
        for f in frames:
            put("plates/%s/plate.%04d.exr" % (v, f))
            put("cache/pre.%s.%04d.exr" % (v, f))
    for f in (2, 3):                       # bg exists for file frames 2..3 only
        put("elements/bg/bg.%04d.exr" % f)
    for f in (1, 2):
        put("elements/loop/fx.%04d.exr" % f)
    for f in range(2, 7):
        put("elements/bounce/b.%04d.exr" % f)
    for f in frames:
        put("elements/grain/grain.%04d.exr" % f)
        put("elements/disabled/never.%04d.exr" % f)
        put("elements/spark/spark.%04d.exr" % f)
    for f in frames:
        put("elements/deep/deep.%04d.exr" % f)
    put("geo/cam.abc")
    put("geo/unused_cam.abc")              # read_from_file is off: never read
    put("luts/vf.cube")
    put("audio/temp.wav")
    put("textures/wood.exr")
    put("luts/look.cube")
    put("ocio/luts/film.spi1d")
    put("shared/luts/grade.cube")
    put("caches/particles.nkpc")
    put("geo/rock.abc")
    put("ocio/config.ocio", (
        "ocio_profile_version: 1\n"
        "search_path: luts:../shared/luts\n"
        "roles:\n  default: linear\n"
        "colorspaces:\n"
        "  - !<ColorSpace>\n    name: linear\n"
        "  - !<ColorSpace>\n    name: film\n"
        "    to_reference: !<FileTransform> {src: film.spi1d, interpolation: linear}\n"
        "  - !<ColorSpace>\n    name: graded\n"
        "    from_reference: !<FileTransform> {src: grade.cube, interpolation: linear}\n").encode())
    put("precomp/fx.nk", (
        "version 15.1 v1\n"
        "Root {\n inputs 0\n name %(m)s/precomp/fx.nk\n}\n"
        "Read {\n inputs 0\n file %(m)s/elements/spark/spark.####.exr\n first 1001\n last 1010\n name Spark\n}\n"
        "Write {\n file %(m)s/renders/precomp/fx.####.exr\n name WritePre\n}\n" % {"m": m}).encode())
    _touch(os.path.join(local, "slate.exr"))
    comp = os.path.join(files_root, "scripts", "comp.nk")
    text = COMP % {"m": m, "local": local, "out": out}
    _touch(comp, text.encode())
    return {
        "mount": m, "files": files_root, "local": local, "comp": os.path.join(m, "scripts", "comp.nk"),
        "particles": os.path.join(m, "caches", "particles.nkpc"),
        "missing": os.path.join(m, "textures", "missing.exr"),
        "disabled": os.path.join(m, "elements", "disabled"),
        "unused_cam": os.path.join(m, "geo", "unused_cam.abc"),
        "outputs": out,
        "slate": os.path.join(local, "slate.exr"),
    }


COMP = r'''#! /usr/local/Nuke15.1v1/nuke -nx
version 15.1 v1
define_window_layout_xml {<?xml version="1.0" encoding="UTF-8"?>
<layout version="1.0"/>
}
Root {
 inputs 0
 name %(m)s/scripts/comp.nk
 first_frame 1001
 last_frame 1010
 views "left #ff0000
right #00ff00"
 project_directory "\[python \{nuke.script_directory()\}]/.."
 colorManagement OCIO
 OCIO_config custom
 customOCIOConfigPath "\[file dirname \[value root.name]]/../ocio/config.ocio"
}
Read {
 inputs 0
 file plates/%%V/plate.####.exr
 first 1001
 last 1010
 origfirst 1001
 origlast 1010
 name Plate
}
Read {
 inputs 0
 file elements/bg/bg.%%04d.exr
 first 2
 last 3
 frame_mode offset
 frame 1000
 before hold
 after hold
 name BgOffsetHold
}
Merge2 {
 inputs 2
 name Merge1
}
Read {
 inputs 0
 file elements/loop/fx.%%04d.exr
 first 1
 last 2
 frame_mode "start at"
 frame 1001
 after loop
 name FxLoop
}
Merge2 {
 inputs 2
 name Merge2
}
Read {
 inputs 0
 file elements/bounce/b.%%04d.exr
 first 2
 last 6
 frame_mode expression
 frame "frame*2-2000"
 after bounce
 name Bounce
}
Merge2 {
 inputs 2
 name Merge3
}
Group {
 name Grain
}
 Input {
  inputs 0
  name Input1
 }
 Read {
  inputs 0
  file {elements/grain/grain.####.exr}
  first 1001
  last 1010
  name GrainRead
 }
 Merge2 {
  inputs 2
  name GrainMerge
 }
 Output {
  name Output1
 }
end_group
Read {
 inputs 0
 file elements/disabled/never.####.exr
 first 1001
 last 1010
 disable true
 name Disabled
}
Merge2 {
 inputs 2
 name Merge4
}
OCIOFileTransform {
 file luts/look.cube
 name Look
}
Precomp {
 inputs 0
 file precomp/fx.nk
 name FxPrecomp
}
Merge2 {
 inputs 2
 name Merge5
}
Write {
 inputs 0
 file cache/pre.%%V.####.exr
 reading true
 name WriteCache
}
Merge2 {
 inputs 2
 name Merge6
}
Read {
 inputs 0
 file textures/missing.exr
 on_error black
 name Missing
}
Merge2 {
 inputs 2
 name Merge7
}
ParticleCache {
 inputs 0
 file caches/particles.nkpc
 name Particles
}
Merge2 {
 inputs 2
 name Merge8
}
Read {
 inputs 0
 file %(local)s/slate.exr
 name Slate
}
Merge2 {
 inputs 2
 name Merge9
}
Read {
 inputs 0
 file $JITFS_TEST_TEXROOT/wood.exr
 name Wood
}
Merge2 {
 inputs 2
 name Merge10
}
ReadGeo2 {
 inputs 0
 file geo/rock.abc
 name Rock
}
Merge2 {
 inputs 2
 name Merge11
}
DeepRead {
 inputs 0
 file elements/deep/deep.####.exr
 first 1001
 last 1010
 name Deep
}
Merge2 {
 inputs 2
 name Merge12
}
Camera2 {
 inputs 0
 read_from_file true
 file geo/cam.abc
 name Cam
}
Merge2 {
 inputs 2
 name Merge13
}
Camera2 {
 inputs 0
 file geo/unused_cam.abc
 name CamNotFromFile
}
Merge2 {
 inputs 2
 name Merge14
}
Vectorfield {
 vfield_file luts/vf.cube
 name VF
}
AudioRead {
 inputs 0
 file audio/temp.wav
 name Audio
}
Merge2 {
 inputs 2
 name Merge15
}
Write {
 file %(out)s/%%V/comp.####.exr
 create_directories true
 name Write1
}
'''
