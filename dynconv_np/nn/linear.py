"""Linear: the fully connected layer y = x W^T + b (the classifier; the SE block's FCs).

The math is ``dynconv_np.functional.linear.linear_forward/backward``.
"""
import numpy as np

from .init import make_rng, uniform_fan_in
from .module import Module, check_bias_flag, check_layer_input, layer_dtype
from .._validation import check_positive_int
from ..functional.linear import _linear_backward, _linear_forward, check_linear_args


class Linear(Module):
    """y = x W^T + b for x (N, in_features), as PyTorch's ``nn.Linear``.

    ``params``: "weight" (out_features, in_features) and, unless bias=False, "bias"
    (out_features,), both drawn from U(-1/sqrt(in_features), 1/sqrt(in_features)).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.dtype = layer_dtype(dtype)
        rng = make_rng(rng)
        fan_in = self.in_features
        self.add_param("weight", uniform_fan_in(rng, (self.out_features, self.in_features),
                                                fan_in, self.dtype))
        if check_bias_flag(bias):
            self.add_param("bias", uniform_fan_in(rng, (self.out_features,), fan_in, self.dtype))

    def forward(self, x):
        x = check_layer_input(self, x, 2, self.in_features, finite=False, host=True)  # checked below
        weight, bias = self.params["weight"], self.params.get("bias")
        check_linear_args(x, weight, bias)
        y, cache = _linear_forward(x, weight, bias)
        return self._remember(y, cache)

    def backward(self, dy):
        dx, dweight, dbias = _linear_backward(*self._recall(dy))
        self.accumulate_grad("weight", dweight)
        if dbias is not None:
            self.accumulate_grad("bias", dbias)
        return dx

    def __repr__(self):
        return (f"Linear({self.in_features}, {self.out_features}, "
                f"bias={'bias' in self.params})")
