"""Flatten: (N, d1, d2, ...) -> (N, d1 d2 ...), as PyTorch's ``nn.Flatten()``; the formula is in
``dynconv_np.functional.shape``."""
from ._layer import Layer
from ..functional.shape import flatten_backward, flatten_forward


class Flatten(Layer):
    """Keep the batch axis, flatten the rest (row-major)."""

    def forward(self, x):
        return self._remember(*flatten_forward(x))

    def backward(self, dy):
        return flatten_backward(dy, self._recall(dy))

    def __repr__(self):
        return "Flatten()"
