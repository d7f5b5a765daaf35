"""The jitfs Nuke callbacks against the nuke stub and a recording daemon.

Each test starts the stub as a farm starts Nuke (nuke_cli: NUKE_PATH with
nuke-callbacks, init.py, -F/-X/-x), renders the fixture show, and compares
what the stub really opened (nuke.OPENED, the oracle) with what the daemon
was asked for, and when.
"""

import os
import shutil
import sys
import tempfile
import time
import unittest
from unittest import mock

import testutil

import jitfs_client  # noqa: E402
import jitfs_nuke  # noqa: E402
import nuke  # noqa: E402  (the stub)
import nuke_cli  # noqa: E402

TASK = ["-F", "1001-1004", "-X", "Write1", "-x"]
TASK_FRAMES = [1001, 1002, 1003, 1004]


def norm(p):
    return os.path.normpath(p)


class _Base(unittest.TestCase):
    mode = "ok"
    extra_env = {}

    def setUp(self):
        nuke._reset()
        jitfs_nuke.unregister()
        self.addCleanup(jitfs_nuke.unregister)
        self.addCleanup(nuke._reset)
        self.tmp = tempfile.mkdtemp(prefix="jitfs-nuke-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.show = testutil.make_show(self.tmp)
        self.mount = self.show["mount"]
        self.sock = os.path.join(self.tmp, "jitfs.sock")
        env = {
            "JITFS_SOCKET": self.sock, "JITFS_JOB_ID": "job-42", "JITFS_TASK_ID": "7", "JITFS_SHOT": "sh010",
            "NUKE_PATH": testutil.PLUGIN, "HOME": os.path.join(self.tmp, "home"),
            "JITFS_TEST_TEXROOT": os.path.join(self.mount, "textures"),
            "JITFS_FRAME_WAIT_MS": "2000", "JITFS_TIMEOUT_MS": "1000", "JITFS_LOOKAHEAD": "2",
        }
        env.update(self.extra_env)
        patcher = mock.patch.dict(os.environ, env)
        patcher.start()
        self.addCleanup(patcher.stop)
        for k in ("JITFS_DISABLE", "JITFS_MOUNTS", "OCIO"):
            if k not in env:
                os.environ.pop(k, None)
        self.daemon = self.start_daemon()
        if self.daemon is not None:
            self.addCleanup(self.daemon.close)
        saved_path = list(sys.path)
        self.addCleanup(lambda: sys.path.__setitem__(slice(None), saved_path))

    def start_daemon(self):
        return testutil.Recorder(self.sock, self.mount, self.mode)

    def render(self, args=None):
        args = TASK + [self.show["comp"]] if args is None else args
        t0 = time.monotonic()
        rc = nuke_cli.main(args)
        self.elapsed = time.monotonic() - t0
        c = jitfs_nuke.client()
        if c is not None:
            c.drain(5.0)
        return rc

    def opened(self):
        return [(t, norm(p)) for t, p in nuke.OPENED]

    def under_mount(self, p):
        return p.startswith(self.mount + "/")


class TestPrediction(_Base):
    """Recall and timing of the requests against what the stub opened."""

    def test_render_requests_every_file_before_it_is_opened(self):
        rc = self.render()
        self.assertEqual(rc, 0)
        reqs = self.daemon.prefetches()
        requested = set(p for _, _, _, p, _ in reqs)
        opened = [(t, p) for t, p in self.opened() if self.under_mount(p)]
        self.assertTrue(opened, "the stub opened nothing under the mount")

        # Recall: every file the render opened under the mount was asked for.
        missed = sorted(set(p for _, p in opened) - requested)
        self.assertEqual(missed, [])

        # Every file opened while rendering a frame was in that frame's
        # request, which the daemon received before the open. The
        # ParticleCache is the one reader the hook does not know: only the
        # filter can catch it, as a miss.
        frame_reqs = {}
        for t, scope, frame, p, _ in reqs:
            if scope == "frame":
                frame_reqs.setdefault((frame, p), t)
        frame_opens = [ev for ev in nuke.OPEN_EVENTS
                       if ev["ok"] and ev["phase"] in ("frame", "lut") and self.under_mount(norm(ev["path"]))]
        self.assertTrue(frame_opens)
        late = []
        for ev in frame_opens:
            p = norm(ev["path"])
            if p == self.show["particles"]:
                continue
            t = frame_reqs.get((ev["frame"], p))
            if t is None or t >= ev["t"]:
                late.append((ev["frame"], p, t, ev["t"]))
        self.assertEqual(late, [])
        predicted_opens = [ev for ev in frame_opens if norm(ev["path"]) != self.show["particles"]]
        sys.stderr.write("\nFIGURES nuke hook: recall %d/%d opened files under the mount; %d/%d frame-scoped "
                         "opens requested (frame scope) before the open\n" % (
                             len(set(p for _, p in opened)) - len(missed), len(set(p for _, p in opened)),
                             len(predicted_opens) - len(late), len(predicted_opens)))

        # Nothing outside the mount, no Write output, no disabled Read.
        self.assertEqual([p for p in requested if not self.under_mount(p)], [])
        outputs = set(norm(p) for _, p in nuke.WRITTEN)
        self.assertTrue(outputs)
        self.assertEqual(sorted(outputs & requested), [])
        self.assertEqual([p for p in requested if p.startswith(self.show["outputs"] + "/")], [])
        self.assertEqual([p for p in requested if p.startswith(self.show["disabled"] + "/")], [])
        self.assertNotIn(norm(self.show["slate"]), requested)
        self.assertNotIn(self.show["unused_cam"], requested)
        for rel in ("geo/cam.abc", "luts/vf.cube", "audio/temp.wav", "elements/deep/deep.1004.exr"):
            self.assertIn(self.mount + "/" + rel, set(p for _, p in opened))

    def test_time_controls_map_each_frame_to_the_file_it_opens(self):
        self.assertEqual(self.render(), 0)
        reqs = self.daemon.prefetches()
        m = self.mount

        def frame_files(prefix):
            return sorted((f, p) for _, s, f, p, _ in reqs if s == "frame" and p.startswith(m + prefix))

        # offset 1000 over bg 2..3 with hold before and after.
        self.assertEqual(frame_files("/elements/bg/"), [
            (1001, m + "/elements/bg/bg.0002.exr"), (1002, m + "/elements/bg/bg.0002.exr"),
            (1003, m + "/elements/bg/bg.0003.exr"), (1004, m + "/elements/bg/bg.0003.exr")])
        # start at 1001 over fx 1..2, loop after.
        self.assertEqual(frame_files("/elements/loop/"), [
            (1001, m + "/elements/loop/fx.0001.exr"), (1002, m + "/elements/loop/fx.0002.exr"),
            (1003, m + "/elements/loop/fx.0001.exr"), (1004, m + "/elements/loop/fx.0002.exr")])
        # frame*2-2000 over b 2..6, bounce after: 2 4 6 then 8 -> 4.
        self.assertEqual(frame_files("/elements/bounce/"), [
            (1001, m + "/elements/bounce/b.0002.exr"), (1002, m + "/elements/bounce/b.0004.exr"),
            (1003, m + "/elements/bounce/b.0006.exr"), (1004, m + "/elements/bounce/b.0004.exr")])
        # Exactly what the stub opened for those Reads, frame by frame.
        for prefix in ("/elements/bg/", "/elements/loop/", "/elements/bounce/"):
            got = sorted(set((ev["frame"], norm(ev["path"])) for ev in nuke.OPEN_EVENTS
                             if ev["ok"] and norm(ev["path"]).startswith(m + prefix)))
            self.assertEqual(got, frame_files(prefix))
        # Files that exist but no frame maps to are never asked for.
        self.assertFalse([p for _, _, _, p, _ in reqs if p.endswith(("bounce/b.0003.exr", "bounce/b.0005.exr"))])

    def test_job_scope_and_compact_sequences(self):
        self.assertEqual(self.render(), 0)
        m = self.mount
        job = self.daemon.bodies("/v1/prefetch")
        by_scope = {}
        for b in job:
            by_scope.setdefault(b["scope"], []).append(b)
            self.assertEqual(b["job"]["id"], "job-42")
            self.assertEqual(b["job"]["dcc"], "nuke")
            self.assertEqual(b["job"].get("task"), "7")
            self.assertEqual(b["schema"], testutil.SCHEMA)
        j = [it for b in by_scope["job"] for it in b["items"]]
        jpaths = set(it["path"] for it in j)
        for rel in ("scripts/comp.nk", "precomp/fx.nk", "ocio/config.ocio", "ocio/luts/film.spi1d",
                    "shared/luts/grade.cube", "luts/look.cube", "textures/wood.exr", "textures/missing.exr",
                    "geo/rock.abc"):
            self.assertIn(m + "/" + rel, jpaths)
        kinds = dict((it["path"], it.get("kind")) for it in j)
        self.assertEqual(kinds[m + "/ocio/config.ocio"], "ocio_config")
        self.assertEqual(kinds[m + "/ocio/luts/film.spi1d"], "lut")
        self.assertEqual(kinds[m + "/precomp/fx.nk"], "precomp_script")
        self.assertEqual(by_scope["job"][0]["job"]["scene"], m + "/scripts/comp.nk")
        self.assertEqual(by_scope["job"][0]["job"]["frame_range"], [1001, 1004])

        seq_items = [it for b in by_scope["job_seq"] for it in b["items"]]
        compact = dict((it["seq"]["pattern"], it["seq"]["frames"]) for it in seq_items if "seq" in it)
        # Identity mappings go as one pattern per view, with the task's frames.
        self.assertEqual(compact.get(m + "/plates/left/plate.%04d.exr"), "1001-1004")
        self.assertEqual(compact.get(m + "/plates/right/plate.%04d.exr"), "1001-1004")
        self.assertEqual(compact.get(m + "/elements/grain/grain.%04d.exr"), "1001-1004")
        self.assertEqual(compact.get(m + "/cache/pre.left.%04d.exr"), "1001-1004")
        # Mapped ones as the concrete files the task's frames open.
        concrete = sorted(set(it["path"] for it in seq_items if "path" in it and "/elements/bg/" in it["path"]))
        self.assertEqual(concrete, [m + "/elements/bg/bg.0002.exr", m + "/elements/bg/bg.0003.exr"])
        for b in by_scope["job"] + by_scope["job_seq"]:
            self.assertNotIn("frame", b)
            self.assertNotIn("wait_ms", b)

    def test_frame_requests_wait_and_lookahead_follows(self):
        self.assertEqual(self.render(), 0)
        bodies = self.daemon.bodies("/v1/prefetch")
        frames = [b for b in bodies if b["scope"] == "frame"]
        self.assertEqual(sorted(b["frame"] for b in frames), TASK_FRAMES)
        for b in frames:
            self.assertEqual(b["wait_ms"], 2000)
        ahead = dict((b["frame"], set(it["frame"] for it in b["items"])) for b in bodies if b["scope"] == "lookahead")
        self.assertEqual(ahead, {1001: {1002, 1003}, 1002: {1003, 1004}, 1003: {1004}})
        for b in bodies:
            if b["scope"] == "lookahead":
                self.assertNotIn("wait_ms", b)
        releases = self.daemon.bodies("/v1/release")
        self.assertEqual(sorted(r["frame"] for r in releases if r["scope"] == "frame"), TASK_FRAMES)
        self.assertEqual(len([r for r in releases if r["scope"] == "job"]), 1)
        self.assertEqual(releases[-1]["scope"], "job")

    def test_filter_reports_unpredicted_files_and_returns_the_name_unchanged(self):
        self.assertEqual(self.render(), 0)
        reqs = self.daemon.prefetches()
        misses = [(p, it) for _, s, _, p, it in reqs if s == "miss"]
        particles = self.show["particles"]
        self.assertIn(particles, [p for p, _ in misses])
        self.assertEqual([it["kind"] for p, it in misses if p == particles], ["filter_miss"])
        # The stub opened the name the filter chain returned: unchanged.
        self.assertIn(particles, [norm(p) for _, p in nuke.OPENED])
        # Predicted files are never misses; the script, the Precomp script and
        # the OCIO config are read before any callback can ask for them.
        self.assertEqual(sorted(p for p, _ in misses), sorted([
            particles, self.show["comp"], self.mount + "/precomp/fx.nk", self.mount + "/ocio/config.ocio"]))

        # Called directly, as scripts do: unchanged, and reported once.
        name = self.mount + "/elsewhere/unpredicted.exr"
        self.assertEqual(nuke.callbacks.filenameFilter(name), name)
        self.assertEqual(nuke.callbacks.filenameFilter(name), name)
        self.assertEqual(nuke.callbacks.filenameFilter("/usr/share/fonts/a.ttf"), "/usr/share/fonts/a.ttf")
        self.assertEqual(nuke.callbacks.filenameFilter(self.mount + "/p.%04d.exr"), self.mount + "/p.%04d.exr")
        jitfs_nuke.client().drain(5.0)
        again = [p for _, s, _, p, _ in self.daemon.prefetches() if s == "miss"]
        self.assertEqual(again.count(name), 1)
        self.assertNotIn("/usr/share/fonts/a.ttf", again)

    def test_filter_runs_last_after_other_filters(self):
        # A remap filter added after jitfs runs before it; jitfs sees the
        # remapped name and reports that one.
        def remap(name):
            return name.replace("/virtual/", self.mount + "/")

        self.assertEqual(self.render(), 0)
        nuke.addFilenameFilter(remap)
        self.addCleanup(nuke.removeFilenameFilter, remap)
        out = nuke.callbacks.filenameFilter("/virtual/caches/new.nkpc")
        self.assertEqual(out, self.mount + "/caches/new.nkpc")
        jitfs_nuke.client().drain(5.0)
        self.assertIn(self.mount + "/caches/new.nkpc",
                      [p for _, s, _, p, _ in self.daemon.prefetches() if s == "miss"])

    def test_predictions_go_through_other_filters(self):
        """A studio filter remaps a virtual prefix onto the mount. Its init.py
        runs after ours (NUKE_PATH=studio:nuke-callbacks, run in reverse), so
        its filter is newer and runs first, and the callbacks send the names
        Nuke opens: after the remap."""
        virtual = os.path.join(self.tmp, "virtual")
        studio = os.path.join(self.tmp, "studio")
        os.makedirs(studio)
        with open(os.path.join(studio, "init.py"), "w") as f:
            f.write("import nuke\n"
                    "def remap(name):\n"
                    "    if name.startswith(%r):\n"
                    "        return %r + name[len(%r):]\n"
                    "nuke.addFilenameFilter(remap)\n" % (virtual + "/", self.mount + "/", virtual + "/"))
        os.environ["NUKE_PATH"] = studio + os.pathsep + testutil.PLUGIN
        script = os.path.join(self.mount, "scripts", "remap.nk")
        with open(script, "w") as f:
            f.write("Root {\n inputs 0\n first_frame 1001\n last_frame 1004\n}\n"
                    "Read {\n inputs 0\n file %s/plates/left/plate.####.exr\n first 1001\n last 1010\n}\n"
                    "Read {\n inputs 0\n file %s/textures/wood.exr\n}\nMerge2 {\n inputs 2\n}\n"
                    "Write {\n file %s/remap.####.exr\n name Write1\n}\n" % (virtual, virtual, self.tmp))
        self.assertEqual(self.render(TASK + [script]), 0)
        opened = set(p for _, p in self.opened() if self.under_mount(p))
        self.assertIn(self.mount + "/plates/left/plate.1004.exr", opened)
        reqs = self.daemon.prefetches()
        frame = set(p for _, s, _, p, _ in reqs if s == "frame")
        self.assertEqual(opened - {script} - frame, set())
        self.assertIn(self.mount + "/textures/wood.exr", set(p for _, s, _, p, _ in reqs if s == "job"))
        seqs = [it["seq"]["pattern"] for b in self.daemon.bodies("/v1/prefetch") for it in b["items"] if "seq" in it]
        self.assertEqual(seqs, [self.mount + "/plates/left/plate.%04d.exr"])
        self.assertEqual([p for _, s, _, p, _ in reqs if s == "miss" and p != script], [])

    def test_hook_overhead_per_frame(self):
        """Measures the hook's own time per frame (reported, not asserted:
        the machine is shared)."""
        self.assertEqual(self.render(), 0)
        s = jitfs_nuke.stats()
        self.assertEqual(s["frames"], 4)
        self.assertEqual(s["errors"], 0)
        per_frame = (s["frame_seconds"] + s["filter_seconds"]) / s["frames"]
        waiting = s["blocked_seconds"] / s["frames"]
        sys.stderr.write("\nFIGURES nuke hook overhead: %.2f ms per frame in callbacks and filter "
                         "(%.2f ms of it waiting on the daemon's reply), %.2f ms at script load, "
                         "%d filter calls at %.1f us each\n" % (
                             per_frame * 1000, waiting * 1000,
                             (s["hook_seconds"] - s["frame_seconds"]) * 1000, s["filter_calls"],
                             s["filter_seconds"] / max(1, s["filter_calls"]) * 1e6))
        self.assertLess(s["filter_seconds"], s["hook_seconds"] + 1.0)


class TestNoSocketGiven(_Base):
    """Without JITFS_SOCKET, the client finds the mount's default socket
    from the script's path; none exists here, so nothing is sent."""
    extra_env = {"JITFS_SOCKET": ""}

    def test_render_completes(self):
        os.environ.pop("JITFS_SOCKET")
        self.assertEqual(self.render(), 0)
        self.assertEqual(self.daemon.requests, [])
        self.assertFalse(jitfs_nuke.client().enabled)


class TestFailOpen(_Base):
    """A render never fails or stalls because of prefetch."""

    # The client's bounds: health check, breaker after 3 failures, each
    # failure costing at most its transport timeout (plus the wait for a
    # frame request), the drain at the end of the render.
    WAIT = 0.3
    TIMEOUT = 0.2
    extra_env = {"JITFS_FRAME_WAIT_MS": "300", "JITFS_TIMEOUT_MS": "200"}
    SLACK = 5.0  # generous: a loaded 2-core machine

    def bound(self):
        c = jitfs_client.Client
        return (c.HEALTH_TIMEOUT + c.BREAKER_FAILURES * (self.TIMEOUT + self.WAIT) + 1.0 + self.SLACK)

    def baseline(self):
        """The same render with the hook disabled."""
        with mock.patch.dict(os.environ, {"JITFS_DISABLE": "1"}):
            nuke._reset()
            jitfs_nuke.unregister()
            self.assertEqual(self.render(), 0)
            t = self.elapsed
        nuke._reset()
        jitfs_nuke.unregister()
        return t

    def check_render(self):
        base = self.baseline()
        rc = self.render()
        self.assertEqual(rc, 0, "the render must complete")
        self.assertTrue(nuke.WRITTEN)
        self.assertEqual(len(nuke.WRITTEN), 8)  # 4 frames x 2 views
        added = self.elapsed - base
        self.assertLess(added, self.bound(), "the hook added %.2fs" % added)
        self.assertEqual(jitfs_nuke.stats()["errors"], 0)
        sys.stderr.write("\nFIGURES nuke fail-open %s: render %.3fs, %.3fs without the hook, %.3fs in callbacks "
                         "(bound %.1fs)\n" % (self.id().rsplit(".", 1)[-1], self.elapsed, base,
                                               jitfs_nuke.stats()["hook_seconds"], self.bound()))
        return added

    def test_no_daemon(self):
        self.daemon.close()
        self.check_render()
        self.assertFalse(jitfs_nuke.client().enabled)

    def test_hung_daemon(self):
        self.daemon.close()
        hung = testutil.Hung(self.sock)
        self.addCleanup(hung.close)
        self.check_render()
        self.assertFalse(jitfs_nuke.client().enabled)
        self.assertTrue(hung.conns, "the client never connected")

    def test_daemon_hangs_after_health(self):
        self.daemon.close()
        self.daemon = testutil.Recorder(self.sock, self.mount, "hang_after_health")
        self.addCleanup(self.daemon.close)
        self.check_render()
        st = jitfs_nuke.client().stats
        self.assertGreaterEqual(st["breaker_trips"], 1)
        self.assertGreater(st["skipped_breaker"], 0)

    def test_daemon_answers_500(self):
        self.daemon.close()
        self.daemon = testutil.Recorder(self.sock, self.mount, "error500_after_health")
        self.addCleanup(self.daemon.close)
        self.check_render()
        st = jitfs_nuke.client().stats
        self.assertGreaterEqual(st["breaker_trips"], 1)
        self.assertGreater(st["skipped_breaker"], 0)
        # After the breaker opened, nothing more reached the daemon. Two
        # threads call it (Nuke's and the client's queue), so one request
        # may already be under way when the third failure opens it.
        self.assertLessEqual(len([r for r in self.daemon.requests if r["path"] != "/v1/health"]),
                             jitfs_client.Client.BREAKER_FAILURES + 1)

    def test_disabled_sends_nothing(self):
        with mock.patch.dict(os.environ, {"JITFS_DISABLE": "1"}):
            self.assertEqual(self.render(), 0)
        self.assertEqual(self.daemon.requests, [])
        self.assertIsNone(jitfs_nuke.client())
        for reg in (nuke.callbacks.filenameFilters, nuke.callbacks.beforeFrameRenders,
                    nuke.callbacks.onScriptLoads):
            self.assertEqual(sum(len(v) for v in reg.values()), 0)

    def test_internal_errors_never_reach_nuke(self):
        def boom(*a, **k):
            raise RuntimeError("injected")

        with mock.patch.object(jitfs_nuke, "_upstream", boom), mock.patch.object(jitfs_nuke, "_job_items", boom), \
                mock.patch.object(jitfs_nuke, "_color_items", boom):
            rc = nuke_cli.main(TASK + [self.show["comp"]])
            self.assertEqual(rc, 0)
            self.assertEqual(len(nuke.WRITTEN), 8)
            self.assertGreater(jitfs_nuke.stats()["errors"], 0)
        # The filter too: a client that raises inside managed().
        c = jitfs_nuke.client()
        with mock.patch.object(c, "managed", boom):
            name = self.mount + "/x/y.exr"
            self.assertEqual(nuke.callbacks.filenameFilter(name), name)

    def test_no_callback_exception_even_for_a_broken_graph(self):
        # A node whose file knob cannot be evaluated (an unknown Tcl command).
        self.assertEqual(self.render(["-F", "1001-1002", "-X", "Write1", "-x", self.broken_script()]), 0)
        self.assertEqual(len(nuke.WRITTEN), 2)

    def broken_script(self):
        path = os.path.join(self.mount, "scripts", "broken.nk")
        with open(path, "w") as f:
            f.write('Root {\n inputs 0\n first_frame 1001\n last_frame 1002\n}\n'
                    'Read {\n inputs 0\n file {[nosuchcommand]/x.####.exr}\n on_error black\n name Bad\n}\n'
                    'Read {\n inputs 0\n file %s/plates/left/plate.####.exr\n first 1001\n last 1010\n'
                    ' name Good\n}\nMerge2 {\n inputs 2\n}\n'
                    'Write {\n file %s/renders/broken.####.exr\n create_directories true\n name Write1\n}\n'
                    % (self.mount, self.mount))
        return path


class TestPython37(unittest.TestCase):
    """Nuke 13 ships Python 3.7: the plug-in's files must parse as 3.7."""

    def test_plugin_files_parse_as_python_3_7(self):
        import ast
        names = [n for n in os.listdir(testutil.PLUGIN) if n.endswith(".py")]
        self.assertIn("jitfs_nuke.py", names)
        for n in names:
            with open(os.path.join(testutil.PLUGIN, n)) as f:
                ast.parse(f.read(), n, feature_version=(3, 7))


# Every variable identity() reads, so a test's environment names only its own farm.
_IDENTITY_VARS = ("JITFS_JOB_ID", "JITFS_TASK_ID", "JITFS_SHOT", "DEADLINE_JOB_ID", "DEADLINE_TASK_ID",
                  "TR_ENV_JID", "TR_ENV_TID", "CUE_JOB", "CUE_FRAME", "CUE_IFRAME", "CUE_SHOT")


class TestIdentity(unittest.TestCase):
    """The job a request names: JITFS_* first, then Deadline's, Tractor's or
    OpenCue's own variables, job and task from the same farm."""

    def test_precedence(self):
        cases = [
            ("jitfs wins over every farm",
             {"JITFS_JOB_ID": "j", "JITFS_TASK_ID": "t", "JITFS_SHOT": "s", "DEADLINE_JOB_ID": "d",
              "DEADLINE_TASK_ID": "dt", "TR_ENV_JID": "41", "TR_ENV_TID": "3", "CUE_JOB": "c", "CUE_FRAME": "cf",
              "CUE_SHOT": "cs"},
             {"id": "j", "task": "t", "shot": "s"}),
            ("deadline cloud", {"DEADLINE_JOB_ID": "job-0123abcd", "DEADLINE_TASK_ID": "task-0123abcd-5"},
             {"id": "job-0123abcd", "task": "task-0123abcd-5"}),
            ("tractor", {"TR_ENV_JID": "4242", "TR_ENV_TID": "17"}, {"id": "4242", "task": "17"}),
            ("opencue", {"CUE_JOB": "show-sh010-comp", "CUE_FRAME": "0101-comp", "CUE_IFRAME": "101",
                         "CUE_SHOT": "sh010"},
             {"id": "show-sh010-comp", "task": "0101-comp", "shot": "sh010"}),
            ("opencue frame number when the frame name is absent", {"CUE_JOB": "c", "CUE_IFRAME": "101"},
             {"id": "c", "task": "101"}),
            ("deadline before tractor before opencue",
             {"DEADLINE_JOB_ID": "d", "DEADLINE_TASK_ID": "dt", "TR_ENV_JID": "41", "TR_ENV_TID": "3",
              "CUE_JOB": "c", "CUE_FRAME": "cf"},
             {"id": "d", "task": "dt"}),
            ("job and task from one farm: a stray task of another is ignored",
             {"TR_ENV_JID": "41", "DEADLINE_TASK_ID": "dt", "CUE_FRAME": "cf"}, {"id": "41"}),
            ("a JITFS_* variable overrides only its own field",
             {"JITFS_JOB_ID": "j", "TR_ENV_JID": "41", "TR_ENV_TID": "3"}, {"id": "j", "task": "3"}),
            ("no farm", {}, {"id": "nuke-%d" % os.getpid()}),
        ]
        for name, env, want in cases:
            with self.subTest(name):
                got = jitfs_client.identity(env, "nuke")
                self.assertEqual(dict((k, got.get(k)) for k in ("id", "task", "shot") if k in got), want)
                self.assertEqual((got["dcc"], got["pid"]), ("nuke", os.getpid()))


class TestPluginLayout(unittest.TestCase):
    """What a studio puts on NUKE_PATH holds the plug-in and nothing that
    could stand in for Nuke's own modules."""

    def test_plugin_directory_holds_only_the_plugin(self):
        top = sorted(n for n in os.listdir(testutil.PLUGIN) if not n.startswith(".") and n != "__pycache__")
        self.assertEqual(top, ["init.py", "jitfs_client.py", "jitfs_nuke.py"])
        # The stub and the tests live beside the plug-in, never in it.
        self.assertTrue(os.path.relpath(testutil.STUB, testutil.PLUGIN).startswith(".."))
        # Nuke puts each NUKE_PATH entry itself on sys.path, not its
        # subdirectories: from the plug-in directory alone, no `nuke` is found.
        import subprocess
        p = subprocess.run([sys.executable, "-S", "-c", "import sys; sys.path[:] = [sys.argv[1]] + "
                            "[q for q in sys.path if q.startswith(sys.base_prefix)]\n"
                            "import importlib.util as u; print(u.find_spec('nuke') is None)", testutil.PLUGIN],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "True", "a `nuke` module is importable from the plug-in directory")


class TestSubprocess(unittest.TestCase):
    """The same start-up as a farm: a separate process running nuke_cli.py
    with NUKE_PATH, talking to the recording daemon."""

    def test_cli_render_in_a_process(self):
        import subprocess
        tmp = tempfile.mkdtemp(prefix="jitfs-nuke-")
        self.addCleanup(shutil.rmtree, tmp, True)
        show = testutil.make_show(tmp)
        sock = os.path.join(tmp, "j.sock")
        d = testutil.Recorder(sock, show["mount"])
        self.addCleanup(d.close)
        env = dict(os.environ, JITFS_SOCKET=sock, JITFS_JOB_ID="job-sub", NUKE_PATH=testutil.PLUGIN,
                   HOME=os.path.join(tmp, "home"), JITFS_TEST_TEXROOT=os.path.join(show["mount"], "textures"))
        env.pop("JITFS_DISABLE", None)
        p = subprocess.run([sys.executable, os.path.join(testutil.STUB, "nuke_cli.py"), "-F", "1001-1002",
                            "-X", "Write1", show["comp"]], env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("jitfs: nuke: 2 frame(s)", p.stderr)
        scopes = [b["scope"] for b in d.bodies("/v1/prefetch")]
        for s in ("job", "job_seq", "frame", "lookahead", "miss"):
            self.assertIn(s, scopes)
        self.assertEqual([b["job"]["id"] for b in d.bodies("/v1/prefetch")],
                         ["job-sub"] * len(scopes))

    def test_farm_identity_in_a_process(self):
        """Deadline's and Tractor's variables name the job with no JITFS_JOB_ID."""
        import subprocess
        tmp = tempfile.mkdtemp(prefix="jitfs-nuke-")
        self.addCleanup(shutil.rmtree, tmp, True)
        show = testutil.make_show(tmp)
        farms = [("deadline", {"DEADLINE_JOB_ID": "job-0123abcd", "DEADLINE_TASK_ID": "task-0123abcd-2"},
                  ("job-0123abcd", "task-0123abcd-2")),
                 ("tractor", {"TR_ENV_JID": "4242", "TR_ENV_TID": "17"}, ("4242", "17"))]
        for name, farm_env, (job, task) in farms:
            with self.subTest(name):
                sock = os.path.join(tmp, name + ".sock")
                d = testutil.Recorder(sock, show["mount"])
                self.addCleanup(d.close)
                env = dict(os.environ, JITFS_SOCKET=sock, NUKE_PATH=testutil.PLUGIN, HOME=os.path.join(tmp, "home"),
                           JITFS_TEST_TEXROOT=os.path.join(show["mount"], "textures"))
                for k in _IDENTITY_VARS + ("JITFS_DISABLE",):
                    env.pop(k, None)
                env.update(farm_env)
                p = subprocess.run([sys.executable, os.path.join(testutil.STUB, "nuke_cli.py"), "-F", "1001",
                                    "-X", "Write1", show["comp"]], env=env, capture_output=True, text=True,
                                   timeout=120)
                self.assertEqual(p.returncode, 0, p.stderr)
                bodies = d.bodies("/v1/prefetch")
                self.assertTrue(bodies, p.stderr)
                self.assertEqual(set((b["job"]["id"], b["job"].get("task")) for b in bodies), {(job, task)})
                self.assertEqual(set(b["job"]["id"] for b in d.bodies("/v1/release")), {job})


if __name__ == "__main__":
    unittest.main()
