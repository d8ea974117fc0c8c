"""Flatten: (N, d1, d2, ...) -> (N, d1 d2 ...), as PyTorch's ``nn.Flatten()``; the formula is in
``dynconv_np.functional.shape``."""
from .module import Module
from ..functional.shape import _flatten_backward, _flatten_forward, check_flatten_input


class Flatten(Module):
    """Keep the batch axis, flatten the rest (row-major)."""

    def forward(self, x):
        check_flatten_input(x)
        return self._remember(*_flatten_forward(x))

    def backward(self, dy):
        return _flatten_backward(*self._recall(dy))

    def __repr__(self):
        return "Flatten()"
