"""The ``loops`` backend: the contract as plain Numba loops, for teaching (correct, not fast).

Each jitted function is one CUDA kernel of ``cuda_kernels.py`` (``naive_kernels``,
``matmul_kernel``, ``pooling_kernels``) with its name, arguments, decomposition and index
formulas, to be read side by side with it. Only the source of the index differs: a CUDA
thread reads ``t = cuda.grid(1)`` and returns if ``t`` is past the end; here ``t`` is the
variable of a ``prange`` loop over the same range. So ``prange`` always runs over the
row-major index of the one element that the iteration writes: no two iterations write one
element, and no locks or cross-thread reductions are needed. Sums accumulate in the arrays'
dtype, like the CUDA kernels. No tiling, BLAS, scratch buffers or ``fastmath``: the tuned
engine is the ``numba`` backend.

Index conventions (those of ``cuda_kernels.py``): x (N, C_in, H, W); w (Nw, C_out, Cg, kh, kw)
with Cg = C_in / G and Nw in {1, N}; y and dy (N, C_out, H_out, W_out); G groups of
Cog = C_out / G output channels. Output channel ``co`` belongs to group ``g = co // Cog`` and
reads input channels ``g * Cg + c`` for ``c < Cg``. Sample ``n`` uses kernel ``nw = n``
(dynamic convolution) or ``nw = 0`` (shared kernel). Output position (oh, ow) reads input
(oh s0 - p0 + i d0, ow s1 - p1 + j d1) for tap (i, j), zero outside the image
(``geometry.py``). Without a bias ``b`` is None: Numba compiles a version for it without
the ``if b is not None`` branch.

The contract functions at the end allocate the outputs (in the inputs' dtype) and call the
loops; their semantics are those of ``reference.py``, the judge.
"""
import numpy as np
from numba import njit, prange

from .geometry import conv_output_shape

NAME = "loops"


