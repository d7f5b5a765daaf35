# jitfs prefetch hooks for Blender (3.x-4.x): tell the node's jitfs daemon,
# ahead of time, which files a render job and each of its frames will read,
# so the bytes are in the local cache before Blender opens them.
#
# Use it any of these ways:
#   blender -b --python blender-hooks/jitfs_prefetch.py SCENE.blend -f 12
#       (a render agent; the script may come before or after the .blend)
#   Blender 4.2+: the extension zip that blender-hooks/build_extension.py
#       builds (Preferences > Get Extensions > Install from Disk, or
#       blender --command extension install-file -r user_default ZIP)
#   Blender 3.x: Preferences > Add-ons > Install... this file or the same zip
#       (bl_info below is what 3.x reads), enable "jitfs prefetch",
#       or: blender -b --addons jitfs_prefetch SCENE.blend -a
#
# The daemon is the one named by JITFS_SOCKET, else the one serving the mount
# that holds the scene. Enabled as an add-on, its preferences (socket, frame
# wait, log level) apply where the environment leaves a setting unset: the
# farm sets the environment per task, so it wins. Standard library only.
# See docs/blender.md.
#
# What it sends (docs/hook-api.md, jitfs.prefetch/v1):
#   on load        scope "job": the .blend, every library, every static file
#                  (images, UDIM tiles, fonts, volumes, caches, IES, movies;
#                  sounds and movie clips as hints); scope "job_seq": every
#                  sequence's files over the task's frames, at low priority.
#   render_pre(N)  scope "frame", blocking for at most JITFS_FRAME_WAIT_MS:
#                  everything frame N reads (its sequence files mapped with
#                  Blender's own offset/cyclic rules, plus the static files);
#                  then "lookahead" for the next JITFS_LOOKAHEAD task frames.
#   render_post(N) release of frame N's own files; render_complete/cancel:
#                  release of the job.
#
# It fails open: no exception ever leaves a handler, a missing or hung daemon
# costs at most one short health check, and JITFS_DISABLE=1 turns it off.

bl_info = {
    "name": "jitfs prefetch",
    "author": "jitfs",
    "version": (0, 5, 0),
    "blender": (3, 0, 0),
    "location": "Runs on load and around every rendered frame",
    "description": "Tells the node's jitfs daemon which files a render will read, before Blender opens them",
    "doc_url": "https://github.com/jitfs/jitfs/blob/main/docs/blender.md",
    "category": "Render",
}

import functools
import os
import re
import sys
import time

import bpy
from bpy.app.handlers import persistent

# ---- CLIENT BEGIN (a copy of nuke-callbacks/plugin/jitfs_client.py; keep identical) ----
# jitfs hook client: the part of the Nuke callbacks and the Blender add-on
# that talks to the node's jitfs daemon (docs/hook-api.md, jitfs.prefetch/v1).
#
# Standard library only, Python 3.7+ (Nuke 13-16 ship 3.7-3.10, Blender
# 3.x-4.x ship 3.10-3.11). blender-hooks/jitfs_prefetch.py carries a copy of
# this file between its CLIENT markers, because an add-on installed from
# Blender's preferences is one file; TestHookClientCopiesAgree keeps the two
# identical.
#
# Fail open: a render must never fail or stall because of prefetch. No
# method raises; every failure is logged once and the call returns None.
# Requests that need no answer go through one background thread, so the
# DCC's thread never waits on them; a request that blocks (a frame about to
# start) waits at most its wait_ms plus a small transport allowance; after
# three transport failures in a row the client stops calling the daemon for
# a minute (a hung daemon would otherwise cost every frame its timeout).

import hashlib
import http.client
import json
import os
import queue
import socket
import sys
import threading
import time
import uuid

SCHEMA = "jitfs.prefetch/v1"
SOCKET_DIR = "/run/jitfs"
_MAX_SOCKET_PATH = 107
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


def default_socket(mountpoint):
    """The daemon's default socket for a mountpoint (hooks.DefaultSocket)."""
    m = os.path.normpath("/" + mountpoint)
    if m.startswith("//"):
        m = "/" + m.lstrip("/")
    if m == "/":
        esc = "-"
    else:
        out = []
        for i, c in enumerate(m[1:].encode("utf-8")):
            ch = chr(c)
            if ch == "/":
                out.append("-")
            elif ch in _SAFE and not (ch == "." and i == 0):
                out.append(ch)
            else:
                out.append("%%%02X" % c)
        esc = "".join(out)
    p = SOCKET_DIR + "/" + esc + ".sock"
    if len(p) <= _MAX_SOCKET_PATH:
        return p
    tail = "~" + hashlib.sha256(m.encode("utf-8")).hexdigest()[:16] + ".sock"
    keep = _MAX_SOCKET_PATH - len(SOCKET_DIR) - 1 - len(tail)
    return SOCKET_DIR + "/" + esc[:keep] + tail


def find_socket(path):
    """The socket of the mount holding path: its default socket or a parent's."""
    d = os.path.normpath(os.path.abspath(path))
    while True:
        s = default_socket(d)
        if os.path.exists(s):
            return s
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def _env_int(env, name, default):
    try:
        return int(env.get(name, ""))
    except ValueError:
        return default


