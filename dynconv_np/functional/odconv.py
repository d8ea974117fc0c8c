"""ODConv: omni-dimensional dynamic convolution (Li, Zhou and Yao, ICLR 2022), composed from the
stages of this package.

With K kernels W_k (C_out, C_in/groups, kh, kw) and no convolution bias:

    pooled  = mean_{h,w} x                                   (N, C_in)
    h       = relu(BN(pooled F^T))                           F (hidden, C_in), no bias
    alpha_c = sigmoid((h Wc^T + bc) / tau)                   (N, C_in)     input channels
    alpha_f = sigmoid((h Wf^T + bf) / tau)                   (N, C_out)    output filters
    alpha_s = sigmoid((h Ws^T + bs) / tau)                   (N, kh kw)    spatial positions
    alpha_w = softmax((h Ww^T + bw) / tau)                   (N, K)        kernels
    V_n     = sum_k alpha_w[n, k] W_k                        (functional.aggregation)
    W_n     = alpha_s[n] (.) V_n                             alpha_s broadcast over (C_out, C_in/g)
    u[n]    = conv2d(alpha_c[n] (.) x[n], W_n)               alpha_c scales x's channels
    y[n]    = alpha_f[n] (.) u[n]                            alpha_f scales the output channels

This is the paper's eq. 2, y = (sum_i alpha_wi (.) alpha_fi (.) alpha_ci (.) alpha_si (.) W_i) * x,
as the official code computes it (OSVAI/ODConv, ``modules/odconv.py``), which differs from
the paper in ways followed here:

* alpha_s, alpha_c and alpha_f are shared by the K kernels (one head each, C_in, C_out and
  kh kw outputs; only alpha_w has one value per kernel), where the paper writes them per
  kernel i. With shared factors the convolution's linearity gives (alpha_f (.) W) * x =
  alpha_f (.) (W * x) and (alpha_c (.) W) * x = W * (alpha_c (.) x), so the code scales x and
  the output instead of the kernel ("faster, less GPU memory"); alpha_c has C_in entries,
  one per channel of x, which is what a kernel of C_in/groups channels means for groups > 1.
* the branch: hidden = max(int(C_in * reduction), 16), reduction = 1/16; a bias-free FC
  (a 1x1 convolution), BatchNorm, ReLU; four FC heads with biases; every head divided by the
  temperature tau (1 in the module; main.py anneals it 30 -> 1 over the first 10 epochs).
  The BatchNorm normalises over the batch in training mode (each sample's attention then
  depends on the whole batch, so N >= 2) and uses running statistics in evaluation mode.
* heads are dropped, and their factor is 1: the filter head when in_planes == groups ==
  out_planes (a depthwise convolution without channel multiplier; with one it is kept), the
  spatial head for a 1 x 1 kernel (here: kh kw = 1, since the official code takes square
  kernels only), the kernel head for K = 1. With K = 1 and a 1 x 1 kernel the convolution is
  an ordinary one with W_1 (the official ``_forward_impl_pw1x``), and so it is here.

Backward: the product rule over the four factors, each stage's own backward in reverse
(sums over every index not named on the left):

    dalpha_f[n, o] = sum_{h,w} dy[n, o] u[n, o],     du = alpha_f (.) dy     (channel_scale)
    dx~, dW_n      = conv2d'(du)                     x~ = alpha_c (.) x      (conv)
    dalpha_s[n, i, j] = sum_{o,c} dW_n[o, c, i, j] V_n[o, c, i, j],   dV_n = alpha_s[n] (.) dW_n
    dalpha_w[n, k] = <dV_n, W_k>,   dW_k = sum_n alpha_w[n, k] dV_n          (aggregation)
    dalpha_c[n, c] = sum_{h,w} dx~[n, c] x[n, c],     dx_conv = alpha_c (.) dx~
    dz_head = sigmoid'(dalpha_head) / tau  (softmax' for the kernel head, tau included)
    dh = sum_head dz_head W_head;  relu', BN' (training: the batch-coupled form), F':
    dpooled = dBN(dh [h > 0]) F,   dx = dx_conv + dpooled / (H W)

x is screened for NaN/inf through its pooled means, dy through dalpha_f (sums of dy u; a NaN
or inf in dy makes one non-finite) or, without the filter head, scanned.
"""
import numpy as np

