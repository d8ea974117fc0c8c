"""Dynamic convolution by mixing outputs: kernel aggregation associated the other way, for
small output maps.

    z[n, k] = conv2d(x[n], W_k)                       K shared convolutions, run as one
    y[n]    = sum_k pi[n, k] z[n, k] + b_n,           b_n = sum_k pi[n, k] b_k

equals conv2d(x[n], W_n) + b_n with W_n = sum_k pi[n, k] W_k (paper eq. 1: a convolution is
linear in its kernel); only the rounding differs. The costs differ: aggregation writes N
per-sample kernels (N C_out C_in/g kh kw values, memory-bound) and then convolves once; mixing
outputs convolves once with all K C_out kernels (one product K times as wide, run at BLAS speed)
and mixes N K C_out P values, P = H_out W_out. On maps of a few positions (CIFAR-sized ResNets
and MobileNets end on 1 x 1 and 2 x 2 maps with hundreds of channels) mixing outputs is the
cheaper one, and no per-sample kernel or kernel gradient is ever formed.

The K kernels run as one shared convolution whose output channels are ordered (group g,
kernel k, channel o of the group), so that groups keep their meaning: W_stack[g, k, o] =
W_k[g C_out/G + o], and z (N, G, K, C_out/G, P).

Backward, dy (N, C_out, H_out, W_out), sums over (h, w) written sum_p:
    dz[n, k]   = pi[n, k] dy[n]
    dpi[n, k]  = <dy[n], z[n, k]> + <sum_p dy[n], b_k>
    dx, dW_stack = the shared convolution's backward for dz   (dW summed over n in order)
    db_k       = sum_n pi[n, k] sum_p dy[n]
"""
import numpy as np

from .conv import _conv_backward, _conv_forward


def _stacked_kernels(weight, groups):
    """(K, C_out, Cg, kh, kw) -> (G K C_out/G, Cg, kh, kw), channels ordered (g, k, o)."""
    k, c_out = weight.shape[:2]
    grouped = weight.reshape((k, groups, c_out // groups) + weight.shape[2:])
    return np.ascontiguousarray(grouped.swapaxes(0, 1)).reshape((-1,) + weight.shape[2:])


def _mixed_outputs_forward(x, pi, weight, bias, geometry, module):
    """y (N, C_out, H_out, W_out) from x, pi (N, K), weight (K, C_out, Cg, kh, kw) and bias
    (K, C_out) or None -> (y, cache)."""
    groups, (k, c_out) = geometry[3], weight.shape[:2]
    z, conv_cache = _conv_forward(x, _stacked_kernels(weight, groups), None, geometry, module,
                                  per_sample=False)
    n, out_shape = x.shape[0], z.shape[2:]
    z = z.reshape(n, groups, k, c_out // groups * out_shape[0] * out_shape[1])
    y = np.matmul(pi[:, None, None, :], z).reshape((n, c_out) + out_shape)
    if bias is not None:
        y += (pi @ bias)[:, :, None, None]
    return y, {"z": z, "pi": pi, "bias": bias, "conv": conv_cache, "kernel_shape": weight.shape}


def _mixed_outputs_backward(dy, cache):
    """(dx, dpi, dweight, dbias, db_n): db_n (N, C_out) = sum_p dy, which the caller uses to
    screen dy; dbias None without biases."""
    z, pi, bias, kernel_shape = cache["z"], cache["pi"], cache["bias"], cache["kernel_shape"]
    n, groups, k = z.shape[:3]
    dy_rows = dy.reshape(n, groups, 1, z.shape[3])
    db_n = dy.sum(axis=(2, 3))
    dpi = np.matmul(z, dy_rows.swapaxes(-1, -2))[..., 0].sum(axis=1)
    dbias = None
    if bias is not None:
        dpi += db_n @ bias.T
        dbias = pi.T @ db_n
    dz = (pi[:, None, :, None] * dy_rows).reshape((n, -1) + dy.shape[2:])
    dx, dw_stack, _ = _conv_backward(dz, cache["conv"])
    dweight = dw_stack.reshape((groups, k, kernel_shape[1] // groups) + dw_stack.shape[1:])
    return dx, dpi, np.ascontiguousarray(dweight.swapaxes(0, 1)).reshape(kernel_shape), dbias, db_n
