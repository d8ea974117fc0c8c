"""The ``numba`` backend: tuned, multi-threaded Numba kernels with the reference's semantics.

Same contract as ``reference.py`` (see ``backends/__init__.py``); this package is the speed,
not the clarity. To learn the algorithms, read ``backends/reference.py`` (NumPy, the judge) and
``backends/loops.py`` (the same math as plain loops) instead; come here to see how they are
tiled and fused. The map, bottom up:

``runs.py``        the inner loops: one contiguous run of samples per call (gather, scatter,
                   axpy, dot, sum, copy), unsigned indices so that Numba vectorises them; the
                   only kernels with ``reassoc``, besides the attention branch's.
``planes.py``      the shared geometry: every input is zero-padded and split into stride
                   phases ("phase planes") and every output is computed on a "grid" with the
                   planes' row pitch, so that each kernel tap reads ONE contiguous run for a
                   whole block of rows, for every stride and dilation, with no bounds tests.
``blas.py``        CBLAS ``?gemm`` found in NumPy's OpenBLAS (ctypes; ``np.dot`` is the
                   fallback) and BLAS held to one thread while Numba's threads run.
``gemm.py``        dense and grouped convolution (C_in/groups > 1): im2col blocks in
                   per-thread scratch that stays in cache, one gemm per work unit.
``pointwise.py``   1 x 1 convolution (stride 1, no padding): one gemm per unit straight on
                   the images (they are already their im2col matrices).
``batched.py``     a kernel shared by the batch on small maps: the samples' exact im2col
                   columns side by side, one product over the whole batch.
``depthwise.py``   depthwise convolution (C_in/groups = 1, any channel multiplier): direct
                   loops over tap runs (a gemm's inner dimension would be only kh*kw), the
                   padding fused into each work unit, dx and dW in one fused backward pass.
``reductions.py``  kernel aggregation (row mixes, row inner products) and the per-plane sums
                   of the bias gradient and the global average pool, parallel over rows.
``attention.py``   the attention branch as one jitted call per pass (tiny arrays: the
                   composition's cost would be interpreter work).
``threads.py``     one thread for calls too small to pay for a parallel region.
``compiling.py``   a notice on stderr when a first call compiles.

Every ``prange`` runs over work units that own what they write (no two write the same
element), with per-thread scratch indexed by ``numba.get_thread_id()``. Kernels compile on
first use; ``cache=True`` keeps the machine code on disk for the next process.
"""
import numpy as np

from ..geometry import conv_output_shape
from . import batched, depthwise, gemm, pointwise
from .attention import attention_backward, attention_forward  # noqa: F401 (contract)
from .blas import ensure_available  # noqa: F401 (contract)
from .reductions import (add_spatial_mean_grad, aggregate_backward,  # noqa: F401 (contract)
                         aggregate_forward, spatial_mean, spatial_sums)
from .compiling import announces_compilation
from .threads import DIRECT_PARALLEL_FROM, PARALLEL_FROM, threads_for

NAME = "numba"


@announces_compilation
def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """y (N, C_out, H_out, W_out) = per-sample (or shared) convolution of x with w, plus b."""
    n, c_out, out_h, out_w = conv_output_shape(x.shape, w.shape, stride, padding, dilation)
    nw, c_group = w.shape[0], w.shape[2]
    stride, padding, dilation = tuple(stride), tuple(padding), tuple(dilation)
    y = np.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    b = np.zeros((nw, c_out), x.dtype) if b is None else b
    with threads_for(_multiply_adds(y, w), _parallel_from(w, y.shape)):
        if c_group == 1:
            depthwise.conv_forward(x, w, b, y, stride, padding, dilation)
        elif batched.applies(n, w.shape, out_h * out_w):
            batched.conv_forward(x, w, b, y, stride, padding, dilation, groups)
        elif pointwise.applies(w.shape, stride, padding):
            pointwise.conv_forward(x, w, b, y, groups)
        else:
            gemm.conv_forward(x, w, b, y, stride, padding, dilation, groups)
    return y


def _parallel_from(w, y_shape):
    """Multiply-adds from which a convolution runs on all threads (``threads.py``)."""
    direct = w.shape[2] == 1 and depthwise.is_direct(y_shape)
    return DIRECT_PARALLEL_FROM if direct else PARALLEL_FROM


def _multiply_adds(y, w):
    """Multiply-adds of one convolution pass: each output element sums Cg*kh*kw products."""
    return y.size * w.shape[2] * w.shape[3] * w.shape[4]


@announces_compilation
def conv2d_backward(dy, x, w, stride, padding, dilation, groups, has_bias):
    """(dx, dw, db) of ``conv2d_forward``; dw has w's shape, db is (Nw, C_out) or None."""
    n, nw, c_group = dy.shape[0], w.shape[0], w.shape[2]
    stride, padding, dilation = tuple(stride), tuple(padding), tuple(dilation)
    shared = nw == 1 and n != 1
    db = None
    if has_bias:
        db = spatial_sums(dy)
        db = db.sum(axis=0, keepdims=True) if shared else db
    dx = np.empty_like(x)
    with threads_for(2 * _multiply_adds(dy, w), _parallel_from(w, dy.shape)):
        if c_group == 1:
            dw = depthwise.conv_backward(dy, x, w, dx, stride, padding, dilation)
        elif batched.applies(n, w.shape, dy.shape[2] * dy.shape[3]):
            dw = batched.conv_backward(dy, x, w, dx, stride, padding, dilation, groups)
        elif pointwise.applies(w.shape, stride, padding):
            dw = pointwise.conv_backward(dy, x, w, dx, groups)
        else:
            dw = gemm.conv_backward(dy, x, w, dx, stride, padding, dilation, groups)
    if shared and dw.shape[0] > 1:
        dw = dw.sum(axis=0, keepdims=True)  # per-sample dW, summed in order
    return dx, dw.reshape(w.shape), db
