"""dynconv_np: Dynamic Convolution (Chen et al., CVPR 2020) in NumPy and Numba.

Explicit forward and backward passes for every stage, a NumPy reference backend that judges a
Numba CPU backend and a Numba CUDA backend, and a public gradient checker.
"""
from . import functional, nn
from .gradcheck import gradcheck
from .interop import compare
from .nn import DynamicConv2d, DynamicLinear

__version__ = "0.1.0"
