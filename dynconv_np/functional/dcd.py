"""Dynamic convolution decomposition (DCD), dynamic channel fusion: Li et al., "Revisiting
Dynamic Convolution via Matrix Decomposition", ICLR 2021 (arXiv 2103.08756).

The paper's layer (its general form, the one its Figure 2 computes; numbered Eq. 6 there, as far
as the numbering could be checked) replaces K kernels by one static kernel and a small dynamic
part in an L-dimensional latent space:

    W(x) = Lambda(x) W0 + P Phi(x) Q^T

W0 (C_out, C_in) the static kernel (of a 1 x 1 layer), Lambda(x) = diag(lambda(x)) (C_out) a
per-sample channel attention, Q (C_in, L) compresses the input channels to L << C, Phi(x)
(L, L) a per-sample "dynamic channel fusion" matrix, P (C_out, L) expands back.

What is computed here: the official code's ``conv_dy`` (``models/imagenet/resnet_dcd.py`` of
github.com/liyunsheng13/dcd), which applies Q and P as 1 x 1 convolutions on the features (never
forming W(x)) and puts BatchNorms inside the dynamic branch. With G = groups and (s, d) the
stride and dilation of the static k x k convolution:

    pooled   = mean_{h,w} x                                    (N, C_in)   global average pool
    a        = pooled Wfc^T                                     (N, S)      FC, no bias
    s        = a * hs(a Wse^T)                                  (N, S)      "SEModule_small"
    Phi      = reshape(s Wphi^T, (N, L, L))                     fc_phi, no bias
    lambda   = hs(s Wscale^T)                                   (N, C_out)  fc_scale, no bias
    r        = conv2d(x, W0, b0; s, p, d, G)                    static k x k convolution
    z        = BN1(conv1x1(x, Q^T; stride s))                   (N, L, H', W')
    v        = z + BN2(Phi z)          (Phi z: per sample, per pixel, an L x L product)
    y        = lambda[:, :, None, None] * r + conv1x1(v, P)

with hs(t) = relu6(t + 3) / 3, the official ``Hsigmoid`` (range [0, 2], twice MobileNetV3's
hard sigmoid relu6(t + 3) / 6), so lambda = 1 and the gate of ``SEModule_small`` = 1 at t = 0.

The kernel form it equals (eval mode). Write BN_i(t) = A_i t + c_i with A_i = diag(gamma_i /
sqrt(running_var_i + eps)) and c_i = beta_i - A_i running_mean_i. Then

    y[n] = conv2d(x[n], W(x[n])) + b(x[n]),
    W(x) = Lambda(x) W0 + centre( P (I + A2 Phi(x)) A1 Q^T ),
    b(x) = Lambda(x) b0 + P ((I + A2 Phi(x)) c1 + c2)

where centre(M) is the 1 x 1 matrix M placed at the centre tap of a k x k kernel. This holds
because a 1 x 1 convolution with stride s and no padding reads x[.., h s, w s], and with 'same'
padding 2 p = d (k - 1) that pixel is exactly the centre tap of output (h, w)'s k x k window
(which never lies in the zero padding). So the paper's Phi(x) is the code's I + A2 Phi(x),
with BN1's scale folded into Q and BN2's into Phi, plus a dynamic bias from the BN shifts.
That is why only odd kernel sides with 'same' padding (p = d (k - 1) / 2 on each axis) are
supported here: other paddings give the two branches different output sizes or misaligned
pixels (the official code would fail on the shape mismatch), and an even side has no centre
tap (with an even dilation the sizes would match, but Q would read a pixel between W0's taps).
The official code uses 1 x 1 and 3 x 3 (padding 1) kernels. A grouped or depthwise W0 is
accepted (W0 is then block diagonal; Q, Phi and P stay dense: the point of channel fusion is
to mix all channels), a generalisation: the official code uses dense convolutions only.

Where the code departs from the paper, and what is followed here (the code, throughout):

* BatchNorms inside the dynamic branch (BN1 after Q, BN2 after Phi) and the identity path
  z + BN2(Phi z); the paper's equation has neither. In training mode they use batch statistics,
  so sample n's output depends on the other samples (the layer is not per-sample and there is
  no kernel form); in eval mode they are affine and the kernel form above is exact. Two
  functional pairs, like batchnorm's: ``dcd_conv2d_train_*`` and ``dcd_conv2d_eval_*``.
* The attention branch has no ReLU: its non-linearity is the SE gate; all its FCs are bias-free.
* hs is relu6(t + 3) / 3, range [0, 2] (so lambda can amplify W0 as well as attenuate it),
  where a sigmoid-like gate (MobileNetV3's hard sigmoid relu6(t + 3) / 6) has range [0, 1].
* L = floor(sqrt(C_in)) and S = max(C_in, L^2) // 16 (``conv_dy``; the layer adds a floor of 4
  for S, as ``conv_basic_dy`` and MobileNetV2's ``DYModule`` do - ``conv_dy`` alone gives S = 0
  below 16 channels). MobileNetV2's ``DYModule`` picks L by another rule
  (min(C_in, C_out) // r, r doubled while L^2 > 2 C_in); ``nn.DCDConv2d(latent_dim=...)`` takes
  any L.
* The static convolution has no bias in the official code; an optional ``bias`` b0 is added
  inside it (so it is scaled by lambda, as ``nn.Conv2d(bias=True)`` would be there).

Backward, stage by stage in reverse, each stage's own backward (channel scale; the three 1 x 1
convolutions and the k x k one through ``conv._conv_backward``; batchnorm's, of the mode; the
FCs'; the hard sigmoid's), with u = Phi z and v = z + BN2(u):

    dr = lambda dy,              dlambda[n, o] = sum_{h,w} dy[n, o] r[n, o]
    dv = P^T dy (per pixel),     dP = sum_{n,h,w} dy v^T
    du = BN2'(dv),               dz = dv + Phi^T du,     dPhi[n] = sum_{h,w} du[n] z[n]^T
    dz0 = BN1'(dz),              dQ^T = sum_{n,h,w} dz0 x_s^T      (x_s: x at the strided pixels)
    dx = conv'(dr) (and dW0, db0)  +  Q dz0 at the strided pixels  +  dpooled / (H W)
    dpooled, dWfc, dWse, dWphi, dWscale <- the attention FCs in reverse, with
        ds = dlambda_pre Wscale + dPhi_flat Wphi,  da = ds * g + dg_pre Wse,  dg = ds * a

Host backends only (numpy, loops, numba): the branch's element-wise stages run in NumPy.
"""
import numpy as np