# The farms whose own variables name the job and the task when JITFS_JOB_ID
# and JITFS_TASK_ID are unset, in the order they are tried. Job and task are
# taken from the same farm, so a stray variable of another farm (a Tractor
# blade started from a shell that had CUE_JOB, say) cannot mix two identities.
#   AWS Deadline Cloud: its worker agent exports DEADLINE_JOB_ID for the
#     session and DEADLINE_TASK_ID for each task action (deadline-cloud-worker-
#     agent). Thinkbox Deadline 10 documents no such variable for the render
#     process: there, set JITFS_JOB_ID through the job's environment.
#   Tractor: the blade exports TR_ENV_JID and TR_ENV_TID to every command.
#   OpenCue: RQD exports CUE_JOB and CUE_FRAME (CUE_IFRAME, the frame number,
#     when the frame name is absent), and CUE_SHOT.
FARMS = (
    ("deadline", "DEADLINE_JOB_ID", ("DEADLINE_TASK_ID",)),
    ("tractor", "TR_ENV_JID", ("TR_ENV_TID",)),
    ("opencue", "CUE_JOB", ("CUE_FRAME", "CUE_IFRAME")),
)


def identity(env, dcc):
    """The wire's job object from the farm's environment: JITFS_* first, then
    the first farm of FARMS whose job variable is set."""
    job_id, task = env.get("JITFS_JOB_ID", ""), env.get("JITFS_TASK_ID", "")
    for _farm, job_var, task_vars in FARMS:
        if env.get(job_var):
            job_id = job_id or env[job_var]
            for v in task_vars:
                task = task or env.get(v, "")
            break
    job = {
        "id": job_id or "%s-%d" % (dcc, os.getpid()),
        "task": task,
        "shot": env.get("JITFS_SHOT") or env.get("CUE_SHOT") or "",
        "dcc": dcc,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    return dict((k, v) for k, v in job.items() if v != "")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        http.client.HTTPConnection.__init__(self, "jitfs", timeout=timeout)
        self._unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._unix_path)
        except Exception:
            s.close()
            raise
        self.sock = s


