"""Contract tests of the nuke stub: the documented Nuke semantics it models.

The jitfs callbacks are tested against the stub, so the stub must behave as
Nuke is documented to, not as the callbacks happen to need. Each test pins
one documented rule; the docstrings quote Foundry's documentation (Nuke
Python Developer's Guide: "Callbacks", "Start-up Scripts", "Using the
Command-line"; the nuke module reference for File_Knob, OutputContext,
nuke.filename, allNodes; the Read node reference for its time controls),
as collected in the research notes, dcc-apis.md sections 1 and 4.7. Where
the documentation is silent the stub's choice is tested too and marked
"stub choice", so that changing it is deliberate.
"""

import os
import shutil
import sys
import tempfile
import textwrap
import unittest
from unittest import mock

import testutil  # noqa: F401  (puts the stub on sys.path)

import nuke  # noqa: E402
import nuke_cli  # noqa: E402


class _Base(unittest.TestCase):
    def setUp(self):
        nuke._reset()
        self.addCleanup(nuke._reset)
        self.tmp = tempfile.mkdtemp(prefix="nuke-stub-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.log = []

    def write(self, rel, text):
        p = os.path.join(self.tmp, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(textwrap.dedent(text))
        return p

    def rec(self, tag):
        def f(*args, **kwargs):
            self.log.append((tag, nuke.thisNode().name(), args, kwargs))
        return f


class TestRegistries(_Base):
    def test_default_node_classes(self):
        """addOnScriptLoad, addOnScriptClose: Root; addBeforeRender,
        addBeforeFrameRender, addAfterFrameRender, addAfterRender: Write;
        addOnCreate, addFilenameFilter: '*' (the documented defaults)."""
        cb = nuke.callbacks
        cases = [(nuke.addOnScriptLoad, cb.onScriptLoads, "Root"),
                 (nuke.addOnScriptClose, cb.onScriptCloses, "Root"),
                 (nuke.addOnCreate, cb.onCreates, "*"),
                 (nuke.addBeforeRender, cb.beforeRenders, "Write"),
                 (nuke.addBeforeFrameRender, cb.beforeFrameRenders, "Write"),
                 (nuke.addAfterFrameRender, cb.afterFrameRenders, "Write"),
                 (nuke.addAfterRender, cb.afterRenders, "Write"),
                 (nuke.addFilenameFilter, cb.filenameFilters, "*")]
        for add, registry, default in cases:
            f = self.rec(add.__name__)
            add(f)
            self.assertEqual(registry[default], [(f, (), {})], add.__name__)

    def test_non_callable_raises_value_error(self):
        """"A non-callable raises ValueError"; kwargs that is not a dict too."""
        with self.assertRaises(ValueError):
            nuke.addBeforeFrameRender("not callable")
        with self.assertRaises(ValueError):
            nuke.addOnCreate(self.rec("x"), kwargs=[1])

    def test_args_are_wrapped_into_a_tuple(self):
        f = self.rec("x")
        nuke.addOnCreate(f, args=5)
        self.assertEqual(nuke.callbacks.onCreates["*"], [(f, (5,), {})])

    def test_dedupe_moves_to_the_end(self):
        """The same (call, args, kwargs) is stored at most once per nodeClass;
        adding it again moves it to the end."""
        a, b = self.rec("a"), self.rec("b")
        nuke.addOnCreate(a)
        nuke.addOnCreate(b)
        nuke.addOnCreate(a)
        self.assertEqual([e[0] for e in nuke.callbacks.onCreates["*"]], [b, a])
        nuke.addOnCreate(a, nodeClass="Read")
        self.assertEqual([e[0] for e in nuke.callbacks.onCreates["Read"]], [a])
        nuke.removeOnCreate(a)
        self.assertEqual([e[0] for e in nuke.callbacks.onCreates["*"]], [b])
        nuke.removeOnCreate(a)  # not there: no error

    def test_knob_code_then_class_then_star(self):
        """"Code in the knob of the same name runs first. Then the add...()
        functions registered for the matching nodeClass, in order of addition.
        Then the '*' ones, in order of addition.\""""
        order = []
        nuke._contract_order = order
        self.addCleanup(delattr, nuke, "_contract_order")
        nuke.addBeforeRender(lambda: order.append("star1"), nodeClass="*")
        nuke.addBeforeRender(lambda: order.append("write1"))
        nuke.addBeforeRender(lambda: order.append("star2"), nodeClass="*")
        nuke.addBeforeRender(lambda: order.append("write2"))
        nuke.addBeforeRender(lambda: order.append("read"), nodeClass="Read")
        w = nuke.nodes.Write(file=os.path.join(self.tmp, "o.####.exr"))
        w["beforeRender"].setValue("nuke._contract_order.append('knob:' + nuke.thisNode().name())")
        nuke.execute(w, 1, 1)
        self.assertEqual(order, ["knob:Write1", "write1", "write2", "star1", "star2"])

    def test_filename_filters_run_newest_first_class_specific_first(self):
        """"All added functions are called in backwards order"; class-specific
        filters run before '*' filters; each non-None result is what the next
        filter receives; "None is the same as returning the string
        unchanged"."""
        calls = []

        def f(tag, result):
            def filt(name):
                calls.append((tag, name, nuke.thisClass()))
                return result(name)
            return filt

        nuke.addFilenameFilter(f("star_old", lambda n: n + ".a"))
        nuke.addFilenameFilter(f("star_new", lambda n: None))
        nuke.addFilenameFilter(f("read_old", lambda n: n.replace("/virtual", self.tmp)), nodeClass="Read")
        nuke.addFilenameFilter(f("read_new", lambda n: n + ""), nodeClass="Read")
        with open(os.path.join(self.tmp, "plate.0001.exr.a"), "w") as fh:
            fh.write("x")
        r = nuke.nodes.Read(file="/virtual/plate.####.exr", first=1, last=1)
        w = nuke.nodes.Write(file=os.path.join(self.tmp, "o.####.exr"), inputs=[r])
        nuke.execute(w, 1, 1)
        reads = [c for c in calls if c[2] == "Read"]
        self.assertEqual([c[0] for c in reads], ["read_new", "read_old", "star_new", "star_old"])
        self.assertEqual(reads[1][1], "/virtual/plate.0001.exr")
        self.assertEqual(reads[2][1], os.path.join(self.tmp, "plate.0001.exr"))
        self.assertEqual(nuke.OPENED[-1][1], os.path.join(self.tmp, "plate.0001.exr.a"))
        # The Write's output goes through the '*' filters with the Write as
        # thisNode.
        self.assertIn(("star_new", os.path.join(self.tmp, "o.0001.exr"), "Write"), calls)

    def test_no_filter_falls_back_to_main_filename_fix(self):
        """"If no filters are registered, Nuke falls back to
        __main__.filenameFix(s)"."""
        import __main__
        self.assertEqual(nuke.callbacks.filenameFilter("/a"), "/a")
        with mock.patch.object(__main__, "filenameFix", lambda s: s + ".fixed", create=True):
            self.assertEqual(nuke.callbacks.filenameFilter("/a"), "/a.fixed")
            nuke.addFilenameFilter(lambda s: None)
            self.assertEqual(nuke.callbacks.filenameFilter("/a"), "/a")

    def test_root_is_this_node_for_names_of_no_node(self):
        """"For filenames that do not belong to a node ... thisNode() is the
        root"; scriptOpen's own file is one."""
        seen = []
        nuke.addFilenameFilter(lambda n: seen.append((n, nuke.thisNode().Class(), nuke.thisNode().name())))
        p = self.write("s.nk", "Root {\n inputs 0\n}\n")
        nuke.scriptOpen(p)
        self.assertEqual(seen[0], (p, "Root", "root"))
        self.assertIs(nuke.thisNode(), nuke.root())

    def test_background_render_callbacks_take_a_context(self):
        """addBeforeBackgroundRender and friends take no nodeClass and are
        called as call(context) with a dict."""
        got = []
        nuke.addBeforeBackgroundRender(lambda ctx, extra: got.append((ctx, extra)), args=("x",))
        nuke.callbacks.beforeBackgroundRender({"id": 3})
        self.assertEqual(got, [({"id": 3}, "x")])


class TestScriptLoad(_Base):
    SCRIPT = r'''
    #! /usr/local/Nuke15.1v1/nuke -nx
    version 15.1 v1
    define_window_layout_xml {<?xml version="1.0"?>
    <layout/>
    }
    Root {
     inputs 0
     name /somewhere/else.nk
     first_frame 11
     last_frame 20
     views "left #ff0000
    right #00ff00"
     project_directory "\[python \{nuke.script_directory()\}]"
     custom_thing "kept as text"
    }
    Read {
     inputs 0
     file {plates/with space/p.####.exr}
     first 11
     last 20
     name A
    }
    set N1 [stack 0]
    Read {
     inputs 0
     file "b/\[value root.first_frame]/b.%04d.exr"
     name B
    }
    Merge2 {
     inputs 2
     name M
    }
    push $N1
    Group {
     name G
     addUserKnob {2 extra l "Extra file"}
     extra g.exr
    }
     Input {
      inputs 0
      name Input1
     }
     Group {
      inputs 0
      name Inner
     }
      Read {
       inputs 0
       file deep.exr
       name DeepInner
      }
     end_group
     Output {
      name Output1
     }
    end_group
    Write {
     file out.####.exr
     name W
    }
    '''

    def test_order_of_on_create_and_on_script_load(self):
        """onCreate fires "for every node created"; "inner nodes fire before
        their group"; onScriptLoad runs "right after onCreate for the root ...
        By then every node has been created"."""
        nuke.addOnCreate(self.rec("create"))
        nuke.addOnScriptLoad(lambda: self.log.append(("load", nuke.thisNode().name(), len(
            nuke.allNodes(recurseGroups=True)))))
        nuke.scriptOpen(self.write("s.nk", self.SCRIPT))
        names = [(t, n) for t, n, *_ in self.log]
        self.assertEqual(names, [("create", "A"), ("create", "B"), ("create", "M"), ("create", "Input1"),
                                 ("create", "DeepInner"), ("create", "Inner"), ("create", "Output1"),
                                 ("create", "G"), ("create", "W"), ("create", "root"), ("load", "root")])
        self.assertEqual(self.log[-1][2], 9)

    def test_values_stack_and_groups(self):
        p = self.write("s.nk", self.SCRIPT)
        nuke.scriptOpen(p)
        r = nuke.root()
        self.assertEqual(r["name"].value(), p)  # the file opened, not what the script says
        self.assertEqual(nuke.script_directory(), self.tmp)
        self.assertEqual((r.firstFrame(), r.lastFrame()), (11, 20))
        self.assertEqual(nuke.views(), ["left", "right"])
        # A braced value is literal; an escaped bracket stays an expression.
        self.assertEqual(nuke.toNode("A")["file"].getText(), "plates/with space/p.####.exr")
        self.assertEqual(r["project_directory"].value(), "[python {nuke.script_directory()}]")
        self.assertEqual(nuke.toNode("B")["file"].getText(), "b/[value root.first_frame]/b.%04d.exr")
        self.assertEqual(r["custom_thing"].value(), "kept as text")
        # inputs N pops N nodes; stub choice: the top of the stack is input 0.
        m = nuke.toNode("M")
        self.assertEqual([m.input(0).name(), m.input(1).name()], ["B", "A"])
        # set/push; a Group's inner nodes; end_group.
        g = nuke.toNode("G")
        self.assertEqual(g.input(0).name(), "A")
        self.assertEqual([n.name() for n in g.nodes()], ["Input1", "Inner", "Output1"])
        self.assertEqual(nuke.toNode("G.Inner.DeepInner").Class(), "Read")
        self.assertEqual(g["extra"].Class(), "File_Knob")
        self.assertEqual(nuke.toNode("W").input(0).name(), "G")
        nuke.scriptClear()
        self.assertEqual(nuke.allNodes(), [])
        self.assertEqual(nuke.root()["name"].value(), "")


class TestGraph(_Base):
    def setUp(self):
        _Base.setUp(self)
        nuke.scriptOpen(self.write("s.nk", TestScriptLoad.SCRIPT))

    def test_all_nodes(self):
        """nuke.allNodes(filter=None, group=None, recurseGroups=False)."""
        top = [n.name() for n in nuke.allNodes()]
        self.assertEqual(top, ["A", "B", "M", "G", "W"])
        self.assertEqual([n.name() for n in nuke.allNodes("Read")], ["A", "B"])
        self.assertEqual([n.name() for n in nuke.allNodes("Read", recurseGroups=True)], ["A", "B", "DeepInner"])
        self.assertEqual([n.name() for n in nuke.allNodes(group=nuke.toNode("G"))], ["Input1", "Inner", "Output1"])
        with nuke.toNode("G"):
            self.assertIs(nuke.thisGroup(), nuke.toNode("G"))
            self.assertEqual([n.name() for n in nuke.allNodes()], ["Input1", "Inner", "Output1"])
            made = nuke.nodes.Read(file="x.exr")
        self.assertIs(nuke.thisGroup(), nuke.root())
        self.assertEqual(made.fullName(), "G.Read1")

    def test_to_node_and_full_name(self):
        n = nuke.toNode("G.Inner.DeepInner")
        self.assertEqual(n.fullName(), "G.Inner.DeepInner")
        self.assertIsNone(nuke.toNode("G.Nope"))
        self.assertIs(nuke.toNode("root"), nuke.root())
        self.assertEqual(nuke.root().name(), "root")

    def test_dependencies(self):
        """dependencies(what) lists the nodes this node refers to, one level
        up: inputs (INPUTS, HIDDEN_INPUTS) and expression links
        (EXPRESSIONS)."""
        m = nuke.toNode("M")
        self.assertEqual([n.name() for n in m.dependencies(nuke.INPUTS)], ["B", "A"])
        w = nuke.toNode("W")
        self.assertEqual([n.name() for n in w.dependencies(nuke.INPUTS | nuke.HIDDEN_INPUTS)], ["G"])
        e = nuke.nodes.Read(file="[value A.file]")
        self.assertEqual([n.name() for n in e.dependencies(nuke.EXPRESSIONS)], ["A"])
        self.assertEqual(e.dependencies(nuke.INPUTS), [])

    def test_knob_access(self):
        a = nuke.toNode("A")
        self.assertIs(a["file"], a.knob("file"))
        self.assertIsNone(a.knob("nope"))
        with self.assertRaises(NameError):
            a["nope"]
        self.assertIn("file", a.knobs())
        self.assertEqual(a["file"].node(), a)
        self.assertEqual(str(a.frameRange()), "11-20")
        self.assertEqual(str(nuke.toNode("M").frameRange()), "11-20")


class TestKnobs(_Base):
    def test_file_knob_value_is_normalised(self):
        """File_Knob.value(): "will be normalized to technical notation if
        sequence" (#### reads back as %04d); getText() is what was set."""
        r = nuke.nodes.Read(file="/p/plate.####.exr")
        self.assertEqual(r["file"].value(), "/p/plate.%04d.exr")
        self.assertEqual(r["file"].getText(), "/p/plate.####.exr")
        self.assertEqual(r["file"].Class(), "File_Knob")

    def test_get_evaluated_value_tokens(self):
        nuke.root()["views"].setValue("left\nright")
        r = nuke.nodes.Read(file="/p/%V/%v_plate.####.%04d.%d.exr")
        oc = nuke.OutputContext()
        oc.setFrame(7)
        oc.setView(2)
        self.assertEqual(r["file"].getEvaluatedValue(oc), "/p/right/r_plate.0007.0007.7.exr")
        oc.setView(1)
        self.assertEqual(r["file"].getEvaluatedValue(oc), "/p/left/l_plate.0007.0007.7.exr")
        oc.setFrame(-1)
        self.assertEqual(r["file"].getEvaluatedValue(oc), "/p/left/l_plate.-001.-001.-1.exr")

    def test_get_evaluated_value_expressions_and_env(self):
        """getEvaluatedValue evaluates Tcl ([value root.name], [file dirname
        ...], [python ...]) and environment variables."""
        nuke.root()["name"].setValue("/show/sh010/comp/sh010.nk")
        with mock.patch.dict(os.environ, {"SHOT": "sh010"}):
            r = nuke.nodes.Read(file="[file dirname [value root.name]]/$SHOT/${SHOT}_[python {1+1}].exr")
            self.assertEqual(r["file"].getEvaluatedValue(), "/show/sh010/comp/sh010/sh010_2.exr")
            r2 = nuke.nodes.Read(file="[python {nuke.script_directory()}]/x.exr")
            self.assertEqual(r2["file"].getEvaluatedValue(), "/show/sh010/comp/x.exr")

    def test_relative_names(self):
        """A relative name is resolved against the evaluated
        project_directory, else the working directory."""
        r = nuke.nodes.Read(file="plates/p.####.exr")
        oc = nuke.OutputContext(3)
        self.assertEqual(r["file"].getEvaluatedValue(oc), os.path.join(os.getcwd(), "plates/p.0003.exr"))
        nuke.root()["name"].setValue("/show/comp/a.nk")
        nuke.root()["project_directory"].setValue("[python {nuke.script_directory()}]/..")
        self.assertEqual(r["file"].getEvaluatedValue(oc), "/show/comp/../plates/p.0003.exr")

    def test_output_context(self):
        """setView(n): "an integer in the range of 0 to number of views";
        views are numbered from 1."""
        nuke.root()["views"].setValue("left #ff0000\nright #00ff00")
        oc = nuke.OutputContext()
        self.assertEqual(oc.viewcount(), 2)
        self.assertEqual([oc.viewname(i) for i in (1, 2)], ["left", "right"])
        self.assertEqual(oc.viewFromName("right"), 2)
        self.assertEqual(oc.viewFromName("centre"), -1)
        self.assertTrue(oc.setView(2))
        with self.assertRaises(ValueError):
            oc.setView(3)
        self.assertEqual(oc.viewname(0), "left")  # stub choice: the default view is the first

    def test_filename(self):
        """nuke.filename(node): "by default it will still have %%04d
        sequences in it, use REPLACE to get the actual filename with the
        current frame number"; it honours root.proxy."""
        r = nuke.nodes.Read(file="/p/p.####.exr", proxy="/p/half/p.####.exr")
        nuke.frame(12)
        self.assertEqual(nuke.filename(r), "/p/p.%04d.exr")
        self.assertEqual(nuke.filename(r, nuke.REPLACE), "/p/p.0012.exr")
        nuke.root()["proxy"].setValue(True)
        self.assertEqual(nuke.filename(r, nuke.REPLACE), "/p/half/p.0012.exr")
        g = nuke.nodes.Group()
        with g:
            nuke.nodes.Write(file="/o/w.####.exr")
        self.assertEqual(nuke.filename(g), "/o/w.%04d.exr")

    def test_frame_ranges(self):
        """Frame ranges: "3", "1-10", "1-10x2", "-8--5"; lists of them."""
        self.assertEqual(list(nuke.FrameRange("1-10x2")), [1, 3, 5, 7, 9])
        self.assertEqual(list(nuke.FrameRange("-8--5")), [-8, -7, -6, -5])
        self.assertEqual(list(nuke.FrameRange("3")), [3])
        fr = nuke.FrameRange(1, 5, 2)
        self.assertEqual((fr.first(), fr.last(), fr.increment(), fr.frames()), (1, 5, 2, 3))
        self.assertEqual(nuke.FrameRanges("1-3 10-12x2,20").toFrameList(), [1, 2, 3, 10, 12, 20])
        with self.assertRaises(ValueError):
            nuke.FrameRange("1-")

    def test_views(self):
        self.assertEqual(nuke.views(), ["main"])
        nuke.root()["views"].setValue("{{left \"\"} {right \"\"}}")
        self.assertEqual(nuke.views(), ["left", "right"])


class TestExecute(_Base):
    def frames(self, first, last, **read):
        d = os.path.join(self.tmp, "seq")
        os.makedirs(d, exist_ok=True)
        for f in range(first, last + 1):
            with open(os.path.join(d, "s.%04d.exr" % f), "w") as fh:
                fh.write(str(f))
        r = nuke.nodes.Read(file=os.path.join(d, "s.####.exr"), first=first, last=last, **read)
        w = nuke.nodes.Write(file=os.path.join(self.tmp, "out", "o.####.exr"), create_directories=True, inputs=[r])
        return r, w

    def opened_frames(self):
        return [int(os.path.basename(p).split(".")[1]) for _, p in nuke.OPENED]

    def test_callback_order(self):
        """beforeRender once per Write, then per frame and per Write
        beforeFrameRender ... afterFrameRender, then afterRender; thisNode()
        is the Write (stub choice: frames outer, Writes inner)."""
        _, w1 = self.frames(1, 2)
        w2 = nuke.nodes.Write(file=os.path.join(self.tmp, "o2.####.exr"), inputs=[w1.input(0)])
        for name, add in (("bR", nuke.addBeforeRender), ("bF", nuke.addBeforeFrameRender),
                          ("aF", nuke.addAfterFrameRender), ("aR", nuke.addAfterRender)):
            add(lambda name=name: self.log.append((name, nuke.thisNode().name(), nuke.frame())))
        nuke.executeMultiple([w1, w2], [(1, 2, 1)])
        self.assertEqual([(a, b) for a, b, _ in self.log], [
            ("bR", "Write1"), ("bR", "Write2"),
            ("bF", "Write1"), ("aF", "Write1"), ("bF", "Write2"), ("aF", "Write2"),
            ("bF", "Write1"), ("aF", "Write1"), ("bF", "Write2"), ("aF", "Write2"),
            ("aR", "Write1"), ("aR", "Write2")])
        self.assertEqual([f for t, _, f in self.log if t == "bF"], [1, 1, 2, 2])

    def test_render_opens_the_read_files_and_writes_the_output(self):
        _, w = self.frames(1, 3)
        nuke.execute(w, 1, 3)
        self.assertEqual(self.opened_frames(), [1, 2, 3])
        self.assertEqual(len(nuke.WRITTEN), 3)
        self.assertTrue(os.path.isfile(os.path.join(self.tmp, "out", "o.0003.exr")))

    def test_disabled_read_is_not_opened(self):
        _, w = self.frames(1, 2, disable=True)
        nuke.execute(w, 1, 2)
        self.assertEqual(nuke.OPENED, [])

    def test_read_time_controls(self):
        """"frame_mode (expression | start at | offset) with frame (the
        value); before/after (hold | loop | bounce | black)": the file a Read
        opens at output frame f is not simply f."""
        cases = [
            ({}, [1, 2, 3, 4, 5], [2, 2, 3, 4, 4]),                                   # hold both ends
            ({"frame_mode": "offset", "frame": "10"}, [12, 13, 20], [2, 3, 4]),
            ({"frame_mode": "start at", "frame": "101"}, [100, 101, 103, 104], [2, 2, 4, 4]),
            ({"frame_mode": "expression", "frame": "frame*2"}, [1, 2], [2, 4]),
            ({"after": "loop"}, [5, 6, 7], [2, 3, 4]),
            ({"before": "loop"}, [1, 0], [4, 3]),
            ({"after": "bounce"}, [5, 6, 7, 8], [3, 2, 3, 4]),
            ({"before": "black", "after": "black"}, [1, 2, 5], [2]),
        ]
        for knobs, frames, want in cases:
            nuke._reset()
            _, w = self.frames(2, 4, **knobs)
            nuke.executeMultiple([w], [nuke.FrameRanges([nuke.FrameRange(f, f, 1) for f in frames])])
            self.assertEqual(self.opened_frames(), want, knobs)

    def test_exception_in_a_render_callback_aborts(self):
        """"An exception [in beforeFrameRender] aborts" the render;
        afterFrameRender is "not called if the render aborts"."""
        _, w = self.frames(1, 3)

        def boom():
            if nuke.frame() == 2:
                raise ValueError("no")

        nuke.addBeforeFrameRender(boom)
        nuke.addAfterFrameRender(lambda: self.log.append(("aF", nuke.frame())))
        nuke.addAfterRender(lambda: self.log.append(("aR", None)))
        with self.assertRaises(RuntimeError):
            nuke.execute(w, 1, 3)
        self.assertEqual(self.log, [("aF", 1)])
        self.assertEqual(self.opened_frames(), [1])

    def test_exception_in_before_render_aborts_before_any_frame(self):
        _, w = self.frames(1, 2)
        nuke.addBeforeRender(lambda: 1 / 0)
        with self.assertRaises(RuntimeError):
            nuke.execute(w, 1, 2)
        self.assertEqual(nuke.OPENED, [])

    def test_exception_in_a_filename_filter_aborts(self):
        _, w = self.frames(1, 2)
        nuke.addFilenameFilter(lambda n: 1 / 0)
        with self.assertRaises(RuntimeError):
            nuke.execute(w, 1, 2)

    def test_missing_file(self):
        """A Read error stops the render unless on_error says otherwise or
        continueOnError is set."""
        _, w = self.frames(1, 2)
        nuke.toNode("Read1")["last"].setValue(3)
        with self.assertRaises(RuntimeError):
            nuke.execute(w, 1, 3)
        nuke.OPENED[:] = []
        nuke.execute(w, 1, 3, continueOnError=True)
        self.assertEqual(self.opened_frames(), [1, 2])
        nuke.toNode("Read1")["on_error"].setValue("black")
        nuke.execute(w, 3, 3)

    def test_group_renders_from_its_output(self):
        """A group's result is its Output node's; Input nodes stand for the
        group's inputs; a disabled node passes its input 0 through."""
        r, w = self.frames(1, 1)
        g = nuke.nodes.Group(inputs=[r])
        with g:
            i = nuke.nodes.Input()
            dis = nuke.nodes.Grade(inputs=[i], disable=True)
            inner = nuke.nodes.Read(file=os.path.join(self.tmp, "seq", "s.0001.exr"), disable=False)
            unused = nuke.nodes.Read(file=os.path.join(self.tmp, "nope.exr"))
            nuke.nodes.Output(inputs=[nuke.nodes.Merge2(inputs=[dis, inner])])
        del unused
        w.setInput(0, g)
        nuke.execute(w, 1, 1)
        self.assertEqual(len(nuke.OPENED), 2)


class TestCli(_Base):
    def plugin(self, name, init=None, menu=None):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        if init is not None:
            self.write(os.path.join(name, "init.py"), init)
        if menu is not None:
            self.write(os.path.join(name, "menu.py"), menu)
        return d

    def test_parse(self):
        """`nuke -F 30-50 -x myscript.nk`; -F may be repeated and takes steps;
        `-X WriteBlur,Write2 myscript.nk 1-20`."""
        o = nuke_cli.parse(["-F", "1-10x2", "-F", "20", "-X", "W1,W2", "-x", "s.nk"])
        self.assertEqual([str(r) for fr in o["F"] for r in fr], ["1-10x2", "20"])
        self.assertEqual(o["X"], ["W1", "W2"])
        self.assertEqual(o["script"], "s.nk")
        o = nuke_cli.parse(["-X", "W", "s.nk", "1-20"])
        self.assertTrue(o["x"])
        self.assertEqual([str(r) for r in o["ranges"]], ["1-20"])
        o = nuke_cli.parse(["-x", "s.nk", "5,9"])
        self.assertEqual(list(o["ranges"][0]), [5, 6, 7, 8, 9])
        with self.assertRaises(nuke_cli.UsageError):
            nuke_cli.parse(["-x"])

    def test_init_py_runs_in_reverse_plugin_path_order_and_menu_py_never(self):
        """"init.py and menu.py are loaded in reverse (install directory
        first, ~/.nuke last), and every copy found runs"; "menu.py runs only
        in interactive/GUI mode"; plug-in lookup searches ~/.nuke, then the
        NUKE_PATH entries in order."""
        logf = os.path.join(self.tmp, "log")
        code = "with open(%r, 'a') as f:\n    f.write('%%s\\n')\n" % logf
        home = os.path.join(self.tmp, "home")
        self.plugin(os.path.join("home", ".nuke"), init=code % "home", menu=code % "menu-home")
        a = self.plugin("a", init=code % "a", menu=code % "menu-a")
        b = self.plugin("b", init=code % "b")
        env = {"HOME": home, "NUKE_PATH": a + os.pathsep + b}
        nuke_cli.main(["-t"], env=env)
        with open(logf) as f:
            self.assertEqual(f.read().split(), ["b", "a", "home"])
        self.assertEqual(nuke.pluginPath(), [os.path.join(home, ".nuke"), a, b])

    def test_plugin_add_path_runs_that_init_py(self):
        """nuke.pluginAddPath(p) "prepends to the plugin path"; called in an
        init.py, it "causes that directory's own init.py to run"."""
        logf = os.path.join(self.tmp, "log")
        sub = self.plugin("sub", init="with open(%r, 'a') as f:\n    f.write('sub\\n')\n" % logf)
        top = self.plugin("top", init="import nuke\nnuke.pluginAddPath(%r)\n"
                                      "with open(%r, 'a') as f:\n    f.write('top\\n')\n" % (sub, logf))
        nuke_cli.main(["-t"], env={"HOME": os.path.join(self.tmp, "h"), "NUKE_PATH": top})
        with open(logf) as f:
            self.assertEqual(f.read().split(), ["sub", "top"])
        self.assertEqual(nuke.pluginPath()[0], sub)

    def test_render_and_exit_status(self):
        d = os.path.join(self.tmp, "seq")
        os.makedirs(d)
        for f in (1, 2, 3):
            with open(os.path.join(d, "s.%04d.exr" % f), "w") as fh:
                fh.write("x")
        script = self.write("s.nk", """\
            Root {
             inputs 0
             first_frame 1
             last_frame 3
            }
            Read {
             inputs 0
             file %s/s.####.exr
             first 1
             last 3
            }
            Write {
             file %s/o.####.exr
             name Write1
            }
            Write {
             file %s/never.####.exr
             name Write2
            }
            """ % (d, self.tmp, self.tmp))
        env = {"HOME": os.path.join(self.tmp, "h"), "NUKE_PATH": ""}
        self.assertEqual(nuke_cli.main(["-F", "2-3", "-X", "Write1", "-x", script], env=env), 0)
        self.assertEqual(sorted(os.path.basename(p) for _, p in nuke.WRITTEN), ["o.0002.exr", "o.0003.exr"])
        self.assertEqual(nuke.rawArgs, [nuke.EXE_PATH, "-F", "2-3", "-X", "Write1", "-x", script])
        nuke._reset()
        self.assertEqual(nuke_cli.main(["-x", script, "1,2"], env=env), 0)
        self.assertEqual(len(nuke.WRITTEN), 4)  # both Writes, frames 1 and 2
        nuke._reset()
        bad = self.plugin("bad", init="import nuke\n"
                                      "def f():\n    raise RuntimeError('x')\n"
                                      "nuke.addBeforeFrameRender(f)\n")
        self.assertEqual(nuke_cli.main(["-X", "Write1", script], env=dict(env, NUKE_PATH=bad)), 1)

    def test_t_strips_a_trailing_range(self):
        """`nuke -t script.py args`: "a trailing frame range is stripped and
        is available through nuke.tcl('frames all')"."""
        out = os.path.join(self.tmp, "out")
        py = self.write("t.py", "import nuke, sys\nwith open(%r, 'w') as f:\n"
                                "    f.write(repr((sys.argv[1:], nuke.tcl('frames all'))))\n" % out)
        self.assertEqual(nuke_cli.main(["-t", py, "a", "b", "1-20"], env={"HOME": self.tmp}), 0)
        with open(out) as f:
            self.assertEqual(f.read(), repr((["a", "b"], "1-20")))


if __name__ == "__main__":
    unittest.main()
