"""What every network definition shares: one place that chooses static or dynamic layers.

A ``LayerBuilder`` makes the layers of one network. With ``dynamic=True`` every convolution it
makes is an ``nn.DynamicConv2d`` (K kernels, an attention branch, temperature tau) unless the
caller asks for a static one (the paper keeps the first convolution static, section 3.2); with
``dynamic=False`` every convolution is an ``nn.Conv2d``. Fully connected layers (the classifier)
are always static ``nn.Linear``, as in the paper. Convolutions followed by BatchNorm have no bias,
as in torchvision. All layers draw their initial weights from one shared Generator, so a model
built twice from the same seed is identical.

``dynamic`` may also name a member of the family (``VARIANTS``), made where the static network
has a convolution (every one but the first):

    "dyconv"    nn.DynamicConv2d (= True): K kernels, softmax attention with temperature tau
    "condconv"  nn.CondConv2d with its own per-layer routing (no block sharing), E = K experts
    "odconv"    nn.ODConv2d: K kernels, four attentions; its own branch width max(C_in/16, 16)
                (the attention_* options are DyConv's and do not apply); temperature tau
    "dcd"       nn.DCDConv2d: dynamic channel fusion, latent sqrt(C_in) (K does not apply)

FDY ("fdy", frequency dynamic convolution) is for audio spectrograms and is refused here.
ODConv and DCD run on the host backends only (numpy, loops, numba).
"""
import numpy as np

from .._validation import check_float_dtype, check_positive_int, check_temperature
from ..backends import get_backend
from ..nn import BatchNorm2d, CondConv2d, Conv2d, DCDConv2d, DynamicConv2d, Linear, ODConv2d
from ..nn.dynamic import attention_hidden as attention_hidden_width
from ..nn.init import make_rng


VARIANTS = ("dyconv", "condconv", "odconv", "dcd")
LAYER_CLASSES = {"dyconv": DynamicConv2d, "condconv": CondConv2d, "odconv": ODConv2d,
                 "dcd": DCDConv2d}


def check_variant(dynamic):
    """``dynamic`` (False, True or a name of ``VARIANTS``) -> None (static) or a variant name."""
    if isinstance(dynamic, (bool, np.bool_)):
        return "dyconv" if dynamic else None
    if isinstance(dynamic, str):
        if dynamic == "fdy":
            raise ValueError("dynamic='fdy': frequency dynamic convolution (FDYConv2d) is for "
                             "audio spectrograms (time x frequency) and is not offered in the "
                             f"image networks; use one of {VARIANTS}, or nn.FDYConv2d directly")
        if dynamic in VARIANTS:
            return dynamic
        raise ValueError(f"dynamic must be False, True or one of {VARIANTS}; received "
                         f"{dynamic!r}")
    raise TypeError(f"dynamic must be True, False or one of {VARIANTS}; received {dynamic!r}")


class LayerBuilder:
    """Makes the layers of one network, static or dynamic (see the module docstring).

    dynamic: bool or a variant name (module docstring); num_kernels: K of every dynamic convolution (paper: 4); temperature: initial
    softmax temperature tau of every dynamic convolution (paper: 30, annealed to 1); backend:
    a name from ``backends.available_backends()``; dtype: float32 or float64; rng: None, a seed or a Generator.
    attention_reduction, attention_min_hidden, attention_hidden: the hidden width of every
    dynamic convolution's attention branch, max(C_in // reduction, min_hidden) or exactly
    ``attention_hidden`` when given (``nn.DynamicConv2d``'s reduction, min_hidden, hidden).
    """

    def __init__(self, dynamic, num_kernels, temperature, backend, dtype, rng,
                 attention_reduction=4, attention_min_hidden=4, attention_hidden=None):
        self.variant = check_variant(dynamic)     # None: static
        self.dynamic = self.variant is not None
        self.num_kernels = check_positive_int(num_kernels, "num_kernels")
        self.temperature = check_temperature(temperature)
        get_backend(backend)
        self.backend = backend
        self.dtype = check_float_dtype(dtype)
        self.rng = make_rng(rng)
        self.attention = dict(reduction=attention_reduction, min_hidden=attention_min_hidden,
                              hidden=attention_hidden)
        attention_hidden_width(8, **self.attention)  # checked once, here

    def conv(self, in_channels, out_channels, kernel_size, stride=1, groups=1, static=False):
        """A bias-free k x k convolution with "same" padding (k - 1) // 2 (BatchNorm follows).

        Dynamic (the builder's variant, ``nn.DynamicConv2d`` for True) when the builder is
        dynamic and ``static`` is False.
        """
        common = dict(kernel_size=kernel_size, stride=stride, groups=groups,
                      backend=self.backend, dtype=self.dtype, rng=self.rng)
        padding = (kernel_size - 1) // 2
        variant = None if static else self.variant
        if variant == "dyconv":
            return DynamicConv2d(in_channels, out_channels, num_kernels=self.num_kernels,
                                 temperature=self.temperature, padding=padding, bias=False,
                                 **self.attention, **common)
        if variant == "condconv":
            return CondConv2d(in_channels, out_channels, padding=padding, bias=False,
                              num_experts=self.num_kernels, **common)
        if variant == "odconv":     # no bias: ODConv has none
            return ODConv2d(in_channels, out_channels, padding=padding,
                            num_kernels=self.num_kernels, temperature=self.temperature, **common)
        if variant == "dcd":        # 'same' padding, (k - 1) // 2 for the odd k used here
            return DCDConv2d(in_channels, out_channels, bias=False, **common)
        return Conv2d(in_channels, out_channels, padding=padding, bias=False, **common)

    def batch_norm(self, channels, **options):
        """BatchNorm2d over ``channels`` (options: eps, momentum)."""
        return BatchNorm2d(channels, dtype=self.dtype, **options)

    def conv_bn(self, in_channels, out_channels, kernel_size, stride=1, groups=1, activation=None,
                static=False, **bn_options):
        """[conv, BatchNorm2d] followed by ``activation()`` if one is given -> list of layers."""
        layers = [self.conv(in_channels, out_channels, kernel_size, stride, groups, static),
                  self.batch_norm(out_channels, **bn_options)]
        if activation is not None:
            layers.append(activation())
        return layers

    def linear(self, in_features, out_features):
        """A static fully connected layer with bias (the classifier stays static in DY networks)."""
        return Linear(in_features, out_features, dtype=self.dtype, rng=self.rng)