from .activations import (_relu_backward, _relu_forward, _sigmoid_backward, _sigmoid_forward)
from .aggregation import _aggregate_kernels_backward, _aggregate_kernels_forward
from .batchnorm import batch_stats, batchnorm_stage, batchnorm_stage_backward, check_variance
from .channel_scale import _channel_scale_backward, _channel_scale_forward
from .conv import _conv_backward, _conv_forward, check_kernel_bank, conv_geometry
from .linear import _linear_backward, _linear_forward
from .pooling import _add_global_avg_pool_grad, _global_avg_pool_forward
from .softmax import _softmax_backward, _softmax_forward
from .._validation import (check_finite_via, check_float_array, check_host_backend, check_real,
                           check_same_dtype, check_shape, check_temperature, check_upstream,
                           contiguous, screened_backward, stage_cache)
from ..backends import DEFAULT_BACKEND, check_placement

HEADS = ("channel", "filter", "spatial", "kernel")
BRANCH_PARAMS = ("fc_weight", "bn_weight", "bn_bias")


def odconv_heads(in_channels, out_channels, kernel_size, groups, num_kernels):
    """The heads an ODConv layer has, in the order of ``HEADS`` (the official rule): the
    channel head always; the filter head unless in_channels == groups == out_channels; the
    spatial head unless kh kw = 1; the kernel head unless num_kernels = 1."""
    heads = ["channel"]
    if not in_channels == groups == out_channels:
        heads.append("filter")
    if kernel_size[0] * kernel_size[1] > 1:
        heads.append("spatial")
    if num_kernels > 1:
        heads.append("kernel")
    return tuple(heads)


def odconv_param_names(heads):
    """The parameter names of an ODConv layer with ``heads``."""
    return ("weight",) + BRANCH_PARAMS + tuple(f"{head}_fc_{kind}" for head in heads
                                                for kind in ("weight", "bias"))


def odconv2d_forward(x, params, tau, stride=1, padding=0, dilation=1, groups=1, training=True,
                     running_mean=None, running_var=None, eps=1e-5, backend=DEFAULT_BACKEND):
    """y = ODConv of x (module docstring) -> (y, cache).

    params: "weight" (K, C_out, C_in/groups, kh, kw); "fc_weight" (hidden, C_in); "bn_weight",
    "bn_bias" (hidden,); and for each head of ``odconv_heads`` (exactly those):
    "channel_fc_weight" (C_in, hidden), "channel_fc_bias" (C_in,), "filter_fc_weight"
    (C_out, hidden), "filter_fc_bias" (C_out,), "spatial_fc_weight" (kh kw, hidden),
    "spatial_fc_bias" (kh kw,), "kernel_fc_weight" (K, hidden), "kernel_fc_bias" (K,).
    tau > 0 divides every head's logits.

    training=True: the branch's BatchNorm uses the batch statistics (N >= 2), returned as
    ``cache["batch_mean"]``, ``cache["batch_var"]`` (biased) and ``cache["batch_count"]`` (= N)
    for the caller's running-statistics update (also as ``cache["batch_stats"]`` = {"bn":
    (mean, var, count)}, as DCD's and FDY's caches give them; {} in evaluation mode);
    running_mean/running_var must then be None.
    training=False: they are required, (hidden,), and used. ``cache["alphas"]`` holds the
    attentions by head name ("channel", "filter", "spatial" (N, kh kw), "kernel").
    backend: a host backend (the channel scalings are NumPy's).
    """
    geometry = conv_geometry(stride, padding, dilation, groups)
    heads = check_odconv_params(params, x, geometry)
    tau = check_temperature(tau, x.dtype)
    norm = check_odconv_norm(x, params, training, running_mean, running_var, eps)
    module = check_host_backend(backend, "ODConv", "; its channel scalings are NumPy's")
    check_placement(module, x=x, weight=params["weight"])
    y, cache = _odconv2d_forward(contiguous(x), params, tau, geometry, norm, heads, module)
    return y, stage_cache("odconv2d", cache, y)