class Client(object):
    """A fail-open client of one jitfs daemon.

    Environment (env, default os.environ):
      JITFS_DISABLE=1        send nothing
      JITFS_SOCKET           the daemon's socket; else found from JITFS_MOUNTS or
                             the scene path given to locate()
      JITFS_MOUNTS           colon-separated mount prefixes; paths outside are never
                             sent (default: the daemon's own mountpoint)
      JITFS_FRAME_WAIT_MS    how long a frame request may hold the frame (5000)
      JITFS_TIMEOUT_MS       transport timeout of other requests (5000; they run
                             on the background thread, so the DCC never waits)
      JITFS_LOOKAHEAD        frames to prefetch ahead (2)
      JITFS_HOOK_DEBUG=1     log every request
      JITFS_JOB_ID, JITFS_TASK_ID, JITFS_SHOT  identity; unset, the farm's own
                             (identity(): Deadline, Tractor, OpenCue)
    """

    HEALTH_TIMEOUT = 0.5
    BREAKER_FAILURES = 3
    BREAKER_SECONDS = 60.0

    def __init__(self, dcc, dcc_version="", env=None, log=None):
        self._env = os.environ if env is None else env
        self._log_fn = log
        self._lock = threading.Lock()
        self._sent = set()
        self._missing = set()
        self._failures = 0
        self._open_until = 0.0
        self._queue = None
        self._thread = None
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self.stats = {"requests": 0, "failures": 0, "refused": 0, "dropped_unmanaged": 0,
                      "dropped_duplicate": 0, "breaker_trips": 0, "skipped_breaker": 0,
                      "blocked_seconds": 0.0}
        self.debug = self._env.get("JITFS_HOOK_DEBUG") == "1"
        self.frame_wait_ms = max(0, _env_int(self._env, "JITFS_FRAME_WAIT_MS", 5000))
        self.timeout = max(1, _env_int(self._env, "JITFS_TIMEOUT_MS", 5000)) / 1000.0
        self.lookahead = max(0, _env_int(self._env, "JITFS_LOOKAHEAD", 2))
        self.job = identity(self._env, dcc)
        if dcc_version:
            self.job["dcc_version"] = dcc_version
        self.mounts = [os.path.normpath(m) for m in self._env.get("JITFS_MOUNTS", "").split(":")
                       if m.startswith("/")]
        self.socket = self._env.get("JITFS_SOCKET", "")
        self.enabled = False
        self._located = False
        if self._env.get("JITFS_DISABLE", "") in ("1", "true", "yes"):
            self._log("disabled by JITFS_DISABLE")
            self._located = True
            return
        if self.socket:
            self._connect()
        elif self.mounts:
            self.locate(self.mounts[0])

    # -- set-up ------------------------------------------------------------

    def locate(self, path):
        """Finds the daemon of the mount holding path when JITFS_SOCKET is unset.

        Returns whether the client is enabled."""
        try:
            if self._located or not path:
                return self.enabled
            s = find_socket(path)
            if s is None:
                return False
            self.socket = s
            self._connect()
        except Exception as e:  # never raise into the DCC
            self._log("locating the daemon for %s: %s" % (path, e))
        return self.enabled

    def _connect(self):
        self._located = True
        reply = self._call("GET", "/v1/health", None, self.HEALTH_TIMEOUT)
        if not reply or not reply.get("ok"):
            self._log("no daemon answers on %s; prefetch is off for this process" % self.socket)
            return
        if not self.mounts and reply.get("mountpoint"):
            self.mounts = [os.path.normpath(reply["mountpoint"])]
        self.enabled = True
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._worker, name="jitfs-hook", daemon=True)
        self._thread.start()
        self._log("daemon %s (mount %s), job %s" % (self.socket, ":".join(self.mounts), self.job.get("id")), debug=True)

    # -- paths -------------------------------------------------------------

    def managed(self, path):
        """Whether path is absolute and under one of the jitfs mounts."""
        try:
            if not path or not path.startswith("/") or "\x00" in path:
                return False
            p = os.path.normpath(path)
            for m in self.mounts:
                if p == m or p.startswith(m.rstrip("/") + "/"):
                    return p != m
            return False
        except Exception:
            return False

    # -- requests ----------------------------------------------------------

    def prefetch(self, scope, items, frame=None, wait=False):
        """Asks for items (dicts with "path" or "seq", plus optional kind, source,
        frame, file_frame, tile, required). wait=True blocks up to the frame wait
        and returns the reply; otherwise the request is queued. Never raises."""
        try:
            keep = self._filter(scope, frame, items)
            if not keep:
                return None
            body = {"job": dict(self.job), "scope": scope, "items": keep}
            if frame is not None:
                body["frame"] = int(frame)
            if wait:
                body["wait_ms"] = int(self.frame_wait_ms)
                start = time.time()
                # The daemon holds the reply for at most wait_ms; one more
                # second covers the transport. A stalled daemon costs this one
                # frame that long, and its failures open the breaker.
                reply = self._call("POST", "/v1/prefetch", body, self.frame_wait_ms / 1000.0 + min(self.timeout, 1.0))
                self.stats["blocked_seconds"] += time.time() - start
                if reply:
                    self._report(reply)
                return reply
            self._enqueue(("POST", "/v1/prefetch", body))
        except Exception as e:
            self._log("prefetch: %s" % e)
        return None

    def release(self, scope, frame=None, paths=None):
        """Says a frame or the job is done, so its files may be evicted first."""
        try:
            if not self.enabled:
                return
            body = {"job": {"id": self.job["id"]}, "scope": scope}
            if frame is not None:
                body["frame"] = int(frame)
            if paths is not None:
                body["paths"] = [p for p in paths if self.managed(p)]
            self._enqueue(("POST", "/v1/release", body))
        except Exception as e:
            self._log("release: %s" % e)

    def drain(self, timeout=2.0):
        """Waits up to timeout seconds for queued requests; True when none is left."""
        try:
            deadline = time.time() + timeout
            with self._lock:
                while self._pending > 0:
                    left = deadline - time.time()
                    if left <= 0:
                        return False
                    self._idle.wait(left)
            return True
        except Exception:
            return False

    def _filter(self, scope, frame, items):
        if not self.enabled:
            return []
        keep = []
        with self._lock:
            for it in items:
                if "seq" in it:
                    s = it["seq"]
                    p = s.get("pattern", "")
                    key = (scope, frame, p + "|" + str(s.get("frames")) + "|" + str(s.get("views")))
                else:
                    p = it.get("path", "")
                    key = (scope, frame, os.path.normpath(p) if p else p)
                if not self.managed(p):
                    self.stats["dropped_unmanaged"] += 1
                    continue
                if key in self._sent:
                    self.stats["dropped_duplicate"] += 1
                    continue
                self._sent.add(key)
                it = dict(it)
                if "path" in it:
                    it["path"] = key[2]
                keep.append(it)
        return keep

    def _enqueue(self, req):
        if self._queue is None:
            return
        with self._lock:
            self._pending += 1
        self._queue.put(req)

    def _worker(self):
        while True:
            method, path, body = self._queue.get()
            try:
                reply = self._call(method, path, body, self.timeout)
                if reply and path == "/v1/prefetch":
                    self._report(reply)
            except Exception as e:
                self._log("%s: %s" % (path, e))
            finally:
                with self._lock:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.notify_all()

    def _report(self, reply):
        # Each missing file is reported once per process, not once per frame.
        with self._lock:
            new = [p for p in reply.get("missing") or [] if p not in self._missing]
            self._missing.update(new)
        if new:
            self._log("missing from the bucket: %s" % ", ".join(new[:20]))
        for f in reply.get("failed") or []:
            self._log("fetch failed: %s: %s" % (f.get("path"), f.get("error")))
        if reply.get("timed_out"):
            self._log("frame wait ran out; still fetching %d file(s)" % len(reply.get("pending") or []))

    def _call(self, method, path, body, timeout):
        """One request; the reply dict, or None on any failure. Never raises."""
        with self._lock:
            if time.time() < self._open_until:
                self.stats["skipped_breaker"] += 1
                return None
            self.stats["requests"] += 1
        data = None
        if body is not None:
            body = dict(body)
            body["schema"] = SCHEMA
            body.setdefault("request_id", uuid.uuid4().hex)
            body.setdefault("sent_at", time.time())
            data = json.dumps(body).encode("utf-8")
        try:
            conn = _UnixHTTPConnection(self.socket, timeout)
            try:
                conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                raw = resp.read()
            finally:
                conn.close()
            try:
                reply = json.loads(raw.decode("utf-8") or "{}")
            except ValueError:
                reply = {"error": raw[:200].decode("utf-8", "replace")}
        except Exception as e:
            self._failed("%s %s: %s" % (method, path, e or type(e).__name__))
            return None
        if resp.status >= 500:
            self._failed("%s %s: daemon error %d: %s" % (method, path, resp.status, reply.get("error")))
            return None
        with self._lock:
            self._failures = 0
        if resp.status != 200:
            self.stats["refused"] += 1
            self._log("%s %s refused (%s): %s" % (method, path, reply.get("reason"), reply.get("error")))
            return None
        if self.debug:
            self._log("%s %s -> %s" % (method, path, json.dumps(reply)[:300]))
        return reply

    def _failed(self, msg):
        with self._lock:
            self.stats["failures"] += 1
            self._failures += 1
            tripped = self._failures >= self.BREAKER_FAILURES
            if tripped:
                self._failures = 0
                self._open_until = time.time() + self.BREAKER_SECONDS
                self.stats["breaker_trips"] += 1
        self._log(msg)
        if tripped:
            self._log("%d failures in a row; not calling the daemon for %ds" % (self.BREAKER_FAILURES, self.BREAKER_SECONDS))

    def _log(self, msg, debug=False):
        if debug and not self.debug:
            return
        try:
            if self._log_fn is not None:
                self._log_fn(msg)
            else:
                sys.stderr.write("jitfs: %s\n" % msg)
                sys.stderr.flush()
        except Exception:
            pass
