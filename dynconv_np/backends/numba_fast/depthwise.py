"""Depthwise convolution (C_in/groups = 1, optionally with a channel multiplier m): direct loops.

Each output channel reads one input channel, so a matrix product would have an inner dimension
of kh*kw only; direct loops over tap runs (``runs.py``) do the work instead. One
(sample, input channel) per work unit, with the padding fused in: the unit pads its channel
into the thread's phase planes (per-thread scratch that stays in L1/L2; no whole-batch padded
copy). The forward accumulates three taps per pass over the output grid (fewer loads and stores
of the grid); the backward computes dx and dW in one fused pass over each (sample, channel).
Kernels shared by the batch get per-sample dW, which the caller sums.

Small maps (at most ``DIRECT_UP_TO`` output positions: the last stages of MobileNets on
CIFAR-sized images) take direct loops instead: each output reads its taps straight from x with
a bounds test, and the padding, grid and crop, which would cost several times the arithmetic
of a 2 x 2 map, are not built at all.
"""
import numba
import numpy as np
from numba import njit, prange

from .planes import image_onto_grid, pad_transfer, plane_geometry, tap_offsets, thread_slots
from .runs import copy_run, grid_axpy, grid_axpy3, plane_axpy, run_dot, zero

# Output positions per map up to which the direct loops are faster than padded planes and
# grids (measured on the 2-core build machine: 2x faster at 4 positions, even at 16, 3x
# slower at 64 for stride 1).
DIRECT_UP_TO = 16


@njit(cache=True, parallel=True)
def _forward(x, w, b, y, plane_buf, grid_buf, taps, padding, pitch, stride):
    """y[n, o] = b[n, o] + sum_{i,j} w[n, o, i, j] x[n, o // m] shifted by tap (i, j).

    The unit pads x[n, c] into plane_buf[t], then for each of the channel's m output channels
    fills its output grid (grid_buf[t]) with the bias, accumulates the kh*kw shifted planes on
    it in vectorised runs, three taps per pass over the grid, and crops the grid into y.
    x (N, C, H, W); w (Nw, C*m, kh*kw); b (Nw, C*m); y (N, C*m, Ho, Wo).
    """
    n_batch, n_in = x.shape[0], x.shape[1]
    n_out = w.shape[1]
    out_h, out_w = y.shape[2], y.shape[3]
    multiplier = n_out // n_in
    for unit in prange(n_batch * n_in):
        n, c = unit // n_in, unit % n_in
        wn = n if w.shape[0] > 1 else 0
        thread = numba.get_thread_id()
        plane = plane_buf[thread]
        grid = grid_buf[thread, :out_h * pitch]
        pad_transfer(x[n, c], plane, padding, pitch, stride, True)
        flat = plane.reshape(plane.size)
        for o in range(c * multiplier, (c + 1) * multiplier):
            bias = b[wn, o]
            for q in range(np.uintp(grid.size)):
                grid[q] = bias
            w_taps = w[wn, o]
            triples = taps.size // 3 * 3
            for tap in range(0, triples, 3):
                grid_axpy3(grid, w_taps[tap], w_taps[tap + 1], w_taps[tap + 2], flat,
                           taps[tap], taps[tap + 1], taps[tap + 2])
            for tap in range(triples, taps.size):
                grid_axpy(grid, w_taps[tap], flat, taps[tap])
            target = y[n, o].reshape(out_h * out_w)
            for h in range(out_h):
                copy_run(target, h * out_w, 1, grid, h * pitch, 1, out_w)


@njit(cache=True, parallel=True)
def _backward(dy, x, w, dx, dw_n, grid_buf, x_buf, dx_buf, taps, padding, pitch, stride):
    """dx and per-sample dW of ``_forward``, one (sample, input channel) per unit:

        dw_n[n, o, t] = sum_{h,w} dy[n, o, h, w] x[n, c] at tap t of (h, w)
        dx[n, c]      = sum over the m output channels o of c and the taps t of
                        w[n, o, t] dy[n, o] shifted back onto the input

    The unit owns dx[n, c] and dw_n[n, o] for its output channels o, and makes one pass over
    its data for both: it pads x[n, c] into phase planes (x_buf[t]) once, puts each dy[n, o]
    on the output grid (grid_buf[t]) once, then per tap takes the run's dot product with the
    grid (dW) and adds w times the grid onto the padded dx planes (dx_buf[t]), which it crops
    into dx at the end.
    """
    n_batch, n_in = x.shape[0], x.shape[1]
    n_out, n_taps = w.shape[1], w.shape[2]
    positions = dy.shape[2] * pitch
    multiplier = n_out // n_in
    for unit in prange(n_batch * n_in):
        n, c = unit // n_in, unit % n_in
        wn = n if w.shape[0] > 1 else 0
        thread = numba.get_thread_id()
        grid = grid_buf[thread, :positions]
        x_flat = x_buf[thread].reshape(x_buf.shape[1] * x_buf.shape[2])
        dx_planes = dx_buf[thread]
        dx_flat = dx_planes.reshape(x_flat.size)
        pad_transfer(x[n, c], x_buf[thread], padding, pitch, stride, True)
        zero(dx_flat)
        for o in range(c * multiplier, (c + 1) * multiplier):
            image_onto_grid(dy[n, o], grid, pitch)
            w_taps, dw_taps = w[wn, o], dw_n[n, o]
            for tap in range(n_taps):
                dw_taps[tap] = run_dot(grid, x_flat, taps[tap])
                plane_axpy(grid, w_taps[tap], dx_flat, taps[tap])
        pad_transfer(dx[n, c], dx_planes, padding, pitch, stride, False)


