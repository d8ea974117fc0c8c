"""The Numba CPU backend: jitted, multi-threaded loops with the reference's semantics.

Same contract as ``reference.py`` (see ``backends/__init__.py``). Two convolution strategies:

* dense and grouped convolutions (C_in/groups > 1) are im2col + matrix multiply, per work
  unit, into per-thread scratch buffers that stay in cache::

      cols (Cg*kh*kw, P) = im2col(x[n, group g])          P = output pixels of the unit
      y[n, g] (Cog, P)   = W[n, g] (Cog, Cg*kh*kw) @ cols + b[n, g]
      dW[n, g]           = dy[n, g] @ cols^T               (summed over n when Nw = 1)
      dcols              = W[n, g]^T @ dy[n, g]  -> col2im -> dx[n, g]

  ``np.dot`` inside jitted code calls BLAS (through SciPy's BLAS bindings, which Numba
  needs for linear algebra). BLAS runs single-threaded inside the ``prange`` loops: on a
  small machine a multi-threaded BLAS called from Numba's threads (or alternating with
  them) makes both thread pools spin against each other and runs up to 10x slower.
* depthwise convolutions (C_in/groups = 1, optionally with a channel multiplier) are
  direct loops: each output channel reads one input channel, so a matrix multiply would
  have an inner dimension of kh*kw only.

Every ``prange`` runs over an index that the iteration owns (no two iterations write the
same element): (sample, group, block of output rows) for y; (sample, group) for dx; for
dW either the sample (Nw = N) or a per-thread partial sum that is reduced afterwards
(Nw = 1). No kernel uses fastmath, so results differ from the reference only by the
order of floating-point summation.
"""
import contextlib

import numba
import numpy as np
from numba import njit, prange

from . import reference
from .geometry import conv_output_shape

NAME = "numba"

# Output pixels per forward work unit: the unit's im2col block (Cg*kh*kw x this) and its
# product stay in a core's L2 cache, and the batch splits into enough units for every thread.
_PIXELS_PER_BLOCK = 256


