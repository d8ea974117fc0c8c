"""Dense and grouped convolution (C_in/groups > 1): im2col + CBLAS gemm, per work unit.

x is padded and split into phase planes once per call (``planes.padded_batch``); then each work
unit builds its im2col block from contiguous tap runs into per-thread scratch buffers that stay
in cache, and multiplies it with one call of ``blas.matmul``:

    cols (Cg*kh*kw, P) = im2col(x[n, group g])          P = grid positions of the unit
    y[n, g] (Cog, P)   = W[n, g] (Cog, Cg*kh*kw) @ cols + b[n, g]
    dW[n, g]           = dy[n, g] @ cols^T               (summed over n when Nw = 1)
    dcols              = W[n, g]^T @ dy[n, g]  -> col2im -> dx[n, g]

Every ``prange`` runs over units that own what they write: (sample, group, block of output
rows) for y; (sample, group) for dx and for dW, which is written per sample even when the
batch shares one kernel (Nw = 1): the caller sums those in sample order. Where such per-sample
parts would outweigh dy and x (``planes.sums_batch_in_kernel``: small maps, many channels), a
shared kernel's dW is instead summed by units of (group, block of output channels), each adding
its samples' products in order. Either way the result does not depend on the number of threads.
The kernels run inside ``blas_threads.single_threaded_blas``.
"""
import numba
import numpy as np
from numba import njit, prange

from ..blas_threads import single_threaded_blas
from .blas import cblas_gemm, matmul
from .planes import (channels_per_unit, image_onto_grid, pad_transfer, padded_batch,
                     plane_geometry, sums_batch_in_kernel, thread_slots)
from .runs import copy_run, gather, scatter, zero

# Grid positions per forward work unit, at most: the unit's im2col block (Cg*kh*kw x this)
# and its product stay in cache, and the matrix product is still large enough for BLAS.
POSITIONS_PER_BLOCK = 512
# The forward product is formed transposed, (P, Cog) = cols^T @ W^T, when C_out/groups is
# below this: OpenBLAS is faster that way on few output channels, slower on many.
TRANSPOSED_BELOW = 64


@njit(cache=True)
def _im2col(cols, planes, taps, shift):
    """cols[c kh kw + tap] = the run that tap ``tap`` of channel c reads, from grid position
    ``shift`` on; planes (Cg, s0*s1*L): one (sample, group)'s phase planes, flat."""
    for c in range(planes.shape[0]):
        plane = planes[c]
        for tap in range(taps.size):
            gather(cols[c * taps.size + tap], plane, taps[tap] + shift)


@njit(cache=True, parallel=True)
def _forward(gemm, planes, w, b, y, cols_buf, prod_buf, taps, pitch, rows_per_block,
             transposed):
    """y[n, g] = W[n, g] @ im2col(x[n, g]) + b[n, g], one (sample, group, row block) per unit.

    Blocked by output rows: a unit covers rows_per_block grid rows (at most
    POSITIONS_PER_BLOCK positions), so its im2col block cols (Cg*kh*kw, P) and the product
    (Cog, P) = W @ cols live in the thread's scratch (cols_buf[t], prod_buf[t]) in cache,
    and even N = 1 spreads over the threads. ``transposed`` forms the product as
    (P, Cog) = cols^T @ W^T instead (the copy into y then reads with a stride of Cog instead
    of contiguous runs).
    planes (N, G, Cg, s0*s1*L) (each image's phase planes, flat); taps from ``tap_offsets``;
    w (Nw, G, Cog, Cg*kh*kw); b (Nw, G, Cog); y (N, G, Cog, Ho, Wo).
    """
    n_batch, n_groups = planes.shape[0], planes.shape[1]
    n_out, depth = w.shape[2], w.shape[3]
    out_h, out_w = y.shape[3], y.shape[4]
    n_blocks = (out_h + rows_per_block - 1) // rows_per_block
    for unit in prange(n_batch * n_groups * n_blocks):
        n, rest = unit // (n_groups * n_blocks), unit % (n_groups * n_blocks)
        g, block = rest // n_blocks, rest % n_blocks
        wn = n if w.shape[0] > 1 else 0
        h0 = block * rows_per_block
        h1 = min(out_h, h0 + rows_per_block)
        positions = (h1 - h0) * pitch
        thread = numba.get_thread_id()
        cols = cols_buf[thread, :depth * positions].reshape(depth, positions)
        _im2col(cols, planes[n, g], taps, np.uintp(h0 * pitch))
        product = prod_buf[thread, :n_out * positions]
        if transposed:
            matmul(gemm, cols, True, w[wn, g], True, product.reshape(positions, n_out), False)
        else:
            matmul(gemm, w[wn, g], False, cols, False, product.reshape(n_out, positions), False)
        for o in range(n_out):
            target = y[n, g, o].reshape(out_h * out_w)
            for h in range(h0, h1):
                if transposed:
                    copy_run(target, h * out_w, 1, product, (h - h0) * pitch * n_out + o,
                             n_out, out_w)
                else:  # unit step known when compiling: vectorised
                    copy_run(target, h * out_w, 1, product, o * positions + (h - h0) * pitch,
                             1, out_w)
            block, bias = target[h0 * out_w:h1 * out_w], b[wn, g, o]
            for q in range(block.size):
                block[q] += bias


