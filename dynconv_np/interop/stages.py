"""The reference computation of one dynamic convolution, every stage kept, and its error bounds.

``run_reference`` walks the chain of the paper's section 3.2 with the public functional pairs on
the NumPy backend (the judge) and keeps every intermediate and every gradient:

    forward   pooled -> hidden -> logits -> pi -> (w_n, b_n) -> y
    backward  dy -> (dw_n, db_n) -> (dweight, dbias) -> dpi -> dlogits -> (dfc2_weight,
              dfc2_bias) -> dpooled -> (dfc1_weight, dfc1_bias) -> dx

``error_bounds`` gives, for each of those arrays, an elementwise bound on how far a correct
implementation in a dtype with unit roundoff u = eps/2 may be from the exact result, by forward
error analysis in magnitudes: a sum of m terms computed in any order is off by at most
gamma_m sum|terms| with gamma_m = m u (to first order), and errors carried in from earlier
stages are propagated through the absolute values of the stage's coefficients. For instance

    e(pooled)  = (HW + 1) u mean|x|
    e(logits)  = (hidden + 1) u (|h| |W2|^T + |b2|) + e(h) |W2|^T
    e(pi_k)    = pi_k ((1 - pi_k) d_k + sum_{j != k} pi_j d_j) + (K + 2) u pi_k,
                 d = e(logits)/tau + 2 u (|z|/tau + |s| + 1)    (s = (z - max z)/tau)
    e(w_n)     = K u sum_k pi_k |W_k| + sum_k e(pi_k) |W_k|
    e(y)       = (Cg kh kw + 1) u (conv(|x|, |w_n|) + |b_n|) + conv(|x|, e(w_n)) + e(b_n)
    e(dlogits) = [(K + 3) u pi (|dpi| + <pi, |dpi|>)                 rounding, at |dpi|'s scale
                  + pi ((1 - pi) e(dpi) + <pi, e(dpi)> - pi e(dpi))    carried from dpi
                  + e(pi) |c| + pi <e(pi), |c|> + (K + 2) u pi |<pi, dpi>|] / tau
                 with c = dpi - <pi, dpi>                               carried from pi

The softmax's Jacobian is used in its centred form (pi_k sum_j pi_j (a_k - a_j): the j = k term
vanishes), which keeps the bounds tight when pi is peaked. The softmax backward is where digits
go: dz = pi (dpi - <pi, dpi>)/tau cancels when dpi is nearly the same for every kernel (the K
kernels are alike), so |dz| << |dpi| while the rounding and carried terms scale with |dpi|: the
relative error grows by |dpi|/|dz|, the stage's condition number. A ReLU unit whose
pre-activation is within its own error bound of 0 may switch either way; its whole gradient is
then allowed as error.

The bounds are computed in float64 from the reference values (magnitudes need only be right to
a few digits). Two implementations that each meet the bound differ by at most twice it, which
is the tolerance ``tolerances`` returns (plus eps |value| for the final rounding).
"""
import numpy as np

from ..functional import (aggregate_kernels_backward, aggregate_kernels_forward,
                          global_avg_pool_backward, global_avg_pool_forward, linear_backward,
                          linear_forward, per_sample_conv2d_backward, per_sample_conv2d_forward,
                          relu_backward, relu_forward, softmax_backward, softmax_forward)
from ..functional.conv import conv_geometry

