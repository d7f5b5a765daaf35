#!/usr/bin/env python3
"""Emulates how a farm starts Nuke, for jitfs's tests (with the nuke stub).

  nuke_cli.py [-F RANGE]... [-X W1,W2] [-x] [--cont] [-V N] [-m N] [-i] [-f] script.nk [RANGE...]
  nuke_cli.py -t [script.py [args...]] [RANGE]

Start-up follows Foundry's "Start-up Scripts" and "Defining the Nuke Plug-in
Path": the plug-in path is ~/.nuke (from $HOME), then the NUKE_PATH entries;
every init.py on it runs, in reverse order (~/.nuke last), and menu.py never
runs outside the GUI. Then, as `nuke -x`/`-X` do, the script is opened and
its Writes rendered: those named by -X, else every enabled Write that is not
reading its file; over the -F ranges (repeatable, "1-50x10"), else the
trailing range ("1-20" or "1,20[,step]"), else the Root's range.

The exit status is 0 when the render completed, 1 when it aborted (an
exception in a render callback, an unreadable file) and 2 on a usage error.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import nuke  # noqa: E402  (the stub next to this file)

_WITH_VALUE = ('-F', '-X', '-V', '-m', '--remap', '-c', '--view')
_FLAGS = ('-x', '-i', '-f', '--cont', '-n', '--sro', '-q', '--nukex', '-t', '-nx')


class UsageError(Exception):
    pass


def _is_range(s):
    try:
        _parse_range(s)
        return True
    except ValueError:
        return False


def _parse_range(s):
    """A trailing range: "A-B", "A-BxS", "A", or "A,B[,S]"."""
    if ',' in s:
        parts = [int(p) for p in s.split(',')]
        if len(parts) not in (2, 3):
            raise ValueError(s)
        return nuke.FrameRange(*parts)
    return nuke.FrameRange(s)


def parse(argv):
    opts = {'F': [], 'X': [], 'x': False, 't': False, 'cont': False, 'script': None, 'args': [], 'ranges': [],
            'views': None}
    i = 0
    while i < len(argv):
        a = argv[i]
        if opts['t'] and opts['script'] is not None:
            opts['args'].append(a)
        elif a in _WITH_VALUE:
            if i + 1 >= len(argv):
                raise UsageError("%s needs a value" % a)
            v = argv[i + 1]
            i += 1
            if a == '-F':
                opts['F'].append(nuke.FrameRanges(v))
            elif a == '-X':
                opts['X'].extend(n for n in v.split(',') if n)
            elif a == '--view':
                opts['views'] = [n for n in v.split(',') if n]
        elif a in _FLAGS:
            if a == '-x':
                opts['x'] = True
            elif a == '-t':
                opts['t'] = True
            elif a == '--cont':
                opts['cont'] = True
        elif a.startswith('-') and not _is_range(a):
            raise UsageError("unknown option %s" % a)
        elif opts['script'] is None and not _is_range(a):
            opts['script'] = a
        elif opts['script'] is not None and _is_range(a):
            opts['ranges'].append(_parse_range(a))
        else:
            raise UsageError("unexpected argument %s" % a)
        i += 1
    if opts['t']:
        # `nuke -t`: "a trailing frame range is stripped" from sys.argv and
        # is what `frames all` answers.
        if opts['args'] and _is_range(opts['args'][-1]):
            opts['frames_all'] = opts['args'].pop()
        return opts
    if opts['script'] is None:
        raise UsageError("no script given")
    if opts['X'] or opts['F'] or opts['ranges']:
        opts['x'] = True
    return opts


def plugin_path(env):
    home = env.get('HOME') or os.path.expanduser('~')
    path = [os.path.join(home, '.nuke')]
    for p in env.get('NUKE_PATH', '').split(os.pathsep):
        if p and p not in path:
            path.append(p)
    return path


def startup(env):
    """Builds the plug-in path and runs every init.py on it in reverse."""
    nuke._state.plugin_path = plugin_path(env)
    for p in reversed(nuke._state.plugin_path):
        if p not in sys.path:
            sys.path.append(p)
    nuke._state.startup = True
    try:
        for p in reversed(list(nuke._state.plugin_path)):
            nuke._run_init(p)
    finally:
        nuke._state.startup = False


def _writes(names):
    if names:
        return list(names)
    return [n for n in nuke.allNodes(recurseGroups=True)
            if n.Class() in nuke._EXECUTABLE and not n['disable'].value() and not n['reading'].value()]


def main(argv=None, env=None):
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    try:
        opts = parse(argv)
    except (UsageError, ValueError) as e:
        sys.stderr.write("nuke_cli: %s\n" % e)
        return 2
    del nuke.rawArgs[:]
    nuke.rawArgs.extend([nuke.EXE_PATH] + list(argv))
    try:
        startup(env)
    except Exception as e:
        # Nuke reports an init.py error and carries on starting.
        sys.stderr.write("nuke_cli: init.py: %s: %s\n" % (type(e).__name__, e))
    if opts['t']:
        nuke._state.frames_all = opts.get('frames_all', '')
        if opts['script'] is None:
            return 0
        sys.argv = [opts['script']] + opts['args']
        with open(opts['script']) as f:
            code = compile(f.read(), opts['script'], 'exec')
        try:
            exec(code, {'__name__': '__main__', '__file__': opts['script'], 'nuke': nuke})
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else 1
        except Exception as e:
            sys.stderr.write("nuke_cli: %s: %s\n" % (type(e).__name__, e))
            return 1
        return 0
    try:
        nuke.scriptOpen(opts['script'])
    except Exception as e:
        sys.stderr.write("nuke_cli: %s: %s\n" % (opts['script'], e))
        return 1
    if not opts['x']:
        return 0
    ranges = []
    for fr in opts['F']:
        ranges.extend(fr)
    if not ranges:
        ranges = opts['ranges']
    if not ranges:
        r = nuke.root()
        ranges = [nuke.FrameRange(r.firstFrame(), r.lastFrame(), 1)]
    try:
        writes = _writes(opts['X'])
        nuke.executeMultiple(writes, ranges, opts['views'], continueOnError=opts['cont'])
    except (RuntimeError, ValueError) as e:
        sys.stderr.write("nuke_cli: render aborted: %s\n" % e)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
