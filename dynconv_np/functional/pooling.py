"""Global average pooling, the "squeeze" of the attention branch (paper section 3.2).

    pooled[n, c] = 1/(H W) sum_{h,w} x[n, c, h, w]
    dx[n, c, h, w] = dpooled[n, c] / (H W)

The pooled vector is always a host array (the attention branch is tiny); x may live on a device,
in which case the backend computes the mean there.
"""
import numpy as np

from .._validation import check_float_array, check_upstream, contiguous, stage_cache
from ..backends import DEFAULT_BACKEND, check_placement, get_backend, reference


def global_avg_pool_forward(x, backend=DEFAULT_BACKEND):
    """pooled (N, C) = mean of x (N, C, H, W) over (H, W) -> (pooled, cache)."""
    check_float_array(x, "x", ndim=4)
    check_planes(x)
    module = get_backend(backend)
    check_placement(module, x=x)
    pooled, cache = _global_avg_pool_forward(contiguous(x), module)
    return pooled, stage_cache("global_avg_pool", cache, pooled)


def global_avg_pool_backward(dpooled, cache):
    """dx[n, c, :, :] = dpooled[n, c] / (H W), a new host array."""
    dpooled = check_upstream(cache, "global_avg_pool", dpooled=dpooled)
    dx = np.zeros(cache["x_shape"], dtype=dpooled.dtype)
    reference.add_spatial_mean_grad(dx, dpooled)
    return dx


def check_planes(x):
    """The mean over (H, W) needs at least one pixel: H, W >= 1."""
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"x must have at least one pixel per plane (H, W >= 1) to average; "
                         f"received shape {tuple(x.shape)}")


def _global_avg_pool_forward(x, module):
    return module.spatial_mean(x), {"x_shape": tuple(x.shape), "backend": module}


def _add_global_avg_pool_grad(dx, dpooled, cache):
    """In place: dx += the pooling gradient, for a dx that the pool's backend allocated (the
    dynamic convolution adds the attention path's gradient into the convolution's dx)."""
    cache["backend"].add_spatial_mean_grad(dx, dpooled)
    return dx
