# jitfs callbacks for Nuke: tell the node's jitfs daemon what a render will
# read, so the files are on the local SSD before Nuke opens them.
#
# Registered from init.py (menu.py does not run on farm nodes). What is sent
# when (docs/nuke.md has the details, docs/hook-api.md the wire format):
#
#   onScriptLoad        job: every file without a frame token of every enabled
#                       reader (groups included, per view), the OCIO config and
#                       its LUTs, Precomp scripts and their files, the script;
#                       job_seq: every sequence over the task's frames, mapped
#                       through each Read's time controls.
#   beforeFrameRender   frame (blocking, bounded): frame N's files of every
#                       reader upstream of the Write being rendered; then
#                       lookahead (async) for the next task frames.
#   filenameFilter      miss (async): a file under a jitfs mount that no request
#                       named; the name is returned unchanged.
#   afterFrameRender    release of frame N; afterRender: release of the job.
#
# Fail open: Nuke aborts a render when a render callback raises, so no
# exception leaves this module; failures are logged to stderr ("jitfs:") and
# the render goes on reading through the mount as it would without the hook.
# Standard library only, Python 3.7+ (Nuke 13-16).

import ast
import math
import operator
import os
import re
import sys
import time

_DCC = "nuke"

# Nodes that read files, and the kind each file is reported as. Write nodes
# read too when their "reading" knob is on.
_READERS = {
    "Read": "image", "DeepRead": "image", "ReadGeo": "geometry", "ReadGeo2": "geometry", "GeoImport": "geometry",
    "Camera": "camera", "Camera2": "camera", "Camera3": "camera", "OCIOFileTransform": "lut",
    "OCIOCDLTransform": "lut", "Vectorfield": "lut", "AudioRead": "sound", "Precomp": "precomp_script",
}
_WRITERS = ("Write", "DeepWrite", "WriteGeo")
# Reads whose time controls (first/last, frame_mode, frame, before/after)
# decide which file a frame opens.
_TIMED = ("Read", "DeepRead")
# These read their file only when asked to.
_READ_FROM_FILE = ("Camera", "Camera2", "Camera3", "OCIOCDLTransform")

# A frame far from any real one: where it shows up in an evaluated name is
# where the frame token was.
_BIG = 123456789
_TOKEN = re.compile(r"%%|%V|%v|#+|%(0?\d*)d")
_HAS_TOKEN = re.compile(r"%[Vv]|#|%0?\d*d")
_PRECOMP_DEPTH = 4


def _log(msg):
    try:
        sys.stderr.write("jitfs: nuke: %s\n" % msg)
        sys.stderr.flush()
    except Exception:
        pass


class _State(object):
    def __init__(self):
        self.client = None
        self.registered = False
        self.filtering = False         # True while we run the filter chain ourselves
        self.reset_script()
        self.hook_seconds = 0.0        # time spent in the callbacks (filter excluded)
        self.frame_seconds = 0.0       # of which beforeFrameRender/afterFrameRender
        self.filter_seconds = 0.0
        self.filter_calls = 0
        self.frames = 0
        self.misses = 0
        self.errors = 0

    def reset_script(self):
        self.task = []                 # the task's frames, in order
        self.views = []
        self.predicted = set()         # every path requested so far: the filter's "already known"
        self.static = set()            # paths sent with scope job: needed by every frame
        self.missed = set()
        self.outputs = []              # regexes of Write outputs, never reported
        self.color = []                # OCIO config and LUT items, needed by every frame
        self.executing = set()         # Writes named by -X
        self.upstream = {}             # Write full name -> reader nodes
        self.precomp = {}              # Precomp script -> what it reads
        self.started = set()           # (Write, frame) already requested
        self.released_job = False


_S = _State()


def _guard(name, frame_callback=False):
    """Wraps a callback so that nothing it raises reaches Nuke."""
    def wrap(fn):
        def run(*args, **kwargs):
            t0 = time.monotonic()
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                _S.errors += 1
                _log("%s: %s: %s" % (name, type(e).__name__, e))
                return None
            finally:
                dt = time.monotonic() - t0
                _S.hook_seconds += dt
                if frame_callback:
                    _S.frame_seconds += dt
        run.__name__ = fn.__name__
        run.__doc__ = fn.__doc__
        return run
    return wrap


def _on():
    c = _S.client
    return c is not None and c.enabled


# ---------------------------------------------------------------------------
# Registration

