"""DCDConv2d: dynamic convolution decomposition, dynamic channel fusion (Li et al., ICLR 2021),
as the official ``conv_dy`` computes it:

    y = lambda(x) * conv2d(x, W0) + P (z + BN2(Phi(x) z)),   z = BN1(Q^T x)   (1 x 1 convs)

the paper's W(x) = Lambda(x) W0 + P Phi(x) Q^T with BatchNorms in the dynamic branch. The math,
its kernel-form equivalence (eval mode) and where the code departs from the paper are in
``dynconv_np.functional.dcd``; this class holds the parameters, the BatchNorm running statistics
(updated by every training-mode forward, PyTorch's momentum rule) and the caches.

Sizes (official ``conv_dy``): latent L = floor(sqrt(C_in)); squeeze S = max(C_in, L^2) //
reduction with reduction 16, floored at ``min_squeeze`` = 4 (as ``conv_basic_dy`` and
MobileNetV2's ``DYModule`` do); ``latent_dim`` / ``squeeze`` set them exactly.

``extra_costs(layer, input_shape)`` is the cost accounting (params and multiply-adds).
"""
import math

import numpy as np

from ._attention_state import AttentionState, BranchNorm
from .conv import ConvArgs, check_cost_shape
from .init import make_rng, uniform_fan_in
from .module import Module, check_bias_flag, check_layer_input, layer_dtype
from .._validation import check_finite_via, check_host_backend, check_positive_int
from ..backends import DEFAULT_BACKEND
from ..functional.dcd import (_check_train_batch, _dcd_conv2d_backward, _dcd_conv2d_forward,
                              check_dcd_buffers, check_dcd_params, dcd_geometry)


def dcd_sizes(in_channels, latent_dim=None, reduction=16, min_squeeze=4, squeeze=None):
    """(L, S): L = latent_dim or max(floor(sqrt(C_in)), 1); S = squeeze or
    max(max(C_in, L^2) // reduction, min_squeeze)."""
    latent = (max(math.isqrt(in_channels), 1) if latent_dim is None
              else check_positive_int(latent_dim, "latent_dim"))
    if squeeze is not None:
        return latent, check_positive_int(squeeze, "squeeze")
    reduction = check_positive_int(reduction, "reduction")
    return latent, max(max(in_channels, latent * latent) // reduction,
                       check_positive_int(min_squeeze, "min_squeeze"))


