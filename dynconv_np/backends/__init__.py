"""Convolution backends: the only place where convolution loops live.

Every backend is a module with a ``NAME`` and these four functions, all taking
arrays that the functional front-end has already validated (C-contiguous, one
floating dtype, consistent shapes) and tuples ``stride``, ``padding``,
``dilation`` of two ints:

``conv2d_forward(x, w, b, stride, padding, dilation, groups) -> y``
    x (N, C_in, H, W); w (Nw, C_out, C_in/groups, kh, kw) with Nw = N (one kernel
    per sample: dynamic convolution) or Nw = 1 (one kernel for the batch: static
    convolution); b (Nw, C_out) or None. Returns y (N, C_out, H_out, W_out).

``conv2d_backward(dy, x, w, stride, padding, dilation, groups, has_bias) -> (dx, dw, db)``
    dx like x; dw like w (summed over the batch when Nw = 1); db (Nw, C_out) or None.

``aggregate_forward(pi, weight, bias) -> (w_n, b_n)`` and
``aggregate_backward(dw_n, db_n, pi, weight, bias) -> (dpi, dweight, dbias)``
    kernel aggregation W_n = sum_k pi[n, k] weight[k] (and the same for biases).
    ``pi`` and ``dpi`` are host NumPy arrays (the attention branch is tiny and
    runs on the host); the other arrays live where the backend keeps them.

``spatial_mean(x) -> pooled`` and ``add_spatial_mean_grad(dx, dpooled)``
    the attention branch's global average pool: pooled (N, C) = mean of x over
    (H, W), returned as a host NumPy array; and its backward, added in place
    into a gradient ``dx`` that the backend itself allocated:
    dx[n, c, :, :] += dpooled[n, c] / (H * W).

Optional: ``attention_forward(pooled, w1, b1, w2, b2, tau) -> (pi, hidden)`` and
``attention_backward(dpi, pi, hidden, pooled, w1, w2, tau) -> (dpooled, dw1, db1, dw2, db2)``,
the attention branch as one call on host arrays (``numba``: ``cpu_attention.py``). Without
them, ``functional/attention.py`` composes the branch from its stages, which is the reference.

Outputs have the inputs' dtype. The ``numpy`` backend (``reference.py``) is the
judge; ``numba`` (``cpu.py``) and ``cuda`` (``cuda.py``) must agree with it.
"""
import importlib

DEFAULT_BACKEND = "numba"

_MODULES = {"numpy": "reference", "numba": "cpu", "cuda": "cuda"}


def available_backends():
    """Names accepted by ``get_backend``."""
    return tuple(_MODULES)


_LOADED = {}  # name -> module, once it imported and passed its availability check


def get_backend(name):
    """The backend module called ``name`` ("numpy", "numba" or "cuda"), imported on first use.

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
