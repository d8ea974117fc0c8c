"""Pointwise convolution (1 x 1 kernel, stride 1, no padding, C_in/groups > 1): one CBLAS
gemm per work unit straight on the images, with no padding, im2col or copy-out.

An image x[n, g] (Cg, H, W) is already the im2col matrix of a 1 x 1 kernel, (Cg, P) with
P = H W, and y[n, g] (Cog, P) is already the product's layout, so (dilation plays no part)

    y[n, g]  = W[n, g] (Cog, Cg) @ x[n, g] + b[n, g]
    dW[n, g] = dy[n, g] @ x[n, g]^T                  (summed over n when Nw = 1)
    dx[n, g] = W[n, g]^T @ dy[n, g]

The layers of MobileNets are mostly of this kind. Work units own what they write: the forward
splits each (sample, group) into blocks of output channels and of positions when there are too
few pairs to keep the threads busy (``planes.block_shape``; a block of columns of x[n, g] and
y[n, g] is read with its row pitch); the backward has an input-gradient unit per (sample,
group) and, as ``gemm.py``, either a weight-gradient unit per (sample, group), whose parts the
caller sums in sample order, or, for a kernel shared by the batch whose per-sample parts would
outweigh dy and x (``planes.sums_batch_in_kernel``), units of output channels that add the
samples' products in order. (A shared kernel on maps of at most 16 positions takes
``batched.py`` instead.)
"""
import numpy as np
from numba import njit, prange

from ..blas_threads import single_threaded_blas
from .blas import cblas_gemm, matmul
from .planes import block_shape, channels_per_unit, sums_batch_in_kernel


def applies(w_shape, stride, padding):
    """True for the convolutions this path computes: 1 x 1 kernels, stride 1, no padding, and
    more than one input channel per group (C_in/groups = 1 is the depthwise path's)."""
    return (w_shape[2] > 1 and w_shape[3] == w_shape[4] == 1 and tuple(stride) == (1, 1)
            and tuple(padding) == (0, 0))


@njit(cache=True, parallel=True)
def _forward(gemm, x, w, b, y, rows_per_block, columns_per_block):
    """y[n, g, rows, cols] = W[n, g, rows] @ x[n, g, :, cols] + b[n, g, rows], one (sample,
    group, block of rows, block of columns) per unit. x (N, G, Cg, P); w (Nw, G, Cog, Cg);
    b (Nw, G, Cog); y (N, G, Cog, P)."""
    n_batch, n_groups, n_out, positions = y.shape
    row_blocks = (n_out + rows_per_block - 1) // rows_per_block
    column_blocks = (positions + columns_per_block - 1) // columns_per_block
    blocks = row_blocks * column_blocks
    for unit in prange(n_batch * n_groups * blocks):
        n, rest = unit // (n_groups * blocks), unit % (n_groups * blocks)
        g, block = rest // blocks, rest % blocks
        wn = n if w.shape[0] > 1 else 0
        o0 = block // column_blocks * rows_per_block
        o1 = min(n_out, o0 + rows_per_block)
        p0 = block % column_blocks * columns_per_block
        p1 = min(positions, p0 + columns_per_block)
        out = y[n, g, o0:o1, p0:p1]
        matmul(gemm, w[wn, g, o0:o1], False, x[n, g, :, p0:p1], False, out, False)
        for o in range(o1 - o0):
            bias = b[wn, g, o0 + o]
            for p in range(p1 - p0):
                out[o, p] += bias


@njit(cache=True, parallel=True)
def _backward(gemm, dy, x, w, dx, dw_parts, weight_units):
    """dx[n, g] = W[n, g]^T @ dy[n, g], one unit per (sample, group); with ``weight_units`` also
    dW per sample, dw_parts[n, g] = dy[n, g] @ x[n, g]^T, one more unit per (sample, group).
    dy (N, G, Cog, P); x, dx (N, G, Cg, P); w (Nw, G, Cog, Cg); dw_parts (N, G, Cog, Cg)."""
    n_batch, n_groups = dy.shape[0], dy.shape[1]
    kinds = 2 if weight_units else 1
    for unit in prange(kinds * n_batch * n_groups):
        n, g = unit // kinds // n_groups, unit // kinds % n_groups
        if unit % kinds == 1:
            matmul(gemm, dy[n, g], False, x[n, g], True, dw_parts[n, g], False)
        else:
            wn = n if w.shape[0] > 1 else 0
            matmul(gemm, w[wn, g], True, dy[n, g], False, dx[n, g], False)


@njit(cache=True, parallel=True)
def _batch_weight_grad(gemm, dy, x, dw, rows_per_block):
    """dW[g, rows] = sum_n dy[n, g, rows] @ x[n, g]^T, for a kernel shared by the batch: one
    (group, block of ``rows_per_block`` output channels) per unit, adding the samples in order.
    dy (N, G, Cog, P); x (N, G, Cg, P); dw (G, Cog, Cg)."""
    n_batch, n_groups, n_out = dy.shape[0], dy.shape[1], dy.shape[2]
    n_blocks = (n_out + rows_per_block - 1) // rows_per_block
    for unit in prange(n_groups * n_blocks):
        g, block = unit // n_blocks, unit % n_blocks
        o0 = block * rows_per_block
        o1 = min(n_out, o0 + rows_per_block)
        for n in range(n_batch):
            matmul(gemm, dy[n, g, o0:o1], False, x[n, g], True, dw[g, o0:o1], n > 0)


def conv_forward(x, w, b, y, groups):
    """y = conv(x, w) + b for a 1 x 1 kernel, written into y (N, C_out, H, W); b (Nw, C_out)."""
    n, c_out, height, width = y.shape
    nw, _, c_group = w.shape[:3]
    c_out_group = c_out // groups
    with single_threaded_blas():
        _forward(cblas_gemm(x.dtype), x.reshape(n, groups, c_group, height * width),
                 w.reshape(nw, groups, c_out_group, c_group), b.reshape(nw, groups, c_out_group),
                 y.reshape(n, groups, c_out_group, height * width),
                 *block_shape(c_out_group, height * width, n * groups))


def conv_backward(dy, x, w, dx, groups):
    """dx (written into dx) and dW: per sample (N, G, Cog, Cg), which the caller sums for a
    kernel shared by the batch, or already summed (1, G, Cog, Cg) where
    ``planes.sums_batch_in_kernel`` says so."""
    n, c_out, height, width = dy.shape
    nw, _, c_group = w.shape[:3]
    c_out_group = c_out // groups
    summed = sums_batch_in_kernel(nw, n, w.size, dy.size, x.size)
    dw = np.empty((1 if summed else n, groups, c_out_group, c_group), x.dtype)
    gemm = cblas_gemm(x.dtype)
    dy_units = dy.reshape(n, groups, c_out_group, height * width)
    x_units = x.reshape(n, groups, c_group, height * width)
    with single_threaded_blas():
        _backward(gemm, dy_units, x_units, w.reshape(nw, groups, c_out_group, c_group),
                  dx.reshape(n, groups, c_group, height * width), dw, not summed)
        if summed:
            _batch_weight_grad(gemm, dy_units, x_units, dw[0],
                               channels_per_unit(c_out_group, groups))
    return dw
