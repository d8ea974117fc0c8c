"""Dynamic convolution (paper section 3.2), composed from the stages of this package.

    pooled = mean_{h,w} x                                        global average pool
    pi     = softmax((relu(pooled W1^T + b1) W2^T + b2) / tau)   the attention branch
    W_n    = sum_k pi[n, k] W_k,   b_n = sum_k pi[n, k] b_k      kernel aggregation (eq. 1)
    y[n]   = conv2d(x[n], W_n) + b_n                             per-sample convolution

On maps of at most MIX_OUTPUTS_UP_TO output positions (not depthwise) the last two steps run
associated the other way, y[n] = sum_k pi[n, k] conv2d(x[n], W_k) + b_n, on host backends
(``output_mixing.py``: the same function, cheaper there, and no per-sample kernels).

The backward pass walks the same path in reverse. x reaches the loss along two paths (through the
convolution and through the attention branch), so its gradient is the sum of both:

    dx = dx_conv + dx_pool,   dx_pool[n, c] = dpooled[n, c] / (H W)

The public pair checks every argument once and screens x and dy for NaN/inf through sums the
computation makes anyway (the pooled means of x; the bias gradient, i.e. per-plane sums of dy:
``check_finite_via``), and the K kernels, when the batch has fewer than K samples, through the
per-sample kernels W_n it forms anyway (pi > 0, and a NaN or inf times a weight of pi is NaN or
inf, so W_n is finite exactly when the K kernels are: a quarter of the reading at batch 1,
K = 4); the private ``_dynamic_conv2d_forward`` / ``_backward`` below are the math and nothing
else.
"""
import numpy as np

from .aggregation import _aggregate_kernels_backward, _aggregate_kernels_forward
from .attention import (ATTENTION_PARAMS, _attention_backward, _attention_forward,
                        attention_cache, check_attention_params)
from .conv import _conv_backward, _conv_forward, check_conv_args, conv_geometry
from .output_mixing import _mixed_outputs_backward, _mixed_outputs_forward
from .pooling import _add_global_avg_pool_grad, _global_avg_pool_forward
from .._validation import (check_finite, check_finite_through, check_finite_via,
                           check_float_array, check_same_dtype, check_shape, check_temperature,
                           check_upstream, is_host_array, screened_backward, stage_cache)
from ..backends import DEFAULT_BACKEND, check_placement, get_backend, runs_on_device
from ..backends.geometry import conv_output_shape

# Output positions (H_out W_out) up to which the layer mixes outputs instead of aggregating
# kernels: measured on the layers of DY-MobileNetV2 x0.35 and DY-ResNet-10 x0.25 on 32 x 32
# images (dynconv_np/bench/README.md)
MIX_OUTPUTS_UP_TO = 4


def dynamic_conv2d_forward(x, params, tau, stride=1, padding=0, dilation=1, groups=1,
                           backend=DEFAULT_BACKEND):
    """y = dynamic convolution of x -> (y, cache); ``cache["pi"]`` is the attention (N, K).

    params: dict with "weight" (K, C_out, C_in/groups, kh, kw), optional "bias" (K, C_out),
    "fc1_weight" (hidden, C_in), optional "fc1_bias" (hidden,), "fc2_weight" (K, hidden),
    "fc2_bias" (K,).
    """
    geometry = conv_geometry(stride, padding, dilation, groups)
    module = get_backend(backend)
    check_dynamic_conv_params(params, x, geometry, module)
    tau = check_temperature(tau, x.dtype)
    y, cache = _screened_forward(x, params, tau, geometry, module)
    return y, stage_cache("dynamic_conv2d", cache, y)


def dynamic_conv2d_backward(dy, cache):
    """(dx, grads) where grads has a key per parameter in the forward's ``params``."""
    dy = check_upstream(cache, "dynamic_conv2d", finite=False, dy=dy)  # screened by the next
    return _screened_backward(dy, cache)


def _screened_forward(x, params, tau, geometry, module):
    """``_dynamic_conv2d_forward`` with x screened for NaN/inf through its pooled means (a NaN
    or inf in a plane makes its mean one) and the kernels through W_n or directly
    (``_screen_kernels``); raises, naming the first bad element, before the caller keeps
    anything, and without NumPy warnings first."""
    with np.errstate(invalid="ignore", over="ignore"):
        y, cache = _dynamic_conv2d_forward(x, params, tau, geometry, module)
    check_finite_via(x, "x", cache["pooled"], "mean")
    _screen_kernels(params["weight"], x.shape[0], cache)
    return y, cache


def _screen_kernels(weight, n, cache):
    """The K kernels (host arrays) screened for NaN/inf: through the N per-sample kernels W_n
    when N < K and the layer formed them, else directly."""
    if not is_host_array(weight):
        return
    if cache["mixed_outputs"] or n >= weight.shape[0]:
        check_finite(weight, "weight")
    else:
        check_finite_through(weight, "weight", cache["stages"][3]["w"],
                             "the per-sample kernels W_n = sum_k pi_k W_k")


def _screened_backward(dy, cache):
    """``_dynamic_conv2d_backward`` with dy screened through the bias gradient db_n (db_n[n, o]
    is the sum of dy[n, o]), or scanned when there is no bias (``screened_backward``)."""
    return screened_backward(_dynamic_conv2d_backward, dy, cache)


