"""Conv2d: the ordinary (static) convolution, one kernel shared by the whole batch.

    y[n, o] = b[o] + sum_c W[o, c] (*) x[n, g(o) Cg + c]          (cross-correlation, NCHW)

The math and its backward pass are ``dynconv_np.functional.conv.conv2d_forward/backward``,
which run on the same backends (numpy / numba / cuda) as the dynamic convolution.
"""
import numpy as np

from .init import make_rng, uniform_fan_in
from .module import Module, check_bias_flag, check_layer_input, layer_dtype
from .._validation import as_pair, check_positive_int
from ..backends import DEFAULT_BACKEND, check_placement, get_backend
from ..functional.conv import (_conv_backward, _conv_forward, check_conv_args,
                               check_conv_channels, conv_geometry)


class Conv2d(Module):
    """2-D convolution with PyTorch's ``nn.Conv2d`` arguments and initialisation.

    ``params``: "weight" (C_out, C_in/groups, kh, kw) and, unless bias=False, "bias" (C_out,),
    both drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = (C_in/groups) kh kw.
    backend: "numba" (default), "numpy" (the reference) or "cuda".
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, backend=DEFAULT_BACKEND, dtype=np.float32, rng=None):
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.stride, self.padding, self.dilation, self.groups = conv_geometry(
            stride, padding, dilation, groups)
        check_conv_channels(self.in_channels, self.out_channels, self.groups)
        self._backend = get_backend(backend)
        self.backend = backend
        self.dtype = layer_dtype(dtype)
        rng = make_rng(rng)
        c_group = self.in_channels // self.groups
        fan_in = c_group * self.kernel_size[0] * self.kernel_size[1]
        self.add_param("weight", uniform_fan_in(
            rng, (self.out_channels, c_group) + self.kernel_size, fan_in, self.dtype))
        if check_bias_flag(bias):
            self.add_param("bias", uniform_fan_in(rng, (self.out_channels,), fan_in, self.dtype))

    def forward(self, x):
        x = check_layer_input(self, x, 4, self.in_channels, finite=False)  # checked below
        weight, bias = self.params["weight"], self.params.get("bias")
        geometry = (self.stride, self.padding, self.dilation, self.groups)
        check_conv_args(x, weight, bias, geometry, per_sample=False)  # the weights' values too
        check_placement(self._backend, x=x, weight=weight, bias=bias)
        y, cache = _conv_forward(x, weight, bias, geometry, self._backend, per_sample=False)
        return self._remember(y, cache)

    def backward(self, dy):
        dx, dweight, dbias = _conv_backward(*self._recall(dy))
        self.accumulate_grad("weight", dweight)
        if dbias is not None:
            self.accumulate_grad("bias", dbias)
        return dx

    def __repr__(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={'bias' in self.params}, backend={self.backend!r})")
