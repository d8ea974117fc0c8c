"""Numba CUDA kernels of the ``cuda`` backend (the host side is in ``cuda.py``).

Shapes follow the backend contract: x (N, C_in, H, W); w (Nw, C_out, Cg, kh, kw)
with Cg = C_in / G and Nw in {1, N}; y and dy (N, C_out, H_out, W_out); G groups of
Cog = C_out / G output channels. Output channel ``co`` belongs to group
``g = co // Cog`` and reads input channels ``g * Cg + c`` for ``c < Cg``. Sample
``n`` uses kernel ``nw = n`` (dynamic convolution) or ``nw = 0`` (shared kernel).
Output position (oh, ow) reads input (oh s0 - p0 + i d0, ow s1 - p1 + j d1) for
tap (i, j), zero outside the image (``geometry.py``).

Every kernel writes each output element from exactly one thread, so no atomics
are needed and results do not depend on scheduling. Kernels accumulate in the
arrays' own precision (float32 arithmetic is many times faster than float64 on
most GPUs), which is why each kernel family is built by a factory for one dtype:
the factory closes over the Numba scalar type used for the zero accumulator and
for shared/local arrays, whose dtypes must be compile-time constants.
"""
import functools
import math

import numpy as np
from numba import cuda, from_dtype


def _scalar(dtype):
    """The Numba scalar type of a NumPy float dtype (float32 or float64)."""
    return from_dtype(np.dtype(dtype))