def ensure_available():
    """Numba's ``np.dot`` calls BLAS through SciPy; fail early with a clear message."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError as error:
        raise ImportError("the 'numba' backend needs SciPy (Numba calls BLAS through it): "
                          "pip install scipy") from error


_BLAS_CONTROLLER = []


def _single_threaded_blas():
    """Context in which BLAS (NumPy's and SciPy's, which jitted code calls) uses one thread.

    Uses threadpoolctl when it is installed; without it BLAS keeps its threads (correct,
    but slower when called from Numba's threads).
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext()
    if not _BLAS_CONTROLLER:
        ensure_available()  # loads SciPy's BLAS, so that the controller sees it
        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas")


def _thread_slots():
    """How many per-thread scratch buffers a kernel needs (one per possible thread id)."""
    return numba.config.NUMBA_NUM_THREADS


# ----------------------------------------------------------------------------------------
# Geometry helpers (inlined by LLVM)

@njit(cache=True)
def _valid_outputs(offset, stride, size, out_size):
    """Range [lo, hi) of output positions o with 0 <= o*stride + offset < size."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    last = size - 1 - offset
    hi = min(out_size, last // stride + 1) if last >= 0 else 0
    return lo, max(lo, hi)


@njit(cache=True)
def _patch_columns(image, cols, h0, h1, out_w, kh, kw, stride, padding, dilation, adjoint):
    """im2col of output rows [h0, h1) of one group, or (adjoint=True) its col2im.

    image (Cg, H, W); cols (Cg*kh*kw, (h1-h0)*out_w), row (c, i, j), column (h, w):
        cols[(c, i, j), (h - h0, w)] = image[c, h*s0 - p0 + i*d0, w*s1 - p1 + j*d1]  (0 outside)
    adjoint=False fills cols from image; adjoint=True adds cols back onto image (scatter-add).
    The loops run along output columns w, so reads (stride 1) and writes are contiguous.
    """
    n_channels, height, width = image.shape
    for c in range(n_channels):
        for i in range(kh):
            for j in range(kw):
                row = cols[(c * kh + i) * kw + j]
                offset_w = j * dilation[1] - padding[1]
                w_lo, w_hi = _valid_outputs(offset_w, stride[1], width, out_w)
                for h in range(h0, h1):
                    start = (h - h0) * out_w
                    r = h * stride[0] - padding[0] + i * dilation[0]
                    inside = 0 <= r < height
                    if adjoint:
                        if inside:
                            for w in range(w_lo, w_hi):
                                image[c, r, w * stride[1] + offset_w] += row[start + w]
                    else:
                        lo, hi = (w_lo, w_hi) if inside else (out_w, out_w)
                        for w in range(lo):
                            row[start + w] = 0.0
                        for w in range(lo, hi):
                            row[start + w] = image[c, r, w * stride[1] + offset_w]
                        for w in range(max(lo, hi), out_w):
                            row[start + w] = 0.0


# ----------------------------------------------------------------------------------------
# Dense and grouped convolution: im2col + BLAS

@njit(cache=True, parallel=True)
def _gemm_conv_forward(x, w, b, y, cols_buf, prod_buf, kh, kw, out_w, stride, padding,
                       dilation, rows_per_block):
    """y[n, g] = W[n, g] @ im2col(x[n, g]) + b[n, g], one (sample, group, row block) per unit.

    Blocked by output rows: a unit covers rows_per_block output rows (about
    _PIXELS_PER_BLOCK pixels), so its im2col block and its product live in the thread's
    scratch (cols_buf[t], prod_buf[t]) in cache, and even N = 1 spreads over the threads.
    x (N, G, Cg, H, W); w (Nw, G, Cog, Cg*kh*kw); b (Nw, G, Cog); y (N, G, Cog, H_out*W_out).
    """
    n_batch, n_groups = x.shape[0], x.shape[1]
    n_out, depth = w.shape[2], w.shape[3]
    out_h = y.shape[3] // out_w
    n_blocks = (out_h + rows_per_block - 1) // rows_per_block
    for unit in prange(n_batch * n_groups * n_blocks):
        n, rest = unit // (n_groups * n_blocks), unit % (n_groups * n_blocks)
        g, block = rest // n_blocks, rest % n_blocks
        wn = n if w.shape[0] > 1 else 0
        h0 = block * rows_per_block
        h1 = min(out_h, h0 + rows_per_block)
        pixels = (h1 - h0) * out_w
        thread = numba.get_thread_id()
        cols = cols_buf[thread, :depth * pixels].reshape(depth, pixels)
        prod = prod_buf[thread, :n_out * pixels].reshape(n_out, pixels)
        _patch_columns(x[n, g], cols, h0, h1, out_w, kh, kw, stride, padding, dilation, False)
        np.dot(w[wn, g], cols, prod)
        for o in range(n_out):
            y_row = y[n, g, o, h0 * out_w:h1 * out_w]
            for p in range(pixels):
                y_row[p] = prod[o, p] + b[wn, g, o]


@njit(cache=True, parallel=True)
def _gemm_conv_backward(dy, x, w, dx, dw_slots, cols_buf, dw_buf, kh, kw, out_w, stride,
                        padding, dilation):
    """dx and dW of ``_gemm_conv_forward``: two units per (sample, group), one for each.

    Blocked by (sample, group), and split into a weight-gradient unit and an input-gradient
    unit so that even one sample keeps two threads busy. Each unit holds the whole im2col
    matrix of its (sample, group) (or its gradient) in the thread's scratch cols_buf[t]:
        weight unit: cols = im2col(x[n, g]);  dW += dy[n, g] @ cols^T
        input unit:  cols = W[n, g]^T @ dy[n, g];  dx[n, g] = col2im(cols)  (owns dx[n, g])
    dW accumulates into dw_slots[slot, g]: slot = n when the kernels are per sample
    (Nw = N), or the thread (Nw = 1: per-thread partial sums that the caller reduces).
    dy (N, G, Cog, P); x, dx (N, G, Cg, H, W); w (Nw, G, Cog, D); dw_buf[t] (Cog, D).
    """
    n_batch, n_groups = x.shape[0], x.shape[1]
    n_out, depth, pixels = w.shape[2], w.shape[3], dy.shape[3]
    out_h = pixels // out_w
    per_sample = w.shape[0] > 1 or n_batch == 1
    for unit in prange(2 * n_batch * n_groups):
        n, g = unit // 2 // n_groups, unit // 2 % n_groups
        thread = numba.get_thread_id()
        wn = n if w.shape[0] > 1 else 0
        cols = cols_buf[thread, :depth * pixels].reshape(depth, pixels)
        if unit % 2 == 0:
            _patch_columns(x[n, g], cols, 0, out_h, out_w, kh, kw, stride, padding, dilation,
                           False)
            dw_unit = dw_buf[thread]
            np.dot(dy[n, g], cols.T, dw_unit)
            dw_slot = dw_slots[n if per_sample else thread, g]
            for o in range(n_out):
                for q in range(depth):
                    dw_slot[o, q] += dw_unit[o, q]
        else:
            np.dot(w[wn, g].T, dy[n, g], cols)
            _patch_columns(dx[n, g], cols, 0, out_h, out_w, kh, kw, stride, padding, dilation,
                           True)


# ----------------------------------------------------------------------------------------
# Depthwise convolution (C_in/groups = 1): direct loops

@njit(cache=True, parallel=True)
def _depthwise_forward(x, w, b, y, stride, padding, dilation):
    """y[n, o] = b[n, o] + sum_{i,j} w[n, o, i, j] x[n, o // m, h*s0 - p0 + i*d0, ...].

    One (sample, output channel) per unit; the unit's output plane stays in L1 while the
    kh*kw taps are accumulated into it, the inner loop running along an output row.
    x (N, C, H, W); w (Nw, C*m, kh, kw); b (Nw, C*m); y (N, C*m, H_out, W_out).
    """
    n_batch, n_in, height, width = x.shape
    n_out, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    out_h, out_w = y.shape[2], y.shape[3]
    multiplier = n_out // n_in
    for unit in prange(n_batch * n_out):
        n, o = unit // n_out, unit % n_out
        wn = n if w.shape[0] > 1 else 0
        image, out = x[n, o // multiplier], y[n, o]
        out[:, :] = b[wn, o]
        for i in range(kh):
            h_lo, h_hi = _valid_outputs(i * dilation[0] - padding[0], stride[0], height, out_h)
            for j in range(kw):
                tap = w[wn, o, i, j]
                offset_w = j * dilation[1] - padding[1]
                w_lo, w_hi = _valid_outputs(offset_w, stride[1], width, out_w)
                for h in range(h_lo, h_hi):
                    r = h * stride[0] - padding[0] + i * dilation[0]
                    for q in range(w_lo, w_hi):
                        out[h, q] += tap * image[r, q * stride[1] + offset_w]


@njit(cache=True, parallel=True)
def _depthwise_backward_input(dy, w, dx, stride, padding, dilation):
    """dx[n, c] = sum over the m output channels o of input channel c and over the taps of
    w[n, o, i, j] dy[n, o] scattered back onto the input grid.

    One (sample, input channel) per unit: the unit owns the plane dx[n, c] (in L1).
    """
    n_batch, n_in, height, width = dx.shape
    n_out, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    out_h, out_w = dy.shape[2], dy.shape[3]
    multiplier = n_out // n_in
    for unit in prange(n_batch * n_in):
        n, c = unit // n_in, unit % n_in
        wn = n if w.shape[0] > 1 else 0
        plane = dx[n, c]
        for o in range(c * multiplier, (c + 1) * multiplier):
            grad = dy[n, o]
            for i in range(kh):
                h_lo, h_hi = _valid_outputs(i * dilation[0] - padding[0], stride[0], height,
                                            out_h)
                for j in range(kw):
                    tap = w[wn, o, i, j]
                    offset_w = j * dilation[1] - padding[1]
                    w_lo, w_hi = _valid_outputs(offset_w, stride[1], width, out_w)
                    for h in range(h_lo, h_hi):
                        r = h * stride[0] - padding[0] + i * dilation[0]
                        for q in range(w_lo, w_hi):
                            plane[r, q * stride[1] + offset_w] += tap * grad[h, q]


@njit(cache=True, parallel=True)
def _depthwise_backward_weight(dy, x, dw, row_buf, stride, padding, dilation):
    """dw[s, o, i, j] = sum_{n, h, w} dy[n, o, h, w] x[n, o // m, h*s0 - p0 + i*d0, ...].

    One (kernel slot s, output channel o) per unit; slot s is the sample when the kernels
    are per sample (dw has N rows) and covers the whole batch when shared (dw has 1 row).
    Per tap, products are first accumulated element-wise along an output row in the
    thread's row_buf[t] (vectorised), and the row is summed once at the end: a scalar
    running sum would be one long dependency chain.
    """
    n_batch, n_in, height, width = x.shape
    n_slots, n_out, kh, kw = dw.shape
    out_h, out_w = dy.shape[2], dy.shape[3]
    multiplier = n_out // n_in
    for unit in prange(n_slots * n_out):
        s, o = unit // n_out, unit % n_out
        first, last = (s, s + 1) if n_slots > 1 or n_batch == 1 else (0, n_batch)
        row = row_buf[numba.get_thread_id()]
        for i in range(kh):
            h_lo, h_hi = _valid_outputs(i * dilation[0] - padding[0], stride[0], height, out_h)
            for j in range(kw):
                offset_w = j * dilation[1] - padding[1]
                w_lo, w_hi = _valid_outputs(offset_w, stride[1], width, out_w)
                row[:] = 0.0
                for n in range(first, last):
                    image, grad = x[n, o // multiplier], dy[n, o]
                    for h in range(h_lo, h_hi):
                        r = h * stride[0] - padding[0] + i * dilation[0]
                        for q in range(w_lo, w_hi):
                            row[q] += grad[h, q] * image[r, q * stride[1] + offset_w]
                total = 0.0
                for q in range(out_w):
                    total += row[q]
                dw[s, o, i, j] = total


# ----------------------------------------------------------------------------------------
# Public contract

def _is_depthwise(x, groups):
    return x.shape[1] == groups


def _bias_or_zeros(b, nw, c_out, dtype):
    return np.zeros((nw, c_out), dtype) if b is None else b


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """y (N, C_out, H_out, W_out) = per-sample (or shared) convolution of x with w, plus b."""
    n, c_out, out_h, out_w = conv_output_shape(x.shape, w.shape, stride, padding, dilation)
    nw, _, c_group, kh, kw = w.shape
    y = np.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    b = _bias_or_zeros(b, nw, c_out, x.dtype)
    stride, padding, dilation = tuple(stride), tuple(padding), tuple(dilation)
    if _is_depthwise(x, groups):
        _depthwise_forward(x, w.reshape(nw, c_out, kh, kw), b, y, stride, padding, dilation)
        return y
    depth = c_group * kh * kw
    rows_per_block = max(1, min(out_h, _PIXELS_PER_BLOCK // out_w))
    pixels = rows_per_block * out_w
    slots = _thread_slots()
    cols_buf = np.empty((slots, depth * pixels), x.dtype)
    prod_buf = np.empty((slots, (c_out // groups) * pixels), x.dtype)
    with _single_threaded_blas():
        _gemm_conv_forward(x.reshape((n, groups, c_group) + x.shape[2:]),
                           w.reshape(nw, groups, c_out // groups, depth),
                           b.reshape(nw, groups, c_out // groups),
                           y.reshape(n, groups, c_out // groups, out_h * out_w),
                           cols_buf, prod_buf, kh, kw, out_w, stride, padding, dilation,
                           rows_per_block)
    return y


def conv2d_backward(dy, x, w, stride, padding, dilation, groups, has_bias):
    """(dx, dw, db) of ``conv2d_forward``; dw has w's shape, db is (Nw, C_out) or None."""
    n, c_out, out_h, out_w = dy.shape
    nw, _, c_group, kh, kw = w.shape
    stride, padding, dilation = tuple(stride), tuple(padding), tuple(dilation)
    dx = np.zeros_like(x)
    db = None
    if has_bias:
        db = dy.sum(axis=(2, 3))
        if nw == 1 and n != 1:
            db = db.sum(axis=0, keepdims=True)
    if _is_depthwise(x, groups):
        dw = np.empty_like(w)
        w_taps = w.reshape(nw, c_out, kh, kw)
        _depthwise_backward_input(dy, w_taps, dx, stride, padding, dilation)
        row_buf = np.empty((_thread_slots(), out_w), x.dtype)
        _depthwise_backward_weight(dy, x, dw.reshape(nw, c_out, kh, kw), row_buf, stride,
                                   padding, dilation)
        return dx, dw, db
    depth, c_out_group = c_group * kh * kw, c_out // groups
    slots = _thread_slots()
    shared = nw == 1 and n != 1
    dw_slots = np.zeros((slots if shared else nw, groups, c_out_group, depth), x.dtype)
    cols_buf = np.empty((slots, depth * out_h * out_w), x.dtype)
    dw_buf = np.empty((slots, c_out_group, depth), x.dtype)
    with _single_threaded_blas():
        _gemm_conv_backward(dy.reshape(n, groups, c_out_group, out_h * out_w),
                            x.reshape((n, groups, c_group) + x.shape[2:]),
                            w.reshape(nw, groups, c_out_group, depth),
                            dx.reshape((n, groups, c_group) + x.shape[2:]), dw_slots,
                            cols_buf, dw_buf, kh, kw, out_w, stride, padding, dilation)
    dw = dw_slots.sum(axis=0, keepdims=True) if shared else dw_slots
    return dx, dw.reshape(w.shape), db


# ----------------------------------------------------------------------------------------
# Kernel aggregation (paper section 3.1): memory-bound mixes of K kernels

_MIX_CHUNK = 4096  # elements per work unit: a few units per kernel row keep both threads busy


@njit(cache=True, parallel=True)
def _mix_rows(coefficients, rows, out):
    """out[n, f] = sum_k coefficients[n, k] rows[k, f].

    Blocked into chunks of _MIX_CHUNK columns, one (output row, chunk) per unit; each
    unit streams its K input chunks with a contiguous (vectorised) inner loop.
    """
    n_out, n_terms = coefficients.shape
    width = rows.shape[1]
    n_chunks = (width + _MIX_CHUNK - 1) // _MIX_CHUNK
    for unit in prange(n_out * n_chunks):
        n, chunk = unit // n_chunks, unit % n_chunks
        lo, hi = chunk * _MIX_CHUNK, min(width, (chunk + 1) * _MIX_CHUNK)
        target = out[n]
        for f in range(lo, hi):
            target[f] = coefficients[n, 0] * rows[0, f]
        for k in range(1, n_terms):
            for f in range(lo, hi):
                target[f] += coefficients[n, k] * rows[k, f]


@njit(cache=True, parallel=True)
def _row_inner_products(a, b, out):
    """out[n, k] = <a[n], b[k]>: one row of a per unit, a BLAS matrix-vector product."""
    for n in prange(a.shape[0]):
        np.dot(b, a[n], out[n])


def aggregate_forward(pi, weight, bias):
    """W_n = sum_k pi[n,k] weight[k];  b_n = sum_k pi[n,k] bias[k]  (paper eq. 1, 3.1).

    pi (N, K), weight (K, ...), bias (K, C_out) or None -> (W (N, ...), b (N, C_out) or None).
    """
    k = weight.shape[0]
    w_n = np.empty((pi.shape[0],) + weight.shape[1:], np.result_type(pi, weight))
    _mix_rows(pi, weight.reshape(k, -1), w_n.reshape(pi.shape[0], -1))
    b_n = None if bias is None else pi @ bias
    return w_n, b_n


def aggregate_backward(dw_n, db_n, pi, weight, bias):
    """Gradients of ``aggregate_forward``.

    dpi[n,k] = <dW_n, weight[k]> + <db_n, bias[k]>
    dweight[k] = sum_n pi[n,k] dW_n;   dbias[k] = sum_n pi[n,k] db_n
    """
    n, k = pi.shape
    dw_flat = dw_n.reshape(n, -1)
    w_flat = weight.reshape(k, -1)
    dpi = np.empty((n, k), np.result_type(dw_n, weight))
    dweight = np.empty(weight.shape, np.result_type(pi, dw_n))
    with _single_threaded_blas():
        _row_inner_products(dw_flat, w_flat, dpi)
    _mix_rows(np.ascontiguousarray(pi.T), dw_flat, dweight.reshape(k, -1))
    dbias = None
    if bias is not None:
        dpi += db_n @ bias.T
        dbias = pi.T @ db_n
    return dpi, dweight, dbias


spatial_mean = reference.spatial_mean
add_spatial_mean_grad = reference.add_spatial_mean_grad
