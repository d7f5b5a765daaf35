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
