"""Pure math, one concept per module: every op is a ``*_forward(...) -> (out, cache)`` and
``*_backward(dout, cache) -> grads`` pair with its formula in the docstring."""
from .activations import (hardsigmoid_backward, hardsigmoid_forward, hardswish_backward,
                          hardswish_forward, relu6_backward, relu6_forward, relu_backward,
                          relu_forward, sigmoid_backward, sigmoid_forward)
from .aggregation import aggregate_kernels_backward, aggregate_kernels_forward
from .attention import attention_backward, attention_forward
from .batchnorm import (batchnorm2d_eval_backward, batchnorm2d_eval_forward,
                        batchnorm2d_train_backward, batchnorm2d_train_forward)
from .channel_scale import channel_scale_backward, channel_scale_forward
from .condconv import (condconv2d_backward, condconv2d_forward,
                       condconv2d_with_routing_backward, condconv2d_with_routing_forward,
                       condconv_routing_backward, condconv_routing_forward)
from .conv import (conv2d_backward, conv2d_forward, per_sample_conv2d_backward,
                   per_sample_conv2d_forward)
from .dcd import (dcd_conv2d_eval_backward, dcd_conv2d_eval_forward, dcd_conv2d_train_backward,
                  dcd_conv2d_train_forward)
from .dropout import dropout_backward, dropout_forward
from .dynamic_conv import dynamic_conv2d_backward, dynamic_conv2d_forward
from .dynamic_linear import dynamic_linear_backward, dynamic_linear_forward
from .fdy import (fdy_conv2d_eval_backward, fdy_conv2d_eval_forward, fdy_conv2d_train_backward,
                  fdy_conv2d_train_forward)
from .linear import (linear_backward, linear_forward, per_sample_linear_backward,
                     per_sample_linear_forward)
from .odconv import odconv2d_backward, odconv2d_forward
from .pool2d import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward
from .pooling import global_avg_pool_backward, global_avg_pool_forward
from .shape import flatten_backward, flatten_forward
from .softmax import softmax_backward, softmax_forward
