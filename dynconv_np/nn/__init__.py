"""Stateful layers with ``params`` / ``grads`` dicts, built only from ``dynconv_np.functional``."""
from .dynamic import DynamicConv2d, DynamicLinear
from .module import Module