def register():
    """Creates the client and registers the callbacks. Idempotent."""
    try:
        if _S.registered:
            return
        import nuke
        import jitfs_client
        # Same switch as the client's: when it is set, not even the callbacks.
        if os.environ.get("JITFS_DISABLE", "") in ("1", "true", "yes"):
            _log("disabled by JITFS_DISABLE")
            return
        _S.client = jitfs_client.Client(_DCC, dcc_version=getattr(nuke, "NUKE_VERSION_STRING", ""), log=_log)
        # Filters run newest first: registered first, ours runs last and sees
        # the name after every other filter (a path remap, say).
        nuke.addFilenameFilter(filename_filter)
        nuke.addOnScriptLoad(on_script_load)
        # '*': DeepWrite, WriteGeo and any other executed node, not only Write.
        nuke.addBeforeFrameRender(before_frame_render, nodeClass="*")
        nuke.addAfterFrameRender(after_frame_render, nodeClass="*")
        nuke.addAfterRender(after_render, nodeClass="*")
        _S.registered = True
    except Exception as e:
        _log("register: %s: %s" % (type(e).__name__, e))


def unregister():
    """Removes the callbacks and flushes the client's queue."""
    try:
        import nuke
        if _S.registered:
            nuke.removeFilenameFilter(filename_filter)
            nuke.removeOnScriptLoad(on_script_load)
            nuke.removeBeforeFrameRender(before_frame_render, nodeClass="*")
            nuke.removeAfterFrameRender(after_frame_render, nodeClass="*")
            nuke.removeAfterRender(after_render, nodeClass="*")
        if _S.client is not None:
            _S.client.drain(1.0)
    except Exception as e:
        _log("unregister: %s: %s" % (type(e).__name__, e))
    finally:
        _S.__init__()


def client():
    """The client, for tests and other tools (None when not registered)."""
    return _S.client


def stats():
    """What the hook did and what it cost: frames, seconds in the callbacks,
    seconds blocked on frame requests, filter calls, misses."""
    c = _S.client
    out = {"frames": _S.frames, "hook_seconds": _S.hook_seconds, "frame_seconds": _S.frame_seconds,
           "filter_seconds": _S.filter_seconds, "filter_calls": _S.filter_calls, "misses": _S.misses,
           "errors": _S.errors, "predicted": len(_S.predicted)}
    if c is not None:
        out["blocked_seconds"] = c.stats.get("blocked_seconds", 0.0)
        out["client"] = dict(c.stats)
    return out


# ---------------------------------------------------------------------------
# Frames, tokens, patterns

def _parse_ranges(text, trailing=False):
    """Frames of a Nuke frame-range list: "1-10x2 20,30-32"; a trailing
    range on the command line may also be "first,last[,step]"."""
    frames = []
    text = text.strip()
    m = re.match(r"^(-?\d+),(-?\d+)(?:,(\d+))?$", text)
    if m and trailing:
        a, b, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
        return list(range(a, b + 1, max(1, s)))
    for part in re.split(r"[\s,]+", text):
        if not part:
            continue
        m = re.match(r"^(-?\d+)(?:-(-?\d+)(?:x(\d+))?)?$", part)
        if not m:
            raise ValueError("bad frame range %r" % part)
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        s = max(1, int(m.group(3) or 1))
        frames.extend(range(a, b + 1, s) if b >= a else range(a, b - 1, -s))
    return frames


def _task_frames(nuke):
    """The frames this process renders: nuke's -F ranges, else a trailing
    range, else the Root's first..last."""
    args = list(getattr(nuke, "rawArgs", [])[1:])
    ranges, positional = [], []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-F" and i + 1 < len(args):
            ranges.append(args[i + 1])
            i += 2
            continue
        if a in ("-X", "-V", "-m", "--remap", "-c", "--view") and i + 1 < len(args):
            i += 2
            continue
        positional.append(a)
        i += 1
    frames = []
    try:
        if ranges:
            for r in ranges:
                frames.extend(_parse_ranges(r))
        elif len(positional) >= 2 and re.match(r"^-?\d+([-,]-?\d+)*(x\d+)?$", positional[-1]):
            frames = _parse_ranges(positional[-1], trailing=True)
    except ValueError as e:
        _log("frame range: %s" % e)
        frames = []
    if not frames:
        r = nuke.root()
        frames = list(range(int(r["first_frame"].value()), int(r["last_frame"].value()) + 1))
    seen = set()
    return [f for f in frames if not (f in seen or seen.add(f))]


