"""Dropout: inverted dropout in training mode, the identity in evaluation mode.

Formula and backward pass: ``dynconv_np.functional.dropout``. The backward pass reuses the mask
of the last training-mode forward.
"""
from .init import make_rng
from .module import Module
from .._validation import check_float_array
from ..functional.dropout import _dropout_backward, _dropout_forward, check_probability


class Dropout(Module):
    """Zero each element with probability p and scale the rest by 1 / (1 - p) while training.

    In evaluation mode (``eval()``) forward returns x itself and backward returns dy itself.
    ``rng``: None, an int seed or a numpy Generator; it draws the masks.
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = check_probability(p)
        self.rng = make_rng(rng)

    def forward(self, x):
        check_float_array(x, "x", host=True)
        if self.training:
            y, cache = _dropout_forward(x, self.p, self.rng)
        else:
            y, cache = x, None
        return self._remember(y, {"training": self.training, "dropout": cache})

    def backward(self, dy):
        dy, cache = self._recall(dy)
        return _dropout_backward(dy, cache["dropout"]) if cache["training"] else dy

    def __repr__(self):
        return f"Dropout(p={self.p})"
