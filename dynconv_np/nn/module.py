"""The base class of every layer: parameters, gradients, and a train/eval switch.

A layer owns two dicts with the same keys: ``params`` (arrays it learns) and
``grads`` (their gradients). ``backward`` *accumulates* into ``grads`` (``+=``),
as micrograd does, so a parameter used twice gets the sum of both gradients;
``zero_grad`` resets them. ``buffers`` holds state that is saved but not learned (BatchNorm's
running statistics). Containers list their sub-layers in ``children()``;
``named_parameters()`` walks the whole tree.
"""
import numpy as np

from .._validation import is_device_array


class Module:
    """Stateful layer with explicit ``forward`` and ``backward``."""

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.buffers = {}
        self.training = True

    # -- the two passes -------------------------------------------------
    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    # -- parameters -----------------------------------------------------
    def add_param(self, name, value):
        """Register ``value`` as parameter ``name`` with a zero gradient of the same shape."""
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)

    def accumulate_grad(self, name, value):
        """grads[name] += value (fan-out is correct by construction).

        A gradient kept on a CUDA device (its parameter was moved there) is added to on the device.
        """
        if is_device_array(self.grads[name]):
            from ..backends import get_backend
            get_backend("cuda").add_into(self.grads[name], value)
        else:
            self.grads[name] += value

    def children(self):
        """Direct sub-layers, in order (containers override this)."""
        return []

    def modules(self):
        """This layer and every layer below it, depth first."""
        yield self
        for child in self.children():
            yield from child.modules()

    def named_parameters(self, prefix=""):
        """Yield (qualified_name, param, grad) for this layer and every layer below it."""
        for name, value in self.params.items():
            yield prefix + name, value, self.grads[name]
        for index, child in enumerate(self.children()):
            yield from child.named_parameters(f"{prefix}{index}.")

    def named_buffers(self, prefix=""):
        """Yield (qualified_name, buffer) for this layer and every layer below it."""
        for name, value in self.buffers.items():
            yield prefix + name, value
        for index, child in enumerate(self.children()):
            yield from child.named_buffers(f"{prefix}{index}.")

    def zero_grad(self):
        """Set every gradient below this layer to zero, in place."""
        for module in self.modules():
            for grad in module.grads.values():
                grad[...] = 0

    def train(self, mode=True):
        """Switch this layer and every layer below it to training (or eval) mode."""
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self):
        """Switch this layer and every layer below it to evaluation mode."""
        return self.train(False)

    def _require_cache(self, cache):
        if cache is None:
            raise ValueError(f"{type(self).__name__}.backward called before forward")
        return cache

    def _check_dy(self, dy, expected_shape):
        if not (isinstance(dy, np.ndarray) or is_device_array(dy)) \
                or tuple(dy.shape) != tuple(expected_shape):
            shape = getattr(dy, "shape", type(dy).__name__)
            raise ValueError(f"dy must have the shape of the last output {tuple(expected_shape)}; "
                             f"received {shape}")