from .activations import _hardsigmoid_backward, _hardsigmoid_forward
from .batchnorm import (batch_stats, batchnorm_stage, batchnorm_stage_backward,
                        check_running_stats)
from .channel_scale import _channel_scale_backward, _channel_scale_forward
from .conv import _conv_backward, _conv_forward, check_conv_args, conv_geometry
from .linear import _linear_backward, _linear_forward
from .pooling import _add_global_avg_pool_grad, _global_avg_pool_forward
from .._validation import (check_finite_via, check_float_array, check_host_backend,
                           check_named_arrays, check_param_names, check_real, check_upstream,
                           contiguous, stage_cache)
from ..backends import DEFAULT_BACKEND, check_placement

DCD_PARAMS = ("weight", "bias", "q_weight", "p_weight", "fc_weight", "se_weight", "phi_weight",
              "scale_weight", "bn1_weight", "bn1_bias", "bn2_weight", "bn2_bias")
DCD_BUFFERS = ("bn1_running_mean", "bn1_running_var", "bn2_running_mean", "bn2_running_var")
_POINTWISE = ((1, 1), (0, 0), (1, 1), 1)  # a 1 x 1 convolution: stride, padding, dilation, groups


def dcd_conv2d_train_forward(x, params, stride=1, padding=None, dilation=1, groups=1, eps=1e-5,
                             backend=DEFAULT_BACKEND):
    """y = DCD layer of x, BatchNorms on batch statistics -> (y, cache).

    x (N, C_in, H, W); params: "weight" W0 (C_out, C_in/groups, kh, kw), optional "bias" b0
    (C_out,), "q_weight" Q^T (L, C_in), "p_weight" P (C_out, L), "fc_weight" (S, C_in),
    "se_weight" (S, S), "phi_weight" (L*L, S), "scale_weight" (C_out, S), "bn1_weight",
    "bn1_bias", "bn2_weight", "bn2_bias" (L,). padding None means 'same', d (k - 1) / 2; any
    other padding must equal it. ``cache["lambda"]`` (N, C_out), ``cache["phi"]`` (N, L, L);
    ``cache["batch_stats"]`` = {"bn1": (mean, var, count), "bn2": ...} for running statistics.
    """
    x, geometry, module = _check_call(x, params, stride, padding, dilation, groups, eps, backend)
    _check_train_batch(x, geometry)
    y, cache = _dcd_conv2d_forward(x, params, geometry, module, batchnorm_stage(params, eps))
    check_finite_via(x, "x", cache["pooled"], "mean")
    return y, stage_cache("dcd_conv2d_train", cache, y)


