"""CondConv: conditionally parameterised convolutions (Yang, Bender, Le and Ngiam, NeurIPS 2019,
arXiv:1904.04971), composed from the stages of this package.

With E experts W_e (C_out, C_in/groups, kh, kw) and b_e (C_out,):

    pooled = mean_{h,w} x_route                       global average pool of the routing input
    r      = sigmoid(pooled R^T + b_r)                 routing, R (E, C_route), r (N, E)   (eq. 3)
    W_n    = sum_e r[n, e] W_e,   b_n = sum_e r[n, e] b_e                                   (eq. 1)
    y[n]   = conv2d(x[n], W_n) + b_n

Unlike dynamic convolution (Chen et al.) the routing has no hidden layer and no temperature,
and its weights are independent sigmoids in (0, 1) that need not sum to one. Mixing the kernels
equals mixing the experts' outputs, sum_e r_e (W_e * x) (eq. 2), at the cost of one convolution.

Which conventions: the official code (tensorflow/tpu, models/official/efficientnet/condconv:
``condconv_layers.py`` and ``efficientnet_model.py``'s ``MBConvBlock``) is followed where it says
more than the paper. The routing FC has a bias (``tf.layers.Dense(num_experts,
activation=sigmoid)``; the paper writes r = sigmoid(GAP(x) R) without one), and in an
EfficientNet block ONE routing vector, computed from the block's input, is passed as an input
to its expand, depthwise and project convolutions (``routing_weights=``). Hence the routing is
an input of the convolution here too:

* ``condconv_routing_forward`` / ``_backward``: pooled -> r (the routing function, eq. 3);
* ``condconv2d_forward(x, routing, weight, bias, ...)`` / ``_backward``: eq. 1 for a given r;
  the backward returns d routing, which the caller sums over every convolution sharing r;
* ``condconv2d_with_routing_forward(x, params, ...)`` / ``_backward``: the one-call layer
  whose routing is computed from its own input (x_route = x).

Backward (the stages' own backward passes, in reverse):

    dx, dW_n, db_n = conv2d'(dy)                      (functional.conv)
    dr[n, e]       = <dW_n, W_e> + <db_n, b_e>        (functional.aggregation)
    dW_e = sum_n r[n, e] dW_n,   db_e = sum_n r[n, e] db_n
    dz   = dr r (1 - r),   dR = dz^T pooled,   db_r = sum_n dz,   dpooled = dz R
    dx  += dpooled / (H W)                            (one-call layer: x also feeds the routing)

As in ``dynamic_conv``, x is screened for NaN/inf through its pooled means where the routing is
computed from it, and dy through the per-sample bias gradient (scanned when there is no bias).
"""
from .activations import _sigmoid_backward, _sigmoid_forward
from .aggregation import _aggregate_kernels_backward, _aggregate_kernels_forward
from .conv import _conv_backward, _conv_forward, check_conv_args, conv_geometry
from .linear import _linear_backward, _linear_forward, check_linear_args
from .pooling import _add_global_avg_pool_grad, _global_avg_pool_forward
from .._validation import (check_finite_via, check_float_array, check_same_dtype, check_shape,
                           check_upstream, contiguous, is_host_array, screened_backward,
                           stage_cache)
from ..backends import DEFAULT_BACKEND, check_placement, get_backend

ROUTING_PARAMS = ("routing_weight", "routing_bias")


# -- the routing function (eq. 3) -----------------------------------------------------------
def condconv_routing_forward(pooled, routing_weight, routing_bias=None):
    """r (N, E) = sigmoid(pooled R^T + b_r) -> (r, cache).

    pooled (N, C) (the global average pool of the routing input); routing_weight R (E, C);
    routing_bias b_r (E,) or None. Each r[n, e] lies in (0, 1); rows need not sum to one.
    """
    check_linear_args(pooled, routing_weight, routing_bias, "pooled", "routing_weight",
                      "routing_bias")
    r, cache = _condconv_routing_forward(contiguous(pooled), routing_weight, routing_bias)
    return r, stage_cache("condconv_routing", cache, r)


def condconv_routing_backward(dr, cache):
    """(dpooled, {"routing_weight": dR, "routing_bias": db_r (if the forward had one)}):
    dz = dr r (1 - r), dR = dz^T pooled, db_r = sum_n dz, dpooled = dz R."""
    return _condconv_routing_backward(check_upstream(cache, "condconv_routing", dr=dr), cache)


