"""The Tcl subset that Nuke's string and file knobs are evaluated with.

Covers what file knobs use in practice: command substitution "[...]" with
the commands value/knob, file dirname|tail|rootname|extension|join, python,
getenv, frame and string tolower|toupper; variable substitution $NAME,
${NAME} and $env(NAME) from the environment (an unset variable is left as
written); backslash escapes (\\[ keeps a bracket literal, as saved .nk files
write expressions meant for later evaluation); {braces} group a word without
substitution and "quotes" with it.
"""

import os
import re


class TclError(Exception):
    pass


_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')


def _match(s, i, open_c, close_c):
    """Index of the close_c matching s[i] == open_c, honouring nesting,
    braces and backslashes."""
    depth = 0
    j = i
    while j < len(s):
        c = s[j]
        if c == '\\':
            j += 2
            continue
        if c == open_c:
            depth += 1
        elif c == close_c:
            depth -= 1
            if depth == 0:
                return j
        elif c == '{' and open_c != '{':
            j = _match(s, j, '{', '}')
        j += 1
    raise TclError("missing %s in %r" % (close_c, s))


def substitute(text, ctx):
    """Performs Tcl substitution of text; ctx evaluates commands."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '\\' and i + 1 < n:
            nxt = text[i + 1]
            out.append('\n' if nxt == 'n' else nxt if nxt in '[]${}"\\ ' else '\\' + nxt)
            i += 2
        elif c == '[':
            j = _match(text, i, '[', ']')
            out.append(run(text[i + 1:j], ctx))
            i = j + 1
        elif c == '$':
            v, i2 = _variable(text, i)
            out.append(v)
            i = i2
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def _variable(text, i):
    if text.startswith('${', i):
        j = text.find('}', i)
        if j < 0:
            return '$', i + 1
        name = text[i + 2:j]
        v = os.environ.get(name)
        return (v if v is not None else text[i:j + 1]), j + 1
    if text.startswith('$env(', i):
        j = text.find(')', i)
        if j < 0:
            return '$', i + 1
        name = text[i + 5:j]
        if name not in os.environ:
            raise TclError("can't read \"env(%s)\": no such variable" % name)
        return os.environ[name], j + 1
    m = _NAME.match(text, i + 1)
    if not m:
        return '$', i + 1
    v = os.environ.get(m.group(0))
    return (v if v is not None else '$' + m.group(0)), m.end()


def words(s, ctx):
    """Splits a command into substituted words."""
    out = []
    i = 0
    n = len(s)
    while True:
        while i < n and s[i] in ' \t\n':
            i += 1
        if i >= n:
            return out
        if s[i] == '{':
            j = _match(s, i, '{', '}')
            out.append(s[i + 1:j])
            i = j + 1
        elif s[i] == '"':
            j = i + 1
            while j < n and s[j] != '"':
                j += 2 if s[j] == '\\' else 1
            out.append(substitute(s[i + 1:j], ctx))
            i = j + 1
        else:
            j = i
            while j < n and s[j] not in ' \t\n':
                if s[j] == '[':
                    j = _match(s, j, '[', ']') + 1
                elif s[j] == '\\':
                    j += 2
                else:
                    j += 1
            out.append(substitute(s[i:j], ctx))
            i = j


def run(cmd, ctx):
    """Runs one command of the subset and returns its result as a string."""
    w = words(cmd, ctx)
    if not w:
        return ''
    name, args = w[0], w[1:]
    if name in ('value', 'knob') and len(args) == 1:
        return ctx.value(args[0])
    if name == 'file' and args:
        sub, rest = args[0], args[1:]
        if sub == 'dirname' and len(rest) == 1:
            d = os.path.dirname(rest[0].rstrip('/')) if rest[0] not in ('/', '') else rest[0]
            return d or '.'
        if sub == 'tail' and len(rest) == 1:
            return os.path.basename(rest[0].rstrip('/'))
        if sub == 'rootname' and len(rest) == 1:
            return os.path.splitext(rest[0])[0]
        if sub == 'extension' and len(rest) == 1:
            return os.path.splitext(rest[0])[1]
        if sub == 'join' and rest:
            return os.path.join(*rest)
    if name == 'python' and args:
        code = args[-1]
        return ctx.python(code)
    if name == 'getenv' and len(args) in (1, 2):
        return os.environ.get(args[0], args[1] if len(args) == 2 else '')
    if name == 'frame' and not args:
        f = ctx.frame()
        return str(int(f)) if float(f).is_integer() else str(f)
    if name == 'string' and len(args) == 2 and args[0] in ('tolower', 'toupper'):
        return args[1].lower() if args[0] == 'tolower' else args[1].upper()
    raise TclError('invalid command name "%s"' % name)
