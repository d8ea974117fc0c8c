"""Dynamic layers: DynamicConv2d (paper section 3.2) and DynamicLinear (section 3.1).

Both keep K kernels (and biases) and an attention branch
    pi = softmax(FC2(relu(FC1(pool(x)))) / tau)
and apply the per-sample kernel W(x) = sum_k pi_k(x) W_k. The math lives in
``dynconv_np.functional``; these classes hold the parameters, the temperature and the caches.

Hidden width of the attention branch, ``attention_hidden``:

    hidden = given ``hidden``                              when ``hidden`` is set (exact width)
    hidden = max(floor(C_in / reduction), min_hidden)      otherwise (reduction an int or float)

The paper reduces channels by 4 (reduction=4); ``min_hidden=4`` keeps the branch from
collapsing to zero or one unit on narrow inputs (C_in = 3 for an RGB input layer would otherwise
give 0). ``attention_bias=False`` drops the first FC's bias (h = relu(pooled W1^T)), as ports
whose first FC is a bias-free 1x1 convolution have it.

Attention override (a diagnostic hook, ``DynamicConv2d`` only): when a layer's
``attention_override`` is a function pi (N, K) -> pi' (N, K), an eval-mode forward computes pi
as usual, then aggregates the kernels with pi' instead, so a caller can ask what the network
does when each image gets another image's attention, or all get the mean one
(``dynconv_np.diagnostics.override_attention`` sets and clears it). ``None`` (the default) is
the ordinary layer; a training-mode forward with an override set is refused (no backward is
defined through a replaced attention).
"""
import math

import numpy as np

from ._attention_state import AttentionState, Temperature
from .conv import ConvArgs
from .init import make_rng, uniform_fan_in
from .module import Module, check_bias_flag, check_layer_input, layer_dtype
from .._validation import check_finite, check_positive_int, check_real, is_host_array
from ..backends import DEFAULT_BACKEND, get_backend, to_device, to_host
from ..functional.aggregation import _aggregate_kernels_forward
from ..functional.conv import _conv_forward
from ..functional.dynamic_conv import (_dynamic_kernels, _screened_backward, _screened_forward,
                                       check_dynamic_conv_params)
from ..functional.dynamic_linear import (_dynamic_linear_backward, _dynamic_linear_forward,
                                         check_dynamic_linear_params)


def attention_hidden(in_channels, reduction=4, min_hidden=4, hidden=None):
    """Hidden width of the attention branch (formula in the module docstring)."""
    if hidden is not None:
        return check_positive_int(hidden, "hidden")
    reduction = check_real(reduction, "reduction", low=0, low_open=True)
    return max(math.floor(in_channels / reduction), check_positive_int(min_hidden, "min_hidden"))


class _DynamicBase(AttentionState, Temperature, Module):
    """Shared state of dynamic layers: K kernels, attention FCs, temperature, last attention."""

    def __init__(self, in_features, out_features, kernel_shape, fan_in, bias, num_kernels,
                 reduction, min_hidden, hidden, attention_bias, temperature, backend, dtype,
                 rng):
        super().__init__()
        dtype = layer_dtype(dtype)
        bias = check_bias_flag(bias)
        self._backend = get_backend(backend)
        self.backend = backend
        self.num_kernels = check_positive_int(num_kernels, "num_kernels")
        self.hidden = attention_hidden(in_features, reduction, min_hidden, hidden)
        attention_bias = check_bias_flag(attention_bias, "attention_bias")
        self.dtype = dtype
        self.temperature = temperature
        rng = make_rng(rng)
        k = self.num_kernels
        self.add_param("weight", uniform_fan_in(rng, (k, out_features) + kernel_shape, fan_in, dtype))
        if bias:
            self.add_param("bias", uniform_fan_in(rng, (k, out_features), fan_in, dtype))
        self.add_param("fc1_weight", uniform_fan_in(rng, (self.hidden, in_features), in_features, dtype))
        if attention_bias:
            self.add_param("fc1_bias", uniform_fan_in(rng, (self.hidden,), in_features, dtype))
        self.add_param("fc2_weight", uniform_fan_in(rng, (k, self.hidden), self.hidden, dtype))
        self.add_param("fc2_bias", uniform_fan_in(rng, (k,), self.hidden, dtype))

    def _store(self, y, cache):
        self._attention = cache["pi"]  # ``attention``: pi (N, K), a copy
        return self._remember(y, cache)


