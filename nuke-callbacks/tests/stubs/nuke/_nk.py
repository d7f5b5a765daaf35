"""Reads the .nk subset the stub understands into commands.

A .nk script is Tcl: one command per line (or per ';'), words separated by
blanks, {braces} grouping literally and "quotes" with substitution. Node
commands are a class name followed by a braced body of knob lines. What
this module returns is a list of commands, each a list of (kind, text)
words with kind "brace", "quote" or "bare"; nuke/__init__.py turns them
into nodes (it owns the node stack, groups and load-time substitution).
"""

from . import _tcl


def _quote_end(s, i):
    j = i + 1
    while j < len(s) and s[j] != '"':
        j += 2 if s[j] == '\\' else 1
    if j >= len(s):
        raise _tcl.TclError("missing closing quote")
    return j


def commands(text):
    """Splits script text into commands of (kind, text) words."""
    out = []
    cmd = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in '\n;':
            if cmd:
                out.append(cmd)
                cmd = []
            i += 1
        elif c in ' \t\r':
            i += 1
        elif c == '\\' and i + 1 < n and text[i + 1] == '\n':
            i += 2  # a continued line
        elif c == '#' and not cmd:
            j = text.find('\n', i)
            i = n if j < 0 else j
        elif c == '{':
            j = _tcl._match(text, i, '{', '}')
            cmd.append(('brace', text[i + 1:j]))
            i = j + 1
        elif c == '"':
            j = _quote_end(text, i)
            cmd.append(('quote', text[i + 1:j]))
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in ' \t\r\n;':
                if text[j] == '[':
                    j = _tcl._match(text, j, '[', ']') + 1
                elif text[j] == '\\':
                    j += 2
                else:
                    j += 1
            cmd.append(('bare', text[i:j]))
            i = j
    if cmd:
        out.append(cmd)
    return out