def _condconv_routing_forward(pooled, routing_weight, routing_bias):
    logits, linear_cache = _linear_forward(pooled, routing_weight, routing_bias)
    r, sigmoid_cache = _sigmoid_forward(logits)
    return r, {"linear": linear_cache, "sigmoid": sigmoid_cache}


def _condconv_routing_backward(dr, cache):
    dlogits = _sigmoid_backward(dr, cache["sigmoid"])
    dpooled, dweight, dbias = _linear_backward(dlogits, cache["linear"])
    grads = {"routing_weight": dweight}
    if dbias is not None:
        grads["routing_bias"] = dbias
    return dpooled, grads


# -- the convolution with given routing weights (eq. 1) --------------------------------------
def condconv2d_forward(x, routing, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                       backend=DEFAULT_BACKEND):
    """y[n] = conv2d(x[n], sum_e routing[n, e] weight[e]) + sum_e routing[n, e] bias[e]
    -> (y, cache).

    x (N, C_in, H, W); routing (N, E), any real weights (a routing function gives (0, 1));
    weight (E, C_out, C_in/groups, kh, kw); bias (E, C_out) or None; stride, padding,
    dilation: int or pair; groups as PyTorch's. y (N, C_out, H_out, W_out).
    """
    geometry = conv_geometry(stride, padding, dilation, groups)
    check_condconv_args(x, routing, weight, bias, geometry)
    module = get_backend(backend)
    check_placement(module, x=x, weight=weight, bias=bias)
    y, cache = _condconv2d_forward(contiguous(x), contiguous(routing), contiguous(weight),
                                   None if bias is None else contiguous(bias), geometry, module)
    return y, stage_cache("condconv2d", cache, y)


def condconv2d_backward(dy, cache):
    """(dx, drouting (N, E), dweight (E, ...), dbias (E, C_out) or None).

    drouting[n, e] = <dW_n, W_e> + <db_n, b_e>: where one routing feeds several convolutions,
    its gradient is the sum of theirs."""
    dy = check_upstream(cache, "condconv2d", finite=False, dy=dy)  # screened below
    dx, drouting, dweight, dbias = screened_backward(_condconv2d_backward, dy, cache)
    return dx, drouting, dweight, dbias


def check_condconv_args(x, routing, weight, bias, geometry, finite=True):
    """x (N, C_in, H, W), routing (N, E) finite (None: not checked, for a caller that computes
    it), weight (E, C_out, C_in/groups, kh, kw), bias (E, C_out) or None, one dtype, x against
    the kernels and the geometry; x finite unless ``finite=False`` (a caller that screens x
    through its pooled means)."""
    if routing is not None:
        check_float_array(routing, "routing", ndim=2)
        if not is_host_array(routing):
            raise TypeError("routing must be a numpy.ndarray: routing weights live on the host "
                            "(as the attention of dynamic convolution does); received a device "
                            "array")
    weight = check_float_array(weight, "weight", ndim=5)
    if bias is not None:
        check_shape(check_float_array(bias, "bias", ndim=2), "bias", weight.shape[:2])
    check_float_array(x, "x", ndim=4, finite=finite)
    if routing is not None:
        check_shape(routing, "routing", (x.shape[0], weight.shape[0]))
    check_same_dtype(x=x, routing=routing, weight=weight, bias=bias)
    check_conv_args(x, weight[0], None if bias is None else bias[0], geometry, per_sample=False,
                    finite=False)  # x was checked above


def _condconv2d_forward(x, routing, weight, bias, geometry, module):
    (w_n, b_n), aggregate_cache = _aggregate_kernels_forward(routing, weight, bias, module)
    y, conv_cache = _conv_forward(x, w_n, b_n, geometry, module, per_sample=True)
    return y, {"routing": routing, "stages": (aggregate_cache, conv_cache)}


def _condconv2d_backward(dy, cache):
    """(dx, drouting, dweight, dbias, db_n); db_n (per sample) is returned for the screen."""
    aggregate_cache, conv_cache = cache["stages"]
    dx, dw_n, db_n = _conv_backward(dy, conv_cache)
    drouting, dweight, dbias = _aggregate_kernels_backward(dw_n, db_n, aggregate_cache)
    return dx, drouting, dweight, dbias, db_n