def _frames_str(frames):
    """A wire frame list ("1-5,9,12-14") of the given frames."""
    fs = sorted(set(int(f) for f in frames))
    parts = []
    i = 0
    while i < len(fs):
        j = i
        while j + 1 < len(fs) and fs[j + 1] == fs[j] + 1:
            j += 1
        parts.append(str(fs[i]) if i == j else "%d-%d" % (fs[i], fs[j]))
        i = j + 1
    return ",".join(parts)


def _subst(s, frame, view):
    """Replaces frame and view tokens Nuke left in an evaluated name."""
    def repl(m):
        t = m.group(0)
        if t == "%%":
            return "%"
        if t == "%V":
            return view
        if t == "%v":
            return view[:1]
        if t[0] == "#":
            return "%0*d" % (len(t), frame)
        return ("%" + m.group(1) + "d") % frame
    return _TOKEN.sub(repl, s)


def _base_dir(nuke):
    try:
        k = nuke.root().knob("project_directory")
        base = k.evaluate() if k is not None else ""
    except Exception:
        base = ""
    return base or os.getcwd()


class _Evaluator(object):
    """Evaluates a node's file knob the way Nuke opens it, per frame and view."""

    def __init__(self, nuke, views):
        self.nuke = nuke
        self.views = views          # [(index, name)], numbered from 1
        self.base = _base_dir(nuke)

    def path(self, knob, frame, vi, view):
        oc = self.nuke.OutputContext()
        oc.setFrame(frame)
        oc.setView(vi)
        s = knob.getEvaluatedValue(oc)
        if not s:
            return None
        s = _subst(s, int(frame), view)
        if not os.path.isabs(s):
            s = os.path.join(self.base, s)
        return os.path.normpath(s)

    def pattern(self, knob, vi, view):
        """("static", path), ("seq", printf pattern) or ("dynamic", None)
        when the name depends on the frame in a way a pattern cannot say."""
        oc = self.nuke.OutputContext()
        oc.setFrame(_BIG)
        oc.setView(vi)
        raw = knob.getEvaluatedValue(oc)
        if not raw:
            return ("none", None)
        if _HAS_TOKEN.search(raw):
            # Nuke left the tokens in: translate them.
            pat = _printf(raw, view)
        else:
            big = self.path(knob, _BIG, vi, view)
            one = self.path(knob, 1, vi, view)
            if big == one:
                return ("static", big)
            pat = _derive(big, one)
            if pat is None:
                return ("dynamic", None)
        if not os.path.isabs(pat):
            pat = os.path.join(self.base.replace("%", "%%"), pat)
        pat = os.path.normpath(pat)
        for f in (1, 2, 1001):
            if _fmt(pat, f) != self.path(knob, f, vi, view):
                return ("dynamic", None)
        return ("seq", pat)


def _printf(s, view):
    """A name with Nuke's tokens as a wire pattern: #### -> %04d, views
    filled in, literal % doubled. A space-padded %4d has no wire form."""
    out = []
    pos = 0
    for m in _TOKEN.finditer(s):
        out.append(s[pos:m.start()].replace("%", "%%"))
        t = m.group(0)
        w = m.group(1)
        if t == "%%":
            out.append("%%")
        elif t == "%V":
            out.append(view.replace("%", "%%"))
        elif t == "%v":
            out.append(view[:1].replace("%", "%%"))
        elif t[0] == "#":
            out.append("%%0%dd" % len(t) if len(t) > 1 else "%d")
        elif not w or w == "0":
            out.append("%d")
        elif w.startswith("0"):
            out.append("%%0%dd" % int(w))
        else:
            raise ValueError("space-padded frame token in %r" % s)
        pos = m.end()
    out.append(s[pos:].replace("%", "%%"))
    return "".join(out)


def _derive(big, one):
    """The printf pattern that gives big at frame _BIG and one at frame 1, or
    None."""
    parts = big.split(str(_BIG))
    if len(parts) < 2:
        return None
    rx = "^" + "(-?\\d+)".join(re.escape(p) for p in parts) + "$"
    m = re.match(rx, one)
    if not m:
        return None
    out = [parts[0].replace("%", "%%")]
    for i, g in enumerate(m.groups()):
        if int(g) != 1:
            return None
        out.append("%d" if len(g) == 1 else "%%0%dd" % len(g))
        out.append(parts[i + 1].replace("%", "%%"))
    return "".join(out)


def _fmt(pattern, frame):
    return re.sub(r"%%|%(0?\d*)d", lambda m: "%" if m.group(0) == "%%" else ("%" + m.group(1) + "d") % frame,
                  pattern)


# ---------------------------------------------------------------------------
# Read time controls

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCS = {"floor": math.floor, "ceil": math.ceil, "int": int, "abs": abs, "min": min, "max": max,
          "fmod": math.fmod, "round": round}


