"""State dicts in and out: whatever the source, an ordered {name: NumPy array}.

Sources ``load_state`` accepts:

* a mapping of names to arrays or torch tensors (a torch ``state_dict()``), in its order;
* a torch ``nn.Module`` (its ``state_dict()``);
* a path to an ``.npz`` (``np.load``, no pickles; works without torch);
* a path to a ``.pt`` / ``.pth`` / ``.bin`` file (``torch.load(..., weights_only=True)``; needs
  torch, and says so when it is missing).

Checkpoints that wrap the weights (``{"state_dict": {...}, "epoch": ...}``, or ``"model"``,
``"model_state_dict"``) are unwrapped, and a ``"module."`` prefix on every key (DataParallel)
is stripped. ``check_entry`` is the one check every import uses: the key, the expected and
received shape and dtype, in the message.
"""
import os
from collections import OrderedDict

import numpy as np

from ._torch import is_tensor, is_torch_module, require_torch, to_numpy, to_tensors

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


def _is_array_like(value):
    return isinstance(value, (np.ndarray, np.generic, int, float)) or is_tensor(value)


def load_state(source):
    """``source`` (module docstring) -> OrderedDict {name: NumPy array}, in the source's order."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no state file at {path!r}")
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                state = OrderedDict((name, data[name]) for name in data.files)
        elif path.endswith(TORCH_SUFFIXES):
            torch = require_torch(f"reading {os.path.basename(path)}")
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ValueError(f"state file {path!r} must end in .npz, "
                             f"{', '.join(TORCH_SUFFIXES)}")
        return load_state(state)
    if is_torch_module(source):
        source = source.state_dict()
    if not hasattr(source, "items"):
        raise TypeError(f"a state must be a mapping of names to arrays/tensors, a torch module "
                        f"or a path to .npz/.pt; received {type(source).__name__}")
    for key in WRAPPER_KEYS:
        inner = source.get(key) if hasattr(source, "get") else None
        if hasattr(inner, "items") and not _is_array_like(inner):
            return load_state(inner)
    state = OrderedDict()
    for name, value in source.items():
        if not isinstance(name, str):
            raise TypeError(f"state keys must be strings; received {name!r}")
        if not _is_array_like(value):
            raise TypeError(f"state[{name!r}] must be an array or tensor; received "
                            f"{type(value).__name__}")
        state[name] = to_numpy(value)
    if state and all(name.startswith("module.") for name in state):
        state = OrderedDict((name[len("module."):], value) for name, value in state.items())
    return state


def save_state(state, path):
    """Write {name: array or tensor} to ``path``: ``.npz`` (NumPy) or ``.pt``/``.pth`` (torch)."""
    path = os.fspath(path)
    arrays = OrderedDict((name, to_numpy(value)) for name, value in state.items())
    if path.endswith(".npz"):
        np.savez(path, **arrays)
    elif path.endswith(TORCH_SUFFIXES):
        require_torch(f"writing {os.path.basename(path)}").save(to_tensors(arrays), path)
    else:
        raise ValueError(f"state file {path!r} must end in .npz or {', '.join(TORCH_SUFFIXES)}")
    return path


def check_entry(key, value, shape, dtype, cast=False, target=None):
    """``value`` (state[key]) as an array of ``shape`` and ``dtype``, else ValueError naming key.

    The source may hold the same numbers in a shape that differs only by trailing or leading
    singleton axes (a 1x1 convolution's (out, in, 1, 1) for a Linear's (out, in)); it is
    reshaped. A floating dtype other than ``dtype`` is an error unless ``cast``; a non-float
    array never fits a float parameter. ``target`` names our side in the message.
    """
    value = np.asarray(value)
    where = f" (for {target})" if target else ""
    shape = tuple(shape)
    if value.shape != shape:
        if _squeezed(value.shape) != _squeezed(shape) or value.size != int(np.prod(shape)):
            raise ValueError(f"state[{key!r}]{where} must have shape {shape}; received "
                             f"{value.shape}")
        value = value.reshape(shape)
    dtype = np.dtype(dtype)
    if value.dtype != dtype:
        if dtype.kind == "f" and value.dtype.kind != "f":
            raise ValueError(f"state[{key!r}]{where} must be a float array ({dtype}); received "
                             f"{value.dtype}")
        if not cast:
            raise ValueError(f"state[{key!r}]{where} has dtype {value.dtype}, expected {dtype} "
                             "(pass cast=True to convert)")
        value = value.astype(dtype)
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise ValueError(f"state[{key!r}]{where} contains NaN or inf")
    return np.array(value, copy=True)


def _squeezed(shape):
    return tuple(s for s in shape if s != 1)
