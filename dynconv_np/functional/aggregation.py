"""Kernel aggregation (paper section 3.1):

    W_n = sum_k pi[n, k] W_k,        b_n = sum_k pi[n, k] b_k

Backward (each output is linear in pi and in the kernels):

    dpi[n, k]  = <dW_n, W_k> + <db_n, b_k>       (inner products over all kernel entries)
    dW_k       = sum_n pi[n, k] dW_n
    db_k       = sum_n pi[n, k] db_n

The arithmetic lives in the backend (``aggregate_forward`` / ``aggregate_backward``): a single
matrix product (N, K) x (K, C_out * C_in/g * kh * kw) on the CPU, a kernel on the GPU.
"""
from .._validation import (check_float_array, check_same_dtype, check_shape, check_upstream,
                           contiguous, stage_cache)
from ..backends import DEFAULT_BACKEND, check_placement, get_backend


def aggregate_kernels_forward(pi, weight, bias=None, backend=DEFAULT_BACKEND):
    """Per-sample kernels from attention -> ((w_n, b_n), cache).

    pi (N, K) host array; weight (K, *kernel_shape); bias (K, C_out) or None.
    w_n (N, *kernel_shape); b_n (N, C_out) or None.
    """
    check_float_array(pi, "pi", ndim=2, host=True)
    check_float_array(weight, "weight")
    if weight.ndim < 2 or weight.shape[0] != pi.shape[1]:
        raise ValueError(f"weight must hold K={pi.shape[1]} kernels along axis 0 (pi is "
                         f"{tuple(pi.shape)}); received weight shape {tuple(weight.shape)}")
    if bias is not None:
        check_float_array(bias, "bias", ndim=2)
        check_shape(bias, "bias", (pi.shape[1], weight.shape[1]))
    check_same_dtype(pi=pi, weight=weight, bias=bias)
    module = get_backend(backend)
    check_placement(module, pi=pi, weight=weight, bias=bias)
    (w_n, b_n), cache = _aggregate_kernels_forward(
        contiguous(pi), contiguous(weight), None if bias is None else contiguous(bias), module)
    return (w_n, b_n), stage_cache("aggregate_kernels", cache, w_n, b_n)


def aggregate_kernels_backward(dw_n, db_n, cache):
    """(dpi, dweight, dbias) for ``aggregate_kernels_forward``; dbias None without biases."""
    dw_n, db_n = check_upstream(cache, "aggregate_kernels", dw_n=dw_n, db_n=db_n)
    return _aggregate_kernels_backward(dw_n, db_n, cache)


def _aggregate_kernels_forward(pi, weight, bias, module):
    w_n, b_n = module.aggregate_forward(pi, weight, bias)
    return (w_n, b_n), {"pi": pi, "weight": weight, "bias": bias, "backend": module}


def _aggregate_kernels_backward(dw_n, db_n, cache):
    return cache["backend"].aggregate_backward(dw_n, db_n, cache["pi"], cache["weight"],
                                               cache["bias"])
