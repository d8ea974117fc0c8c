"""Dropout: inverted dropout in training mode, the identity in evaluation mode.

Formula and backward pass: ``dynconv_np.functional.dropout``. The backward pass reuses the mask
of the last training-mode forward.
"""
from ._layer import Layer
from .init import make_rng
from .._validation import check_float_array
from ..functional.dropout import check_probability, dropout_backward, dropout_forward


class Dropout(Layer):
    """Zero each element with probability p and scale the rest by 1 / (1 - p) while training.

    In evaluation mode (``eval()``) forward returns x itself and backward returns dy itself.
    ``rng``: None, an int seed or a numpy Generator; it draws the masks.
    """

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = check_probability(p)
        self.rng = make_rng(rng)

    def forward(self, x):
        if self.training:
            y, cache = dropout_forward(x, self.p, self.rng)
        else:
            check_float_array(x, "x")
            y, cache = x, None
        return self._remember(y, {"training": self.training, "dropout": cache})

    def backward(self, dy):
        cache = self._recall(dy)
        return dropout_backward(dy, cache["dropout"]) if cache["training"] else dy

    def __repr__(self):
        return f"Dropout(p={self.p})"
