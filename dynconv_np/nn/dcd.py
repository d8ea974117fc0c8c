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

``extra_costs(layer, input_shape)`` is the cost accounting (params and multiply-adds) and
``verify_rows(rng, backends)`` the ``verify`` command's rows for this layer.
"""
import math

import numpy as np

from .init import make_rng, uniform_fan_in
from .module import Module, check_bias_flag, check_layer_input, layer_dtype
from .._validation import as_pair, check_finite_via, check_positive_int, check_real
from ..backends import DEFAULT_BACKEND
from ..backends.geometry import conv_output_size
from ..functional.batchnorm import running_stats_update
from ..functional.conv import check_conv_channels
from ..functional.dcd import (_check_train_batch, _dcd_conv2d_backward,
                              _dcd_conv2d_forward, _eval_norm, _train_norm, check_dcd_buffers,
                              check_dcd_params, check_host_backend, dcd_geometry)


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


class DCDConv2d(Module):
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
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.stride, self.padding, self.dilation, self.groups = dcd_geometry(
            stride, padding, dilation, groups, self.kernel_size)
        check_conv_channels(self.in_channels, self.out_channels, self.groups)
        self.latent_dim, self.squeeze = dcd_sizes(self.in_channels, latent_dim, reduction,
                                                  min_squeeze, squeeze)
        self.eps = check_real(eps, "eps", low=0, low_open=True)
        self.momentum = check_real(momentum, "momentum", low=0, high=1)
        self._backend = check_host_backend(backend, "DCDConv2d")
        self.backend = backend
        self.dtype = layer_dtype(dtype)
        rng = make_rng(rng)
        c_in, c_out, latent, squeeze = (self.in_channels, self.out_channels, self.latent_dim,
                                        self.squeeze)
        c_group = c_in // self.groups
        fan_in = c_group * self.kernel_size[0] * self.kernel_size[1]
        self.add_param("weight", uniform_fan_in(rng, (c_out, c_group) + self.kernel_size, fan_in,
                                                self.dtype))
        if check_bias_flag(bias):
            self.add_param("bias", uniform_fan_in(rng, (c_out,), fan_in, self.dtype))
        for name, shape in (("q_weight", (latent, c_in)), ("p_weight", (c_out, latent)),
                            ("fc_weight", (squeeze, c_in)), ("se_weight", (squeeze, squeeze)),
                            ("phi_weight", (latent * latent, squeeze)),
                            ("scale_weight", (c_out, squeeze))):
            self.add_param(name, uniform_fan_in(rng, shape, shape[1], self.dtype))
        for bn in ("bn1", "bn2"):
            self.add_param(f"{bn}_weight", np.ones(latent, dtype=self.dtype))
            self.add_param(f"{bn}_bias", np.zeros(latent, dtype=self.dtype))
            self.buffers[f"{bn}_running_mean"] = np.zeros(latent, dtype=self.dtype)
            self.buffers[f"{bn}_running_var"] = np.ones(latent, dtype=self.dtype)
        self._attention = None

    @property
    def geometry(self):
        return self.stride, self.padding, self.dilation, self.groups

    @property
    def attention(self):
        """{"lambda": (N, C_out), "phi": (N, L, L)} of the last forward, copies."""
        return None if self._attention is None else {k: v.copy() for k, v in
                                                     self._attention.items()}

    def forward(self, x):
        x = check_layer_input(self, x, 4, self.in_channels, finite=False)  # screened below
        check_dcd_params(self.params, x, self.geometry)
        if self.training:
            _check_train_batch(x, self.geometry)
            normalise = _train_norm(self.params, self.eps)
        else:
            check_dcd_buffers(self.buffers, self.latent_dim, self.dtype)
            normalise = _eval_norm(self.params, self.buffers, self.eps)
        y, cache = _dcd_conv2d_forward(x, self.params, self.geometry, self._backend, normalise)
        check_finite_via(x, "x", cache["pooled"], "mean")
        for bn, (mean, var, count) in cache["batch_stats"].items():
            running_mean, running_var = (self.buffers[f"{bn}_running_mean"],
                                         self.buffers[f"{bn}_running_var"])
            running_mean[...], running_var[...] = running_stats_update(
                running_mean, running_var, mean, var, count, self.momentum)
        self._attention = {"lambda": cache["lambda"], "phi": cache["phi"]}
        return self._remember(y, cache)

    def backward(self, dy):
        dx, grads = _dcd_conv2d_backward(*self._recall(dy))
        for name, grad in grads.items():
            self.accumulate_grad(name, grad)
        return dx

    def __repr__(self):
        return (f"DCDConv2d({self.in_channels}, {self.out_channels}, kernel_size="
                f"{self.kernel_size}, stride={self.stride}, padding={self.padding}, dilation="
                f"{self.dilation}, groups={self.groups}, bias={'bias' in self.params}, "
                f"latent_dim={self.latent_dim}, squeeze={self.squeeze}, "
                f"backend={self.backend!r})")


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
    shape = _per_batch_shape(input_shape, layer.in_channels, "DCDConv2d")
    n, c_in, height, width = shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (layer.kernel_size, layer.stride, layer.padding,
                                              layer.dilation)
    h_out = conv_output_size(height, kh, sh, ph, dh)
    w_out = conv_output_size(width, kw, sw, pw, dw)
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
        "conv": c_out * pixels * (c_in // layer.groups) * kh * kw,
        "attention_pool": c_in * height * width,
        "attention_fc": sum(breakdown[k] for k in ("fc", "se_fc", "fc_phi", "fc_scale")),
        "aggregation": sum(breakdown[k] for k in ("q", "phi", "p", "lambda_scale"))}
    return dict({key: n * value for key, value in per_sample.items()},
                output_shape=(n, c_out, h_out, w_out), params=params,
                extra_params=params - static_params,
                breakdown={key: n * value for key, value in breakdown.items()})


def _per_batch_shape(input_shape, channels, name):
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else ()
    shape = (1,) + shape if len(shape) == 3 else shape
    if len(shape) != 4 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                  for s in shape) or shape[1] != channels:
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W) of positive ints with "
                         f"C = {channels} ({name}'s in_channels); received {input_shape!r}")
    return shape


def verify_rows(rng, backends):
    """The ``verify`` command's rows for DCDConv2d: per backend, one gradient check of the layer
    in training mode (BatchNorms on batch statistics, every parameter and x; float64, central
    differences) on a strided, grouped 3 x 3 case, with |y - y_numpy| against the numpy
    backend. Yields (op, backend, config, GradcheckReport, difference)."""
    from ..gradcheck import gradcheck  # the checker is public and needs only NumPy

    config = "6->4 3x3 s2 g2 train"
    x = rng.standard_normal((2, 6, 5, 4))

    def make(backend):
        layer = DCDConv2d(6, 4, 3, stride=2, groups=2, bias=True, dtype=np.float64,
                          backend=backend, rng=3)
        layer.params["phi_weight"] *= 4  # a Phi far from 0, so its gradient is not tiny
        return layer

    judge = make("numpy")(x)
    for backend in backends:
        layer = make(backend)
        report = gradcheck(layer, x, raise_exception=False)
        yield "DCDConv2d layer", backend, config, report, float(np.max(np.abs(layer(x) - judge)))