@functools.lru_cache(maxsize=None)
def naive_kernels(dtype):
    """The one-thread-per-output-element kernels for ``dtype``: forward, dx, dw, db.

    Decomposition (all four): a 1-D grid of 1-D blocks covers the flattened output
    array; thread ``t = cuda.grid(1)`` owns output element ``t`` (row-major index,
    unravelled below), loops over everything that element sums, and writes it once.
    Threads past the end return at once. There is no shared memory and no barrier:
    each thread reads global memory directly (neighbouring threads read neighbouring
    columns, so loads coalesce), which is what makes these the readable baseline.
    """
    real = _scalar(dtype)

    @cuda.jit
    def forward(x, w, b, y, s0, s1, p0, p1, d0, d1, groups):
        """y[n,co,oh,ow] = sum_{c,i,j} x[n, g Cg + c, oh s0 - p0 + i d0, ow s1 - p1 + j d1]
                              * w[nw, co, c, i, j]  + b[nw, co]."""
        t = cuda.grid(1)
        n_out, c_out, h_out, w_out = y.shape
        if t >= n_out * c_out * h_out * w_out:
            return
        ow = t % w_out
        oh = (t // w_out) % h_out
        co = (t // (w_out * h_out)) % c_out
        n = t // (w_out * h_out * c_out)
        nw = n if w.shape[0] != 1 else 0
        cg, kh, kw = w.shape[2], w.shape[3], w.shape[4]
        g = co // (c_out // groups)
        acc = real(0)
        for c in range(cg):
            for i in range(kh):
                ih = oh * s0 - p0 + i * d0
                if 0 <= ih < x.shape[2]:
                    for j in range(kw):
                        iw = ow * s1 - p1 + j * d1
                        if 0 <= iw < x.shape[3]:
                            acc += x[n, g * cg + c, ih, iw] * w[nw, co, c, i, j]
        if b is not None:
            acc += b[nw, co]
        y[n, co, oh, ow] = acc

    @cuda.jit
    def backward_input(dy, w, dx, s0, s1, p0, p1, d0, d1, groups):
        """dx[n,ci,ih,iw] = sum over (o, i, j) with ih = oh s0 - p0 + i d0 and
        iw = ow s1 - p1 + j d1 for some in-range (oh, ow) of dy[n,co,oh,ow] w[nw,co,c,i,j].

        The thread inverts the index map: for tap i the output row is
        oh = (ih + p0 - i d0) / s0, which exists only when that is a non-negative
        multiple of s0 below H_out (a gather, so no two threads write one element).
        """
        t = cuda.grid(1)
        n_in, c_in, h_in, w_in = dx.shape
        if t >= n_in * c_in * h_in * w_in:
            return
        iw = t % w_in
        ih = (t // w_in) % h_in
        ci = (t // (w_in * h_in)) % c_in
        n = t // (w_in * h_in * c_in)
        nw = n if w.shape[0] != 1 else 0
        cg, kh, kw = w.shape[2], w.shape[3], w.shape[4]
        cog = dy.shape[1] // groups
        g = ci // cg
        c = ci - g * cg
        acc = real(0)
        for o in range(cog):
            co = g * cog + o
            for i in range(kh):
                rows = ih + p0 - i * d0
                if rows >= 0 and rows % s0 == 0 and rows // s0 < dy.shape[2]:
                    oh = rows // s0
                    for j in range(kw):
                        cols = iw + p1 - j * d1
                        if cols >= 0 and cols % s1 == 0 and cols // s1 < dy.shape[3]:
                            acc += dy[n, co, oh, cols // s1] * w[nw, co, c, i, j]
        dx[n, ci, ih, iw] = acc

    @cuda.jit
    def backward_weight(dy, x, dw, s0, s1, p0, p1, d0, d1, groups):
        """dw[nw,co,c,i,j] = sum_{n of nw} sum_{oh,ow} dy[n,co,oh,ow]
                                * x[n, g Cg + c, oh s0 - p0 + i d0, ow s1 - p1 + j d1].

        "n of nw" is the one sample n = nw when every sample has its own kernel, and
        the whole batch when one kernel is shared (Nw = 1): the thread owning the
        shared tap sums the batch itself, so no reduction across threads is needed.
        """
        t = cuda.grid(1)
        nw_total, c_out, cg, kh, kw = dw.shape
        if t >= nw_total * c_out * cg * kh * kw:
            return
        j = t % kw
        i = (t // kw) % kh
        c = (t // (kw * kh)) % cg
        co = (t // (kw * kh * cg)) % c_out
        nw = t // (kw * kh * cg * c_out)
        n_first, n_stop = (nw, nw + 1) if nw_total != 1 else (0, x.shape[0])
        ci = (co // (c_out // groups)) * cg + c
        acc = real(0)
        for n in range(n_first, n_stop):
            for oh in range(dy.shape[2]):
                ih = oh * s0 - p0 + i * d0
                if 0 <= ih < x.shape[2]:
                    for ow in range(dy.shape[3]):
                        iw = ow * s1 - p1 + j * d1
                        if 0 <= iw < x.shape[3]:
                            acc += dy[n, co, oh, ow] * x[n, ci, ih, iw]
        dw[nw, co, c, i, j] = acc

    @cuda.jit
    def backward_bias(dy, db):
        """db[nw, co] = sum_{n of nw} sum_{oh,ow} dy[n, co, oh, ow] ("n of nw" as for dw)."""
        t = cuda.grid(1)
        nw_total, c_out = db.shape
        if t >= nw_total * c_out:
            return
        co = t % c_out
        nw = t // c_out
        n_first, n_stop = (nw, nw + 1) if nw_total != 1 else (0, dy.shape[0])
        acc = real(0)
        for n in range(n_first, n_stop):
            for oh in range(dy.shape[2]):
                for ow in range(dy.shape[3]):
                    acc += dy[n, co, oh, ow]
        db[nw, co] = acc

    return forward, backward_input, backward_weight, backward_bias


@functools.lru_cache(maxsize=None)
def tiled_forward_kernel(dtype, co_block):
    """The shared-memory tiled forward kernel for ``dtype``, ``co_block`` channels per thread.

    Decomposition
    -------------
    Grid (N * G * ceil(Cog / co_block), ceil(H_out / TH), ceil(W_out / TW)), block
    (TW, TH). Block (bx, by, bz) computes, for one sample n and one block of
    ``co_block`` output channels of one group g (all three from bx, the grid axis
    without the 65535 limit), the TH x TW output tile whose corner is (by TH, bz TW).
    Thread (tx, ty) owns output pixel (by TH + ty, bz TW + tx) for all ``co_block``
    channels, whose partial sums it keeps in registers (a local array of constant
    size, fully unrolled).

    What is tiled
    -------------
    The group's Cg input channels are walked in chunks of ``ci_chunk``. For each
    chunk the block copies into (dynamic) shared memory

    * the input patch that its output tile reads: ``ci_chunk`` x PH x PW with
      PH = (TH - 1) s0 + (kh - 1) d0 + 1 (PW likewise), zero where it falls in the
      padding, so the compute loop needs no bounds checks;
    * the chunk's weights of the block's channels, ``co_block`` x ``ci_chunk`` x kh x kw
      (zero for channels past Cog or Cg, so their partial sums stay zero).

    Each input value is then read from global memory once per block instead of once
    per (output channel, tap) of the block that uses it, and each weight once per block
    instead of once per output pixel. The loads are cooperative: thread ``tid`` copies elements
    tid, tid + TW TH, ..., so consecutive threads copy consecutive columns (coalesced).

    Why the barriers are where they are
    -----------------------------------
    1. After the loads: a thread reads patch and weight values that *other* threads
       copied, so no thread may start computing until every copy has landed.
    2. After the compute: the next chunk's loads overwrite the same shared memory,
       so no thread may start copying until every thread has finished reading.
    Because every thread must reach both barriers, threads whose pixel lies past the
    edge of the output (partial tiles) still load and compute (on zeros or on valid
    patch values, which is harmless) and only skip the final write.
    """
    real = _scalar(dtype)

    @cuda.jit
    def forward(x, w, b, y, s0, s1, p0, p1, d0, d1, groups, ci_chunk):
        """y = conv(x, w) + b, the formula of the naive forward, computed tile by tile."""
        shared = cuda.shared.array(0, real)
        tw, th = cuda.blockDim.x, cuda.blockDim.y
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * tw + tx
        n_threads = tw * th
        c_out, h_out, w_out = y.shape[1], y.shape[2], y.shape[3]
        cg, kh, kw = w.shape[2], w.shape[3], w.shape[4]
        cog = c_out // groups
        co_blocks = (cog + co_block - 1) // co_block
        n = cuda.blockIdx.x // (groups * co_blocks)
        g = (cuda.blockIdx.x // co_blocks) % groups
        co_first = g * cog + (cuda.blockIdx.x % co_blocks) * co_block   # first channel of block
        co_stop = (g + 1) * cog                                         # end of the group
        nw = n if w.shape[0] != 1 else 0
        oh0, ow0 = cuda.blockIdx.y * th, cuda.blockIdx.z * tw           # tile corner
        ph = (th - 1) * s0 + (kh - 1) * d0 + 1                          # patch height
        pw = (tw - 1) * s1 + (kw - 1) * d1 + 1                          # patch width
        patch_size = ci_chunk * ph * pw
        taps = kh * kw
        ih0, iw0 = oh0 * s0 - p0, ow0 * s1 - p1                         # patch corner in x

        acc = cuda.local.array(co_block, real)
        for u in range(co_block):
            acc[u] = real(0)

        for c0 in range(0, cg, ci_chunk):
            # -- cooperative copy: input patch, shared[0 : patch_size] as (ci_chunk, ph, pw)
            for e in range(tid, patch_size, n_threads):
                q = e % pw
                r = (e // pw) % ph
                c = c0 + e // (pw * ph)
                ih, iw = ih0 + r, iw0 + q
                value = real(0)
                if c < cg and 0 <= ih < x.shape[2] and 0 <= iw < x.shape[3]:
                    value = x[n, g * cg + c, ih, iw]
                shared[e] = value
            # -- cooperative copy: weights, shared[patch_size:] as (co_block, ci_chunk, kh, kw)
            for e in range(tid, co_block * ci_chunk * taps, n_threads):
                tap = e % taps
                c = c0 + (e // taps) % ci_chunk
                co = co_first + e // (taps * ci_chunk)
                value = real(0)
                if c < cg and co < co_stop:
                    value = w[nw, co, c, tap // kw, tap % kw]
                shared[patch_size + e] = value
            cuda.syncthreads()   # barrier 1: the whole chunk is in shared memory

            for c in range(ci_chunk):
                for i in range(kh):
                    row = (c * ph + ty * s0 + i * d0) * pw + tx * s1
                    for j in range(kw):
                        value = shared[row + j * d1]
                        weight_at = patch_size + (c * kh + i) * kw + j
                        for u in range(co_block):
                            acc[u] += value * shared[weight_at + u * ci_chunk * taps]
            cuda.syncthreads()   # barrier 2: everyone is done reading before the next copy

        oh, ow = oh0 + ty, ow0 + tx
        if oh < h_out and ow < w_out:
            for u in range(co_block):
                co = co_first + u
                if co < co_stop:
                    out = acc[u]
                    if b is not None:
                        out += b[nw, co]
                    y[n, co, oh, ow] = out

    return forward


def tiled_shared_elements(tile, kernel_shape, stride, dilation, co_block, ci_chunk):
    """Number of shared-memory elements the tiled forward uses (patch plus weights)."""
    (tw, th), (kh, kw) = tile, kernel_shape
    ph = (th - 1) * stride[0] + (kh - 1) * dilation[0] + 1
    pw = (tw - 1) * stride[1] + (kw - 1) * dilation[1] + 1
    return ci_chunk * ph * pw + co_block * ci_chunk * kh * kw


@functools.lru_cache(maxsize=None)
def matmul_kernel(dtype):
    """out[r, q] = sum_k A[r, k] B[k, q], one thread per output element.

    A is ``a`` or, when ``a_transposed``, ``a``'s transpose (read as a[k, r]); likewise B
    and ``bmat``. Reading the transpose by index spares a transposed copy on the device.
    A 1-D grid covers out (R, Q) row-major: thread t owns out[t // Q, t % Q] and reads a
    row of A and a column of B; no shared memory. The aggregation products are thin (one
    side is K = 4 long, or the output is only N x K), so this simple form serves them all.
    """
    real = _scalar(dtype)

    @cuda.jit
    def matmul(a, bmat, out, a_transposed, b_transposed):
        t = cuda.grid(1)
        rows, cols = out.shape
        if t < rows * cols:
            r, q = t // cols, t % cols
            inner = a.shape[0] if a_transposed else a.shape[1]
            acc = real(0)
            for k in range(inner):
                a_rk = a[k, r] if a_transposed else a[r, k]
                b_kq = bmat[q, k] if b_transposed else bmat[k, q]
                acc += a_rk * b_kq
            out[r, q] = acc

    return matmul


@functools.lru_cache(maxsize=None)
def pooling_kernels(dtype):
    """Global average pool over (H, W) and its adjoint, one thread per output element.

    ``spatial_mean``: thread t owns pooled[n, c] (t = n C + c) and sums its H x W plane.
    ``add_spatial_grad``: thread t owns dx[n, c, h, w] and adds scaled[n, c] to it,
    where the host has already divided dpooled by H W (in dx's dtype).
    """
    real = _scalar(dtype)

    @cuda.jit
    def spatial_mean(x, pooled):
        t = cuda.grid(1)
        n_total, channels = pooled.shape
        if t < n_total * channels:
            n, c = t // channels, t % channels
            acc = real(0)
            for h in range(x.shape[2]):
                for w in range(x.shape[3]):
                    acc += x[n, c, h, w]
            pooled[n, c] = acc / (x.shape[2] * x.shape[3])

    @cuda.jit
    def add_spatial_grad(dx, scaled):
        t = cuda.grid(1)
        n_total, channels, height, width = dx.shape
        if t < n_total * channels * height * width:
            w = t % width
            h = (t // width) % height
            c = (t // (width * height)) % channels
            n = t // (width * height * channels)
            dx[n, c, h, w] += scaled[n, c]

    return spatial_mean, add_spatial_grad


@cuda.jit
def add_into(dst, src):
    """dst[t] += src[t] for 1-D views of two arrays of one size, one thread per element."""
    t = cuda.grid(1)
    if t < dst.size:
        dst[t] += src[t]


def blocks_for(total, threads):
    """Blocks of ``threads`` needed to cover ``total`` elements (at least one)."""
    return max(1, math.ceil(total / threads))