# ---- CLIENT END ----

_DIGITS = re.compile(r"(\d+)(?!.*\d)")


# ------------------------------------------------------------------ frame rules
# These mirror Blender's own (BKE_image_user_frame_get, the volume sequence
# modes, the point cache file names), because in background mode Blender's
# ImageUser.frame_current stays 0 and asking Blender for a volume's frame file
# reads the file: both useless before the frame starts.

def image_file_frame(cfra, frame_start, frame_duration, frame_offset, cyclic):
    """The file frame an image user shows at scene frame cfra."""
    n = frame_duration
    if n == 0:
        return None
    f = cfra - frame_start + 1
    if cyclic:
        f %= n
        if f == 0:
            f = n
    f = max(0, min(f, n))
    return f + frame_offset


def volume_file_frame(cfra, frame_start, frame_duration, frame_offset, mode):
    """The file frame a volume sequence reads at scene frame cfra, or None (CLIP outside)."""
    n = frame_duration
    if n == 0:
        return None
    f = cfra - frame_start + 1
    if mode == "CLIP":
        if f < 1 or f > n:
            return None
    elif mode == "EXTEND":
        f = max(1, min(f, n))
    elif mode == "REPEAT":
        f %= n
        if f == 0:
            f = n
    elif mode == "PING_PONG":
        pp = n * 2 - 2
        if pp <= 0:
            f = 1
        else:
            f %= pp
            if f == 0:
                f = pp
            if f > n:
                f = n * 2 - f
    return f + frame_offset


def with_frame(path, frame):
    """path with the last digit run of its file name replaced by frame, same width."""
    d, name = os.path.split(path)
    m = _DIGITS.search(name)
    if m is None:
        return path
    width = len(m.group(1))
    digits = "%0*d" % (width, frame) if frame >= 0 else "-%0*d" % (width - 1, -frame)
    return os.path.join(d, name[:m.start(1)] + digits + name[m.end(1):])


def frames_spec(frames):
    """A wire frame list ("1-3,7") for sorted unique ints."""
    out, i = [], 0
    while i < len(frames):
        j = i
        while j + 1 < len(frames) and frames[j + 1] == frames[j] + 1:
            j += 1
        out.append(str(frames[i]) if i == j else "%d-%d" % (frames[i], frames[j]))
        i = j + 1
    return ",".join(out)


# ------------------------------------------------------------------ task frames

def task_frames(argv, scene):
    """The frames this Blender process will render, from its command line.

    Blender applies -s/-e/-j and renders at -f/-a in argument order, so at
    load time the scene does not know the task range yet; the command line
    does. Falls back to the scene's range."""
    start, end, step = scene.frame_start, scene.frame_end, max(1, scene.frame_step)
    frames = []
    anim = False
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            break
        val = argv[i + 1] if i + 1 < len(argv) else ""
        try:
            if a in ("-s", "--frame-start"):
                start = _frame_arg(val, scene, start)
                i += 1
            elif a in ("-e", "--frame-end"):
                end = _frame_arg(val, scene, end)
                i += 1
            elif a in ("-j", "--frame-jump"):
                step = max(1, int(val))
                i += 1
            elif a in ("-f", "--render-frame"):
                for part in val.split(","):
                    if ".." in part:
                        lo, hi = part.split("..", 1)
                        frames.extend(range(_frame_arg(lo, scene, start), _frame_arg(hi, scene, end) + 1))
                    else:
                        frames.append(_frame_arg(part, scene, scene.frame_current))
                i += 1
            elif a in ("-a", "--render-anim"):
                anim = True
        except ValueError:
            pass
        i += 1
    if anim:
        frames.extend(range(start, end + 1, step))
    if not frames:
        frames = list(range(start, end + 1, step))
    return sorted(set(frames))


