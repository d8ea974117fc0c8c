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
"""
import numpy as np

from .geometry import conv_output_shape

NAME = "numpy"


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


def col2im(dcols, x_shape, kh, kw, out_h, out_w, stride, padding, dilation):
    """Adjoint of ``im2col``: scatter-add columns back onto the input grid."""
    n, c_in, h, w = x_shape
    dcols = dcols.reshape(n, c_in, kh, kw, out_h, out_w)
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


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """y (N, C_out, H_out, W_out) = per-sample (or shared) convolution of x with w, plus b."""
    n, c_out, out_h, out_w = conv_output_shape(x.shape, w.shape, stride, padding, dilation)
    cols = im2col(x, w.shape[3], w.shape[4], out_h, out_w, stride, padding, dilation, groups)
    y = np.matmul(_grouped_weight(w, groups), cols).reshape(n, c_out, out_h, out_w)
    if b is not None:
        y += b[:, :, None, None]
    return y


def conv2d_backward(dy, x, w, stride, padding, dilation, groups, has_bias):
    """(dx, dw, db) of ``conv2d_forward``; dw has w's shape, db is (Nw, C_out) or None."""
    n, c_out, out_h, out_w = dy.shape
    nw, kh, kw = w.shape[0], w.shape[3], w.shape[4]
    cols = im2col(x, kh, kw, out_h, out_w, stride, padding, dilation, groups)
    dy_g = dy.reshape(n, groups, c_out // groups, out_h * out_w)
    dw = np.matmul(dy_g, cols.swapaxes(-1, -2))
    dcols = np.matmul(_grouped_weight(w, groups).swapaxes(-1, -2), dy_g)
    dx = col2im(dcols, x.shape, kh, kw, out_h, out_w, stride, padding, dilation)
    db = dy.sum(axis=(2, 3)) if has_bias else None
    if nw == 1 and n != 1:
        dw = dw.sum(axis=0, keepdims=True)
        db = None if db is None else db.sum(axis=0, keepdims=True)
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
