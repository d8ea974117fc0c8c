"""Compilation on first use: one line on stderr when it takes a while (``python -m dynconv_np
warmup``, ``dynconv_np/warmup.py``, compiles everything ahead, e.g. before a lesson).

Numba compiles each kernel for each dtype the first time it is called (and keeps the machine
code in its disk cache, so later processes only load it). A first call that has not returned
after ``NOTICE_AFTER`` seconds is compiling, not loading: ``first_use`` then prints one line,
once per process, so a user knows why the first result is slow.
"""
import contextlib
import functools
import sys
import threading

import numpy as np

NOTICE_AFTER = 1.0  # seconds: a cache load takes a fraction of this, a compile many times it

_called = set()         # (entry point, dtype) pairs that have returned once in this process
_notice = {"printed": False}


def _print_notice(dtype):
    if not _notice["printed"]:
        _notice["printed"] = True
        print(f"compiling Numba kernels for {dtype}, first use only (python -m dynconv_np warmup "
              "compiles them ahead) ...", file=sys.stderr, flush=True)


def announces_compilation(entry):
    """Decorator for an engine entry point whose first argument is an array: ``first_use``
    around each call, keyed by the entry's name and that array's dtype."""
    name = entry.__name__

    @functools.wraps(entry)
    def wrapped(*args, **kwargs):
        if (name, args[0].dtype) in _called:  # every call after the first: one set lookup
            return entry(*args, **kwargs)
        with first_use(name, args[0].dtype):
            return entry(*args, **kwargs)
    return wrapped


@contextlib.contextmanager
def first_use(entry, dtype):
    """Around an engine entry point: the notice above if its first call for ``dtype`` is slow."""
    key = (entry, np.dtype(dtype))
    if key in _called:
        yield
        return
    timer = threading.Timer(NOTICE_AFTER, _print_notice, args=(key[1].name,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        _called.add(key)
