"""Pointwise convolution (1 x 1 kernel, stride 1, no padding, C_in/groups > 1): one CBLAS
gemm per work unit straight on the images, with no padding, im2col or copy-out.

An image x[n, g] (Cg, H, W) is already the im2col matrix of a 1 x 1 kernel, (Cg, P) with
P = H W, and y[n, g] (Cog, P) is already the product's layout, so (dilation plays no part)

    y[n, g]  = W[n, g] (Cog, Cg) @ x[n, g] + b[n, g]
    dW[n, g] = dy[n, g] @ x[n, g]^T                  (summed over n when Nw = 1)
    dx[n, g] = W[n, g]^T @ dy[n, g]

The layers of MobileNets are mostly of this kind. Work units own what they write: the forward
splits the output channels of each (sample, group) into blocks when there are too few pairs to
keep the threads busy (a block of rows of y[n, g] and of W[n, g] is still contiguous); the
backward has a weight-gradient and an input-gradient unit per (sample, group), as ``gemm.py``,
with dW written per sample and summed by the caller in sample order.
"""
import numba
import numpy as np
from numba import njit, prange

from ..blas_threads import single_threaded_blas
from .blas import cblas_gemm, matmul
from .planes import thread_slots


def applies(w_shape, stride, padding):
    """True for the convolutions this path computes: 1 x 1 kernels, stride 1, no padding, and
    more than one input channel per group (C_in/groups = 1 is the depthwise path's)."""
    return (w_shape[2] > 1 and w_shape[3] == w_shape[4] == 1 and tuple(stride) == (1, 1)
            and tuple(padding) == (0, 0))


@njit(cache=True, parallel=True)
def _forward(gemm, x, w, b, y, rows_per_block):
    """y[n, g, rows] = W[n, g, rows] @ x[n, g] + b[n, g, rows], one (sample, group, block of
    ``rows_per_block`` output channels) per unit. x (N, G, Cg, P); w (Nw, G, Cog, Cg);
    b (Nw, G, Cog); y (N, G, Cog, P)."""
    n_batch, n_groups, n_out = y.shape[0], y.shape[1], y.shape[2]
    n_blocks = (n_out + rows_per_block - 1) // rows_per_block
    for unit in prange(n_batch * n_groups * n_blocks):
        n, rest = unit // (n_groups * n_blocks), unit % (n_groups * n_blocks)
        g, block = rest // n_blocks, rest % n_blocks
        wn = n if w.shape[0] > 1 else 0
        o0 = block * rows_per_block
        o1 = min(n_out, o0 + rows_per_block)
        out = y[n, g, o0:o1]
        matmul(gemm, w[wn, g, o0:o1], False, x[n, g], False, out)
        for o in range(o1 - o0):
            bias, row = b[wn, g, o0 + o], out[o]
            for p in range(row.size):
                row[p] += bias


@njit(cache=True, parallel=True)
def _backward(gemm, dy, x, w, dx, dw_parts):
    """dW per sample (dw_parts[n, g] = dy[n, g] @ x[n, g]^T) and dx[n, g] = W[n, g]^T @ dy[n, g]:
    two units per (sample, group), one for each. dy (N, G, Cog, P); x, dx (N, G, Cg, P);
    w (Nw, G, Cog, Cg); dw_parts (N, G, Cog, Cg)."""
    n_batch, n_groups = dy.shape[0], dy.shape[1]
    for unit in prange(2 * n_batch * n_groups):
        n, g = unit // 2 // n_groups, unit // 2 % n_groups
        if unit % 2 == 0:
            matmul(gemm, dy[n, g], False, x[n, g], True, dw_parts[n, g])
        else:
            matmul(gemm, w[n if w.shape[0] > 1 else 0, g], True, dy[n, g], False, dx[n, g])


def _rows_per_block(n_out, n_units):
    """Output channels per forward unit: all of them, unless there are fewer (sample, group)
    pairs than two per thread; then blocks that make about that many units."""
    blocks = min(n_out, -(-2 * thread_slots() // n_units))
    return -(-n_out // blocks)


def conv_forward(x, w, b, y, groups):
    """y = conv(x, w) + b for a 1 x 1 kernel, written into y (N, C_out, H, W); b (Nw, C_out)."""
    n, c_out, height, width = y.shape
    nw, _, c_group = w.shape[:3]
    c_out_group = c_out // groups
    with single_threaded_blas():
        _forward(cblas_gemm(x.dtype), x.reshape(n, groups, c_group, height * width),
                 w.reshape(nw, groups, c_out_group, c_group), b.reshape(nw, groups, c_out_group),
                 y.reshape(n, groups, c_out_group, height * width),
                 _rows_per_block(c_out_group, n * groups))


def conv_backward(dy, x, w, dx, groups):
    """dx (written into dx) and dW per sample (N, G, Cog, Cg); for a kernel shared by the
    batch, the caller sums dW over axis 0."""
    n, c_out, height, width = dy.shape
    nw, _, c_group = w.shape[:3]
    c_out_group = c_out // groups
    dw_parts = np.empty((n, groups, c_out_group, c_group), x.dtype)
    with single_threaded_blas():
        _backward(cblas_gemm(x.dtype), dy.reshape(n, groups, c_out_group, height * width),
                  x.reshape(n, groups, c_group, height * width),
                  w.reshape(nw, groups, c_out_group, c_group),
                  dx.reshape(n, groups, c_group, height * width), dw_parts)
    return dw_parts