def _arith(expr, frame):
    """A Read's frame expression (frame arithmetic only) at frame."""
    def ev(n):
        if isinstance(n, ast.Expression):
            return ev(n.body)
        if isinstance(n, ast.BinOp) and type(n.op) in _BIN:
            return _BIN[type(n.op)](ev(n.left), ev(n.right))
        if isinstance(n, ast.UnaryOp) and type(n.op) in _UNARY:
            return _UNARY[type(n.op)](ev(n.operand))
        if isinstance(n, ast.Name) and n.id in ("frame", "x", "t"):
            return frame
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) and not isinstance(n.value, bool):
            return n.value
        if type(n).__name__ == "Num":  # Python 3.7 parses numbers as ast.Num
            return n.n
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _FUNCS and not n.keywords:
            return _FUNCS[n.func.id](*[ev(a) for a in n.args])
        raise ValueError("unsupported frame expression %r" % expr)
    return ev(ast.parse(expr.strip(), mode="eval"))


def _mapper(get, source):
    """A function from output frame to the file frame a Read opens, or None
    when it shows black: frame_mode (expression, start at, offset) and the
    before/after rules (hold, loop, bounce, black) outside first..last."""
    first = int(float(get("first", 1)))
    last = int(float(get("last", first)))
    if first > last:
        first, last = last, first
    mode = str(get("frame_mode", "expression"))
    val = str(get("frame", "") or "").strip()
    before = str(get("before", "hold"))
    after = str(get("after", "hold"))
    n = last - first + 1

    def shift(t):
        if mode == "start at":
            return t - int(float(val)) + first if val else t
        if mode == "offset":
            return t - int(float(val)) if val else t
        if not val or val == "frame":
            return t
        return _arith(val, t)

    def mapped(t):
        try:
            ff = int(math.floor(shift(t) + 1e-9))
        except Exception as e:
            _log("%s: frame %s: %s; assuming the output frame" % (source, val, e))
            ff = t
        if first <= ff <= last:
            return ff
        rule = before if ff < first else after
        if rule == "hold":
            return first if ff < first else last
        if rule == "loop":
            return first + (ff - first) % n
        if rule == "bounce":
            if n == 1:
                return first
            period = 2 * n - 2
            k = (ff - first) % period
            return first + (k if k < n else period - k)
        return None  # black: nothing is read

    return mapped


def _knob_getter(node):
    def get(name, default):
        k = node.knob(name)
        if k is None:
            return default
        v = k.value()
        return default if v is None else v
    return get


def _identity(t):
    return t


# ---------------------------------------------------------------------------
# Nodes

def _enabled(nuke, node):
    """Not disabled, and no enclosing group disabled."""
    k = node.knob("disable")
    if k is not None and k.value():
        return False
    parts = node.fullName().split(".")
    for i in range(1, len(parts)):
        g = nuke.toNode(".".join(parts[:i]))
        if g is not None and g.knob("disable") is not None and g["disable"].value():
            return False
    return True


def _is_reader(node, executing):
    cls = node.Class()
    if cls in _WRITERS:
        k = node.knob("reading")
        return k is not None and bool(k.value()) and node.fullName() not in executing
    if cls not in _READERS:
        return False
    if cls in _READ_FROM_FILE:
        k = node.knob("read_from_file")
        if k is not None and not k.value():
            return False
    return True


def _file_knobs(nuke, node):
    """The file knobs a reader opens: proxy instead of file in proxy mode,
    every other File_Knob as is."""
    proxy_mode = False
    try:
        proxy_mode = bool(nuke.root()["proxy"].value())
    except Exception:
        pass
    out = []
    for k in node.allKnobs():
        if k.Class() != "File_Knob":
            continue
        name = k.name()
        if name == "proxy":
            continue
        if name == "file" and proxy_mode and node.knob("proxy") is not None and node["proxy"].value():
            k = node["proxy"]
        elif node.Class() in _WRITERS and name != "file":
            continue
        out.append(k)
    return out


def _kind(node, seq):
    cls = node.Class()
    if cls in _WRITERS or cls in _TIMED:
        return "image_seq_frame" if seq else "image"
    return _READERS.get(cls, "file")


def _views(nuke, node=None):
    """[(index, name)] of the script's views (numbered from 1, as an
    OutputContext counts them), limited to a Write's views knob if set."""
    names = list(nuke.views())
    allv = [(i + 1, v) for i, v in enumerate(names)]
    if node is not None and node.knob("views") is not None:
        try:
            v = node["views"].value()
            want = list(v) if isinstance(v, (list, tuple)) else str(v).split()
        except Exception:
            want = []
        picked = [(i, v) for i, v in allv if v in want]
        if picked:
            return picked
    return allv


