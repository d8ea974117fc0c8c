"""Global average pooling, the "squeeze" of the attention branch (paper section 3.2).

    pooled[n, c] = 1/(H W) sum_{h,w} x[n, c, h, w]
    dx[n, c, h, w] = dpooled[n, c] / (H W)

The pooled vector is always a host array (the attention branch is tiny); x may live on a device,
in which case the backend computes the mean there.
"""
import numpy as np

from ..backends import get_backend, reference


def global_avg_pool_forward(x, backend="numpy"):
    """pooled (N, C) = mean of x (N, C, H, W) over (H, W) -> (pooled, cache)."""
    module = get_backend(backend)
    return module.spatial_mean(x), {"x_shape": tuple(x.shape), "backend": module}


def global_avg_pool_backward(dpooled, cache, dx=None):
    """dx[n, c, :, :] = dpooled[n, c] / (H W).

    If ``dx`` is given (a gradient the backend allocated, e.g. the convolution's dx), the pooling
    gradient is added into it in place and it is returned; otherwise a new host array is made.
    """
    module = cache["backend"]
    if dx is None:
        dx, module = np.zeros(cache["x_shape"], dtype=dpooled.dtype), reference
    module.add_spatial_mean_grad(dx, dpooled)
    return dx
