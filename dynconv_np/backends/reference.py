"""The NumPy reference backend: vectorised, readable, and the judge of the others.

Every backend module exposes the same four functions (see ``backends/__init__.py``
for the contract). Here the convolution is written as im2col + batched matmul:

    cols[n, g, (c, i, j), (h, w)] = x_pad[n, g*Cg + c, h*s0 + i*d0, w*s1 + j*d1]
    y[n, g, o, (h, w)]            = sum_{(c,i,j)} W[n, g, o, (c,i,j)] cols[n, g, (c,i,j), (h,w)] + b[n, g*Cog + o]

and the backward pass is the transpose of each step:

    dW[n] = dy[n] @ cols[n]^T            (summed over n when the kernels are shared)
    dcols = W[n]^T @ dy[n]  -> col2im    (scatter-add back onto x_pad, then crop)
    db[n] = sum_{h,w} dy[n]              (summed over n when the kernels are shared)

``W`` has a leading axis ``Nw`` that is either ``N`` (one kernel per sample, the
dynamic case) or ``1`` (one kernel shared by the batch, an ordinary convolution);
``np.matmul`` broadcasts the shared case for free.

cols holds kh*kw copies of x, so both passes build it for a chunk of samples at a time
(``COLS_BUDGET_BYTES`` of cols per chunk, at least one sample): the same products, sample by
sample; only a shared kernel's dW adds up chunk by chunk.
"""
import numpy as np

from .geometry import conv_output_shape

NAME = "numpy"
COLS_BUDGET_BYTES = 64 * 2**20  # im2col buffer per chunk of samples


def _tap_slices(i, j, out_h, out_w, stride, dilation):
    """Slices of x_pad read by kernel tap (i, j) for every output position."""
    r0, c0 = i * dilation[0], j * dilation[1]
    return (slice(r0, r0 + stride[0] * (out_h - 1) + 1, stride[0]),
            slice(c0, c0 + stride[1] * (out_w - 1) + 1, stride[1]))