def _upstream(nuke, write):
    """Every reader a Write depends on: its inputs and hidden inputs, recursively,
    and whatever is inside the groups on the way. A Write that reads its file
    stands for its own inputs."""
    key = write.fullName()
    if key in _S.upstream:
        return _S.upstream[key]
    readers = []
    seen = set([key])
    todo = [write]
    while todo:
        n = todo.pop()
        deps = list(n.dependencies(nuke.INPUTS | nuke.HIDDEN_INPUTS))
        if hasattr(n, "nodes") and n.fullName() != key and _enabled(nuke, n):
            deps.extend(nuke.allNodes(group=n, recurseGroups=True))
        for d in deps:
            name = d.fullName()
            if name in seen:
                continue
            seen.add(name)
            if _is_reader(d, _S.executing):
                if _enabled(nuke, d):
                    readers.append(d)
                if d.Class() in _WRITERS or d.Class() in _TIMED:
                    continue
            todo.append(d)
    _S.upstream[key] = readers
    return readers


# ---------------------------------------------------------------------------
# What a node reads

def _frame_items(nuke, ev, node, frames, views):
    """Concrete items for node at each output frame of frames."""
    items = []
    cls = node.Class()
    if cls == "Precomp":
        return _precomp_frame_items(nuke, node, frames, views)
    mapper = _mapper(_knob_getter(node), node.fullName()) if cls in _TIMED else _identity
    for knob in _file_knobs(nuke, node):
        src = "%s.%s" % (node.fullName(), knob.name())
        for t in frames:
            ff = mapper(t)
            if ff is None:
                continue
            for vi, v in views:
                p = ev.path(knob, ff, vi, v)
                if p:
                    items.append({"path": p, "kind": _kind(node, True), "source": src, "frame": int(t),
                                  "file_frame": int(ff)})
    return items


def _job_items(nuke, ev, node, task, views):
    """(job items, job_seq items) for node over the task's frames."""
    job, seq = [], []
    cls = node.Class()
    if cls == "Precomp":
        return _precomp_job_items(nuke, node, task, views)
    mapper = _mapper(_knob_getter(node), node.fullName()) if cls in _TIMED else _identity
    for knob in _file_knobs(nuke, node):
        src = "%s.%s" % (node.fullName(), knob.name())
        for vi, v in views:
            try:
                kind, val = ev.pattern(knob, vi, v)
            except Exception as e:
                _log("%s: %s" % (src, e))
                kind, val = "dynamic", None
            if kind == "none":
                continue
            if kind == "static":
                job.append({"path": val, "kind": _kind(node, False), "source": src})
                continue
            mapped = [(t, mapper(t)) for t in task]
            if kind == "seq" and all(ff == t for t, ff in mapped):
                seq.append({"seq": {"pattern": val, "frames": _frames_str(task)}, "kind": _kind(node, True),
                            "source": src})
                continue
            done = set()
            for t, ff in mapped:
                if ff is None or ff in done:
                    continue
                done.add(ff)
                p = _fmt(val, ff) if kind == "seq" else ev.path(knob, ff, vi, v)
                if p:
                    seq.append({"path": p, "kind": _kind(node, True), "source": src, "frame": int(t),
                                "file_frame": int(ff)})
    return job, seq


# -- Precomp scripts --------------------------------------------------------

_NODE_OPEN = re.compile(r"^\s*([A-Z]\w*)\s*\{\s*$")
_KNOB_LINE = re.compile(r"^\s*(\w+)\s+(.*?)\s*$")


def _nk_value(v):
    if len(v) >= 2 and ((v[0] == '"' and v[-1] == '"') or (v[0] == "{" and v[-1] == "}")):
        v = v[1:-1]
    return re.sub(r"\\(.)", r"\1", v)


def _scan_nk(path):
    """The nodes of a .nk script as [(class, {knob: value})], read as plain
    text: enough for the file knobs and time controls of a Precomp's
    script, without loading it into the open script."""
    nodes = []
    cur = None
    with open(path, "r") as f:
        text = f.read(8 << 20)
    for line in text.splitlines():
        if cur is None:
            m = _NODE_OPEN.match(line)
            if m:
                cur = (m.group(1), {})
            continue
        if line.strip() == "}":
            nodes.append(cur)
            cur = None
            continue
        m = _KNOB_LINE.match(line)
        if m:
            cur[1][m.group(1)] = _nk_value(m.group(2))
    return nodes