# -- convolution: cuda_kernels.naive_kernels ---------------------------------------------
@njit(cache=True, parallel=True)
def forward(x, w, b, y, s0, s1, p0, p1, d0, d1, groups):
    """y[n,co,oh,ow] = sum_{c,i,j} x[n, g Cg + c, oh s0 - p0 + i d0, ow s1 - p1 + j d1]
                          * w[nw, co, c, i, j]  + b[nw, co]."""
    n_out, c_out, h_out, w_out = y.shape
    for t in prange(n_out * c_out * h_out * w_out):   # t: row-major index of y[n, co, oh, ow]
        ow = t % w_out
        oh = (t // w_out) % h_out
        co = (t // (w_out * h_out)) % c_out
        n = t // (w_out * h_out * c_out)
        nw = n if w.shape[0] != 1 else 0
        cg, kh, kw = w.shape[2], w.shape[3], w.shape[4]
        g = co // (c_out // groups)
        acc = y.dtype.type(0)
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


@njit(cache=True, parallel=True)
def backward_input(dy, w, dx, s0, s1, p0, p1, d0, d1, groups):
    """dx[n,ci,ih,iw] = sum over (o, i, j) with ih = oh s0 - p0 + i d0 and
    iw = ow s1 - p1 + j d1 for some in-range (oh, ow) of dy[n,co,oh,ow] w[nw,co,c,i,j].

    The iteration inverts the index map: for tap i the output row is
    oh = (ih + p0 - i d0) / s0, which exists only when that is a non-negative
    multiple of s0 below H_out (a gather, so no two iterations write one element).
    """
    n_in, c_in, h_in, w_in = dx.shape
    for t in prange(n_in * c_in * h_in * w_in):   # t: row-major index of dx[n, ci, ih, iw]
        iw = t % w_in
        ih = (t // w_in) % h_in
        ci = (t // (w_in * h_in)) % c_in
        n = t // (w_in * h_in * c_in)
        nw = n if w.shape[0] != 1 else 0
        cg, kh, kw = w.shape[2], w.shape[3], w.shape[4]
        cog = dy.shape[1] // groups
        g = ci // cg
        c = ci - g * cg
        acc = dx.dtype.type(0)
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


@njit(cache=True, parallel=True)
def backward_weight(dy, x, dw, s0, s1, p0, p1, d0, d1, groups):
    """dw[nw,co,c,i,j] = sum_{n of nw} sum_{oh,ow} dy[n,co,oh,ow]
                            * x[n, g Cg + c, oh s0 - p0 + i d0, ow s1 - p1 + j d1].

    "n of nw" is the one sample n = nw when every sample has its own kernel, and the
    whole batch when one kernel is shared (Nw = 1): the iteration owning the shared tap
    sums the batch itself, so no reduction across iterations is needed.
    """
    nw_total, c_out, cg, kh, kw = dw.shape
    for t in prange(nw_total * c_out * cg * kh * kw):   # t: row-major index of dw[nw, co, c, i, j]
        j = t % kw
        i = (t // kw) % kh
        c = (t // (kw * kh)) % cg
        co = (t // (kw * kh * cg)) % c_out
        nw = t // (kw * kh * cg * c_out)
        n_first, n_stop = (nw, nw + 1) if nw_total != 1 else (0, x.shape[0])
        ci = (co // (c_out // groups)) * cg + c
        acc = dw.dtype.type(0)
        for n in range(n_first, n_stop):
            for oh in range(dy.shape[2]):
                ih = oh * s0 - p0 + i * d0
                if 0 <= ih < x.shape[2]:
                    for ow in range(dy.shape[3]):
                        iw = ow * s1 - p1 + j * d1
                        if 0 <= iw < x.shape[3]:
                            acc += dy[n, co, oh, ow] * x[n, ci, ih, iw]
        dw[nw, co, c, i, j] = acc


@njit(cache=True, parallel=True)
def backward_bias(dy, db):
    """db[nw, co] = sum_{n of nw} sum_{oh,ow} dy[n, co, oh, ow] ("n of nw" as for dw)."""
    nw_total, c_out = db.shape
    for t in prange(nw_total * c_out):   # t: row-major index of db[nw, co]
        co = t % c_out
        nw = t // c_out
        n_first, n_stop = (nw, nw + 1) if nw_total != 1 else (0, dy.shape[0])
        acc = db.dtype.type(0)
        for n in range(n_first, n_stop):
            for oh in range(dy.shape[2]):
                for ow in range(dy.shape[3]):
                    acc += dy[n, co, oh, ow]
        db[nw, co] = acc


# -- kernel aggregation: cuda_kernels.matmul_kernel ----------------------------------------
@njit(cache=True, parallel=True)
def matmul(a, bmat, out, a_transposed, b_transposed):
    """out[r, q] = sum_k A[r, k] B[k, q]; A is ``a`` or, when ``a_transposed``, its
    transpose (read as a[k, r]); likewise B and ``bmat``."""
    rows, cols = out.shape
    for t in prange(rows * cols):   # t: row-major index of out[r, q]
        r, q = t // cols, t % cols
        inner = a.shape[0] if a_transposed else a.shape[1]
        acc = out.dtype.type(0)
        for k in range(inner):
            a_rk = a[k, r] if a_transposed else a[r, k]
            b_kq = bmat[q, k] if b_transposed else bmat[k, q]
            acc += a_rk * b_kq
        out[r, q] = acc


# -- global average pool: cuda_kernels.pooling_kernels --------------------------------------
@njit(cache=True, parallel=True)
def spatial_mean_kernel(x, pooled):
    """pooled[n, c] = sum_{h,w} x[n, c, h, w] / (H W): CUDA's ``spatial_mean``, renamed
    because the contract function below has that name."""
    n_total, channels = pooled.shape
    for t in prange(n_total * channels):   # t = n C + c, the index of pooled[n, c]
        n, c = t // channels, t % channels
        acc = pooled.dtype.type(0)
        for h in range(x.shape[2]):
            for w in range(x.shape[3]):
                acc += x[n, c, h, w]
        pooled[n, c] = acc / (x.shape[2] * x.shape[3])


@njit(cache=True, parallel=True)
def add_spatial_grad(dx, scaled):
    """dx[n, c, h, w] += scaled[n, c] (``scaled`` = dpooled / (H W), in dx's dtype)."""
    n_total, channels, height, width = dx.shape
    for t in prange(n_total * channels * height * width):   # t: row-major index of dx[n, c, h, w]
        w = t % width
        h = (t // width) % height
        c = (t // (width * height)) % channels
        n = t // (width * height * channels)
        dx[n, c, h, w] += scaled[n, c]


# -- the backend contract (backends/contract.py) ----------------------------------------------
def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """y = conv(x, w) + b: ``forward`` into a new y (N, C_out, H_out, W_out)."""
    y = np.empty(conv_output_shape(x.shape, w.shape, stride, padding, dilation), x.dtype)
    forward(x, w, b, y, *stride, *padding, *dilation, groups)
    return y


def conv2d_backward(dy, x, w, stride, padding, dilation, groups, has_bias):
    """(dx, dw, db): dx like x, dw like w (summed over the batch when Nw = 1), db (Nw, C_out)
    or None without a bias."""
    geometry = (*stride, *padding, *dilation, groups)
    dx = np.empty(x.shape, dy.dtype)
    backward_input(dy, w, dx, *geometry)
    dw = np.empty(w.shape, dy.dtype)
    backward_weight(dy, x, dw, *geometry)
    db = None
    if has_bias:
        db = np.empty(w.shape[:2], dy.dtype)
        backward_bias(dy, db)
    return dx, dw, db


def _matmul(a, bmat, a_transposed=False, b_transposed=False):
    """A @ B into a new array, A = a or a^T, B = bmat or bmat^T (2-D, one dtype)."""
    out = np.empty((a.shape[1] if a_transposed else a.shape[0],
                    bmat.shape[0] if b_transposed else bmat.shape[1]), a.dtype)
    matmul(a, bmat, out, a_transposed, b_transposed)
    return out


def aggregate_forward(pi, weight, bias):
    """W_n[n, e] = sum_k pi[n, k] weight[k, e];  b_n[n, o] = sum_k pi[n, k] bias[k, o], with
    e the flattened kernel entry (C_out, Cg, kh, kw); b_n is None without a bias."""
    n, k = pi.shape
    w_n = _matmul(pi, weight.reshape(k, -1)).reshape((n,) + weight.shape[1:])
    b_n = None if bias is None else _matmul(pi, bias)
    return w_n, b_n


def aggregate_backward(dw_n, db_n, pi, weight, bias):
    """dpi[n, k] = sum_e dW_n[n, e] weight[k, e] + sum_o db_n[n, o] bias[k, o];
    dweight[k, e] = sum_n pi[n, k] dW_n[n, e];  dbias[k, o] = sum_n pi[n, k] db_n[n, o]."""
    n, k = pi.shape
    dw_flat, w_flat = dw_n.reshape(n, -1), weight.reshape(k, -1)
    dpi = _matmul(dw_flat, w_flat, b_transposed=True)
    dweight = _matmul(pi, dw_flat, a_transposed=True).reshape(weight.shape)
    dbias = None
    if bias is not None:
        dpi += _matmul(db_n, bias, b_transposed=True)
        dbias = _matmul(pi, db_n, a_transposed=True)
    return dpi, dweight, dbias


def spatial_mean(x):
    """pooled[n, c] = mean_{h,w} x[n, c, h, w]: (N, C, H, W) -> (N, C)."""
    pooled = np.empty(x.shape[:2], x.dtype)
    spatial_mean_kernel(x, pooled)
    return pooled


def add_spatial_mean_grad(dx, dpooled):
    """In place: dx[n, c, h, w] += dpooled[n, c] / (H W), the adjoint of ``spatial_mean``
    (the division is done once per (n, c), in dx's dtype, as ``cuda.py`` does)."""
    add_spatial_grad(dx, (dpooled / (dx.shape[2] * dx.shape[3])).astype(dx.dtype, copy=False))
