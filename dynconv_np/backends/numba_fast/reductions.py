"""Reductions and mixes over whole planes and kernel rows: memory-bound, parallel over rows.

* kernel aggregation (paper section 3.1): W_n = sum_k pi[n, k] weight[k] and its backward, as
  row mixes blocked into column chunks (``_mix_rows``) and row inner products (``run_dot``);
* per-plane sums for the bias gradient and the attention branch's global average pool, and
  the pool's gradient added in place: one (sample, channel) plane per work unit, since NumPy's
  reductions and broadcast adds over these axes run on one thread.

Inner loops run over 1-D slices: Numba vectorises those, not multi-index loops.
"""
import numpy as np
from numba import njit, prange

from .runs import run_dot, run_sum
from .compiling import announces_compilation
from .threads import REDUCTION_PARALLEL_FROM, threads_for

_MIX_CHUNK = 4096  # elements per work unit: a few units per kernel row keep the threads busy


@njit(cache=True, parallel=True)
def _mix_rows(coefficients, rows, out):
    """out[n, f] = sum_k coefficients[n, k] rows[k, f].

    Blocked into chunks of _MIX_CHUNK columns, one (chunk, output row) per unit, chunk-major:
    a thread's consecutive units share one chunk of the K input rows, which stays in cache
    for every output row instead of being re-read from memory per row. Each unit streams its
    K input chunks with a contiguous (vectorised) inner loop.
    """
    n_out, n_terms = coefficients.shape
    width = rows.shape[1]
    n_chunks = (width + _MIX_CHUNK - 1) // _MIX_CHUNK
    for unit in prange(n_out * n_chunks):
        chunk, n = unit // n_out, unit % n_out
        lo, hi = chunk * _MIX_CHUNK, min(width, (chunk + 1) * _MIX_CHUNK)
        target, first, weight = out[n, lo:hi], rows[0, lo:hi], coefficients[n, 0]
        for f in range(hi - lo):
            target[f] = weight * first[f]
        for k in range(1, n_terms):
            source, weight = rows[k, lo:hi], coefficients[n, k]
            for f in range(hi - lo):
                target[f] += weight * source[f]


@njit(cache=True, parallel=True)
def _row_inner_products(a, b, out):
    """out[n, k] = <a[n], b[k]>, blocked by chunks of _MIX_CHUNK columns: one chunk per unit
    computes the partial products of every (n, k) pair while both rows' chunks are in cache
    (b is read once, not once per n), then the partials are summed over chunks in order."""
    n_rows, n_terms, width = a.shape[0], b.shape[0], a.shape[1]
    n_chunks = (width + _MIX_CHUNK - 1) // _MIX_CHUNK
    partial = np.empty((n_chunks, n_rows, n_terms), out.dtype)
    for chunk in prange(n_chunks):
        lo, hi = chunk * _MIX_CHUNK, min(width, (chunk + 1) * _MIX_CHUNK)
        for n in range(n_rows):
            for k in range(n_terms):
                partial[chunk, n, k] = run_dot(a[n, lo:hi], b[k, lo:hi], np.uintp(0))
    for n in range(n_rows):
        for k in range(n_terms):
            total = partial[0, n, k]
            for chunk in range(1, n_chunks):
                total += partial[chunk, n, k]
            out[n, k] = total


@announces_compilation
def aggregate_forward(pi, weight, bias):
    """W_n = sum_k pi[n,k] weight[k];  b_n = sum_k pi[n,k] bias[k]  (paper eq. 1, 3.1).

    pi (N, K), weight (K, ...), bias (K, C_out) or None -> (W (N, ...), b (N, C_out) or None).
    """
    k = weight.shape[0]
    w_n = np.empty((pi.shape[0],) + weight.shape[1:], np.result_type(pi, weight))
    with threads_for(w_n.size * k, REDUCTION_PARALLEL_FROM):
        _mix_rows(pi, weight.reshape(k, -1), w_n.reshape(pi.shape[0], -1))
    b_n = None if bias is None else pi @ bias
    return w_n, b_n


@announces_compilation
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
    with threads_for(2 * dw_n.size * k, REDUCTION_PARALLEL_FROM):
        _row_inner_products(dw_flat, w_flat, dpi)
        _mix_rows(np.ascontiguousarray(pi.T), dw_flat, dweight.reshape(k, -1))
    dbias = None
    if bias is not None:
        dpi += db_n @ bias.T
        dbias = pi.T @ db_n
    return dpi, dweight, dbias


@njit(cache=True, parallel=True)
def _plane_sums(planes, out):
    """out[n, c] = sum of planes[n, c, :], one (sample, channel) plane per unit."""
    n_channels = planes.shape[1]
    for unit in prange(planes.shape[0] * n_channels):
        n, c = unit // n_channels, unit % n_channels
        out[n, c] = run_sum(planes[n, c])


@announces_compilation
def spatial_sums(x):
    """sums[n, c] = sum_{h,w} x[n, c, h, w]: (N, C, H, W) -> (N, C)."""
    n, c, h, w = x.shape
    sums = np.empty((n, c), x.dtype)
    with threads_for(x.size, REDUCTION_PARALLEL_FROM):
        _plane_sums(x.reshape(n, c, h * w), sums)
    return sums


def spatial_mean(x):
    """pooled[n, c] = mean_{h,w} x[n, c, h, w]: (N, C, H, W) -> (N, C)."""
    pooled = spatial_sums(x)
    pooled /= x.shape[2] * x.shape[3]
    return pooled


@njit(cache=True, parallel=True)
def _add_to_planes(planes, values):
    """planes[n, c, :] += values[n, c], one (sample, channel) plane per unit."""
    n_channels = planes.shape[1]
    for unit in prange(planes.shape[0] * n_channels):
        plane = planes[unit // n_channels, unit % n_channels]
        value = values[unit // n_channels, unit % n_channels]
        for q in range(np.uintp(plane.size)):
            plane[q] += value


@announces_compilation
def add_spatial_mean_grad(dx, dpooled):
    """In place: dx[n, c, h, w] += dpooled[n, c] / (H W), the adjoint of ``spatial_mean``."""
    n, c, h, w = dx.shape
    with threads_for(dx.size, REDUCTION_PARALLEL_FROM):
        _add_to_planes(dx.reshape(n, c, h * w), (dpooled / (h * w)).astype(dx.dtype, copy=False))