def _frame_arg(s, scene, default):
    s = s.strip()
    if not s:
        return default
    # Blender's "+N" / "-N" count from the scene's start and end.
    if s.startswith("+"):
        return scene.frame_start + int(s[1:])
    if s.startswith("-") and len(s) > 1:
        return scene.frame_end - int(s[1:])
    return int(s)


# ------------------------------------------------------------------ discovery

def _abs(path, library=None):
    if not path:
        return None
    try:
        p = bpy.path.abspath(path, library=library)
    except Exception:
        p = bpy.path.abspath(path)
    return os.path.normpath(p) if os.path.isabs(p) else None


def _packed(idb):
    return getattr(idb, "packed_file", None) is not None


def _node_trees():
    """Every node tree that can hold image users, with its owner's library."""
    seen = set()
    sources = [bpy.data.materials, bpy.data.worlds, bpy.data.lights, bpy.data.node_groups,
               bpy.data.textures, bpy.data.scenes]
    for coll in sources:
        for idb in coll:
            nt = getattr(idb, "node_tree", None) if coll is not bpy.data.node_groups else idb
            if nt is None or nt.as_pointer() in seen:
                continue
            seen.add(nt.as_pointer())
            yield nt


class Deps(object):
    """What the loaded scene reads: static files, and per-frame rules."""

    def __init__(self):
        self.static = []      # items: dicts with path, kind, source, (required)
        self.rules = []       # (kind, source, fn(frame) -> path or None, seq path)
        self.seen = set()

    def add(self, path, kind, source, required=True):
        if not path or path in self.seen:
            return
        self.seen.add(path)
        it = {"path": path, "kind": kind, "source": source}
        if not required:
            it["required"] = False
        self.static.append(it)

    def frame_items(self, frame):
        out, seen = [], set()
        for kind, source, fn in self.rules:
            try:
                p = fn(frame)
            except Exception:
                p = None
            if p and p not in seen:
                seen.add(p)
                out.append({"path": p, "kind": kind, "source": source, "frame": int(frame)})
        return out


def scan():
    """Walks bpy.data for every file the scene can read."""
    d = Deps()
    if bpy.data.filepath:
        d.add(os.path.normpath(bpy.data.filepath), "scene", "bpy.data.filepath")
    # Libraries: Blender stores every library's path, nested ones included,
    # relative to the main file once loaded.
    for lib in bpy.data.libraries:
        if not _packed(lib):
            d.add(_abs(lib.filepath), "library", "LI:" + lib.name)

    seq_images = {}
    for img in bpy.data.images:
        if _packed(img) or img.source in ("GENERATED", "VIEWER"):
            continue
        p = _abs(img.filepath_raw or img.filepath, img.library)
        if not p:
            continue
        src = "IM:" + img.name
        if img.source == "TILED":
            d_, name = os.path.split(p)
            tiles = [t.number for t in img.tiles]
            if "<UDIM>" in name:
                for t in tiles:
                    d.add(os.path.join(d_, name.replace("<UDIM>", str(t))), "udim_tile", src)
            else:
                # A tiled image saved with a tile number instead of <UDIM>.
                for t in tiles:
                    d.add(with_frame(p, t), "udim_tile", src)
        elif img.source == "SEQUENCE":
            seq_images[img.as_pointer()] = (img, p)
        else:
            d.add(p, "movie" if img.source == "MOVIE" else "image", src)

    # Image sequences are read per frame through the image users that show them.
    users = []
    for nt in _node_trees():
        for node in nt.nodes:
            img = getattr(node, "image", None)
            if img is None or img.as_pointer() not in seq_images:
                continue
            iu = getattr(node, "image_user", None)
            if iu is not None:
                users.append((img, iu.frame_start, iu.frame_duration, iu.frame_offset, iu.use_cyclic))
            elif hasattr(node, "frame_duration"):  # compositor image nodes carry the user fields
                users.append((img, node.frame_start, node.frame_duration, node.frame_offset, node.use_cyclic))
    for tex in bpy.data.textures:
        img = getattr(tex, "image", None)
        iu = getattr(tex, "image_user", None)
        if img is not None and iu is not None and img.as_pointer() in seq_images:
            users.append((img, iu.frame_start, iu.frame_duration, iu.frame_offset, iu.use_cyclic))
    used = set()
    for img, fs, fd, fo, cyc in users:
        used.add(img.as_pointer())
        p = seq_images[img.as_pointer()][1]

        def rule(frame, p=p, fs=fs, fd=fd, fo=fo, cyc=cyc):
            f = image_file_frame(frame, fs, fd, fo, cyc)
            return None if f is None else with_frame(p, f)
        d.rules.append(("image_seq_frame", "IM:" + img.name, rule))
    for ptr, (img, p) in seq_images.items():
        if ptr not in used:
            # A sequence no node shows: Blender will not read it for a render.
            d.add(p, "image", "IM:" + img.name, required=False)

    for vol in bpy.data.volumes:
        if _packed(vol):
            continue
        p = _abs(vol.filepath, vol.library)
        if not p:
            continue
        if vol.is_sequence:
            def vrule(frame, p=p, v=vol):
                f = volume_file_frame(frame, v.frame_start, v.frame_duration, v.frame_offset, v.sequence_mode)
                return None if f is None else with_frame(p, f)
            d.rules.append(("volume_frame", "VO:" + vol.name, vrule))
        else:
            d.add(p, "volume", "VO:" + vol.name)

    for font in bpy.data.fonts:
        if font.filepath != "<builtin>" and not _packed(font):
            d.add(_abs(font.filepath, font.library), "font", "VF:" + font.name)
    for cf in bpy.data.cache_files:
        d.add(_abs(cf.filepath, cf.library), "cache", "CF:" + cf.name)
    # A still render opens neither sounds nor unused movie clips: hints only.
    for snd in bpy.data.sounds:
        if not _packed(snd):
            d.add(_abs(snd.filepath, snd.library), "sound", "SO:" + snd.name, required=False)
    for clip in bpy.data.movieclips:
        d.add(_abs(clip.filepath, clip.library), "movie", "MC:" + clip.name, required=False)
    for nt in _node_trees():
        for node in nt.nodes:
            if node.bl_idname == "ShaderNodeTexIES" and node.mode == "EXTERNAL":
                d.add(_abs(node.filepath, nt.library), "ies", "IES:" + node.name)
            elif node.bl_idname == "ShaderNodeScript" and node.mode == "EXTERNAL":
                d.add(_abs(node.filepath, nt.library), "osl", "OSL:" + node.name)

    for ob in bpy.data.objects:
        for mod in ob.modifiers:
            if mod.type == "MESH_CACHE":
                d.add(_abs(mod.filepath, ob.library), "cache", "MOD:%s.%s" % (ob.name, mod.name))
        _point_caches(d, ob)
    for sc in bpy.data.scenes:
        _sequencer(d, sc)
    return d


