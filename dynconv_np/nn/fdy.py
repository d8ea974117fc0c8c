"""FDYConv2d: frequency dynamic convolution (Nam et al., Interspeech 2022), as the official
``Dynamic_conv2d`` with ``pool_dim='time'`` computes it, for x (N, C_in, T, F) (H time, W
frequency):

    pi[n, :, f]   = softmax(conv1d(relu(BN(conv1d(mean_t x[n]))))[:, f] / tau)   over K
    y[n, :, t, f] = sum_k pi[n, k, f] (conv2d(x[n], W_k) + b_k)[:, t, f]

The math (output mixing = the paper's per-frequency kernel W(f) = sum_k pi_k(f) W_k, by
linearity), the conventions taken from the official code and the generalisations are in
``dynconv_np.functional.fdy``. This class holds the K kernels, the attention branch (a conv1d,
a BatchNorm1d with running statistics updated by every training-mode forward, a 1 x 1 conv1d),
the temperature (official: 31, fixed; settable, and annealed by ``train.schedules`` like any
layer with a temperature and K kernels) and the caches.

``extra_costs(layer, input_shape)`` is the cost accounting and ``verify_rows(rng, backends)``
the ``verify`` command's rows for this layer.
"""
import numpy as np

from .dcd import _per_batch_shape
from .dynamic import attention_hidden
from .init import make_rng, uniform_fan_in
from .module import Module, check_bias_flag, check_layer_input, layer_dtype
from .._validation import as_pair, check_positive_int, check_real, check_temperature
from ..backends import DEFAULT_BACKEND
from ..backends.geometry import conv_output_size
from ..functional.batchnorm import running_stats_update
from ..functional.conv import check_conv_channels, conv_geometry
from ..functional.dcd import _check_running, check_host_backend
from ..functional.fdy import (FDY_BUFFERS, _eval_norm, _fdy_conv2d_backward, _fdy_conv2d_forward,
                              _train_norm, check_fdy_params, screen_x)