@njit(cache=True, parallel=True)
def _backward(gemm, dy, planes, w, dx, dw_slots, cols_buf, dy_buf, plane_buf, taps, pitch,
              stride, padding, weight_units):
    """dx and dW of ``_forward``: two units per (sample, group), one for each (without
    ``weight_units``: only the dx units; dW then comes from ``_batch_weight_grad``).

    Blocked by (sample, group), split into a weight-gradient and an input-gradient unit so
    that even one sample keeps two threads busy. A unit holds its (sample, group)'s whole
    im2col matrix (or its gradient) in the thread's scratch cols_buf[t], and dy on the grid
    (zeros in the dropped columns) in dy_buf[t]:
        weight unit: cols = im2col(x[n, g]);  dW[n, g] = dy[n, g] @ cols^T
        input unit:  cols = W[n, g]^T @ dy[n, g];  col2im onto the padded planes
                     plane_buf[t], cropped into dx[n, g] (the unit owns dx[n, g])
    dW[n, g] goes into dw_slots[n, g] (N slots, also for a shared kernel: the caller sums them
    in sample order, the same sum whatever the number of threads).
    dy (N, G, Cog, Ho, Wo); planes (N, G, Cg, s0*s1*L); dx (N, G, Cg, H, W); w (Nw, G, Cog, D).
    """
    n_batch, n_groups, c_group = planes.shape[0], planes.shape[1], planes.shape[2]
    n_out, depth = w.shape[2], w.shape[3]
    out_h = dy.shape[3]
    positions = out_h * pitch
    kinds = 2 if weight_units else 1
    for unit in prange(kinds * n_batch * n_groups):
        n, g = unit // kinds // n_groups, unit // kinds % n_groups
        thread = numba.get_thread_id()
        wn = n if w.shape[0] > 1 else 0
        cols = cols_buf[thread, :depth * positions].reshape(depth, positions)
        dy_grid = dy_buf[thread, :n_out * positions].reshape(n_out, positions)
        for o in range(n_out):
            image_onto_grid(dy[n, g, o], dy_grid[o], pitch)
        if unit % kinds == 1:
            _im2col(cols, planes[n, g], taps, np.uintp(0))
            # the unit owns dW[n, g]
            matmul(gemm, dy_grid, False, cols, True, dw_slots[n, g], False)
        else:
            matmul(gemm, w[wn, g], True, dy_grid, False, cols, False)
            for c in range(c_group):
                plane = plane_buf[thread, c]
                flat = plane.reshape(plane.size)
                zero(flat)
                for tap in range(taps.size):
                    scatter(cols[c * taps.size + tap], flat, taps[tap])
                pad_transfer(dx[n, g, c], plane, padding, pitch, stride, False)


