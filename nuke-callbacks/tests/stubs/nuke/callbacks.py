"""Callback registries of the nuke stub (tests only).

Modelled on Foundry's documented rules (Nuke Python Developer's Guide,
"Callbacks"; research notes dcc-apis.md section 1.1), written for jitfs's
tests, not copied from Foundry's nuke_internal/callbacks.py:

* "nuke.addX(call, args=(), kwargs={}, nodeClass=<default>)": a non-callable
  raises ValueError, args is wrapped into a tuple, kwargs that is not a dict
  raises ValueError; the same (call, args, kwargs) is stored at most once per
  nodeClass, and adding it again moves it to the end.
* Order: the code in the node's knob of the same name first (run by the
  engine in nuke/__init__.py), then the callbacks of the node's class in order
  of addition, then the '*' callbacks in order of addition.
* filenameFilter: "All added functions are called in backwards order";
  class-specific filters run before '*' ones; "None is the same as returning
  the string unchanged"; with no filter at all, __main__.filenameFix is used.
* thisNode() is the affected node while a callback runs, and the root for
  file names that belong to no node.
"""

import nuke

onUserCreates = {}
onCreates = {}
onScriptLoads = {}
onScriptSaves = {}
onScriptCloses = {}
onDestroys = {}
knobChangeds = {}
updateUIs = {}
autolabels = {}
beforeRenders = {}
beforeFrameRenders = {}
afterFrameRenders = {}
afterRenders = {}
renderProgresses = {}
filenameFilters = {}
validateFilenames = {}
autoSaveFilters = {}
autoSaveRestoreFilters = {}
autoSaveDeleteFilters = {}

# Background renders (GUI only) take no nodeClass and are called as
# call(context, *args, **kwargs) with a dict: id, and frame, numFrames and
# frameProgress for the per-frame variant.
beforeBackgroundRenders = []
afterBackgroundFrameRenders = []
afterBackgroundRenders = []

_ALL = (onUserCreates, onCreates, onScriptLoads, onScriptSaves, onScriptCloses, onDestroys, knobChangeds,
        updateUIs, autolabels, beforeRenders, beforeFrameRenders, afterFrameRenders, afterRenders,
        renderProgresses, filenameFilters, validateFilenames, autoSaveFilters, autoSaveRestoreFilters,
        autoSaveDeleteFilters)


def _entry(call, args, kwargs):
    if not callable(call):
        raise ValueError("call must be a callable")
    if type(args) is not tuple:
        args = (args,)
    if type(kwargs) is not dict:
        raise ValueError("kwargs must be a dictionary")
    return (call, args, kwargs)


def _add(registry, call, args, kwargs, nodeClass):
    e = _entry(call, args, kwargs)
    lst = registry.setdefault(nodeClass, [])
    if e in lst:
        lst.remove(e)
    lst.append(e)


def _remove(registry, call, args, kwargs, nodeClass):
    e = _entry(call, args, kwargs)
    lst = registry.get(nodeClass)
    if lst and e in lst:
        lst.remove(e)


def _clear():
    """Forgets every registration (nuke._reset, for tests)."""
    for r in _ALL:
        r.clear()
    del beforeBackgroundRenders[:]
    del afterBackgroundFrameRenders[:]
    del afterBackgroundRenders[:]


def _make(registry, default):
    def add(call, args=(), kwargs={}, nodeClass=default):
        _add(registry, call, args, kwargs, nodeClass)

    def remove(call, args=(), kwargs={}, nodeClass=default):
        _remove(registry, call, args, kwargs, nodeClass)

    return add, remove


addOnUserCreate, removeOnUserCreate = _make(onUserCreates, '*')
addOnCreate, removeOnCreate = _make(onCreates, '*')
addOnScriptLoad, removeOnScriptLoad = _make(onScriptLoads, 'Root')
addOnScriptSave, removeOnScriptSave = _make(onScriptSaves, 'Root')
addOnScriptClose, removeOnScriptClose = _make(onScriptCloses, 'Root')
addOnDestroy, removeOnDestroy = _make(onDestroys, '*')
addKnobChanged, removeKnobChanged = _make(knobChangeds, '*')
addUpdateUI, removeUpdateUI = _make(updateUIs, '*')
addAutolabel, removeAutolabel = _make(autolabels, '*')
addBeforeRender, removeBeforeRender = _make(beforeRenders, 'Write')
addBeforeFrameRender, removeBeforeFrameRender = _make(beforeFrameRenders, 'Write')
addAfterFrameRender, removeAfterFrameRender = _make(afterFrameRenders, 'Write')
addAfterRender, removeAfterRender = _make(afterRenders, 'Write')
addRenderProgress, removeRenderProgress = _make(renderProgresses, 'Write')
addFilenameFilter, removeFilenameFilter = _make(filenameFilters, '*')
addValidateFilename, removeValidateFilename = _make(validateFilenames, 'Write')
addAutoSaveFilter, removeAutoSaveFilter = _make(autoSaveFilters, '*')
addAutoSaveRestoreFilter, removeAutoSaveRestoreFilter = _make(autoSaveRestoreFilters, '*')
addAutoSaveDeleteFilter, removeAutoSaveDeleteFilter = _make(autoSaveDeleteFilters, '*')


