"""BatchNorm2d: per-channel batch normalisation with running statistics, as PyTorch's.

Training mode normalises with the batch's statistics and updates the running ones
(running <- (1 - momentum) running + momentum batch, unbiased variance); evaluation mode
normalises with the running statistics. The formulas and both backward passes are in
``dynconv_np.functional.batchnorm``.
"""
import numpy as np

from .module import Module, check_layer_input, layer_dtype
from .._validation import check_positive_int, check_real
from ..functional.batchnorm import (_batchnorm2d_eval_backward, _batchnorm2d_eval_forward,
                                    _batchnorm2d_train_backward, _batchnorm2d_train_forward,
                                    check_batchnorm_args, check_train_batch,
                                    running_stats_update)


class BatchNorm2d(Module):
    """y = gamma (x - mean) / sqrt(var + eps) + beta per channel of x (N, C, H, W).

    ``params``: "weight" (gamma, ones) and "bias" (beta, zeros), both (C,).
    ``buffers``: "running_mean" (zeros) and "running_var" (ones), both (C,), updated in place by
    every training-mode forward.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__()
        self.num_features = check_positive_int(num_features, "num_features")
        self.eps = check_real(eps, "eps", low=0, low_open=True)
        self.momentum = check_real(momentum, "momentum", low=0, high=1)
        self.dtype = layer_dtype(dtype)
        self.add_param("weight", np.ones(self.num_features, dtype=self.dtype))
        self.add_param("bias", np.zeros(self.num_features, dtype=self.dtype))
        self.buffers["running_mean"] = np.zeros(self.num_features, dtype=self.dtype)
        self.buffers["running_var"] = np.ones(self.num_features, dtype=self.dtype)

    def forward(self, x):
        x = check_layer_input(self, x, 4, self.num_features, finite=False, host=True)  # checked below
        weight, bias = self.params["weight"], self.params["bias"]
        running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
        if self.training:
            check_batchnorm_args(x, weight, bias, self.eps)
            check_train_batch(x)
            y, cache = _batchnorm2d_train_forward(x, weight, bias, self.eps)
            running_mean[...], running_var[...] = running_stats_update(
                running_mean, running_var, cache["mean"], cache["var"], cache["count"],
                self.momentum)
            return self._remember(y, (_batchnorm2d_train_backward, cache))
        check_batchnorm_args(x, weight, bias, self.eps, running_mean=running_mean,
                             running_var=running_var)
        y, cache = _batchnorm2d_eval_forward(x, weight, bias, running_mean, running_var, self.eps)
        return self._remember(y, (_batchnorm2d_eval_backward, cache))

    def backward(self, dy):
        dy, (backward, cache) = self._recall(dy)
        dx, dweight, dbias = backward(dy, cache)
        self.accumulate_grad("weight", dweight)
        self.accumulate_grad("bias", dbias)
        return dx

    def __repr__(self):
        return f"BatchNorm2d({self.num_features}, eps={self.eps}, momentum={self.momentum})"
