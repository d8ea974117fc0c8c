"""ODConv2d: omni-dimensional dynamic convolution (Li, Zhou and Yao, ICLR 2022).

    h = relu(BN(FC(GAP(x)))),   alpha_c, alpha_f, alpha_s = sigmoid(head(h) / tau),
    alpha_w = softmax(head(h) / tau),
    y = alpha_f (.) conv2d(alpha_c (.) x, sum_k alpha_w[k] alpha_s (.) W_k)

The math, the backward pass (the product rule over the four factors) and where the official
code (OSVAI/ODConv ``modules/odconv.py``) differs from the paper are in
``dynconv_np.functional.odconv``; this class holds the parameters, the BatchNorm's running
statistics (``buffers``) and the temperature.

Training mode normalises the branch's hidden units with the batch's statistics (so N >= 2, and
each sample's attention depends on the batch) and updates the running statistics
(running <- (1 - momentum) running + momentum batch, unbiased variance; PyTorch's BatchNorm2d);
evaluation mode uses the running statistics. Initialisation as the official code: each kernel
and every FC Kaiming-normal with mode "fan_out" (std sqrt(2 / fan_out), fan_out = C_out kh kw
for a kernel, out_features for an FC), head biases 0, BatchNorm gamma 1 and beta 0.
"""
import math

import numpy as np

from ._attention_state import AttentionState, BranchNorm, Temperature
from .conv import ConvArgs, check_cost_shape
from .init import make_rng
from .module import Module, check_layer_input, layer_dtype
from .._validation import check_host_backend, check_positive_int, check_real
from ..backends import DEFAULT_BACKEND, check_placement
from ..functional.odconv import (_odconv2d_forward, _screened_backward, check_odconv_norm,
                                 check_odconv_params, odconv_heads)


def odconv_hidden(in_channels, reduction=0.0625, min_hidden=16, hidden=None):
    """The branch's width: ``hidden`` when given, else max(int(C_in * reduction), min_hidden)
    (the official ``attention_channel``; reduction 1/16, min_channel 16)."""
    if hidden is not None:
        return check_positive_int(hidden, "hidden")
    reduction = check_real(reduction, "reduction", low=0, low_open=True)
    return max(math.floor(in_channels * reduction), check_positive_int(min_hidden, "min_hidden"))


