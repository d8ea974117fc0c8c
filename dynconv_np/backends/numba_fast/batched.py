"""A kernel shared by the batch on small maps: one product over the whole batch.

On maps of a few positions (the last stages of CIFAR-sized networks, and the K C_out stacked
kernels of a dynamic layer that mixes outputs) a product per sample is a thin one (P columns)
and the padded grid of ``gemm.py`` computes several dropped columns per kept one (1 x 1 maps
with 3 x 3 kernels: 2 of 3). Here every sample's exact im2col columns sit side by side:

    cols (Cg kh kw, N P)   cols[(c, i, j), n P + p] = x[n, g Cg + c, h s0 - p0 + i d0,
                                                        w s1 - p1 + j d1]  (0 outside)
    y[:, g]   = W[g] (Cog, Cg kh kw) @ cols[g] + b[g]          one product per group
    dW[g]     = dy[:, g] (Cog, N P) @ cols[g]^T                 the sum over the batch, in
                                                                 BLAS's order
    dcols[g]  = W[g]^T @ dy[:, g]  -> col2im -> dx               each sample's own columns

(p = h W_out + w). The products are split into blocks of rows (``planes.block_shape``), each a
work unit that owns its rows; im2col, col2im and the copies between the (N, C, P) and (C, N P)
layouts run one sample per unit. Results do not depend on the number of threads.
"""
import numpy as np
from numba import njit, prange

from ..blas_threads import single_threaded_blas
from .blas import cblas_gemm, matmul
from .planes import block_shape

# Output positions per map up to which a shared kernel takes this path
BATCHED_UP_TO = 16


def applies(n, w_shape, out_positions):
    """True for a kernel shared by a batch (Nw = 1, N > 1) on maps of at most BATCHED_UP_TO
    output positions, with more than one input channel per group."""
    return w_shape[0] == 1 and n > 1 and w_shape[2] > 1 and out_positions <= BATCHED_UP_TO


@njit(cache=True, parallel=True)
def _im2col(x, cols, kh, kw, stride, padding, dilation, out_w):
    """cols (G, Cg kh kw, N P) = the exact im2col columns of every sample, one per unit."""
    n_batch, n_groups, c_group = x.shape[0], cols.shape[0], x.shape[1] // cols.shape[0]
    height, width = x.shape[2], x.shape[3]
    positions = cols.shape[2] // n_batch
    for n in prange(n_batch):
        for g in range(n_groups):
            for c in range(c_group):
                for i in range(kh):
                    for j in range(kw):
                        row = cols[g, (c * kh + i) * kw + j]
                        for p in range(positions):
                            r = p // out_w * stride[0] - padding[0] + i * dilation[0]
                            q = p % out_w * stride[1] - padding[1] + j * dilation[1]
                            inside = 0 <= r < height and 0 <= q < width
                            row[n * positions + p] = x[n, g * c_group + c, r, q] if inside else 0


@njit(cache=True)
def _col2im_add(dcols, dx, n, kh, kw, stride, padding, dilation, out_w):
    """dx[n] += col2im(dcols[:, :, n P : (n + 1) P]): sample n's columns added back."""
    n_groups, c_group = dcols.shape[0], dx.shape[1] // dcols.shape[0]
    height, width = dx.shape[2], dx.shape[3]
    positions = dcols.shape[2] // dx.shape[0]
    for g in range(n_groups):
        for c in range(c_group):
            for i in range(kh):
                for j in range(kw):
                    row = dcols[g, (c * kh + i) * kw + j]
                    for p in range(positions):
                        r = p // out_w * stride[0] - padding[0] + i * dilation[0]
                        q = p % out_w * stride[1] - padding[1] + j * dilation[1]
                        if 0 <= r < height and 0 <= q < width:
                            dx[n, g * c_group + c, r, q] += row[n * positions + p]