def odconv2d_backward(dy, cache):
    """(dx, grads): grads has a key per parameter of the forward's ``params``."""
    dy = check_upstream(cache, "odconv2d", finite=False, dy=dy)  # screened below
    return _screened_backward(dy, cache)


def _screened_backward(dy, cache):
    """``_odconv2d_backward`` with dy screened through dalpha_f (a weighted sum of dy over each
    plane), or scanned without a filter head (``screened_backward``)."""
    return screened_backward(_odconv2d_backward, dy, cache,
                             "weighted sum (with the convolution's output)")


def check_odconv_params(params, x, geometry):
    """Every parameter by name (module docstring of ``odconv2d_forward``): exactly the heads
    that ``odconv_heads`` gives for this configuration, shapes, finite, x's dtype; x against
    the kernels and the geometry (x's values are screened through its pooled means).
    Returns the heads."""
    if not isinstance(params, dict) or "weight" not in params:
        raise TypeError(f"params must be a dict holding at least 'weight' and the attention "
                        f"branch's parameters; received "
                        f"{sorted(params) if isinstance(params, dict) else type(params).__name__}")
    num_kernels, c_out = check_kernel_bank(x, params["weight"], None, geometry)
    kh, kw = params["weight"].shape[3:]
    c_in, groups = x.shape[1], geometry[3]
    heads = odconv_heads(c_in, c_out, (kh, kw), groups, num_kernels)
    expected = odconv_param_names(heads)
    missing = [name for name in expected if name not in params]
    unexpected = sorted(set(params) - set(expected))
    if missing or unexpected:
        why = {"filter": f"in_channels == groups == out_channels = {c_in}, a depthwise "
                         "convolution",
               "spatial": "the kernel is 1 x 1", "kernel": "K = 1"}
        dropped = [f"the {head} head ({why[head]})" for head in HEADS if head not in heads]
        raise ValueError(f"params must hold exactly {list(expected)} for this configuration "
                         f"(C_in={c_in}, C_out={c_out}, kernel=({kh}, {kw}), groups={groups}, "
                         f"K={num_kernels}); missing {missing}, unexpected {unexpected}"
                         + (f"; ODConv drops {', '.join(dropped)}" if dropped else ""))
    fc_weight = check_float_array(params["fc_weight"], "fc_weight", ndim=2)
    hidden = fc_weight.shape[0]
    check_shape(fc_weight, "fc_weight", (hidden, c_in))
    sizes = {"channel": c_in, "filter": c_out, "spatial": kh * kw, "kernel": num_kernels}
    shapes = {"bn_weight": (hidden,), "bn_bias": (hidden,)}
    for head in heads:
        shapes[f"{head}_fc_weight"] = (sizes[head], hidden)
        shapes[f"{head}_fc_bias"] = (sizes[head],)
    for name, shape in shapes.items():
        check_shape(check_float_array(params[name], name, ndim=len(shape)), name, shape)
    check_same_dtype(x=x, **{name: params[name] for name in expected})
    return heads