PARAMS = ("weight", "bias", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")
FORWARD = ("pooled", "hidden", "logits", "pi", "w_n", "b_n", "y")
BACKWARD = ("dw_n", "db_n", "dweight", "dbias", "dpi", "dlogits", "dfc2_weight", "dfc2_bias",
            "dpooled", "dfc1_weight", "dfc1_bias", "dx")
GRADIENT_OF = {"dweight": "weight", "dbias": "bias", "dfc1_weight": "fc1_weight",
               "dfc1_bias": "fc1_bias", "dfc2_weight": "fc2_weight", "dfc2_bias": "fc2_bias"}


def run_reference(x, params, tau, geometry=(1, 0, 1, 1), dy=None):
    """Every stage of y = dynamic_conv2d(x) (and of its backward when ``dy`` is given).

    x (N, C_in, H, W); params with "weight", optional "bias", "fc1_weight", optional
    "fc1_bias", "fc2_weight", "fc2_bias" (``DynamicConv2d.params`` names), one float dtype;
    tau > 0; geometry (stride, padding, dilation, groups). Returns {name: array} with the names
    of FORWARD and, with dy, BACKWARD ("hidden" is relu(fc1)); absent biases give no entry.
    The computation runs in the arrays' dtype on the NumPy backend.
    """
    stride, padding, dilation, groups = conv_geometry(*geometry)
    get = params.get
    out = {}
    out["pooled"], pool_cache = global_avg_pool_forward(x, backend="numpy")
    hidden_pre, fc1_cache = linear_forward(out["pooled"], params["fc1_weight"], get("fc1_bias"))
    out["hidden"], relu_cache = relu_forward(hidden_pre)
    out["logits"], fc2_cache = linear_forward(out["hidden"], params["fc2_weight"],
                                              params["fc2_bias"])
    out["pi"], softmax_cache = softmax_forward(out["logits"], tau)
    (out["w_n"], b_n), aggregate_cache = aggregate_kernels_forward(
        out["pi"], params["weight"], get("bias"), backend="numpy")
    if b_n is not None:
        out["b_n"] = b_n
    out["y"], conv_cache = per_sample_conv2d_forward(x, out["w_n"], b_n, stride, padding,
                                                     dilation, groups, backend="numpy")
    if dy is None:
        return out
    dx_conv, out["dw_n"], db_n = per_sample_conv2d_backward(dy, conv_cache)
    out["dpi"], out["dweight"], dbias = aggregate_kernels_backward(out["dw_n"], db_n,
                                                                   aggregate_cache)
    if db_n is not None:
        out["db_n"], out["dbias"] = db_n, dbias
    out["dlogits"] = softmax_backward(out["dpi"], softmax_cache)
    dhidden, out["dfc2_weight"], out["dfc2_bias"] = linear_backward(out["dlogits"], fc2_cache)
    dhidden_pre = relu_backward(dhidden, relu_cache)
    out["dpooled"], out["dfc1_weight"], dfc1_bias = linear_backward(dhidden_pre, fc1_cache)
    if dfc1_bias is not None:
        out["dfc1_bias"] = dfc1_bias
    out["dx"] = dx_conv + global_avg_pool_backward(out["dpooled"], pool_cache)
    return out


def _centred(pi, a):
    """(1 - pi_k) a_k + sum_{j != k} pi_j a_j: the bound on |sum_j pi_j (b_k - b_j)| for
    |b| <= a, row-wise (the softmax Jacobian's centred form)."""
    return (1 - pi) * a + np.sum(pi * a, axis=1, keepdims=True) - pi * a


def _abs_conv(x, w_n, b_n, dy, geometry):
    """conv(|x|, |w_n|) + |b_n| and, with dy, the adjoints on magnitudes: (convT(|dy|, |w_n|),
    corr(|x|, |dy|), sum|dy|) - the sums of |terms| of y, dx_conv, dw_n and db_n."""
    stride, padding, dilation, groups = geometry
    b = None if b_n is None else np.abs(b_n)
    y, cache = per_sample_conv2d_forward(np.abs(x), np.abs(w_n), b, stride, padding, dilation,
                                         groups, backend="numpy")
    if dy is None:
        return y, None
    return y, per_sample_conv2d_backward(np.abs(dy), cache)


def error_bounds(x, params, tau, geometry, values, dy=None, eps=np.finfo(np.float64).eps):
    """Elementwise error bounds {name: array} for the arrays of ``run_reference`` (module
    docstring), for an implementation computing in a dtype with machine epsilon ``eps``.

    x, params, dy: the problem (any float dtype; used in float64); values: ``run_reference``'s
    output, preferably computed in float64.
    """
    f64 = lambda a: None if a is None else np.asarray(a, dtype=np.float64)  # noqa: E731
    geometry = conv_geometry(*geometry)
    x, dy = f64(x), f64(dy)
    p = {name: f64(params.get(name)) for name in PARAMS}
    v = {name: f64(value) for name, value in values.items()}
    n, c_in, height, width = x.shape
    num_kernels, c_out = p["weight"].shape[:2]
    kernel_terms = int(np.prod(p["weight"].shape[2:]))   # Cg kh kw
    hidden = p["fc1_weight"].shape[0]
    hw = height * width
    u = eps / 2                                          # unit roundoff
    g = lambda m: m * u  # noqa: E731   gamma_m
    e = {}
    a_w1, a_w2, a_w = np.abs(p["fc1_weight"]), np.abs(p["fc2_weight"]), np.abs(p["weight"])
    b1 = np.zeros(hidden) if p["fc1_bias"] is None else np.abs(p["fc1_bias"])
    e["pooled"] = g(hw + 1) * np.abs(x).mean(axis=(2, 3))
    hidden_pre = v["pooled"] @ p["fc1_weight"].T + (0 if p["fc1_bias"] is None else p["fc1_bias"])
    e_hidden_pre = g(c_in + 1) * (np.abs(v["pooled"]) @ a_w1.T + b1) + e["pooled"] @ a_w1.T
    e["hidden"] = e_hidden_pre
    e["logits"] = (g(hidden + 1) * (np.abs(v["hidden"]) @ a_w2.T + np.abs(p["fc2_bias"]))
                   + e["hidden"] @ a_w2.T)
    pi, z = v["pi"], v["logits"]
    s = (z.max(axis=1, keepdims=True) - z) / tau
    d = e["logits"] / tau + 2 * u * (np.abs(z) / tau + s + 1)
    e["pi"] = pi * _centred(pi, d) + (num_kernels + 2) * u * pi
    flat_w = a_w.reshape(num_kernels, -1)
    e["w_n"] = ((g(num_kernels) * pi + e["pi"]) @ flat_w).reshape(v["w_n"].shape)
    e_b_n = None
    if p["bias"] is not None:
        e_b_n = e["b_n"] = (g(num_kernels) * pi + e["pi"]) @ np.abs(p["bias"])
    abs_y, abs_grads = _abs_conv(x, v["w_n"], v.get("b_n"), dy, geometry)
    carried_y, carried_grads = _abs_conv(x, e["w_n"], e_b_n, dy, geometry)
    e["y"] = g(kernel_terms + 1) * abs_y + carried_y
    if dy is None:
        return e
    abs_dx_conv, abs_dw_n, abs_db_n = abs_grads
    carried_dx_conv = carried_grads[0]
    out_hw = dy.shape[2] * dy.shape[3]
    e["dw_n"] = g(out_hw) * abs_dw_n
    a_dw_n = np.abs(v["dw_n"]).reshape(n, -1)
    e_dw_flat = e["dw_n"].reshape(n, -1)
    e["dweight"] = ((g(n) * pi + e["pi"]).T @ a_dw_n + pi.T @ e_dw_flat).reshape(a_w.shape)
    terms = kernel_terms * c_out
    e["dpi"] = g(terms + c_out) * (a_dw_n @ flat_w.T) + e_dw_flat @ flat_w.T
    if p["bias"] is not None:
        e["db_n"] = g(out_hw) * abs_db_n
        a_db_n, a_b = np.abs(v["db_n"]), np.abs(p["bias"])
        e["dbias"] = (g(n) * pi + e["pi"]).T @ a_db_n + pi.T @ e["db_n"]
        e["dpi"] = e["dpi"] + g(terms + c_out) * (a_db_n @ a_b.T) + e["db_n"] @ a_b.T
    a_dpi = np.abs(v["dpi"])
    inner = np.sum(pi * a_dpi, axis=1, keepdims=True)
    mean = np.sum(pi * v["dpi"], axis=1, keepdims=True)
    a_c = np.abs(v["dpi"] - mean)
    e["dlogits"] = ((num_kernels + 3) * u * pi * (a_dpi + inner)
                    + pi * _centred(pi, e["dpi"])
                    + e["pi"] * a_c + pi * np.sum(e["pi"] * a_c, axis=1, keepdims=True)
                    + (num_kernels + 2) * u * pi * np.abs(mean)) / tau
    a_dz, a_h = np.abs(v["dlogits"]), np.abs(v["hidden"])
    e["dfc2_weight"] = g(n) * a_dz.T @ a_h + e["dlogits"].T @ a_h + a_dz.T @ e["hidden"]
    e["dfc2_bias"] = g(n) * a_dz.sum(axis=0) + e["dlogits"].sum(axis=0)
    dhidden = v["dlogits"] @ p["fc2_weight"]
    a_dh = np.abs(dhidden)
    e_dh = g(num_kernels) * a_dz @ a_w2 + e["dlogits"] @ a_w2
    # a unit within its error bound of the kink may be on or off in a correct implementation
    ambiguous = np.abs(hidden_pre) <= 2 * e_hidden_pre
    mask = hidden_pre > 0
    e_dh = np.where(ambiguous, a_dh + e_dh, e_dh * mask)
    a_dh = a_dh * (mask | ambiguous)
    a_p = np.abs(v["pooled"])
    e["dfc1_weight"] = g(n) * a_dh.T @ a_p + e_dh.T @ a_p + a_dh.T @ e["pooled"]
    if p["fc1_bias"] is not None:
        e["dfc1_bias"] = g(n) * a_dh.sum(axis=0) + e_dh.sum(axis=0)
    e["dpooled"] = g(hidden) * a_dh @ a_w1 + e_dh @ a_w1
    cog = c_out // geometry[3]
    e_pool_grad = (e["dpooled"] + u * np.abs(v["dpooled"]))[:, :, None, None] / hw
    taps = int(np.prod(p["weight"].shape[3:]))   # kh kw
    e["dx"] = (g(cog * taps + 1) * abs_dx_conv + carried_dx_conv + e_pool_grad
               + u * np.abs(v["dx"]))
    return e


def tolerances(bounds, values, eps, floor=None):
    """Elementwise tolerance {name: array} for comparing two implementations that each meet
    ``bounds``: 2 bound + eps |value| (+ ``floor``, default the dtype's tiny)."""
    floor = np.finfo(np.float64).tiny if floor is None else floor
    return {name: 2 * bound + eps * np.abs(np.asarray(values[name], dtype=np.float64)) + floor
            for name, bound in bounds.items() if name in values}