def _point_caches(d, ob):
    """Disk point caches (particles, cloth, soft body, dynamic paint): one file a frame."""
    caches = []
    for ps in ob.particle_systems:
        caches.append(ps.point_cache)
    for mod in ob.modifiers:
        pc = getattr(mod, "point_cache", None)
        if pc is not None:
            caches.append(pc)
        if mod.type == "DYNAMIC_PAINT" and mod.canvas_settings is not None:
            for surf in mod.canvas_settings.canvas_surfaces:
                caches.append(surf.point_cache)
    for pc in caches:
        if pc is None or not pc.use_disk_cache:
            continue
        if pc.use_external:
            folder = _abs(pc.filepath, ob.library)
        else:
            blend = ob.library.filepath if ob.library else bpy.data.filepath
            blend = _abs(blend) if ob.library else blend
            if not blend:
                continue
            stem = os.path.splitext(os.path.basename(blend))[0]
            folder = os.path.join(os.path.dirname(blend), "blendcache_" + stem)
        if not folder:
            continue
        # Blender names an unnamed cache by its owner's name in hex.
        name = pc.name or "".join("%02X" % b for b in ob.name.encode("utf-8"))
        index = max(pc.index, 0)
        first, last = pc.frame_start, pc.frame_end

        def prule(frame, folder=folder, name=name, index=index, first=first, last=last):
            f = max(first, min(frame, last))
            return os.path.join(folder, "%s_%06d_%02d.bphys" % (name, f, index))
        d.rules.append(("cache", "PTC:%s.%s" % (ob.name, name), prule))


def _sequencer(d, sc):
    ed = sc.sequence_editor
    if ed is None:
        return
    for strip in ed.sequences_all:
        src = "SEQ:%s.%s" % (sc.name, strip.name)
        if strip.type == "IMAGE":
            folder = _abs(strip.directory, sc.library)
            if not folder:
                continue
            elems = [e.filename for e in strip.elements]

            def srule(frame, s=strip, folder=folder, elems=elems):
                if not (s.frame_final_start <= frame < s.frame_final_end) or not elems:
                    return None
                i = int(frame - s.frame_start)
                return os.path.join(folder, elems[max(0, min(i, len(elems) - 1))])
            d.rules.append(("image_seq_frame", src, srule))
        elif strip.type == "MOVIE":
            d.add(_abs(strip.filepath, sc.library), "movie", src)
        elif strip.type == "SOUND" and strip.sound is not None and not _packed(strip.sound):
            d.add(_abs(strip.sound.filepath, strip.sound.library), "sound", src, required=False)


# ------------------------------------------------------------------ the hooks

class _State(object):
    hook_seconds = 0.0
    frames_done = 0
    client = None
    deps = None
    frames = []
    frame_files = {}   # frame -> paths of that frame's own files (for release)
    scene_key = None


S = _State()


def _log(msg):
    sys.stderr.write("jitfs: %s\n" % msg)
    sys.stderr.flush()


def _timed(fn):
    """Adds the handler's own time to the overhead reported at the end."""
    @functools.wraps(fn)
    def wrapper(*args):
        t0 = time.time()
        try:
            return fn(*args)
        finally:
            S.hook_seconds += time.time() - t0
    return wrapper


# The add-on's key in Preferences > Add-ons: the package of the extension or
# of the legacy zip, or the module of the single-file add-on. Run with -P the
# file is __main__ and has no preferences.
_ADDON_KEY = __package__ or __name__