def check_odconv_norm(x, params, training, running_mean, running_var, eps):
    """The branch's BatchNorm mode -> its stage for ``_odconv2d_forward``
    (``batchnorm.batchnorm_stage``): training a bool, eps a real >= 0; in evaluation mode the
    running statistics (hidden,), x's dtype, finite, running_var >= 0; in training mode N >= 2
    and no running statistics."""
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be True or False; received {training!r}")
    eps = check_real(eps, "eps", low=0)
    hidden = params["fc_weight"].shape[0]
    if training:
        if running_mean is not None or running_var is not None:
            raise ValueError("running_mean and running_var are read in evaluation mode only "
                             "(training=False); in training mode the batch statistics are used "
                             "and returned in cache['batch_mean'] and cache['batch_var']")
        if x.shape[0] < 2:
            raise ValueError(f"ODConv's attention BatchNorm in training mode normalises over "
                             f"the batch and needs N >= 2 samples; received x shape "
                             f"{tuple(x.shape)} (use training=False, the running statistics, "
                             f"for a single sample)")
        return batchnorm_stage(params, eps)
    for name, value in (("running_mean", running_mean), ("running_var", running_var)):
        if value is None:
            raise ValueError(f"{name} is required in evaluation mode (training=False)")
        check_shape(check_float_array(value, name, ndim=1), name, (hidden,))
    check_same_dtype(x=x, running_mean=running_mean, running_var=running_var)
    check_variance(running_var, "running_var")
    return batchnorm_stage(params, eps, {"bn_running_mean": running_mean,
                                         "bn_running_var": running_var})


# -- the attention branch ----------------------------------------------------------------------
def _odconv_attention_forward(pooled, params, tau, normalise, heads):
    """pooled -> {head: alpha}, cache: FC (no bias), BN (``normalise``, the mode's), ReLU,
    then the heads."""
    pre, fc_cache = _linear_forward(pooled, params["fc_weight"], None)
    n, hidden = pre.shape
    # BatchNorm2d over (N, hidden, 1, 1), as the official
    normed, bn_stage = normalise(pre.reshape(n, hidden, 1, 1))
    h, relu_cache = _relu_forward(normed.reshape(n, hidden))
    alphas, head_caches = {}, {}
    for head in heads:
        logits, linear_cache = _linear_forward(h, params[f"{head}_fc_weight"],
                                               params[f"{head}_fc_bias"])
        if head == "kernel":
            alpha, act_cache = _softmax_forward(logits, tau)
        else:
            alpha, act_cache = _sigmoid_forward(logits / logits.dtype.type(tau))
        alphas[head] = alpha
        head_caches[head] = (linear_cache, act_cache)
    return alphas, {"fc": fc_cache, "bn": bn_stage, "relu": relu_cache, "heads": head_caches,
                    "tau": tau}


def _odconv_attention_backward(dalphas, cache):
    """{head: dalpha} -> (dpooled, grads of the branch's parameters)."""
    grads, dh = {}, None
    tau = cache["tau"]
    for head, (linear_cache, act_cache) in cache["heads"].items():
        if head == "kernel":
            dlogits = _softmax_backward(dalphas[head], act_cache)  # 1 / tau included
        else:
            dlogits = _sigmoid_backward(dalphas[head], act_cache) / dalphas[head].dtype.type(tau)
        dh_head, grads[f"{head}_fc_weight"], grads[f"{head}_fc_bias"] = _linear_backward(
            dlogits, linear_cache)
        dh = dh_head if dh is None else dh + dh_head
    n, hidden = dh.shape
    dnormed = _relu_backward(dh, cache["relu"]).reshape(n, hidden, 1, 1)
    dpre, grads["bn_weight"], grads["bn_bias"] = batchnorm_stage_backward(dnormed, cache["bn"])
    dpooled, grads["fc_weight"], _ = _linear_backward(dpre.reshape(n, hidden), cache["fc"])
    return dpooled, grads


