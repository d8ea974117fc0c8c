"""Pure math, one concept per module: every op is a ``*_forward(...) -> (out, cache)`` and
``*_backward(dout, cache) -> grads`` pair with its formula in the docstring."""
from .activations import relu_backward, relu_forward
from .aggregation import aggregate_kernels_backward, aggregate_kernels_forward
from .attention import attention_backward, attention_forward
from .conv import (conv2d_backward, conv2d_forward, per_sample_conv2d_backward,
                   per_sample_conv2d_forward)
from .dynamic_conv import dynamic_conv2d_backward, dynamic_conv2d_forward
from .dynamic_linear import dynamic_linear_backward, dynamic_linear_forward
from .linear import (linear_backward, linear_forward, per_sample_linear_backward,
                     per_sample_linear_forward)
from .pooling import global_avg_pool_backward, global_avg_pool_forward
from .softmax import softmax_backward, softmax_forward
