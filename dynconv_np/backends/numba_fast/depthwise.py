"""Depthwise convolution (C_in/groups = 1, optionally with a channel multiplier m): direct loops.

Each output channel reads one input channel, so a matrix product would have an inner dimension
of kh*kw only; direct loops over tap runs (``runs.py``) do the work instead. One
(sample, input channel) per work unit, with the padding fused in: the unit pads its channel
into the thread's phase planes (per-thread scratch that stays in L1/L2; no whole-batch padded
copy). The forward accumulates three taps per pass over the output grid (fewer loads and stores
of the grid); the backward computes dx and dW in one fused pass over each (sample, channel).
Kernels shared by the batch get per-sample dW, which the caller sums.
"""
import numba
import numpy as np
from numba import njit, prange

from .planes import image_onto_grid, pad_transfer, plane_geometry, tap_offsets, thread_slots
from .runs import copy_run, grid_axpy, grid_axpy3, plane_axpy, run_dot, zero


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


def conv_forward(x, w, b, y, stride, padding, dilation):
    """y = conv(x, w) + b, written into y (N, C_out, Ho, Wo); b (Nw, C_out), not None."""
    nw, c_out, _, kh, kw = w.shape
    out_h = y.shape[2]
    phases, length, pitch = plane_geometry(x.shape, kw, stride, padding, dilation)
    slots = thread_slots()
    plane_buf = np.zeros((slots, phases, length), x.dtype)
    grid_buf = np.empty((slots, out_h * pitch), x.dtype)
    _forward(x, w.reshape(nw, c_out, kh * kw), b, y, plane_buf, grid_buf,
             tap_offsets(kh, kw, length, pitch, stride, dilation), padding, pitch, stride)


def conv_backward(dy, x, w, dx, stride, padding, dilation):
    """dx (written into dx) and per-sample dW (N, C_out, kh*kw) (summed by the caller when the
    kernels are shared by a batch)."""
    n, c_out, out_h, _ = dy.shape
    nw, _, _, kh, kw = w.shape
    phases, length, pitch = plane_geometry(x.shape, kw, stride, padding, dilation)
    slots = thread_slots()
    dw_n = np.empty((n, c_out, kh * kw), x.dtype)
    _backward(dy, x, w.reshape(nw, c_out, kh * kw), dx, dw_n,
              np.empty((slots, out_h * pitch), x.dtype), np.zeros((slots, phases, length), x.dtype),
              np.empty((slots, phases, length), x.dtype),
              tap_offsets(kh, kw, length, pitch, stride, dilation), padding, pitch, stride)
    return dw_n
