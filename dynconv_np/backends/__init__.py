"""Backends: the only place where loops live.

    numpy   reference.py    NumPy, vectorised (im2col + matmul): the judge of the others
    loops   loops.py        plain Numba prange loops, one per formula: read this one to learn
    numba   numba_fast/     the tuned Numba engine (the default): read this one to tune
    cuda    cuda.py         Numba CUDA kernels (cuda_kernels.py), naive and tiled

Every backend implements one contract, written as code in ``contract.py`` (the required and
optional functions, their shapes) and tested over every backend in
``tests/backends/test_contract.py``. Where an array lives (host or GPU) is handled here, in one
place: ``check_placement``, ``to_device``, ``to_host``, ``add_into``.
"""
import importlib

import numpy as np

from .contract import OPTIONAL_FUNCTIONS, REQUIRED_FUNCTIONS, Backend  # noqa: F401 (re-export)
from .._validation import is_device_array

DEFAULT_BACKEND = "numba"

_MODULES = {"numpy": "reference", "loops": "loops", "numba": "numba_fast", "cuda": "cuda"}
_DEVICE_BACKENDS = frozenset({"cuda"})  # backends whose arrays may live in GPU memory

_LOADED = {}  # name -> module, once it imported and passed its availability check


def available_backends():
    """Names accepted by ``get_backend``."""
    return tuple(_MODULES)


def get_backend(name):
    """The backend module called ``name`` (see ``available_backends()``), imported on first use.

    Called several times per layer pass: after the first successful call it is one lookup.
    """
    module = _LOADED.get(name) if isinstance(name, str) else None
    if module is not None:
        return module
    if not isinstance(name, str) or name not in _MODULES:
        raise ValueError(f"backend must be one of {sorted(_MODULES)}; received {name!r}")
    module = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    check = getattr(module, "ensure_available", None)
    if check is not None:
        check()
    _LOADED[name] = module
    return module


def runs_on_device(module):
    """True for a backend that computes in GPU memory (its arrays may be device arrays)."""
    return module.NAME in _DEVICE_BACKENDS


def check_placement(module, **arrays):
    """A host backend cannot read GPU memory: TypeError naming the first device array given to
    one (None entries are skipped)."""
    if runs_on_device(module):
        return
    for name, a in arrays.items():
        if a is not None and is_device_array(a):
            raise TypeError(f"{name} is a CUDA device array, but backend {module.NAME!r} runs on "
                            "the host; use backend='cuda' or copy it to the host first")


def to_device(a, backend):
    """``a`` where ``backend`` keeps its arrays: GPU memory for "cuda", unchanged for the rest."""
    module = get_backend(backend)
    return module.to_device(a) if runs_on_device(module) else a


def to_host(a):
    """``a`` as a NumPy array (a device array is copied back; a host array is returned)."""
    return a if a is None or isinstance(a, np.ndarray) else get_backend("cuda").to_host(a)


def add_into(dst, src):
    """In place, wherever ``dst`` lives: dst += src (gradient accumulation)."""
    if is_device_array(dst):
        get_backend("cuda").add_into(dst, src)
    else:
        dst += src