class JitfsPreferences(bpy.types.AddonPreferences):
    """Settings for workstations and farms that do not set the environment.

    Each applies only where its environment variable is unset or empty: a
    farm sets the environment per task, and a preference saved once on a
    shared Blender configuration must not override it."""
    bl_idname = _ADDON_KEY

    socket_path: bpy.props.StringProperty(
        name="Daemon socket",
        description="The jitfs daemon's hook socket (JITFS_SOCKET). Empty: the socket of the mount holding the scene",
        subtype="FILE_PATH",
        default="",
    )
    frame_wait_ms: bpy.props.IntProperty(
        name="Frame wait (ms)",
        description="The longest a frame is held for its files (JITFS_FRAME_WAIT_MS)",
        default=5000, min=0, max=600000,
    )
    log_level: bpy.props.EnumProperty(
        name="Log level",
        description="What the add-on prints to Blender's console (JITFS_HOOK_DEBUG=1 is Debug)",
        items=(("WARNING", "Warnings", "Failures, missing files and one summary per render"),
               ("DEBUG", "Debug", "Also every request and reply")),
        default="WARNING",
    )

    def draw(self, _context):
        col = self.layout.column()
        col.prop(self, "socket_path")
        col.prop(self, "frame_wait_ms")
        col.prop(self, "log_level")
        col.label(text="The environment (JITFS_SOCKET, JITFS_FRAME_WAIT_MS, JITFS_HOOK_DEBUG) overrides these")


def settings_env(environ, prefs):
    """The environment the client reads: the preferences' values where
    environ leaves a variable unset or empty, environ everywhere else."""
    env = {}
    if prefs is not None:
        if prefs.socket_path:
            env["JITFS_SOCKET"] = bpy.path.abspath(prefs.socket_path)
        env["JITFS_FRAME_WAIT_MS"] = str(int(prefs.frame_wait_ms))
        if prefs.log_level == "DEBUG":
            env["JITFS_HOOK_DEBUG"] = "1"
    for k, v in environ.items():
        if v != "" or k not in env:
            env[k] = v
    return env


def _preferences():
    try:
        addon = bpy.context.preferences.addons.get(_ADDON_KEY)
        return addon.preferences if addon is not None else None
    except Exception:
        return None


def _client():
    if S.client is None:
        S.client = Client("blender", bpy.app.version_string, env=settings_env(os.environ, _preferences()))
    return S.client


def _job_scope(scene):
    """The load-time requests: job-wide static files, then the task's sequences."""
    c = _client()
    if not c.enabled:
        c.locate(bpy.data.filepath)
    if not c.enabled:
        return
    t0 = time.time()
    S.deps = scan()
    S.frames = task_frames(sys.argv, scene)
    S.scene_key = bpy.data.filepath
    c.job["scene"] = bpy.data.filepath
    if S.frames:
        c.job["frame_range"] = [int(S.frames[0]), int(S.frames[-1])]
    c.prefetch("job", S.deps.static)
    # The task's frames of every sequence, as one request; the daemon fetches
    # them behind everything more urgent.
    seq = []
    for f in S.frames:
        seq.extend(S.deps.frame_items(f))
    c.prefetch("job_seq", seq)
    # Blender evaluates the scene at its saved frame before the first
    # render_pre (that is when volume and point-cache files of that frame are
    # opened, even for a render of another frame), so that frame is held now.
    # Image sequences are left out: only the render loads images.
    _hold_frame(scene.frame_current, evaluated_only=True)
    if c.debug:
        _log("job scan: %d static files, %d sequence rules, frames %s, %.1f ms" % (
            len(S.deps.static), len(S.deps.rules), frames_spec(S.frames), (time.time() - t0) * 1000))


def _ensure_scanned(scene):
    if S.deps is None or S.scene_key != bpy.data.filepath:
        _job_scope(scene)


def _hold_frame(n, evaluated_only=False):
    """Asks for everything frame n reads and waits (bounded) until it is local."""
    own = S.deps.frame_items(n)
    if evaluated_only:
        own = [it for it in own if it["kind"] != "image_seq_frame"]
    S.frame_files.setdefault(n, [])
    S.frame_files[n] = sorted(set(S.frame_files[n]) | set(it["path"] for it in own))
    # The static files too: a frame must not start before its textures are
    # local, and for files already resident the daemon does nothing.
    need = own + [it for it in S.deps.static if it.get("required", True)]
    _client().prefetch("frame", need, frame=n, wait=True)


@persistent
@_timed
def on_load_post(*_args):
    try:
        S.deps = None
        if bpy.data.filepath:
            _job_scope(bpy.context.scene)
    except Exception as e:  # never into Blender
        _log("load: %s" % e)


@persistent
@_timed
def on_render_init(scene, *_args):
    try:
        _ensure_scanned(scene)
    except Exception as e:
        _log("render_init: %s" % e)


@persistent
@_timed
def on_render_pre(scene, *_args):
    """Frame N starts now: hold it until its files are local (bounded), then look ahead."""
    try:
        _ensure_scanned(scene)
        c = _client()
        if not c.enabled or S.deps is None:
            return
        n = scene.frame_current
        _hold_frame(n)
        ahead = [f for f in S.frames if f > n][:c.lookahead]
        if not ahead:
            step = max(1, scene.frame_step)
            ahead = [f for f in range(n + step, n + step * (c.lookahead + 1), step) if f <= scene.frame_end]
        items = []
        for f in ahead:
            items.extend(S.deps.frame_items(f))
        c.prefetch("lookahead", items, frame=n)
    except Exception as e:
        _log("render_pre: %s" % e)