def _add_background(lst, call, args, kwargs):
    e = _entry(call, args, kwargs)
    if e in lst:
        lst.remove(e)
    lst.append(e)


def _remove_background(lst, call, args, kwargs):
    e = _entry(call, args, kwargs)
    if e in lst:
        lst.remove(e)


def addBeforeBackgroundRender(call, args=(), kwargs={}):
    _add_background(beforeBackgroundRenders, call, args, kwargs)


def removeBeforeBackgroundRender(call, args=(), kwargs={}):
    _remove_background(beforeBackgroundRenders, call, args, kwargs)


def addAfterBackgroundFrameRender(call, args=(), kwargs={}):
    _add_background(afterBackgroundFrameRenders, call, args, kwargs)


def removeAfterBackgroundFrameRender(call, args=(), kwargs={}):
    _remove_background(afterBackgroundFrameRenders, call, args, kwargs)


def addAfterBackgroundRender(call, args=(), kwargs={}):
    _add_background(afterBackgroundRenders, call, args, kwargs)


def removeAfterBackgroundRender(call, args=(), kwargs={}):
    _remove_background(afterBackgroundRenders, call, args, kwargs)


def _doCallbacks(registry):
    """Runs the callbacks for nuke.thisClass(), then the '*' ones, each list
    in order of addition. Exceptions propagate: the engine decides what an
    exception means (an abort, for render callbacks)."""
    cls = nuke.thisClass()
    calls = []
    if cls != '*':
        calls.extend(registry.get(cls, ()))
    calls.extend(registry.get('*', ()))
    for call, args, kwargs in calls:
        call(*args, **kwargs)


def onUserCreate():
    _doCallbacks(onUserCreates)


def onCreate():
    _doCallbacks(onCreates)


def onScriptLoad():
    _doCallbacks(onScriptLoads)


def onScriptSave():
    _doCallbacks(onScriptSaves)


def onScriptClose():
    _doCallbacks(onScriptCloses)


def onDestroy():
    _doCallbacks(onDestroys)


def beforeRender():
    _doCallbacks(beforeRenders)


def beforeFrameRender():
    _doCallbacks(beforeFrameRenders)


def afterFrameRender():
    _doCallbacks(afterFrameRenders)


def afterRender():
    _doCallbacks(afterRenders)


def _background(lst, context):
    for call, args, kwargs in list(lst):
        call(context, *args, **kwargs)


def beforeBackgroundRender(context):
    _background(beforeBackgroundRenders, context)


def afterBackgroundFrameRender(context):
    _background(afterBackgroundFrameRenders, context)


def afterBackgroundRender(context):
    _background(afterBackgroundRenders, context)


def filenameFilter(filename):
    """Runs the filename filters: those of nuke.thisClass() newest first, then
    the '*' ones newest first; each non-None result is what the next filter
    receives. With no filter registered, __main__.filenameFix (if defined)."""
    if not any(filenameFilters.values()):
        import __main__
        fix = getattr(__main__, 'filenameFix', None)
        if fix is not None:
            return fix(filename)
        return filename
    # Only ask for the class when a class-specific filter exists: Foundry's
    # source warns that thisClass() "has issues" here.
    if any(v for k, v in filenameFilters.items() if k != '*'):
        cls = nuke.thisClass()
        if cls != '*':
            for call, args, kwargs in reversed(list(filenameFilters.get(cls, ()))):
                r = call(filename, *args, **kwargs)
                if r is not None:
                    filename = r
    for call, args, kwargs in reversed(list(filenameFilters.get('*', ()))):
        r = call(filename, *args, **kwargs)
        if r is not None:
            filename = r
    return filename


def validateFilename(filename):
    """True unless a validator of thisClass() or '*' returns False."""
    cls = nuke.thisClass()
    calls = list(validateFilenames.get(cls, ())) + list(validateFilenames.get('*', ()))
    for call, args, kwargs in calls:
        if call(filename, *args, **kwargs) is False:
            return False
    return True