def dcd_conv2d_train_backward(dy, cache):
    """(dx, grads): grads has a key per parameter in the forward's ``params``."""
    return _dcd_conv2d_backward(check_upstream(cache, "dcd_conv2d_train", dy=dy), cache)


def dcd_conv2d_eval_forward(x, params, buffers, stride=1, padding=None, dilation=1, groups=1,
                            eps=1e-5, backend=DEFAULT_BACKEND):
    """y = DCD layer of x, BatchNorms on running statistics (an affine map: the kernel form of
    the module docstring holds) -> (y, cache). buffers: "bn1_running_mean", "bn1_running_var",
    "bn2_running_mean", "bn2_running_var", each (L,); otherwise as the training pair."""
    x, geometry, module = _check_call(x, params, stride, padding, dilation, groups, eps, backend)
    check_dcd_buffers(buffers, params["q_weight"].shape[0], np.dtype(x.dtype))
    y, cache = _dcd_conv2d_forward(x, params, geometry, module,
                                   batchnorm_stage(params, eps, buffers))
    check_finite_via(x, "x", cache["pooled"], "mean")
    return y, stage_cache("dcd_conv2d_eval", cache, y)


def dcd_conv2d_eval_backward(dy, cache):
    """(dx, grads) of ``dcd_conv2d_eval_forward`` (running statistics are constants)."""
    return _dcd_conv2d_backward(check_upstream(cache, "dcd_conv2d_eval", dy=dy), cache)