# -- the kernels: V_n = sum_k alpha_w W_k, W_n = alpha_s (.) V_n ------------------------------
def _odconv_kernels_forward(alpha_w, alpha_s, weight, n, module):
    """-> (kernels, cache): (N, C_out, C_in/g, kh, kw) per sample, or W_1 (C_out, ...) for the
    whole batch when there is neither a kernel head nor a spatial head (K = 1, 1 x 1)."""
    if alpha_w is None and alpha_s is None:
        return weight[0], {"per_sample": False}
    pi = alpha_w if alpha_w is not None else np.ones((n, 1), dtype=weight.dtype)
    (v_n, _), aggregate_cache = _aggregate_kernels_forward(pi, weight, None, module)
    cache = {"per_sample": True, "aggregate": aggregate_cache, "has_kernel_head":
             alpha_w is not None, "alpha_s": None}
    if alpha_s is None:
        return v_n, cache
    kh, kw = weight.shape[3:]
    cache.update(alpha_s=alpha_s.reshape(n, 1, 1, kh, kw), v_n=v_n)
    return v_n * cache["alpha_s"], cache


def _odconv_kernels_backward(dw_n, cache):
    """-> (dalpha_w or None, dalpha_s (N, kh kw) or None, dweight (K, ...))."""
    if not cache["per_sample"]:
        return None, None, dw_n[None]
    dalpha_s = None
    if cache["alpha_s"] is not None:
        dalpha_s = np.sum(dw_n * cache["v_n"], axis=(1, 2)).reshape(dw_n.shape[0], -1)
        dw_n = dw_n * cache["alpha_s"]
    dpi, dweight, _ = _aggregate_kernels_backward(contiguous(dw_n), None, cache["aggregate"])
    return (dpi if cache["has_kernel_head"] else None), dalpha_s, dweight


# -- the whole layer -------------------------------------------------------------------------
def _odconv2d_forward(x, params, tau, geometry, norm, heads, module):
    pooled, pool_cache = _global_avg_pool_forward(x, module)
    check_finite_via(x, "x", pooled, "mean")  # the screen of x, before any other stage runs
    alphas, attention_cache = _odconv_attention_forward(pooled, params, tau, norm, heads)
    n = x.shape[0]
    w_n, kernel_cache = _odconv_kernels_forward(alphas.get("kernel"), alphas.get("spatial"),
                                                params["weight"], n, module)
    x_scaled, in_cache = _channel_scale_forward(x, alphas["channel"])
    u, conv_cache = _conv_forward(x_scaled, w_n, None, geometry, module,
                                  per_sample=kernel_cache["per_sample"])
    y, out_cache = (_channel_scale_forward(u, alphas["filter"]) if "filter" in alphas
                    else (u, None))
    cache = {"pooled": pooled, "alphas": {head: a.copy() for head, a in alphas.items()},
             "stages": (pool_cache, attention_cache, kernel_cache, in_cache, conv_cache,
                        out_cache)}
    stats = batch_stats(attention_cache["bn"])
    cache["batch_stats"] = {} if stats is None else {"bn": stats}
    if stats is not None:
        cache.update(zip(("batch_mean", "batch_var", "batch_count"), stats))
    return y, cache


def _odconv2d_backward(dy, cache):
    """(dx, grads, dalpha_f or None); dalpha_f is returned for the screen of dy."""
    pool_cache, attention_cache, kernel_cache, in_cache, conv_cache, out_cache = cache["stages"]
    dalphas = {}
    if out_cache is not None:
        du, dalphas["filter"] = _channel_scale_backward(dy, out_cache)
    else:
        du = dy
    dx_scaled, dw_n, _ = _conv_backward(du, conv_cache)
    dalpha_w, dalpha_s, dweight = _odconv_kernels_backward(dw_n, kernel_cache)
    for head, grad in (("kernel", dalpha_w), ("spatial", dalpha_s)):
        if grad is not None:
            dalphas[head] = grad
    dx, dalphas["channel"] = _channel_scale_backward(dx_scaled, in_cache)
    dpooled, grads = _odconv_attention_backward(dalphas, attention_cache)
    dx = _add_global_avg_pool_grad(contiguous(dx), dpooled, pool_cache)
    grads["weight"] = dweight
    return dx, grads, dalphas.get("filter")

