"""Conv2d: the ordinary (static) convolution, one kernel shared by the whole batch.

    y[n, o] = b[o] + sum_c W[o, c] (*) x[n, g(o) Cg + c]          (cross-correlation, NCHW)

The math and its backward pass are ``dynconv_np.functional.conv.conv2d_forward/backward``,
which run on the same backends (numpy / numba / cuda) as the dynamic convolution.

``ConvArgs`` is what every convolution layer here shares (Conv2d, DynamicConv2d and the family:
CondConv2d, ODConv2d, DCDConv2d, FDYConv2d): PyTorch's ``nn.Conv2d`` constructor arguments,
checked once, the ``geometry`` the functional pairs take, the output size, and the cost
accounting's input shape check.
"""
import numpy as np

from .init import make_rng, uniform_fan_in
from .module import Module, check_bias_flag, check_layer_input, layer_dtype
from .._validation import as_pair, check_positive_int
from ..backends import DEFAULT_BACKEND, check_placement, get_backend
from ..backends.geometry import conv_output_size
from ..functional.conv import (_conv_backward, _conv_forward, check_conv_args,
                               check_conv_channels, conv_geometry)


def _any_kernel(stride, padding, dilation, groups, kernel_size):
    return conv_geometry(stride, padding, dilation, groups)


class ConvArgs:
    """Mixin for convolution layers: ``in_channels``, ``out_channels``, ``kernel_size`` (a
    pair), ``stride``, ``padding``, ``dilation`` (pairs) and ``groups`` (dividing both channel
    counts), set by ``_init_conv_args``; ``geometry`` = (stride, padding, dilation, groups)."""

    def _init_conv_args(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                        groups, geometry_rule=_any_kernel):
        """Check and set the arguments; ``geometry_rule(stride, padding, dilation, groups,
        kernel_size)`` -> the geometry (default: any geometry; DCD's admits 'same' only)."""
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = check_positive_int(out_channels, "out_channels")
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.stride, self.padding, self.dilation, self.groups = geometry_rule(
            stride, padding, dilation, groups, self.kernel_size)
        check_conv_channels(self.in_channels, self.out_channels, self.groups)

    @property
    def geometry(self):
        """(stride, padding, dilation, groups), each pair a tuple of two ints."""
        return self.stride, self.padding, self.dilation, self.groups

    def kernel_shape(self, *lead):
        """lead + (C_out, C_in/groups, kh, kw): the shape of one kernel (or of ``lead`` ones)."""
        return lead + (self.out_channels, self.in_channels // self.groups) + self.kernel_size

    @property
    def fan_in(self):
        """(C_in/groups) kh kw: the inputs of one output value (PyTorch's initialisation)."""
        return self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]

    def output_size(self, height, width):
        """(H', W') of the convolution for an H x W input."""
        return tuple(conv_output_size(size, k, s, p, d) for size, k, s, p, d in zip(
            (height, width), self.kernel_size, self.stride, self.padding, self.dilation))

    def conv_madds(self, height, width):
        """Multiply-adds of one static convolution per sample: C_out H' W' (C_in/g) kh kw."""
        h_out, w_out = self.output_size(height, width)
        return self.out_channels * h_out * w_out * self.fan_in

    def _conv_repr(self, **extra):
        """``Name(C_in, C_out, kernel_size=..., stride=..., padding=..., dilation=...,
        groups=..., <extra>)``."""
        fields = dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                      dilation=self.dilation, groups=self.groups, **extra)
        listed = ", ".join(f"{key}={value!r}" for key, value in fields.items())
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, {listed})"


def check_cost_shape(layer, input_shape):
    """The ``input_shape`` of a cost accounting (``extra_costs``): (C, H, W) or (N, C, H, W) of
    positive ints with C = layer.in_channels -> (N, C, H, W) (N = 1 for a 3-tuple)."""
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else ()
    shape = (1,) + shape if len(shape) == 3 else shape
    name, channels = type(layer).__name__, layer.in_channels
    if len(shape) != 4 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                  for s in shape):
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W) of positive ints; "
                         f"received {input_shape!r}")
    if shape[1] != channels:
        raise ValueError(f"{name} takes {channels} channels; input_shape has {shape[1]} "
                         f"(input_shape must be (C, H, W) or (N, C, H, W) with C = {channels}, "
                         f"{name}'s in_channels)")
    return shape


class Conv2d(ConvArgs, Module):
    """2-D convolution with PyTorch's ``nn.Conv2d`` arguments and initialisation.

    ``params``: "weight" (C_out, C_in/groups, kh, kw) and, unless bias=False, "bias" (C_out,),
    both drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = (C_in/groups) kh kw.
    backend: "numba" (default), "numpy" (the reference) or "cuda".
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, backend=DEFAULT_BACKEND, dtype=np.float32, rng=None):
        super().__init__()
        self._init_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation,
                             groups)
        self._backend = get_backend(backend)
        self.backend = backend
        self.dtype = layer_dtype(dtype)
        rng = make_rng(rng)
        self.add_param("weight", uniform_fan_in(rng, self.kernel_shape(), self.fan_in, self.dtype))
        if check_bias_flag(bias):
            self.add_param("bias", uniform_fan_in(rng, (self.out_channels,), self.fan_in,
                                                  self.dtype))

    def forward(self, x):
        x = check_layer_input(self, x, 4, self.in_channels, finite=False)  # checked below
        weight, bias = self.params["weight"], self.params.get("bias")
        check_conv_args(x, weight, bias, self.geometry, per_sample=False)  # the weights' values
        check_placement(self._backend, x=x, weight=weight, bias=bias)
        y, cache = _conv_forward(x, weight, bias, self.geometry, self._backend, per_sample=False)
        return self._remember(y, cache)

    def backward(self, dy):
        dx, dweight, dbias = _conv_backward(*self._recall(dy))
        self.accumulate_grad("weight", dweight)
        if dbias is not None:
            self.accumulate_grad("bias", dbias)
        return dx

    def __repr__(self):
        return self._conv_repr(bias="bias" in self.params, backend=self.backend)