# -- the one-call layer: routing from its own input ------------------------------------------
def condconv2d_with_routing_forward(x, params, stride=1, padding=0, dilation=1, groups=1,
                                    backend=DEFAULT_BACKEND):
    """CondConv whose routing is computed from x itself -> (y, cache); ``cache["routing"]`` is
    r (N, E).

    params: "weight" (E, C_out, C_in/groups, kh, kw), optional "bias" (E, C_out),
    "routing_weight" (E, C_in), optional "routing_bias" (E,).
    """
    geometry = conv_geometry(stride, padding, dilation, groups)
    check_condconv_params(params, x, geometry)
    module = get_backend(backend)
    check_placement(module, x=x, weight=params["weight"], bias=params.get("bias"))
    y, cache = _condconv2d_with_routing_forward(contiguous(x), params, geometry, module)
    return y, stage_cache("condconv2d_with_routing", cache, y)


def condconv2d_with_routing_backward(dy, cache):
    """(dx, grads): grads has a key per parameter in the forward's ``params``; dx sums the
    convolution's path and the routing's (dpooled / (H W))."""
    dy = check_upstream(cache, "condconv2d_with_routing", finite=False, dy=dy)
    dx, grads = screened_backward(_condconv2d_with_routing_backward, dy, cache)
    return dx, grads


def check_condconv_params(params, x, geometry):
    """Every parameter, once, by name (a missing key too): weight (E, C_out, C_in/groups, kh,
    kw), bias (E, C_out), routing_weight (E, C_in), routing_bias (E,); finite, x's dtype; x
    against the kernels and the geometry (x's values are screened through its pooled means)."""
    if not isinstance(params, dict) or "weight" not in params or "routing_weight" not in params:
        raise TypeError(f"params must be a dict holding at least 'weight' and 'routing_weight' "
                        f"(and optionally 'bias', 'routing_bias'); received "
                        f"{sorted(params) if isinstance(params, dict) else type(params).__name__}")
    unexpected = sorted(set(params) - {"weight", "bias", *ROUTING_PARAMS})
    if unexpected:
        raise ValueError(f"params has unexpected key(s) {unexpected}; CondConv takes 'weight', "
                         f"'bias', 'routing_weight' and 'routing_bias'")
    check_float_array(x, "x", ndim=4, finite=False)
    weight = check_float_array(params["weight"], "weight", ndim=5)
    bias = params.get("bias")
    if bias is not None:
        check_shape(check_float_array(bias, "bias", ndim=2), "bias", weight.shape[:2])
    routing_weight = check_float_array(params["routing_weight"], "routing_weight", ndim=2)
    check_shape(routing_weight, "routing_weight", (weight.shape[0], x.shape[1]))
    routing_bias = params.get("routing_bias")
    if routing_bias is not None:
        check_shape(check_float_array(routing_bias, "routing_bias", ndim=1), "routing_bias",
                    (weight.shape[0],))
    check_same_dtype(x=x, weight=weight, bias=bias, routing_weight=routing_weight,
                     routing_bias=routing_bias)
    check_conv_args(x, weight[0], None if bias is None else bias[0], geometry, per_sample=False,
                    finite=False)


def _condconv2d_with_routing_forward(x, params, geometry, module):
    pooled, pool_cache = _global_avg_pool_forward(x, module)
    check_finite_via(x, "x", pooled, "mean")  # the screen of x, before any other stage runs
    routing, routing_cache = _condconv_routing_forward(pooled, params["routing_weight"],
                                                       params.get("routing_bias"))
    y, conv_cache = _condconv2d_forward(x, routing, params["weight"], params.get("bias"),
                                        geometry, module)
    return y, {"routing": routing, "pooled": pooled,
               "stages": (pool_cache, routing_cache, conv_cache)}


def _condconv2d_with_routing_backward(dy, cache):
    pool_cache, routing_cache, conv_cache = cache["stages"]
    dx, drouting, dweight, dbias, db_n = _condconv2d_backward(dy, conv_cache)
    dpooled, grads = _condconv_routing_backward(drouting, routing_cache)
    dx = _add_global_avg_pool_grad(dx, dpooled, pool_cache)
    grads["weight"] = dweight
    if dbias is not None:
        grads["bias"] = dbias
    return dx, grads, db_n