@njit(cache=True, parallel=True)
def _products(gemm, a, transpose_a, b, transpose_b, c, rows_per_block):
    """c[g] = op(a[g]) @ op(b[g]) (op: transpose where its flag is set), one (group, block of
    rows of c) per unit. a (G, M, K), or (G, K, M) when ``transpose_a``; b (G, K, N), or
    (G, N, K) when ``transpose_b``; c (G, M, N)."""
    n_groups, n_rows = c.shape[0], c.shape[1]
    n_blocks = (n_rows + rows_per_block - 1) // rows_per_block
    for unit in prange(n_groups * n_blocks):
        g, block = unit // n_blocks, unit % n_blocks
        r0 = block * rows_per_block
        r1 = min(n_rows, r0 + rows_per_block)
        rows_of_a = a[g, :, r0:r1] if transpose_a else a[g, r0:r1]
        matmul(gemm, rows_of_a, transpose_a, b[g], transpose_b, c[g, r0:r1], False)


@njit(cache=True, parallel=True)
def _to_batch_columns(a, columns):
    """columns (G, C/G, N P) = a (N, C, P) with its samples side by side, one sample per unit."""
    n_batch, n_groups, per_group = a.shape[0], columns.shape[0], columns.shape[1]
    positions = a.shape[2]
    for n in prange(n_batch):
        for g in range(n_groups):
            for c in range(per_group):
                for p in range(positions):
                    columns[g, c, n * positions + p] = a[n, g * per_group + c, p]


@njit(cache=True, parallel=True)
def _from_batch_columns(columns, b, y):
    """y (N, C, P) = columns (G, C/G, N P) back in the batch layout, plus b (C,)."""
    n_batch, n_groups, per_group = y.shape[0], columns.shape[0], columns.shape[1]
    positions = y.shape[2]
    for n in prange(n_batch):
        for g in range(n_groups):
            for c in range(per_group):
                bias = b[g * per_group + c]
                for p in range(positions):
                    y[n, g * per_group + c, p] = columns[g, c, n * positions + p] + bias


@njit(cache=True, parallel=True)
def _col2im_batch(dcols, dx, kh, kw, stride, padding, dilation, out_w):
    """dx = col2im of every sample's columns, one sample per unit (which owns dx[n])."""
    for n in prange(dx.shape[0]):
        dx[n] = 0
        _col2im_add(dcols, dx, n, kh, kw, stride, padding, dilation, out_w)


def _geometry_args(w, stride, padding, dilation, out_w):
    return w.shape[3], w.shape[4], tuple(stride), tuple(padding), tuple(dilation), out_w


def conv_forward(x, w, b, y, stride, padding, dilation, groups):
    """y = conv(x, w) + b for a shared kernel w (1, C_out, Cg, kh, kw); b (1, C_out)."""
    n, c_out, out_h, out_w = y.shape
    _, _, c_group, kh, kw = w.shape
    depth, positions = c_group * kh * kw, out_h * out_w
    cols = np.empty((groups, depth, n * positions), x.dtype)
    product = np.empty((groups, c_out // groups, n * positions), x.dtype)
    kernels = w.reshape(groups, c_out // groups, depth)
    with single_threaded_blas():
        _im2col(x, cols, *_geometry_args(w, stride, padding, dilation, out_w))
        _products(cblas_gemm(x.dtype), kernels, False, cols, False, product,
                  block_shape(c_out // groups, n * positions, groups)[0])
    _from_batch_columns(product, b[0], y.reshape(n, c_out, positions))


def conv_backward(dy, x, w, dx, stride, padding, dilation, groups):
    """dx (written into dx) and dW (1, G, Cog, Cg kh kw), summed over the batch."""
    n, c_out, out_h, out_w = dy.shape
    _, _, c_group, kh, kw = w.shape
    depth, positions = c_group * kh * kw, out_h * out_w
    geometry = _geometry_args(w, stride, padding, dilation, out_w)
    cols = np.empty((groups, depth, n * positions), x.dtype)
    dy_cols = np.empty((groups, c_out // groups, n * positions), x.dtype)
    dcols = np.empty_like(cols)
    dw = np.empty((1, groups, c_out // groups, depth), x.dtype)
    gemm = cblas_gemm(x.dtype)
    with single_threaded_blas():
        _im2col(x, cols, *geometry)
        _to_batch_columns(dy.reshape(n, c_out, positions), dy_cols)
        _products(gemm, dy_cols, False, cols, True, dw[0],
                  block_shape(c_out // groups, depth, groups)[0])
        _products(gemm, w.reshape(groups, c_out // groups, depth), True, dy_cols, False, dcols,
                  block_shape(depth, n * positions, groups)[0])
    _col2im_batch(dcols, dx, *geometry)
    return dw