@persistent
@_timed
def on_render_post(scene, *_args):
    try:
        c = _client()
        n = scene.frame_current
        S.frames_done += 1
        paths = S.frame_files.pop(n, None)
        if c.enabled and paths:
            c.release("frame", frame=n, paths=paths)
    except Exception as e:
        _log("render_post: %s" % e)


@persistent
@_timed
def on_render_done(*_args):
    try:
        c = _client()
        if c.enabled:
            c.release("job")
            c.drain(2.0)
        st = c.stats
        _log("hooks: %d frames, %.1f ms in hooks (%.1f ms waiting for files), %d requests, %d failures, %d breaker trips, %d skipped" % (
            S.frames_done, S.hook_seconds * 1000, st["blocked_seconds"] * 1000, st["requests"], st["failures"], st["breaker_trips"],
            st["skipped_breaker"]))
    except Exception as e:
        _log("render end: %s" % e)


_HANDLERS = (
    ("load_post", on_load_post),
    ("render_init", on_render_init),
    ("render_pre", on_render_pre),
    ("render_post", on_render_post),
    ("render_complete", on_render_done),
    ("render_cancel", on_render_done),
)


def register():
    try:
        # The preferences exist whenever the add-on is enabled, disabled by
        # JITFS_DISABLE or not, so they can be set and saved on any machine.
        if __name__ != "__main__":
            bpy.utils.register_class(JitfsPreferences)
    except Exception as e:
        _log("register preferences: %s" % e)
    try:
        if os.environ.get("JITFS_DISABLE", "") in ("1", "true", "yes"):
            return
        for name, fn in _HANDLERS:
            lst = getattr(bpy.app.handlers, name)
            # Re-running the script (or enabling twice) must not double the requests.
            for old in [h for h in lst if getattr(h, "__name__", "") == fn.__name__
                        and getattr(h, "__module__", "") == fn.__module__]:
                lst.remove(old)
            lst.append(fn)
    except Exception as e:
        _log("register: %s" % e)


def unregister():
    try:
        for name, fn in _HANDLERS:
            lst = getattr(bpy.app.handlers, name)
            if fn in lst:
                lst.remove(fn)
        if getattr(JitfsPreferences, "is_registered", False):
            bpy.utils.unregister_class(JitfsPreferences)
    except Exception as e:
        _log("unregister: %s" % e)


def write_manifest(path, frames):
    """Writes what the loaded scene reads over frames, for `jitfs prefetch --manifest`.

    A submitter runs this where the scene is (see docs/blender.md), so the
    render agent can prefetch the .blend and its libraries, which Blender reads
    before any hook runs, and everything else if it likes."""
    d = scan()
    lines = ["# jitfs prefetch manifest: %s, frames %s (blender-hooks/jitfs_prefetch.py)" % (
        bpy.data.filepath, frames_spec(frames))]
    skipped = []

    def emit(p):
        if any(c.isspace() for c in p):
            skipped.append(p)  # the manifest format splits on spaces
        else:
            lines.append(p)
    lines.append("# the scene and its libraries: Blender reads them before any hook runs")
    for it in d.static:
        if it["kind"] in ("scene", "library"):
            emit(it["path"])
    lines.append("# every frame's static files")
    for it in d.static:
        if it["kind"] not in ("scene", "library") and it.get("required", True):
            emit(it["path"])
    lines.append("# per-frame files")
    seen = set()
    for f in frames:
        for it in d.frame_items(f):
            if it["path"] not in seen:
                seen.add(it["path"])
                emit(it["path"])
    for p in skipped:
        lines.append("# not listed (whitespace in the name): " + p)
    with open(path, "w") as out:
        out.write("\n".join(lines) + "\n")
    _log("manifest of %d files written to %s" % (len(seen) + sum(1 for it in d.static if it.get("required", True)), path))


def _script_args():
    argv = sys.argv
    return argv[argv.index("--") + 1:] if "--" in argv else []


if __name__ == "__main__" and "--jitfs-manifest" in _script_args():
    # blender -b SCENE.blend -P jitfs_prefetch.py -- --jitfs-manifest FILE [--jitfs-frames 1-10]
    args = _script_args()
    try:
        if not bpy.data.filepath:
            raise RuntimeError("no scene loaded: give the .blend before -P on the command line")
        out = args[args.index("--jitfs-manifest") + 1]
        frames = task_frames(sys.argv, bpy.context.scene)
        if "--jitfs-frames" in args:
            spec = args[args.index("--jitfs-frames") + 1]
            frames = task_frames(["-f", spec.replace("-", "..") if spec.count("-") == 1 and not spec.startswith("-") else spec],
                                 bpy.context.scene)
        write_manifest(out, frames)
    except Exception as e:
        _log("manifest: %s" % e)
        sys.exit(1)
    sys.exit(0)
elif __name__ == "__main__":
    # Run with --python: register, and when the .blend was loaded before this
    # script (it came after the file on the command line), no load_post will
    # follow, so scan now.
    register()
    try:
        if os.environ.get("JITFS_DISABLE", "") not in ("1", "true", "yes") and bpy.data.filepath:
            on_load_post()
    except Exception as e:
        _log("start: %s" % e)
