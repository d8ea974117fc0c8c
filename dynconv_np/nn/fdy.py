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

``extra_costs(layer, input_shape)`` is the cost accounting.
"""
import numpy as np

from ._attention_state import AttentionState, BranchNorm, Temperature
from .conv import ConvArgs, check_cost_shape
from .dynamic import attention_hidden
from .init import make_rng, uniform_fan_in
from .module import Module, check_bias_flag, check_layer_input, layer_dtype
from .._validation import check_host_backend, check_positive_int
from ..backends import DEFAULT_BACKEND
from ..functional.fdy import (_fdy_conv2d_backward, _fdy_conv2d_forward, check_fdy_buffers,
                              check_fdy_params, check_train_batch, screen_x)


class FDYConv2d(ConvArgs, AttentionState, Temperature, BranchNorm, Module):
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
        self._init_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation,
                             groups)
        self.num_kernels = check_positive_int(num_kernels, "num_kernels")
        self.hidden = attention_hidden(self.in_channels, reduction, min_hidden, hidden)
        self._init_branch_norm(eps, momentum)
        self._backend = check_host_backend(backend, "FDYConv2d")
        self.backend = backend
        self.dtype = layer_dtype(dtype)
        self.temperature = temperature
        rng = make_rng(rng)
        k, c_in, hidden = self.num_kernels, self.in_channels, self.hidden
        self.add_param("weight", uniform_fan_in(rng, self.kernel_shape(k), self.fan_in,
                                                self.dtype))
        if check_bias_flag(bias):
            self.add_param("bias", uniform_fan_in(rng, (k, self.out_channels), self.fan_in,
                                                  self.dtype))
        kw = self.kernel_size[1]
        self.add_param("conv1_weight", uniform_fan_in(rng, (hidden, c_in, kw), c_in * kw,
                                                      self.dtype))
        self._add_branch_norm("bn", hidden)
        self.add_param("conv2_weight", uniform_fan_in(rng, (k, hidden), hidden, self.dtype))
        self.add_param("conv2_bias", uniform_fan_in(rng, (k,), hidden, self.dtype))

    def forward(self, x):
        x = check_layer_input(self, x, 4, self.in_channels, finite=False)  # screened below
        check_fdy_params(self.params, x, self.geometry)
        if self.training:
            check_train_batch(x, self.kernel_size[1], self.geometry, "FDYConv2d")
        else:
            check_fdy_buffers(self.buffers, self.hidden, self.dtype)
        y, cache = _fdy_conv2d_forward(x, self.params, self.temperature, self.geometry,
                                       self._backend, self._branch_norm_stage())
        screen_x(x, cache)
        self._update_running_stats(cache["batch_stats"])
        self._attention = cache["pi"]  # ``attention``: pi (N, K, F_out), a copy
        return self._remember(y, cache)

    def backward(self, dy):
        dx, grads = _fdy_conv2d_backward(*self._recall(dy))
        self._accumulate(grads)
        return dx

    def __repr__(self):
        return self._conv_repr(bias="bias" in self.params, num_kernels=self.num_kernels,
                               temperature=self.temperature, hidden=self.hidden,
                               backend=self.backend)


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
    n, c_in, time, freq = check_cost_shape(layer, input_shape)
    t_out, f_out = layer.output_size(time, freq)
    k, c_out, hidden, kw = layer.num_kernels, layer.out_channels, layer.hidden, layer.kernel_size[1]
    one_conv = layer.conv_madds(time, freq)
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