class DCDConv2d(ConvArgs, AttentionState, BranchNorm, Module):
    """DCD layer (dynamic channel fusion) with PyTorch ``nn.Conv2d`` argument names.

    Parameters: in_channels, out_channels, kernel_size (int or pair), stride, padding (None:
    'same', d (k - 1) / 2; the only padding supported, see ``functional.dcd``), dilation,
    groups (of the static W0; Q, Phi, P stay dense), bias (of W0; off in the official code);
    latent_dim L, reduction, min_squeeze or squeeze S (module docstring); eps, momentum of the two
    BatchNorms; backend "numba" (default), "loops" or "numpy" (host backends only); dtype; rng.

    ``params``: "weight" W0 (C_out, C_in/groups, kh, kw), "bias" (C_out,) if bias, "q_weight"
    Q^T (L, C_in), "p_weight" P (C_out, L), "fc_weight" (S, C_in), "se_weight" (S, S),
    "phi_weight" (L*L, S), "scale_weight" (C_out, S), "bn1_weight"/"bn1_bias"/"bn2_weight"/
    "bn2_bias" (L,) (gamma ones, beta zeros). ``buffers``: "bn1_running_mean",
    "bn1_running_var", "bn2_running_mean", "bn2_running_var" (L,). ``attention`` is
    {"lambda": (N, C_out), "phi": (N, L, L)} of the last forward.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=None,
                 dilation=1, groups=1, bias=False, latent_dim=None, reduction=16, min_squeeze=4,
                 squeeze=None, eps=1e-5, momentum=0.1, backend=DEFAULT_BACKEND,
                 dtype=np.float32, rng=None):
        super().__init__()
        self._init_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation,
                             groups, geometry_rule=dcd_geometry)
        self.latent_dim, self.squeeze = dcd_sizes(self.in_channels, latent_dim, reduction,
                                                  min_squeeze, squeeze)
        self._init_branch_norm(eps, momentum)
        self._backend = check_host_backend(backend, "DCDConv2d")
        self.backend = backend
        self.dtype = layer_dtype(dtype)
        rng = make_rng(rng)
        c_in, c_out, latent, squeeze = (self.in_channels, self.out_channels, self.latent_dim,
                                        self.squeeze)
        self.add_param("weight", uniform_fan_in(rng, self.kernel_shape(), self.fan_in, self.dtype))
        if check_bias_flag(bias):
            self.add_param("bias", uniform_fan_in(rng, (c_out,), self.fan_in, self.dtype))
        for name, shape in (("q_weight", (latent, c_in)), ("p_weight", (c_out, latent)),
                            ("fc_weight", (squeeze, c_in)), ("se_weight", (squeeze, squeeze)),
                            ("phi_weight", (latent * latent, squeeze)),
                            ("scale_weight", (c_out, squeeze))):
            self.add_param(name, uniform_fan_in(rng, shape, shape[1], self.dtype))
        for bn in ("bn1", "bn2"):
            self._add_branch_norm(bn, latent)

    def forward(self, x):
        x = check_layer_input(self, x, 4, self.in_channels, finite=False)  # screened below
        check_dcd_params(self.params, x, self.geometry)
        if self.training:
            _check_train_batch(x, self.geometry)
        else:
            check_dcd_buffers(self.buffers, self.latent_dim, self.dtype)
        y, cache = _dcd_conv2d_forward(x, self.params, self.geometry, self._backend,
                                       self._branch_norm_stage())
        check_finite_via(x, "x", cache["pooled"], "mean")
        self._update_running_stats(cache["batch_stats"])
        # ``attention``: {"lambda": (N, C_out), "phi": (N, L, L)}, copies
        self._attention = {"lambda": cache["lambda"], "phi": cache["phi"]}
        return self._remember(y, cache)

    def backward(self, dy):
        dx, grads = _dcd_conv2d_backward(*self._recall(dy))
        self._accumulate(grads)
        return dx

    def __repr__(self):
        return self._conv_repr(bias="bias" in self.params, latent_dim=self.latent_dim,
                               squeeze=self.squeeze, backend=self.backend)


def extra_costs(layer, input_shape):
    """Params and multiply-adds of a ``DCDConv2d`` for ``input_shape`` ((C, H, W) or
    (N, C, H, W)), split as ``models/profile.py`` splits DynamicConv2d's -> dict.

    Per sample, with H', W' the output size, Cg = C_in / groups, L the latent and S the squeeze
    width (bias additions, BatchNorms, activations, the SE gate product and the residual sum
    z + BN2(.) not counted, as in profile.py):

        conv            C_out H' W' Cg kh kw                the static W0 (a static layer's)
        attention_pool  C_in H W                            global average pool
        attention_fc    C_in S + S^2 + S L^2 + S C_out      fc, SE fc, fc_phi, fc_scale
        aggregation     (C_in L + L^2 + L C_out + C_out) H' W'
                        the dynamic part: Q, Phi, P as 1 x 1 convolutions, and lambda's
                        output scaling (C_out H' W'); the kernel form Lambda W0 + P Phi Q^T is
                        never built (it would cost C_out Cg kh kw + C_out L^2 + ... per sample)

    ``extra_params`` = params beyond the static convolution's (W0 and b0):
    C_in L + C_out L + C_in S + S^2 + L^2 S + C_out S + 4 L (the BatchNorms' gamma and beta).
    All MAdd counts are times N. ``breakdown`` splits attention_fc and aggregation further.
    """
    n, c_in, height, width = check_cost_shape(layer, input_shape)
    h_out, w_out = layer.output_size(height, width)
    c_out, latent, squeeze = layer.out_channels, layer.latent_dim, layer.squeeze
    pixels = h_out * w_out
    breakdown = {"fc": c_in * squeeze, "se_fc": squeeze * squeeze,
                 "fc_phi": squeeze * latent * latent, "fc_scale": squeeze * c_out,
                 "q": c_in * latent * pixels, "phi": latent * latent * pixels,
                 "p": latent * c_out * pixels, "lambda_scale": c_out * pixels}
    static_params = sum(int(layer.params[k].size) for k in ("weight", "bias")
                        if k in layer.params)
    params = sum(int(p.size) for p in layer.params.values())
    per_sample = {
        "conv": layer.conv_madds(height, width),
        "attention_pool": c_in * height * width,
        "attention_fc": sum(breakdown[k] for k in ("fc", "se_fc", "fc_phi", "fc_scale")),
        "aggregation": sum(breakdown[k] for k in ("q", "phi", "p", "lambda_scale"))}
    return dict({key: n * value for key, value in per_sample.items()},
                output_shape=(n, c_out, h_out, w_out), params=params,
                extra_params=params - static_params,
                breakdown={key: n * value for key, value in breakdown.items()})