def check_dynamic_conv_params(params, x, geometry, module):
    """Every parameter, once, by name: weight (K, C_out, C_in/groups, kh, kw), bias (K, C_out),
    finite, of x's dtype, where ``module`` (the backend) can read them, and the attention's FCs
    for C_in = x.shape[1] inputs and K outputs; x against the kernels and the geometry (the
    values of x and of the kernels are screened by ``_screened_forward``). Kernels on a device
    (backend "cuda") are checked by shape and dtype only."""
    if not isinstance(params, dict) or "weight" not in params:
        raise TypeError(f"params must be a dict holding at least 'weight' and the attention "
                        f"parameters {ATTENTION_PARAMS}; received "
                        f"{sorted(params) if isinstance(params, dict) else type(params).__name__}")
    check_placement(module, x=x, weight=params["weight"], bias=params.get("bias"))
    check_float_array(x, "x", ndim=4, finite=False)
    weight = check_float_array(params["weight"], "weight", ndim=5, finite=False)  # screened
    num_kernels, c_out = weight.shape[:2]
    bias = params.get("bias")
    if bias is not None:
        check_shape(check_float_array(bias, "bias", ndim=2), "bias", (num_kernels, c_out))
    check_same_dtype(x=x, weight=weight, bias=bias)
    check_conv_args(x, weight[0], None if bias is None else bias[0], geometry, per_sample=False,
                    finite=False, finite_weight=False)
    check_attention_params(params, x.shape[1], num_kernels, np.dtype(x.dtype))


def _dynamic_kernels(x, params, tau, module):
    """pool -> attention -> aggregation: (w_n, b_n, pi, caches), the per-sample kernels.

    This is the whole "attention over kernels" part of the layer, the stage the benchmark
    times against the convolution."""
    pi, pool_cache, attention_cache = _attention_over(x, params, tau, module)
    (w_n, b_n), aggregate_cache = _aggregate_kernels_forward(pi, params["weight"],
                                                             params.get("bias"), module)
    return w_n, b_n, pi, (pool_cache, attention_cache, aggregate_cache)


def _attention_over(x, params, tau, module):
    """pool -> attention: (pi, pool_cache, attention_cache)."""
    pooled, pool_cache = _global_avg_pool_forward(x, module)
    pi, attention_cache = _attention_stage(pooled, params, tau, module)
    return pi, pool_cache, attention_cache


def mixes_outputs(x_shape, weight_shape, geometry, module):
    """True where the layer mixes outputs (see the module docstring): at most
    MIX_OUTPUTS_UP_TO output positions, more than one input channel per group (a depthwise
    kernel is so small that aggregating it costs less than K depthwise passes), on a host
    backend."""
    stride, padding, dilation, _ = geometry
    out_h, out_w = conv_output_shape(x_shape, (1,) + tuple(weight_shape[1:]), stride, padding,
                                     dilation)[2:]
    return (out_h * out_w <= MIX_OUTPUTS_UP_TO and weight_shape[2] > 1
            and not runs_on_device(module))


def _attention_stage(pooled, params, tau, module):
    """The attention branch as the backend's one call where it offers one (and the branch has
    both FC biases), else the composition of stages: one cache type either way."""
    fused = getattr(module, "attention_forward", None)
    if fused is None or params.get("fc1_bias") is None:
        return _attention_forward(pooled, *(params.get(name) for name in ATTENTION_PARAMS), tau)
    pi, hidden = fused(pooled, *(params[name] for name in ATTENTION_PARAMS), tau)
    return pi, attention_cache(pooled, hidden, pi, params["fc1_weight"], params["fc2_weight"],
                               tau)


def _attention_stage_backward(dpi, cache, module):
    """Backward of ``_attention_stage``, by the same route."""
    fused = getattr(module, "attention_backward", None)
    if fused is None or not cache["has_fc1_bias"]:
        return _attention_backward(dpi, cache)
    dpooled, *grads = fused(dpi, cache["pi"], cache["hidden"], cache["pooled"],
                            cache["fc1_weight"], cache["fc2_weight"], cache["tau"])
    return dpooled, dict(zip(ATTENTION_PARAMS, grads))


def _dynamic_conv2d_forward(x, params, tau, geometry, module):
    weight, bias = params["weight"], params.get("bias")
    mixing = mixes_outputs(x.shape, weight.shape, geometry, module)
    if mixing:
        pi, pool_cache, attention_cache = _attention_over(x, params, tau, module)
        y, mix_cache = _mixed_outputs_forward(x, pi, weight, bias, geometry, module)
        stages = (pool_cache, attention_cache, mix_cache)
    else:
        w_n, b_n, pi, kernel_caches = _dynamic_kernels(x, params, tau, module)
        y, conv_cache = _conv_forward(x, w_n, b_n, geometry, module, per_sample=True)
        stages = kernel_caches + (conv_cache,)
    pooled = stages[1]["pooled"]  # the attention cache keeps the pooled means
    return y, {"pi": pi, "pooled": pooled, "backend": module, "mixed_outputs": mixing,
               "stages": stages}


def _dynamic_conv2d_backward(dy, cache):
    """(dx, grads, db_n): db_n, the per-sample bias gradient (or, mixing outputs, the sums of
    dy over (h, w)), is returned for the screen."""
    if cache["mixed_outputs"]:
        pool_cache, attention_cache, mix_cache = cache["stages"]
        dx, dpi, dweight, dbias, db_n = _mixed_outputs_backward(dy, mix_cache)
    else:
        pool_cache, attention_cache, aggregate_cache, conv_cache = cache["stages"]
        dx, dw_n, db_n = _conv_backward(dy, conv_cache)
        dpi, dweight, dbias = _aggregate_kernels_backward(dw_n, db_n, aggregate_cache)
    dpooled, grads = _attention_stage_backward(dpi, attention_cache, cache["backend"])
    dx = _add_global_avg_pool_grad(dx, dpooled, pool_cache)
    grads["weight"] = dweight
    if dbias is not None:
        grads["bias"] = dbias
    return dx, grads, db_n