def _nk_path(value, script):
    v = os.path.expandvars(value)
    if not v or "[" in v or "$" in v:
        return None
    if not os.path.isabs(v):
        v = os.path.join(os.path.dirname(script), v)
    return os.path.normpath(v)


def _precomp_files(nuke, node):
    """(script, [(owner script, class, knobs, file pattern)]) of a Precomp:
    each reader's file in its script and in the Precomps inside it, and the
    Write output the Precomp shows once it has been rendered."""
    k = node.knob("file")
    script = k.getEvaluatedValue() if k is not None else ""
    if not script:
        return None, []
    if not os.path.isabs(script):
        script = os.path.join(_base_dir(nuke), script)
    script = os.path.normpath(script)
    if script not in _S.precomp:
        _S.precomp[script] = _precomp_scan(script, 0, set())
    return script, _S.precomp[script]


def _precomp_scan(script, depth, seen):
    out = []
    if not script or script in seen or depth > _PRECOMP_DEPTH or not os.path.isfile(script):
        return out
    seen.add(script)
    try:
        nodes = _scan_nk(script)
    except (IOError, OSError, UnicodeDecodeError) as e:
        _log("precomp %s: %s" % (script, e))
        return out
    for cls, knobs in nodes:
        if knobs.get("disable") == "true":
            continue
        if cls == "Precomp":
            inner = _nk_path(knobs.get("file", ""), script)
            if inner:
                out.append((script, cls, knobs, inner))
                out.extend(_precomp_scan(inner, depth + 1, seen))
            continue
        # A Write in a Precomp's script is read: its output is what the
        # Precomp shows once rendered.
        if cls not in _READERS and cls not in _WRITERS:
            continue
        if cls in _READ_FROM_FILE and knobs.get("read_from_file") != "true":
            continue
        for kname in ("file", "vfield_file"):
            p = _nk_path(knobs.get(kname, ""), script)
            if p:
                out.append((script, cls, knobs, p))
    return out


def _precomp_paths(cls, knobs, pattern, t, views):
    mapper = _mapper(lambda k, d: knobs.get(k, d), pattern) if cls in _TIMED else _identity
    ff = mapper(t)
    if ff is None:
        return []
    out = []
    for _, v in views:
        out.append(os.path.normpath(_subst(pattern, ff, v)))
    return out


def _precomp_frame_items(nuke, node, frames, views):
    script, files = _precomp_files(nuke, node)
    items = []
    if script:
        items.append({"path": os.path.normpath(script), "kind": "precomp_script", "source": node.fullName()})
    for owner, cls, knobs, pattern in files:
        if cls == "Precomp":
            items.append({"path": pattern, "kind": "precomp_script", "source": owner})
            continue
        for t in frames:
            for p in _precomp_paths(cls, knobs, pattern, t, views):
                it = {"path": p, "kind": "image_seq_frame", "source": owner, "frame": int(t)}
                if cls in _WRITERS:
                    it["required"] = False  # read only once the Precomp has been rendered
                items.append(it)
    return items


def _precomp_job_items(nuke, node, task, views):
    script, files = _precomp_files(nuke, node)
    job, seq = [], []
    if script:
        job.append({"path": os.path.normpath(script), "kind": "precomp_script", "source": node.fullName()})
    for owner, cls, knobs, pattern in files:
        if cls == "Precomp":
            job.append({"path": pattern, "kind": "precomp_script", "source": owner})
        elif not _HAS_TOKEN.search(pattern):
            for p in _precomp_paths(cls, knobs, pattern, task[0] if task else 1, views):
                job.append({"path": p, "kind": "file", "source": owner})
        else:
            for t in task:
                for p in _precomp_paths(cls, knobs, pattern, t, views):
                    seq.append({"path": p, "kind": "image_seq_frame", "source": owner, "frame": int(t)})
    return job, seq


# -- OCIO ---------------------------------------------------------------------

def _ocio_configs(nuke):
    """The OCIO configs in use: $OCIO, and the Root's custom config when
    colour management is OCIO."""
    out = []
    if os.environ.get("OCIO"):
        out.append(os.environ["OCIO"])
    r = nuke.root()
    cm = r.knob("colorManagement")
    cfg = r.knob("OCIO_config")
    path = r.knob("customOCIOConfigPath")
    if path is not None and (cm is None or cm.value() == "OCIO") and (cfg is None or cfg.value() == "custom"):
        p = path.getEvaluatedValue()
        if p:
            out.append(p)
    return [os.path.normpath(p) for p in out if os.path.isabs(p)]