class ODConv2d(ConvArgs, AttentionState, Temperature, BranchNorm, Module):
    """ODConv: y = alpha_f (.) conv2d(alpha_c (.) x, sum_k alpha_w[k] (alpha_s (.) W_k)), no bias.

    Parameters: in_channels, out_channels, kernel_size (int or pair), stride, padding,
    dilation, groups (PyTorch ``nn.Conv2d`` names); num_kernels K (the official "kernel_num";
    its models use 1 or 4); the branch width from reduction (1/16) and min_hidden (16), or
    exactly ``hidden``; temperature tau (1.0, the official module's; anneal it 30 -> 1 as the
    official main.py does); eps and momentum of the branch's BatchNorm; backend "numba"
    (default), "loops" or "numpy"; dtype; rng.

    ``params``: "weight" (K, C_out, C_in/groups, kh, kw), "fc_weight" (hidden, C_in),
    "bn_weight", "bn_bias" (hidden,), and "<head>_fc_weight" / "<head>_fc_bias" for each of
    ``heads`` (channel (C_in), filter (C_out), spatial (kh kw), kernel (K); the official rule
    drops the filter head when in_channels == groups == out_channels, the spatial head for a
    1 x 1 kernel and the kernel head for K = 1). ``buffers``: "bn_running_mean" (zeros),
    "bn_running_var" (ones). ``attention`` (and ``attentions``): {head: alpha} of the last
    forward.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, num_kernels=4, reduction=0.0625, min_hidden=16, hidden=None,
                 temperature=1.0, eps=1e-5, momentum=0.1, backend=DEFAULT_BACKEND,
                 dtype=np.float32, rng=None):
        super().__init__()
        self._init_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation,
                             groups)
        self.num_kernels = check_positive_int(num_kernels, "num_kernels")
        self.hidden = odconv_hidden(self.in_channels, reduction, min_hidden, hidden)
        self._init_branch_norm(eps, momentum)
        self.dtype = layer_dtype(dtype)
        self._backend = check_host_backend(backend, "ODConv2d")
        self.backend = backend
        self.temperature = temperature
        self.heads = odconv_heads(self.in_channels, self.out_channels, self.kernel_size,
                                  self.groups, self.num_kernels)
        rng = make_rng(rng)
        kh, kw = self.kernel_size
        self.add_param("weight", self._kaiming(rng, self.kernel_shape(self.num_kernels),
                                               self.out_channels * kh * kw))
        self.add_param("fc_weight", self._kaiming(rng, (self.hidden, self.in_channels),
                                                  self.hidden))
        self._add_branch_norm("bn", self.hidden)
        for head, size in self.head_sizes().items():
            self.add_param(f"{head}_fc_weight", self._kaiming(rng, (size, self.hidden), size))
            self.add_param(f"{head}_fc_bias", np.zeros(size, dtype=self.dtype))

    def _kaiming(self, rng, shape, fan_out):
        """Kaiming-normal, mode "fan_out", ReLU gain: N(0, 2 / fan_out)."""
        return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_out)).astype(self.dtype)

    def head_sizes(self):
        """{head: width} for the heads the layer has: "channel" C_in, "filter" C_out,
        "spatial" kh kw, "kernel" K."""
        sizes = {"channel": self.in_channels, "filter": self.out_channels,
                 "spatial": self.kernel_size[0] * self.kernel_size[1],
                 "kernel": self.num_kernels}
        return {head: sizes[head] for head in self.heads}

    @property
    def attentions(self):
        """{head: alpha} of the last forward, copies: "channel" (N, C_in), "filter" (N, C_out),
        "spatial" (N, kh kw), "kernel" (N, K), for the heads the layer has (= ``attention``)."""
        return self.attention

    def forward(self, x):
        x = check_layer_input(self, x, 4, self.in_channels, finite=False)  # screened below
        heads = check_odconv_params(self.params, x, self.geometry)
        running = (None, None) if self.training else (self.buffers["bn_running_mean"],
                                                      self.buffers["bn_running_var"])
        norm = check_odconv_norm(x, self.params, self.training, *running, self.eps)
        check_placement(self._backend, x=x)
        y, cache = _odconv2d_forward(x, self.params, self.temperature, self.geometry, norm, heads,
                                     self._backend)  # screens x through its pooled means
        self._update_running_stats(cache["batch_stats"])
        self._attention = cache["alphas"]
        return self._remember(y, cache)

    def backward(self, dy):
        dx, grads = self._screened_backward(_screened_backward, dy)  # dy screened there
        self._accumulate(grads)
        return dx

    def __repr__(self):
        return self._conv_repr(num_kernels=self.num_kernels, hidden=self.hidden,
                               heads=self.heads, temperature=self.temperature,
                               backend=self.backend)


# -- cost accounting (dynconv_np.models.profile's conventions) ------------------------------
def extra_costs(layer, input_shape):
    """Params and multiply-adds of an ODConv2d for ``input_shape`` (N, C_in, H, W) (or
    (C_in, H, W), N = 1), split as ``models.profile`` splits DynamicConv2d's, plus the
    input/output scaling (every MAdd count for the whole batch; hidden = d, heads' widths C_in,
    C_out [filter], kh kw [spatial], K [kernel], S = their sum; output H' x W'):

        conv            N C_out H' W' (C_in/g) kh kw            (as the static convolution)
        attention_pool  N C_in H W
        attention_fc    N d (C_in + S)             FC C_in -> d, then the heads d -> S
        aggregation     N C_out (C_in/g) kh kw (K [if K > 1] + 1 [if the spatial head])
                        (the K-way mix, then alpha_s; none at all when K = 1 and kh kw = 1)
        scaling         N C_in H W + N C_out H' W' [filter head]      (alpha_c x, alpha_f u)
        params          K C_out (C_in/g) kh kw + d C_in + 2 d + d S + S
        extra_params    params - C_out (C_in/g) kh kw     (a static convolution without bias)

    BatchNorm, ReLU, sigmoids and softmax are element-wise and not counted (as elsewhere in
    models.profile). Returns a dict: output_shape, params, extra_params, conv, attention_pool,
    attention_fc, aggregation, scaling.
    """
    if not isinstance(layer, ODConv2d):
        raise TypeError(f"extra_costs counts ODConv2d; received {type(layer).__name__}")
    n, c, height, width = check_cost_shape(layer, input_shape)
    out = (n, layer.out_channels) + layer.output_size(height, width)
    kernel_entries = layer.out_channels * layer.fan_in
    s = sum(layer.head_sizes().values())
    d = layer.hidden
    mixes = (layer.num_kernels if "kernel" in layer.heads else 0) + ("spatial" in layer.heads)
    params = sum(int(p.size) for p in layer.params.values())
    return dict(output_shape=out, params=params, extra_params=params - kernel_entries,
                conv=n * layer.conv_madds(height, width),
                attention_pool=n * c * height * width, attention_fc=n * d * (c + s),
                aggregation=n * kernel_entries * mixes,
                scaling=n * c * height * width + (n * out[1] * out[2] * out[3]
                                                  if "filter" in layer.heads else 0))
