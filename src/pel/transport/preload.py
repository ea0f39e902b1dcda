"""Which modules a payload's unpickling will import, named before its large
buffers are written, so that workers import them while the parent writes.

A fresh worker takes ~45 ms to import numpy; the parent takes ~140 ms to
write a 400 MB array into ``/dev/shm``. One after the other (the worker only
meets ``numpy`` when it unpickles the call, after the write) they add up.
Named first, the worker imports while the parent writes, on another core.

The names are read off the pickle itself (its ``STACK_GLOBAL`` opcodes): the
modules unpickling the payload imports, never a string that is data. The
backend asks each idle worker alive then, once per module per executor; one
may so import a module only another worker's call needed.
"""

from __future__ import annotations

from .mapping import segment_of

TYPE_CHECKING = False  # not typing's: a worker imports this module (at a hint)
if TYPE_CHECKING:
    import pickle
    from typing import Any

    from .shm import Store

__all__ = ["PRELOAD_BYTES", "announce_before_write", "import_quietly", "modules_named"]

#: Buffers to write from which naming their modules first is worth a scan
#: (writing 4 MiB takes ~1.5 ms; importing numpy, ~45 ms).
PRELOAD_BYTES = 1 << 22
#: A longer pickle is not scanned: one whose large buffers are out of band is small.
_SCAN_LIMIT = 1 << 16
#: Modules every worker has imported already.
_KNOWN = frozenset({"builtins", "copyreg", "_codecs", "pickle", "_pickle"})


def announce_before_write(store: Store, data: bytes, buffers: list[pickle.PickleBuffer]) -> None:
    """Tell ``store.announce`` what unpickling ``data`` imports, if its
    ``buffers`` still to be written are large enough to hide the imports."""
    announce = store.announce
    if announce is None:
        return
    to_write = 0
    for pb in buffers:
        raw = pb.raw()
        if segment_of(raw.obj) is None and not store.holds(raw.obj, raw.nbytes):
            to_write += raw.nbytes
    if to_write >= PRELOAD_BYTES:
        names = modules_named(data)
        if names:
            announce(names)


def modules_named(data: bytes) -> tuple[str, ...]:
    """The modules the globals in pickle ``data`` come from, in order of
    appearance (none for a pickle too long to scan or not understood)."""
    if len(data) > _SCAN_LIMIT:
        return ()
    import pickletools  # not at the top: only large writes need it

    found: dict[str, None] = {}
    memo: list[Any] = []
    last: list[Any] = [None, None]  # the two values pushed last (None: not a str)
    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            value: Any = None
            if name in _STRINGS:
                value = arg
            elif name == "MEMOIZE":
                memo.append(last[-1])
                continue
            elif name in _GETS:
                value = memo[arg] if isinstance(arg, int) and arg < len(memo) else None
            elif name == "STACK_GLOBAL":
                _add(found, last[-2])
            elif name in _GLOBALS:
                _add(found, str(arg).split(" ", 1)[0])
            elif name in _PUTS:
                return ()  # explicit memo indices (protocol < 4): not tracked here
            last[0], last[1] = last[1], value
    except Exception:  # not a pickle this scan understands: name nothing
        return ()
    return tuple(found)


_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})
_GETS = frozenset({"BINGET", "LONG_BINGET"})
_GLOBALS = frozenset({"GLOBAL", "INST"})
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def _add(found: dict[str, None], module: Any) -> None:
    if (
        isinstance(module, str)
        and module not in _KNOWN
        and not module.startswith("__")  # __main__: the worker imported it as it started
        and all(part.isidentifier() for part in module.split("."))
    ):
        found[module] = None


def import_quietly(names: tuple[str, ...]) -> None:
    """In a worker: import what is not yet imported. Whatever an import
    raises (even ``SystemExit``) is the call's to report when it unpickles,
    in the worker that runs it, not this hint's."""
    import sys

    for name in names:
        if name not in sys.modules:
            try:
                __import__(name)
            except BaseException:
                pass