def _ocio_luts(config):
    """The LUT files an OCIO config names (src: entries), looked up in its
    search_path (one ':'-separated line, or a YAML list), which is relative to
    the config's directory. Plain text parsing: no YAML module in Nuke."""
    with open(config, "r") as f:
        text = f.read(4 << 20)
    dirs = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^search_path\s*:\s*(.*?)\s*$", line)
        if not m:
            continue
        v = m.group(1).strip("\"'")
        if v:
            dirs.extend(d for d in v.split(":") if d)
        else:
            for nxt in lines[i + 1:]:
                m2 = re.match(r"^\s+-\s*(.+?)\s*$", nxt)
                if not m2:
                    break
                dirs.append(m2.group(1).strip("\"'"))
    base = os.path.dirname(config)
    resolved = []
    for d in dirs:
        d = os.path.expandvars(d)
        if "$" not in d:
            resolved.append(os.path.normpath(os.path.join(base, d)))
    if not resolved:
        resolved = [base]
    luts = []
    for src in re.findall(r"\bsrc\s*:\s*[\"']?([^,}\"'\s]+)", text):
        src = os.path.expandvars(src)
        if "$" in src or "%" in src:
            continue
        cands = [os.path.normpath(src)] if os.path.isabs(src) else [os.path.join(d, src) for d in resolved]
        found = next((c for c in cands if os.path.isfile(c)), cands[0])
        if found not in luts:
            luts.append(found)
    return luts


def _color_items(nuke):
    items = []
    for cfg in _ocio_configs(nuke):
        items.append({"path": cfg, "kind": "ocio_config", "source": "root.OCIO"})
        try:
            for lut in _ocio_luts(cfg):
                items.append({"path": lut, "kind": "lut", "source": cfg})
        except (IOError, OSError, UnicodeDecodeError) as e:
            _log("OCIO config %s: %s" % (cfg, e))
    return items


def _output_regex(pattern):
    """A regex matching every name a Write's output pattern can take."""
    out = []
    pos = 0
    for m in _TOKEN.finditer(pattern):
        out.append(re.escape(pattern[pos:m.start()]))
        t = m.group(0)
        out.append("%" if t == "%%" else "[^/]+" if t in ("%V", "%v") else "-?\\d+")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("^" + "".join(out) + "$")


def _final(name):
    """The name Nuke hands to the OS: name through the other filename
    filters (a studio's path remap, say). Ours ignores the call."""
    try:
        import nuke
        _S.filtering = True
        try:
            out = nuke.callbacks.filenameFilter(name)
        finally:
            _S.filtering = False
        if isinstance(out, str) and out:
            return os.path.normpath(out) if out.startswith("/") else out
    except Exception as e:
        _log("filename filters on %s: %s: %s" % (name, type(e).__name__, e))
    return name


def _send(scope, items, frame=None, wait=False):
    """Sends items as Nuke will open them; returns them so."""
    out = []
    for it in items:
        it = dict(it)
        if "path" in it:
            it["path"] = _final(it["path"])
            _S.predicted.add(it["path"])
        elif "seq" in it:
            it["seq"] = dict(it["seq"], pattern=_final(it["seq"]["pattern"]))
        out.append(it)
    if out:
        _S.client.prefetch(scope, out, frame=frame, wait=wait)
    return out


# ---------------------------------------------------------------------------
# Callbacks

@_guard("onScriptLoad")
def on_script_load():
    """Job-wide files, and the task's frames of every sequence."""
    import nuke
    c = _S.client
    if c is None:
        return
    script = nuke.root()["name"].value()
    if not c.enabled and script:
        c.locate(script)  # no JITFS_SOCKET: the daemon of the mount holding the script
    if not c.enabled:
        return
    _S.reset_script()
    _S.task = _task_frames(nuke)
    _S.views = _views(nuke)
    args = list(getattr(nuke, "rawArgs", []))
    for i, a in enumerate(args[:-1]):
        if a == "-X":
            _S.executing.update(n for n in args[i + 1].split(",") if n)
    if script:
        c.job["scene"] = os.path.normpath(script)
    if _S.task:
        c.job["frame_range"] = [min(_S.task), max(_S.task)]
    ev = _Evaluator(nuke, _S.views)
    job, seq = [], []
    if script:
        job.append({"path": os.path.normpath(script), "kind": "scene", "source": "root.name"})
    for node in nuke.allNodes(recurseGroups=True):
        cls = node.Class()
        if cls in _WRITERS and not (node.knob("reading") is not None and node["reading"].value()):
            for k in ("file", "proxy"):
                kn = node.knob(k)
                if kn is not None:
                    for vi, v in _S.views:
                        try:
                            kind, val = ev.pattern(kn, vi, v)
                            if val:
                                _S.outputs.append(_output_regex(val))
                        except Exception as e:
                            _log("%s.%s: %s" % (node.fullName(), k, e))
            continue
        if not _is_reader(node, _S.executing) or not _enabled(nuke, node):
            continue
        try:
            j, s = _job_items(nuke, ev, node, _S.task, _S.views)
        except Exception as e:
            _log("%s: %s: %s" % (node.fullName(), type(e).__name__, e))
            continue
        job.extend(j)
        seq.extend(s)
    _S.color = _color_items(nuke)
    job.extend(_S.color)
    _S.static.update(it["path"] for it in _send("job", job) if "path" in it)
    _send("job_seq", seq)