@njit(cache=True, parallel=True)
def _forward_direct(x, w, b, y, kw, stride, padding, dilation):
    """``_forward`` for small maps, one (sample, output channel) per unit:
    y[n, o, h, q] = b[n, o] + sum over taps (i, j) inside the image of
    w[n, o, i kw + j] x[n, o // m, h s0 - p0 + i d0, q s1 - p1 + j d1]."""
    n_batch, n_in, height, width = x.shape
    n_out, kh = w.shape[1], w.shape[2] // kw
    out_h, out_w = y.shape[2], y.shape[3]
    multiplier = n_out // n_in
    (s0, s1), (p0, p1), (d0, d1) = stride, padding, dilation
    for unit in prange(n_batch * n_out):
        n, o = unit // n_out, unit % n_out
        wn = n if w.shape[0] > 1 else 0
        c = o // multiplier
        for h in range(out_h):
            for q in range(out_w):
                acc = b[wn, o]
                for i in range(kh):
                    r = h * s0 - p0 + i * d0
                    if 0 <= r < height:
                        for j in range(kw):
                            col = q * s1 - p1 + j * d1
                            if 0 <= col < width:
                                acc += w[wn, o, i * kw + j] * x[n, c, r, col]
                y[n, o, h, q] = acc


@njit(cache=True, parallel=True)
def _backward_direct(dy, x, w, dx, dw_n, kw, stride, padding, dilation):
    """``_backward`` for small maps, one (sample, input channel) per unit, which owns dx[n, c]
    and dw_n[n, o] for the channel's outputs o: for each tap (i, j) and output (h, q) whose
    input (r, col) = (h s0 - p0 + i d0, q s1 - p1 + j d1) is inside the image,
        dw_n[n, o, i kw + j] += dy[n, o, h, q] x[n, c, r, col]
        dx[n, c, r, col]     += w[n, o, i kw + j] dy[n, o, h, q]"""
    n_batch, n_in, height, width = x.shape
    n_out, kh = w.shape[1], w.shape[2] // kw
    out_h, out_w = dy.shape[2], dy.shape[3]
    multiplier = n_out // n_in
    (s0, s1), (p0, p1), (d0, d1) = stride, padding, dilation
    for unit in prange(n_batch * n_in):
        n, c = unit // n_in, unit % n_in
        wn = n if w.shape[0] > 1 else 0
        for r in range(height):
            for col in range(width):
                dx[n, c, r, col] = 0
        for o in range(c * multiplier, (c + 1) * multiplier):
            for i in range(kh):
                for j in range(kw):
                    acc, weight = dx.dtype.type(0), w[wn, o, i * kw + j]
                    for h in range(out_h):
                        r = h * s0 - p0 + i * d0
                        if 0 <= r < height:
                            for q in range(out_w):
                                col = q * s1 - p1 + j * d1
                                if 0 <= col < width:
                                    grad = dy[n, o, h, q]
                                    acc += grad * x[n, c, r, col]
                                    dx[n, c, r, col] += weight * grad
                    dw_n[n, o, i * kw + j] = acc


def is_direct(y_shape):
    """True when maps of output shape ``y_shape`` take the direct loops."""
    return y_shape[2] * y_shape[3] <= DIRECT_UP_TO


def conv_forward(x, w, b, y, stride, padding, dilation):
    """y = conv(x, w) + b, written into y (N, C_out, Ho, Wo); b (Nw, C_out), not None."""
    nw, c_out, _, kh, kw = w.shape
    out_h = y.shape[2]
    if is_direct(y.shape):
        _forward_direct(x, w.reshape(nw, c_out, kh * kw), b, y, kw, stride, padding, dilation)
        return
    phases, length, pitch = plane_geometry(x.shape, kw, stride, padding, dilation)
    slots = thread_slots()
    plane_buf = np.zeros((slots, phases, length), x.dtype)
    grid_buf = np.empty((slots, out_h * pitch), x.dtype)
    _forward(x, w.reshape(nw, c_out, kh * kw), b, y, plane_buf, grid_buf,
             tap_offsets(kh, kw, length, pitch, stride, dilation), padding, pitch, stride)


def conv_backward(dy, x, w, dx, stride, padding, dilation):
    """dx (written into dx) and per-sample dW (N, C_out, kh*kw) (summed by the caller when the
    kernels are shared by a batch)."""
    n, c_out, out_h, out_w = dy.shape
    nw, _, _, kh, kw = w.shape
    dw_n = np.empty((n, c_out, kh * kw), x.dtype)
    if is_direct(dy.shape):
        _backward_direct(dy, x, w.reshape(nw, c_out, kh * kw), dx, dw_n, kw, stride, padding,
                         dilation)
        return dw_n
    phases, length, pitch = plane_geometry(x.shape, kw, stride, padding, dilation)
    slots = thread_slots()
    _backward(dy, x, w.reshape(nw, c_out, kh * kw), dx, dw_n,
              np.empty((slots, out_h * pitch), x.dtype), np.zeros((slots, phases, length), x.dtype),
              np.empty((slots, phases, length), x.dtype),
              tap_offsets(kh, kw, length, pitch, stride, dilation), padding, pitch, stride)
    return dw_n
