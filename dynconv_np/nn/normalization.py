"""BatchNorm2d: per-channel batch normalisation with running statistics, as PyTorch's.

Training mode normalises with the batch's statistics and updates the running ones
(running <- (1 - momentum) running + momentum batch, unbiased variance); evaluation mode
normalises with the running statistics. The formulas and both backward passes are in
``dynconv_np.functional.batchnorm``.
"""
import numbers

import numpy as np

from ._layer import Layer, check_layer_input, layer_dtype
from .._validation import check_positive_int
from ..functional.batchnorm import (batchnorm2d_eval_backward, batchnorm2d_eval_forward,
                                    batchnorm2d_train_backward, batchnorm2d_train_forward,
                                    running_stats_update)


def _check_real(value, name, low, high, low_open):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; received {type(value).__name__}")
    below = value <= low if low_open else value < low
    if not np.isfinite(value) or below or value > high:
        interval = f"{'(' if low_open else '['}{low}, {high}]"
        raise ValueError(f"{name} must be in {interval}; received {value!r}")
    return float(value)


class BatchNorm2d(Layer):
    """y = gamma (x - mean) / sqrt(var + eps) + beta per channel of x (N, C, H, W).

    ``params``: "weight" (gamma, ones) and "bias" (beta, zeros), both (C,).
    ``buffers``: "running_mean" (zeros) and "running_var" (ones), both (C,), updated in place by
    every training-mode forward.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        self.num_features = check_positive_int(num_features, "num_features")
        self.eps = _check_real(eps, "eps", 0, np.inf, low_open=True)
        self.momentum = _check_real(momentum, "momentum", 0, 1, low_open=False)
        self.dtype = layer_dtype(dtype)
        self.add_param("weight", np.ones(self.num_features, dtype=self.dtype))
        self.add_param("bias", np.zeros(self.num_features, dtype=self.dtype))
        self.buffers["running_mean"] = np.zeros(self.num_features, dtype=self.dtype)
        self.buffers["running_var"] = np.ones(self.num_features, dtype=self.dtype)

    def forward(self, x):
        check_layer_input(self, x, 4, self.num_features)
        weight, bias = self.params["weight"], self.params["bias"]
        running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
        if self.training:
            y, cache = batchnorm2d_train_forward(x, weight, bias, self.eps)
            running_mean[...], running_var[...] = running_stats_update(
                running_mean, running_var, cache["mean"], cache["var"], cache["count"],
                self.momentum)
            return self._remember(y, (batchnorm2d_train_backward, cache))
        y, cache = batchnorm2d_eval_forward(x, weight, bias, running_mean, running_var, self.eps)
        return self._remember(y, (batchnorm2d_eval_backward, cache))

    def backward(self, dy):
        backward, cache = self._recall(dy)
        dx, dweight, dbias = backward(dy, cache)
        self.accumulate_grad("weight", dweight)
        self.accumulate_grad("bias", dbias)
        return dx

    def __repr__(self):
        return f"BatchNorm2d({self.num_features}, eps={self.eps}, momentum={self.momentum})"