class DynamicConv2d(ConvArgs, _DynamicBase):
    """Dynamic convolution: y[n] = conv2d(x[n], sum_k pi_k(x[n]) W_k) + sum_k pi_k(x[n]) b_k.

    Parameters (PyTorch ``nn.Conv2d`` names): in_channels, out_channels, kernel_size (int or
    pair), stride, padding, dilation (int or pair), groups, bias; num_kernels K (paper: 4);
    the attention's hidden width from reduction (paper: 4) and min_hidden, or exactly
    ``hidden``; attention_bias (the first FC's bias); temperature tau (paper: 30 annealed to 1);
    backend "numba" (default), "loops", "numpy" (reference) or "cuda"; dtype float32/float64;
    rng (seed or Generator).

    ``params``: "weight" (K, C_out, C_in/groups, kh, kw), "bias" (K, C_out) unless bias=False,
    "fc1_weight" (hidden, C_in), "fc1_bias" (hidden,) unless attention_bias=False,
    "fc2_weight" (K, hidden), "fc2_bias" (K,). ``attention`` is pi (N, K) of the last forward.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, num_kernels=4, reduction=4, temperature=30.0,
                 backend=DEFAULT_BACKEND, dtype=np.float32, rng=None, min_hidden=4, hidden=None,
                 attention_bias=True):
        self._init_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation,
                             groups)
        super().__init__(self.in_channels, self.out_channels, self.kernel_shape()[1:],
                         self.fan_in, bias, num_kernels, reduction, min_hidden, hidden,
                         attention_bias, temperature, backend, dtype, rng)

    attention_override = None  # the diagnostic hook of the module docstring

    def forward(self, x):
        x = check_layer_input(self, x, 4, self.in_channels, finite=False)  # screened below
        check_dynamic_conv_params(self.params, x, self.geometry, self._backend)
        if self.attention_override is not None:
            return self._forward_overridden(x)
        y, cache = _screened_forward(x, self.params, self.temperature, self.geometry,
                                     self._backend)
        return self._store(y, cache)

    def _forward_overridden(self, x):
        """Eval-mode forward with pi' = attention_override(pi); keeps no cache for backward."""
        if self.training:
            raise RuntimeError("attention_override is a diagnostic for eval mode (model.eval()); "
                               "no backward is defined through a replaced attention")
        if is_host_array(self.params["weight"]):
            check_finite(self.params["weight"], "weight")  # (the forward screens it via W_n)
        pi = _dynamic_kernels(x, self.params, self.temperature, self._backend)[2]
        pi = np.ascontiguousarray(self.attention_override(pi), dtype=self.dtype)
        if pi.shape != (x.shape[0], self.num_kernels) or not np.all(np.isfinite(pi)):
            raise ValueError(f"attention_override must return finite pi of shape "
                             f"{(x.shape[0], self.num_kernels)}; received {pi.shape}")
        (w_n, b_n), _ = _aggregate_kernels_forward(pi, self.params["weight"],
                                                   self.params.get("bias"), self._backend)
        y, _ = _conv_forward(x, w_n, b_n, self.geometry, self._backend, per_sample=True)
        self._calls.clear()
        self._attention = pi
        return y

    def backward(self, dy):
        dx, grads = self._screened_backward(_screened_backward, dy)  # dy screened there
        self._accumulate(grads)
        return dx

    KERNEL_PARAMS = ("weight", "bias")

    def to_device(self):
        """Keep the K kernels and biases (and their gradients) in GPU memory (backend "cuda").

        Forward and backward then leave them there; x, y, dy and dx may be device arrays too.
        The attention branch's FC parameters stay on the host, where the (tiny) attention runs:
        only pooled (N, C_in) and pi (N, K) cross between host and device.
        """
        if self.backend != "cuda":
            raise ValueError(f"to_device needs backend='cuda'; this layer uses "
                             f"backend={self.backend!r}")
        self._move_kernels(lambda a: to_device(a, self.backend))
        return self

    def to_host(self):
        """Bring kernels, biases and their gradients back as NumPy arrays."""
        self._move_kernels(to_host)
        return self

    def _move_kernels(self, move):
        for name in self.KERNEL_PARAMS:
            if name in self.params:
                grad = move(self.grads[name])  # kept: a new params array resets its gradient
                self.params[name] = move(self.params[name])
                self.grads[name] = grad

    def __repr__(self):
        return self._conv_repr(bias="bias" in self.params, num_kernels=self.num_kernels,
                               temperature=self.temperature, backend=self.backend)


class DynamicLinear(_DynamicBase):
    """Dynamic perceptron: y = (sum_k pi_k(x) W_k) x + sum_k pi_k(x) b_k (paper section 3.1).

    The attention is computed from x itself (no pooling). ``params``: "weight" (K, out, in),
    "bias" (K, out) unless bias=False, and the attention FCs as in ``DynamicConv2d``.
    backend: a host backend ("numba" default, "loops", "numpy") for the attention branch and
    the aggregation.
    """

    def __init__(self, in_features, out_features, bias=True, num_kernels=4, reduction=4,
                 temperature=30.0, backend=DEFAULT_BACKEND, dtype=np.float32, rng=None,
                 min_hidden=4, hidden=None, attention_bias=True):
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        if backend == "cuda":
            raise ValueError("DynamicLinear runs on a host backend (numba, loops or numpy); "
                             "received backend='cuda'")
        super().__init__(in_features, out_features, (in_features,), in_features, bias,
                         num_kernels, reduction, min_hidden, hidden, attention_bias, temperature,
                         backend, dtype, rng)

    def forward(self, x):
        x = check_layer_input(self, x, 2, self.in_features, host=True)
        check_dynamic_linear_params(self.params, x)
        y, cache = _dynamic_linear_forward(x, self.params, self.temperature, self._backend)
        return self._store(y, cache)

    def backward(self, dy):
        dx, grads = _dynamic_linear_backward(*self._recall(dy))
        self._accumulate(grads)
        return dx

    def __repr__(self):
        return (f"DynamicLinear({self.in_features}, {self.out_features}, bias="
                f"{'bias' in self.params}, num_kernels={self.num_kernels}, "
                f"temperature={self.temperature}, backend={self.backend!r})")