@_guard("beforeFrameRender", frame_callback=True)
def before_frame_render():
    """Frame N's files, waited for; then the next frames', not waited for."""
    import nuke
    if not _on():
        return
    node = nuke.thisNode()
    n = int(nuke.frame())
    key = (node.fullName(), n)
    if key in _S.started:
        return
    _S.started.add(key)
    _S.frames += 1
    _S.released_job = False
    if not _S.task:
        _S.task = _task_frames(nuke)
        _S.views = _views(nuke)
    views = _views(nuke, node)
    ev = _Evaluator(nuke, views)
    readers = _upstream(nuke, node)
    items = []
    for r in readers:
        try:
            items.extend(_frame_items(nuke, ev, r, [n], views))
        except Exception as e:
            _log("%s: frame %d: %s: %s" % (r.fullName(), n, type(e).__name__, e))
    items.extend(_S.color)
    _send("frame", items, frame=n, wait=True)
    k = _S.client.lookahead
    if k <= 0:
        return
    if n in _S.task:
        i = _S.task.index(n)
        ahead = _S.task[i + 1:i + 1 + k]
    else:
        ahead = list(range(n + 1, n + 1 + k))
    if not ahead:
        return
    items = []
    for r in readers:
        try:
            items.extend(_frame_items(nuke, ev, r, ahead, views))
        except Exception as e:
            _log("%s: lookahead: %s: %s" % (r.fullName(), type(e).__name__, e))
    # Files every frame reads were asked for at job scope and are in this
    # frame's request: only what changes with the frame goes ahead.
    _send("lookahead", [it for it in items if _final(it["path"]) not in _S.static], frame=n)


@_guard("afterFrameRender", frame_callback=True)
def after_frame_render():
    import nuke
    if not _on():
        return
    _S.client.release("frame", frame=int(nuke.frame()))


@_guard("afterRender")
def after_render():
    if not _on() or _S.released_job:
        return
    _S.released_job = True
    _S.client.release("job")
    # Nuke may exit right after the render: let the queued requests out,
    # within a bound.
    _S.client.drain(1.0)
    s = stats()
    _log("%d frame(s); %.3fs in callbacks (%.3fs waiting for files), %d filter call(s), %d miss(es)" % (
        s["frames"], s["hook_seconds"] + s["filter_seconds"], s.get("blocked_seconds", 0.0),
        s["filter_calls"], s["misses"]))
    _S.upstream = {}


def filename_filter(name):
    """Reports a file under a jitfs mount that no request named as a miss.
    Returns None (the name unchanged); never blocks, never raises."""
    if _S.filtering:
        return None
    t0 = time.monotonic()
    try:
        _S.filter_calls += 1
        c = _S.client
        if c is None or not c.enabled or not name or name[0] != "/" or name in _S.predicted:
            return None
        p = os.path.normpath(name)
        if p in _S.predicted or p in _S.missed or _HAS_TOKEN.search(p) or not c.managed(p):
            return None
        for rx in _S.outputs:
            if rx.match(p):
                return None
        source = ""
        try:
            import nuke
            node = nuke.thisNode()
            if node.Class() in _WRITERS and not (node.knob("reading") is not None and node["reading"].value()):
                return None
            source = node.fullName()
        except Exception:
            pass
        _S.missed.add(p)
        _S.misses += 1
        c.prefetch("miss", [{"path": p, "kind": "filter_miss", "source": source}])
    except Exception as e:
        _S.errors += 1
        _log("filenameFilter: %s: %s" % (type(e).__name__, e))
    finally:
        _S.filter_seconds += time.monotonic() - t0
    return None
