"""Kernel aggregation (paper section 3.1):

    W_n = sum_k pi[n, k] W_k,        b_n = sum_k pi[n, k] b_k

Backward (each output is linear in pi and in the kernels):

    dpi[n, k]  = <dW_n, W_k> + <db_n, b_k>       (inner products over all kernel entries)
    dW_k       = sum_n pi[n, k] dW_n
    db_k       = sum_n pi[n, k] db_n

The arithmetic lives in the backend (``aggregate_forward`` / ``aggregate_backward``): a single
matrix product (N, K) x (K, C_out * C_in/g * kh * kw) on the CPU, a kernel on the GPU.
"""
import numpy as np

from .._validation import check_float_array, check_same_dtype, check_shape, is_host_array
from ..backends import get_backend


def aggregate_kernels_forward(pi, weight, bias=None, backend="numpy", check=True):
    """Per-sample kernels from attention -> ((w_n, b_n), cache).

    pi (N, K) host array; weight (K, *kernel_shape); bias (K, C_out) or None.
    w_n (N, *kernel_shape); b_n (N, C_out) or None. ``check=False`` skips the argument
    checks, for callers that made them already.
    """
    if check:
        check_float_array(pi, "pi", ndim=2)
        check_float_array(weight, "weight")
        if weight.shape[0] != pi.shape[1]:
            raise ValueError(f"weight must hold K={pi.shape[1]} kernels along axis 0 (pi is "
                             f"{tuple(pi.shape)}); received weight shape {tuple(weight.shape)}")
        if bias is not None:
            check_float_array(bias, "bias", ndim=2)
            check_shape(bias, "bias", (pi.shape[1], weight.shape[1]))
        check_same_dtype(pi=pi, weight=weight, bias=bias)
    module = get_backend(backend)
    w_n, b_n = module.aggregate_forward(pi, weight, bias)
    return (w_n, b_n), {"pi": pi, "weight": weight, "bias": bias, "backend": module}


def aggregate_kernels_backward(dw_n, db_n, cache):
    """(dpi, dweight, dbias) for ``aggregate_kernels_forward``; dbias None without biases."""
    dw_n, db_n = (np.ascontiguousarray(a) if is_host_array(a) else a for a in (dw_n, db_n))
    return cache["backend"].aggregate_backward(dw_n, db_n, cache["pi"], cache["weight"],
                                               cache["bias"])