# -- validation -----------------------------------------------------------------------------
def dcd_geometry(stride, padding, dilation, groups, kernel_size):
    """(stride, padding, dilation, groups) with padding None -> 'same'; ValueError naming
    kernel_size unless both sides are odd, and padding unless p = d (k - 1) / 2 on both axes
    (module docstring: why)."""
    if any(k % 2 == 0 for k in kernel_size):
        raise ValueError(f"DCD needs odd kernel sides (its 1 x 1 Q branch reads the centre tap "
                         f"of each k x k window, which an even side does not have); received "
                         f"kernel_size={tuple(kernel_size)}")
    dilation_pair = conv_geometry(1, 0, dilation, 1)[2]
    same = tuple(d * (k - 1) // 2 for k, d in zip(kernel_size, dilation_pair))
    geometry = conv_geometry(stride, same if padding is None else padding, dilation, groups)
    if geometry[1] != same:
        raise ValueError(f"DCD supports only 'same' padding, d (k - 1) / 2 = {same} for "
                         f"kernel_size={tuple(kernel_size)}, dilation={geometry[2]} (its 1 x 1 "
                         f"Q branch reads the centre tap of each k x k window); received "
                         f"padding={padding!r}")
    return geometry


def check_dcd_params(params, x, geometry):
    """Every parameter by name (module docstring shapes), finite, of x's dtype; x against W0 and
    the geometry. ValueError/TypeError naming what is wrong (a missing key too)."""
    check_param_names(params, DCD_PARAMS, "DCD")
    check_float_array(x, "x", ndim=4, finite=False)
    weight = check_float_array(params["weight"], "weight", ndim=4)
    check_conv_args(x, weight, params.get("bias"), geometry, per_sample=False, finite=False)
    c_in, c_out = x.shape[1], weight.shape[0]
    latent = check_float_array(params["q_weight"], "q_weight", ndim=2).shape[0]
    squeeze = check_float_array(params["fc_weight"], "fc_weight", ndim=2).shape[0]
    shapes = {"q_weight": (latent, c_in), "p_weight": (c_out, latent),
              "fc_weight": (squeeze, c_in), "se_weight": (squeeze, squeeze),
              "phi_weight": (latent * latent, squeeze), "scale_weight": (c_out, squeeze),
              "bn1_weight": (latent,), "bn1_bias": (latent,), "bn2_weight": (latent,),
              "bn2_bias": (latent,)}
    check_named_arrays(params, shapes, np.dtype(x.dtype))


def check_dcd_buffers(buffers, latent, dtype):
    """The four running statistics, (L,), finite, of ``dtype``; running variances >= 0."""
    if not isinstance(buffers, dict):
        raise TypeError(f"buffers must be a dict of the running statistics {DCD_BUFFERS}; "
                        f"received {type(buffers).__name__}")
    check_running_stats(buffers, {name: (latent,) for name in DCD_BUFFERS}, dtype)


def _check_call(x, params, stride, padding, dilation, groups, eps, backend):
    if isinstance(params, dict) and "weight" in params:
        check_float_array(params["weight"], "weight", ndim=4)
        kernel = params["weight"].shape[2:]
    else:
        check_dcd_params(params, x, None)  # raises, naming what is missing
    geometry = dcd_geometry(stride, padding, dilation, groups, kernel)
    check_dcd_params(params, x, geometry)
    check_real(eps, "eps", low=0)
    module = check_host_backend(backend, "dcd_conv2d")
    check_placement(module, x=x)
    return contiguous(x), geometry, module


def _check_train_batch(x, geometry):
    """BatchNorm on batch statistics needs N H' W' > 1 values per latent channel."""
    (sh, sw) = geometry[0]
    count = x.shape[0] * ((x.shape[2] - 1) // sh + 1) * ((x.shape[3] - 1) // sw + 1)
    if count < 2:
        raise ValueError(f"DCD in training mode normalises its latent features with batch "
                         f"statistics and needs N H_out W_out > 1; received x shape "
                         f"{tuple(x.shape)} with stride={geometry[0]}")


# -- hs(t) = relu6(t + 3) / 3 = 2 hardsigmoid(t), the official Hsigmoid ------------------------
def _hs_forward(t):
    gate, cache = _hardsigmoid_forward(t)
    return 2 * gate, cache


def _hs_backward(dgate, cache):
    return _hardsigmoid_backward(2 * dgate, cache)


# -- the attention branch: pooled -> (lambda, Phi) --------------------------------------------
def _dcd_attention_forward(pooled, params):
    squeezed, _ = _linear_forward(pooled, params["fc_weight"], None)
    gate_pre, _ = _linear_forward(squeezed, params["se_weight"], None)
    gate, gate_cache = _hs_forward(gate_pre)
    s = squeezed * gate
    phi_flat, _ = _linear_forward(s, params["phi_weight"], None)
    scale_pre, _ = _linear_forward(s, params["scale_weight"], None)
    lam, lam_cache = _hs_forward(scale_pre)
    latent = params["q_weight"].shape[0]
    phi = phi_flat.reshape(pooled.shape[0], latent, latent)
    return lam, phi, {"pooled": pooled, "squeezed": squeezed, "gate": gate, "s": s,
                      "gate_cache": gate_cache, "lam_cache": lam_cache, "params": params}


def _dcd_attention_backward(dlam, dphi, cache):
    """(dpooled, grads of the four FC weights) from dlambda (N, C_out) and dPhi (N, L, L)."""
    params, s = cache["params"], cache["s"]

    def fc_backward(dout, x, name):
        return _linear_backward(dout, {"x": x, "weight": params[name], "has_bias": False})[:2]

    ds, dscale_weight = fc_backward(_hs_backward(dlam, cache["lam_cache"]), s, "scale_weight")
    ds_phi, dphi_weight = fc_backward(dphi.reshape(dphi.shape[0], -1), s, "phi_weight")
    ds += ds_phi
    dsqueezed = ds * cache["gate"]
    dgate_pre = _hs_backward(ds * cache["squeezed"], cache["gate_cache"])
    dsq_gate, dse_weight = fc_backward(dgate_pre, cache["squeezed"], "se_weight")
    dsqueezed += dsq_gate
    dpooled, dfc_weight = fc_backward(dsqueezed, cache["pooled"], "fc_weight")
    return dpooled, {"fc_weight": dfc_weight, "se_weight": dse_weight,
                     "phi_weight": dphi_weight, "scale_weight": dscale_weight}


# -- the layer -------------------------------------------------------------------------------
def _dcd_conv2d_forward(x, params, geometry, module, normalise):
    """The math of the module docstring; ``normalise(z, "bn1"|"bn2")`` is the mode's BatchNorm
    (``batchnorm.batchnorm_stage``) -> (out, (its backward, its cache))."""
    pooled, pool_cache = _global_avg_pool_forward(x, module)
    lam, phi, attention_cache = _dcd_attention_forward(pooled, params)
    r, static_cache = _conv_forward(x, params["weight"], params.get("bias"), geometry, module,
                                    per_sample=False)
    y, scale_cache = _channel_scale_forward(r, lam)
    q_geometry = (geometry[0], (0, 0), (1, 1), 1)
    z0, q_cache = _conv_forward(x, params["q_weight"][:, :, None, None], None, q_geometry, module,
                                per_sample=False)
    z, bn1 = normalise(z0, "bn1")
    u, phi_cache = _conv_forward(z, phi[:, :, :, None, None], None, _POINTWISE, module,
                                 per_sample=True)
    u_hat, bn2 = normalise(u, "bn2")
    fused, p_cache = _conv_forward(u_hat + z, params["p_weight"][:, :, None, None], None,
                                   _POINTWISE, module, per_sample=False)
    y += fused
    stats = {name: batch_stats(stage) for name, stage in (("bn1", bn1), ("bn2", bn2))
             if batch_stats(stage) is not None}
    return y, {"lambda": lam.copy(), "phi": phi.copy(), "pooled": pooled, "batch_stats": stats,
               "latent": params["q_weight"].shape[0],
               "stages": (pool_cache, attention_cache, static_cache, scale_cache, q_cache, bn1,
                          phi_cache, bn2, p_cache)}


def _dcd_conv2d_backward(dy, cache):
    (pool_cache, attention_cache, static_cache, scale_cache, q_cache, bn1, phi_cache, bn2,
     p_cache) = cache["stages"]
    dr, dlam = _channel_scale_backward(dy, scale_cache)
    dv, dp_weight, _ = _conv_backward(dy, p_cache)
    du, dbn2_weight, dbn2_bias = batchnorm_stage_backward(dv, bn2)
    dz, dphi, _ = _conv_backward(du, phi_cache)
    dz += dv
    dz0, dbn1_weight, dbn1_bias = batchnorm_stage_backward(dz, bn1)
    dx, dq_weight, _ = _conv_backward(dz0, q_cache)
    dx_static, dweight, dbias = _conv_backward(dr, static_cache)
    dx += dx_static
    dpooled, grads = _dcd_attention_backward(dlam, dphi[:, :, :, 0, 0], attention_cache)
    dx = _add_global_avg_pool_grad(dx, dpooled, pool_cache)
    grads.update(weight=dweight, q_weight=dq_weight[:, :, 0, 0], p_weight=dp_weight[:, :, 0, 0],
                 bn1_weight=dbn1_weight, bn1_bias=dbn1_bias, bn2_weight=dbn2_weight,
                 bn2_bias=dbn2_bias)
    if dbias is not None:
        grads["bias"] = dbias
    return dx, grads