class FDYConv2d(Module):
    """Frequency dynamic convolution with PyTorch ``nn.Conv2d`` argument names.

    Parameters: in_channels, out_channels, kernel_size, stride, padding, dilation (ints or
    (time, frequency) pairs), groups, bias (off in the official code); num_kernels K (official:
    4); temperature tau (official: 31); the branch's hidden width max(floor(C_in / reduction),
    min_hidden) (official: reduction 4, min 4) or exactly ``hidden``; eps, momentum of its
    BatchNorm1d; backend "numba" (default), "loops" or "numpy"; dtype; rng.

    ``params``: "weight" (K, C_out, C_in/groups, kh, kw), "bias" (K, C_out) if bias,
    "conv1_weight" (hidden, C_in, kw), "bn_weight" (ones), "bn_bias" (zeros) (hidden,),
    "conv2_weight" (K, hidden), "conv2_bias" (K,). ``buffers``: "bn_running_mean",
    "bn_running_var" (hidden,). ``attention`` is pi (N, K, F_out) of the last forward.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=False, num_kernels=4, temperature=31.0, reduction=4,
                 min_hidden=4, hidden=None, eps=1e-5, momentum=0.1, backend=DEFAULT_BACKEND,
                 dtype=np.float32, rng=None):
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.stride, self.padding, self.dilation, self.groups = conv_geometry(
            stride, padding, dilation, groups)
        check_conv_channels(self.in_channels, self.out_channels, self.groups)
        self.num_kernels = check_positive_int(num_kernels, "num_kernels")
        self.hidden = attention_hidden(self.in_channels, reduction, min_hidden, hidden)
        self.eps = check_real(eps, "eps", low=0, low_open=True)
        self.momentum = check_real(momentum, "momentum", low=0, high=1)
        self._backend = check_host_backend(backend, "FDYConv2d")
        self.backend = backend
        self.dtype = layer_dtype(dtype)
        self.temperature = temperature
        rng = make_rng(rng)
        k, c_in, c_out, hidden = self.num_kernels, self.in_channels, self.out_channels, self.hidden
        c_group = c_in // self.groups
        fan_in = c_group * self.kernel_size[0] * self.kernel_size[1]
        self.add_param("weight", uniform_fan_in(rng, (k, c_out, c_group) + self.kernel_size,
                                                fan_in, self.dtype))
        if check_bias_flag(bias):
            self.add_param("bias", uniform_fan_in(rng, (k, c_out), fan_in, self.dtype))
        kw = self.kernel_size[1]
        self.add_param("conv1_weight", uniform_fan_in(rng, (hidden, c_in, kw), c_in * kw,
                                                      self.dtype))
        self.add_param("bn_weight", np.ones(hidden, dtype=self.dtype))
        self.add_param("bn_bias", np.zeros(hidden, dtype=self.dtype))
        self.add_param("conv2_weight", uniform_fan_in(rng, (k, hidden), hidden, self.dtype))
        self.add_param("conv2_bias", uniform_fan_in(rng, (k,), hidden, self.dtype))
        for name, value in zip(FDY_BUFFERS, (0.0, 1.0)):
            self.buffers[name] = np.full(hidden, value, dtype=self.dtype)
        self._attention = None

    @property
    def geometry(self):
        return self.stride, self.padding, self.dilation, self.groups

    @property
    def temperature(self):
        """Softmax temperature tau (> 0); official FDY: 31, constant."""
        return self._temperature

    @temperature.setter
    def temperature(self, value):
        self._temperature = check_temperature(value, self.dtype)

    @property
    def attention(self):
        """pi (N, K, F_out) of the last forward, a copy."""
        return None if self._attention is None else self._attention.copy()

    def state_scalars(self):
        return {"temperature": self.temperature}

    def load_state_scalar(self, name, value):
        if name != "temperature":
            raise KeyError(name)
        self.temperature = value

    def forward(self, x):
        x = check_layer_input(self, x, 4, self.in_channels, finite=False)  # screened below
        check_fdy_params(self.params, x, self.geometry)
        if self.training:
            f_out = conv_output_size(x.shape[3], self.kernel_size[1], self.stride[1],
                                     self.padding[1], self.dilation[1])
            if x.shape[0] * f_out < 2:
                raise ValueError(f"FDYConv2d in training mode normalises its attention branch "
                                 f"with batch statistics over (N, F_out) and needs N F_out > 1; "
                                 f"received x shape {tuple(x.shape)} (F_out = {f_out})")
            normalise = _train_norm(self.params, self.eps)
        else:
            _check_running(self.buffers, {name: (self.hidden,) for name in FDY_BUFFERS},
                           self.dtype)
            normalise = _eval_norm(self.params, self.buffers, self.eps)
        y, cache = _fdy_conv2d_forward(x, self.params, self.temperature, self.geometry,
                                       self._backend, normalise)
        screen_x(x, cache)
        if cache["batch_stats"]:
            mean, var, count = cache["batch_stats"]["bn"]
            running_mean, running_var = (self.buffers[name] for name in FDY_BUFFERS)
            running_mean[...], running_var[...] = running_stats_update(
                running_mean, running_var, mean, var, count, self.momentum)
        self._attention = cache["pi"]
        return self._remember(y, cache)

    def backward(self, dy):
        dx, grads = _fdy_conv2d_backward(*self._recall(dy))
        for name, grad in grads.items():
            self.accumulate_grad(name, grad)
        return dx

    def __repr__(self):
        return (f"FDYConv2d({self.in_channels}, {self.out_channels}, kernel_size="
                f"{self.kernel_size}, stride={self.stride}, padding={self.padding}, dilation="
                f"{self.dilation}, groups={self.groups}, bias={'bias' in self.params}, "
                f"num_kernels={self.num_kernels}, temperature={self.temperature}, "
                f"hidden={self.hidden}, backend={self.backend!r})")


def extra_costs(layer, input_shape):
    """Params and multiply-adds of an ``FDYConv2d`` for ``input_shape`` ((C, T, F) or
    (N, C, T, F)), split as ``models/profile.py`` splits DynamicConv2d's -> dict.

    Per sample, with T', F' the output size, Cg = C_in / groups, K kernels, hidden width D and
    kf = kw the frequency kernel (bias additions, the BatchNorm, ReLU and softmax not counted):

        conv            C_out T' F' Cg kh kw        one convolution (what a static layer costs)
        attention_pool  C_in T F                    temporal average pooling (additions)
        attention_fc    D C_in kf F' + K D F'       the two conv1d of the branch
        aggregation     (K - 1) C_out T' F' Cg kh kw  +  K C_out T' F'
                        FDY mixes outputs, not kernels: K convolutions per layer (K - 1 more
                        than a static layer) plus the per-frequency weighted sum of K outputs.
                        (Aggregating kernels per output column first, W(f) = sum_k pi_k(f)
                        W_k, would cost K C_out Cg kh kw F' plus one convolution - fewer
                        MAdds whenever T' > K / (K - 1) - but needs a convolution whose kernel
                        changes with the output column, which no standard conv call offers;
                        the official code, and this one, mix outputs.)

    ``extra_params`` = params beyond one static convolution's: (K - 1) C_out Cg kh kw
    (+ (K - 1) C_out with bias) + D C_in kf + 2 D + K D + K. All MAdds are times N;
    ``breakdown`` splits attention_fc and aggregation further.
    """
    shape = _per_batch_shape(input_shape, layer.in_channels, "FDYConv2d")
    n, c_in, time, freq = shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (layer.kernel_size, layer.stride, layer.padding,
                                              layer.dilation)
    t_out = conv_output_size(time, kh, sh, ph, dh)
    f_out = conv_output_size(freq, kw, sw, pw, dw)
    k, c_out, hidden = layer.num_kernels, layer.out_channels, layer.hidden
    one_conv = c_out * t_out * f_out * (c_in // layer.groups) * kh * kw
    breakdown = {"conv1d1": hidden * c_in * kw * f_out, "conv1d2": k * hidden * f_out,
                 "extra_convolutions": (k - 1) * one_conv,
                 "output_mixing": k * c_out * t_out * f_out}
    per_kernel = sum(int(layer.params[key][0].size) for key in ("weight", "bias")
                     if key in layer.params)
    params = sum(int(p.size) for p in layer.params.values())
    per_sample = {"conv": one_conv, "attention_pool": c_in * time * freq,
                  "attention_fc": breakdown["conv1d1"] + breakdown["conv1d2"],
                  "aggregation": breakdown["extra_convolutions"] + breakdown["output_mixing"]}
    return dict({key: n * value for key, value in per_sample.items()},
                output_shape=(n, c_out, t_out, f_out), params=params,
                extra_params=params - per_kernel,
                breakdown={key: n * value for key, value in breakdown.items()})


def verify_rows(rng, backends):
    """The ``verify`` command's rows for FDYConv2d: per backend, one gradient check of the layer
    in training mode (the branch's BatchNorm on batch statistics; x and every parameter;
    float64, central differences) on a grouped 3 x 3 case strided and dilated along frequency,
    with |y - y_numpy| against the numpy backend. Yields (op, backend, config,
    GradcheckReport, difference)."""
    from ..gradcheck import gradcheck  # the checker is public and needs only NumPy

    config = "4->6 3x3 s(1,2) d(1,2) g2 K3 train"
    x = rng.standard_normal((2, 4, 4, 7))

    def make(backend):
        layer = FDYConv2d(4, 6, 3, stride=(1, 2), padding=1, dilation=(1, 2), groups=2,
                          bias=True, num_kernels=3, temperature=0.7, dtype=np.float64,
                          backend=backend, rng=5)
        layer.params["conv2_weight"] *= 4  # pi far from uniform, so its gradient is not tiny
        return layer

    judge = make("numpy")(x)
    for backend in backends:
        layer = make(backend)
        report = gradcheck(layer, x, raise_exception=False)
        yield "FDYConv2d layer", backend, config, report, float(np.max(np.abs(layer(x) - judge)))