def im2col(x, kh, kw, out_h, out_w, stride, padding, dilation, groups):
    """cols (N, G, Cg*kh*kw, H_out*W_out) for x (N, C_in, H, W)."""
    n, c_in = x.shape[:2]
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    cols = np.empty((n, c_in, kh, kw, out_h, out_w), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, columns = _tap_slices(i, j, out_h, out_w, stride, dilation)
            cols[:, :, i, j] = x_pad[:, :, rows, columns]
    return cols.reshape(n, groups, (c_in // groups) * kh * kw, out_h * out_w)


def col2im(dcols, x_shape, kh, kw, out_h, out_w, stride, padding, dilation, dx_pad=None):
    """Adjoint of ``im2col``: scatter-add columns back onto the input grid (onto ``dx_pad``,
    the padded grid of these samples, when given) and crop the padding off."""
    n, c_in, h, w = x_shape
    dcols = dcols.reshape(n, c_in, kh, kw, out_h, out_w)
    if dx_pad is None:
        dx_pad = np.zeros((n, c_in, h + 2 * padding[0], w + 2 * padding[1]), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, columns = _tap_slices(i, j, out_h, out_w, stride, dilation)
            dx_pad[:, :, rows, columns] += dcols[:, :, i, j]
    return dx_pad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w]


def _grouped_weight(w, groups):
    """(Nw, C_out, Cg, kh, kw) -> (Nw, G, C_out/G, Cg*kh*kw)."""
    nw, c_out = w.shape[:2]
    return w.reshape(nw, groups, c_out // groups, -1)


def _sample_chunks(x, kh, kw, out_h, out_w):
    """Slices of the batch whose cols (C_in*kh*kw*H_out*W_out values per sample) fit in
    ``COLS_BUDGET_BYTES``, at least one sample per slice."""
    n, c_in = x.shape[:2]
    per_sample = c_in * kh * kw * out_h * out_w * x.dtype.itemsize
    step = max(1, COLS_BUDGET_BYTES // max(1, per_sample))
    return [slice(start, min(start + step, n)) for start in range(0, n, step)]


def _samples(a, part):
    """The kernels (or kernel gradients) of the samples in ``part``: all of them share the
    one kernel when the leading axis is 1."""
    return a if a.shape[0] == 1 else a[part]


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """y (N, C_out, H_out, W_out) = per-sample (or shared) convolution of x with w, plus b."""
    n, c_out, out_h, out_w = conv_output_shape(x.shape, w.shape, stride, padding, dilation)
    kh, kw = w.shape[3], w.shape[4]
    w_g = _grouped_weight(w, groups)
    y = np.empty((n, c_out, out_h, out_w), dtype=np.result_type(x, w))
    y_g = y.reshape(n, groups, c_out // groups, out_h * out_w)
    for part in _sample_chunks(x, kh, kw, out_h, out_w):  # bounds the cols' memory
        cols = im2col(x[part], kh, kw, out_h, out_w, stride, padding, dilation, groups)
        np.matmul(_samples(w_g, part), cols, out=y_g[part])
        del cols  # before the next chunk's
    if b is not None:
        y += b[:, :, None, None]
    return y


def conv2d_backward(dy, x, w, stride, padding, dilation, groups, has_bias):
    """(dx, dw, db) of ``conv2d_forward``; dw has w's shape, db is (Nw, C_out) or None."""
    n, c_out, out_h, out_w = dy.shape
    nw, kh, kw = w.shape[0], w.shape[3], w.shape[4]
    c_in, h, w_in = x.shape[1:]
    w_g = _grouped_weight(w, groups)
    dy_g = dy.reshape(n, groups, c_out // groups, out_h * out_w)
    # a shared kernel's dW adds up over the chunks; per-sample ones are written once
    dw = (np.zeros if nw == 1 else np.empty)(w_g.shape, dtype=np.result_type(dy, x))
    dx_pad = np.zeros((n, c_in, h + 2 * padding[0], w_in + 2 * padding[1]),
                      dtype=np.result_type(w, dy))
    for part in _sample_chunks(x, kh, kw, out_h, out_w):  # bounds the cols' memory
        cols = im2col(x[part], kh, kw, out_h, out_w, stride, padding, dilation, groups)
        if nw == 1:  # a shared kernel: summed over the batch
            dw += np.matmul(dy_g[part], cols.swapaxes(-1, -2)).sum(axis=0, keepdims=True)
        else:
            np.matmul(dy_g[part], cols.swapaxes(-1, -2), out=dw[part])
        dcols = np.matmul(_samples(w_g, part).swapaxes(-1, -2), dy_g[part])
        col2im(dcols, x[part].shape, kh, kw, out_h, out_w, stride, padding, dilation,
               dx_pad=dx_pad[part])
        del cols, dcols  # before the next chunk's
    dx = dx_pad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w_in]
    db = dy.sum(axis=(2, 3)) if has_bias else None
    if db is not None and nw == 1 and n != 1:
        db = db.sum(axis=0, keepdims=True)
    return dx, dw.reshape(w.shape), db


def aggregate_forward(pi, weight, bias):
    """W_n = sum_k pi[n,k] weight[k];  b_n = sum_k pi[n,k] bias[k]  (paper eq. 1, 3.1).

    pi (N, K), weight (K, ...), bias (K, C_out) or None -> (W (N, ...), b (N, C_out) or None).
    """
    k = weight.shape[0]
    w_n = (pi @ weight.reshape(k, -1)).reshape((pi.shape[0],) + weight.shape[1:])
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
    dpi = dw_flat @ w_flat.T
    dweight = (pi.T @ dw_flat).reshape(weight.shape)
    dbias = None
    if bias is not None:
        dpi += db_n @ bias.T
        dbias = pi.T @ db_n
    return dpi, dweight, dbias


def spatial_mean(x):
    """pooled[n, c] = mean_{h,w} x[n, c, h, w]: (N, C, H, W) -> (N, C)."""
    return x.mean(axis=(2, 3))


def add_spatial_mean_grad(dx, dpooled):
    """In place: dx[n, c, h, w] += dpooled[n, c] / (H W), the adjoint of ``spatial_mean``."""
    dx += (dpooled / (dx.shape[2] * dx.shape[3]))[:, :, None, None].astype(dx.dtype, copy=False)