@njit(cache=True, parallel=True)
def _batch_weight_grad(gemm, dy, planes, dw, cols_buf, dy_buf, taps, pitch, rows_per_block):
    """dW[g, rows] = sum_n dy[n, g, rows] @ im2col(x[n, g])^T for a kernel shared by the batch:
    one (group, block of ``rows_per_block`` output channels) per unit, adding the samples in
    order (its im2col block and dy rows in the thread's scratch, as ``_backward``).
    dy (N, G, Cog, Ho, Wo); planes (N, G, Cg, s0*s1*L); dw (G, Cog, Cg*kh*kw)."""
    n_batch, n_groups = planes.shape[0], planes.shape[1]
    n_out, depth = dw.shape[1], dw.shape[2]
    positions = dy.shape[3] * pitch
    n_blocks = (n_out + rows_per_block - 1) // rows_per_block
    for unit in prange(n_groups * n_blocks):
        g, block = unit // n_blocks, unit % n_blocks
        o0 = block * rows_per_block
        o1 = min(n_out, o0 + rows_per_block)
        thread = numba.get_thread_id()
        cols = cols_buf[thread, :depth * positions].reshape(depth, positions)
        dy_grid = dy_buf[thread, :(o1 - o0) * positions].reshape(o1 - o0, positions)
        for n in range(n_batch):
            for o in range(o0, o1):
                image_onto_grid(dy[n, g, o], dy_grid[o - o0], pitch)
            _im2col(cols, planes[n, g], taps, np.uintp(0))
            matmul(gemm, dy_grid, False, cols, True, dw[g, o0:o1], n > 0)


def _rows_per_block(out_h, pitch, n_units):
    """Equal blocks of grid rows of at most POSITIONS_PER_BLOCK positions, and at least two
    blocks per thread in all when there are few (sample, group) pairs."""
    blocks = max(-(-out_h * pitch // POSITIONS_PER_BLOCK), -(-2 * thread_slots() // n_units))
    return -(-out_h // min(out_h, blocks))


def conv_forward(x, w, b, y, stride, padding, dilation, groups):
    """y = conv(x, w) + b, written into y (N, C_out, Ho, Wo); b (Nw, C_out), not None."""
    n, c_out, out_h, out_w = y.shape
    nw, _, c_group, kh, kw = w.shape
    planes, taps, pitch = padded_batch(x, kh, kw, stride, padding, dilation)
    depth, c_out_group = c_group * kh * kw, c_out // groups
    rows_per_block = _rows_per_block(out_h, pitch, n * groups)
    positions = rows_per_block * pitch
    slots = thread_slots()
    cols_buf = np.empty((slots, depth * positions), x.dtype)
    prod_buf = np.empty((slots, positions * c_out_group), x.dtype)
    with single_threaded_blas():
        _forward(cblas_gemm(x.dtype), planes.reshape((n, groups, c_group) + planes.shape[2:]),
                 w.reshape(nw, groups, c_out_group, depth), b.reshape(nw, groups, c_out_group),
                 y.reshape(n, groups, c_out_group, out_h, out_w), cols_buf, prod_buf, taps,
                 pitch, rows_per_block, c_out_group < TRANSPOSED_BELOW)


def conv_backward(dy, x, w, dx, stride, padding, dilation, groups):
    """dx (written into dx) and dW: per sample (N, G, Cog, Cg*kh*kw), which the caller sums for
    a kernel shared by the batch, or already summed (1, G, Cog, Cg*kh*kw) where
    ``planes.sums_batch_in_kernel`` says so."""
    n, c_out, out_h, out_w = dy.shape
    nw, _, c_group, kh, kw = w.shape
    phases, length, _ = plane_geometry(x.shape, kw, stride, padding, dilation)
    planes, taps, pitch = padded_batch(x, kh, kw, stride, padding, dilation)
    slots, positions = thread_slots(), out_h * pitch
    depth, c_out_group = c_group * kh * kw, c_out // groups
    summed = sums_batch_in_kernel(nw, n, w.size, dy.size, x.size)
    dw = np.empty((1 if summed else n, groups, c_out_group, depth), x.dtype)
    cols_buf = np.empty((slots, depth * positions), x.dtype)
    dy_buf = np.empty((slots, c_out_group * positions), x.dtype)
    plane_buf = np.empty((slots, c_group, phases, length), x.dtype)
    gemm = cblas_gemm(x.dtype)
    dy_units = dy.reshape(n, groups, c_out_group, out_h, out_w)
    plane_units = planes.reshape((n, groups, c_group) + planes.shape[2:])
    with single_threaded_blas():
        _backward(gemm, dy_units, plane_units, w.reshape(nw, groups, c_out_group, depth),
                  dx.reshape((n, groups, c_group) + x.shape[2:]), dw, cols_buf, dy_buf,
                  plane_buf, taps, pitch, stride, padding, not summed)
        if summed:
            _batch_weight_grad(gemm, dy_units, plane_units, dw[0], cols_buf, dy_buf, taps, pitch,
                               channels_per_unit(c_out_group, groups))
    return dw
