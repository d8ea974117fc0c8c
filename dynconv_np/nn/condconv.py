"""CondConv layers (Yang et al., NeurIPS 2019): a routing module, the convolution, and a block
whose convolutions share one routing.

    r    = sigmoid(GAP(x_route) R^T + b_r)                    CondConvRouting, r (N, E)
    y[n] = conv2d(x[n], sum_e r[n, e] W_e) + sum_e r[n, e] b_e   CondConv2d

The math is ``dynconv_np.functional.condconv``. Two ways to route, as in the official code
(tensorflow/tpu efficientnet/condconv):

* ``CondConv2d(...)`` owns its routing (child "routing", computed from the layer's own input):
  ``forward(x) -> y``, ``backward(dy) -> dx``, dx including the routing's path.
* ``CondConv2d(..., routing=shared)`` with ``shared`` a ``CondConvRouting``: the layer takes the
  routing weights as an input, ``forward(x, routing_weights) -> y`` and
  ``backward(dy) -> (dx, drouting_weights)``. ``CondConvBlock(shared, *layers)`` runs such
  layers the way EfficientNet-CondConv's MBConv block does: one r = shared(x) from the block's
  input, passed to every CondConv2d of the block that shares ``shared``; backward sums their
  routing gradients, dr = sum_l dr_l, and backpropagates dr through the routing once, adding
  its dx to the block input's gradient. The shared routing's parameters are the block's
  ("routing.weight", "routing.bias"); the layers list only their experts.

Initialisation: each expert as PyTorch's ``nn.Conv2d`` (U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
drawn per expert, as the official ``get_condconv_initializer`` initialises each expert on its
own) and the routing FC as PyTorch's ``nn.Linear`` (the official uses Keras' defaults:
Glorot-uniform weights, zero bias).
"""
import numpy as np

from ._attention_state import AttentionState
from .containers import _check_module
from .conv import ConvArgs, check_cost_shape
from .init import make_rng, uniform_fan_in
from .module import Module, check_bias_flag, check_layer_input, layer_dtype
from .._validation import (check_finite_via, check_float_array, check_positive_int, contiguous,
                           screened_backward)
from ..backends import DEFAULT_BACKEND, check_placement, get_backend
from ..functional.condconv import (_condconv2d_backward, _condconv2d_forward,
                                   _condconv_routing_backward, _condconv_routing_forward,
                                   check_condconv_args)
from ..functional.linear import check_linear_args
from ..functional.pooling import _add_global_avg_pool_grad, _global_avg_pool_forward


class CondConvRouting(AttentionState, Module):
    """r (N, E) = sigmoid(GAP(x) R^T + b_r) for x (N, in_channels, H, W) (paper eq. 3).

    ``params``: "weight" R (E, in_channels), "bias" b_r (E,) unless bias=False.
    ``routing_weights`` (= ``attention``): r of the last forward (a copy). backend: runs the
    pooling.
    ``backward(dr) -> dx`` (N, in_channels, H, W), dx[n, c] = (dz R)[n, c] / (H W).
    """

    def __init__(self, in_channels, num_experts, bias=True, backend=DEFAULT_BACKEND,
                 dtype=np.float32, rng=None):
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.num_experts = check_positive_int(num_experts, "num_experts")
        self.dtype = layer_dtype(dtype)
        self._backend = get_backend(backend)
        self.backend = backend
        rng = make_rng(rng)
        self.add_param("weight", uniform_fan_in(rng, (self.num_experts, self.in_channels),
                                                self.in_channels, self.dtype))
        if check_bias_flag(bias):
            self.add_param("bias", uniform_fan_in(rng, (self.num_experts,), self.in_channels,
                                                  self.dtype))

    @property
    def routing_weights(self):
        """r (N, E) of the last forward, a copy."""
        return self.attention

    def forward(self, x):
        x = check_layer_input(self, x, 4, self.in_channels, finite=False)  # screened below
        check_placement(self._backend, x=x)
        pooled, pool_cache = _global_avg_pool_forward(x, self._backend)
        check_finite_via(x, "x", pooled, "mean")
        weight, bias = self.params["weight"], self.params.get("bias")
        check_linear_args(pooled, weight, bias, "pooled", "weight", "bias")
        r, cache = _condconv_routing_forward(pooled, weight, bias)
        self._attention = r
        return self._remember(r, (pool_cache, cache, x.shape, x.dtype))

    def backward(self, dr):
        dr, (pool_cache, cache, x_shape, dtype) = self._recall(dr)
        dpooled, grads = _condconv_routing_backward(dr, cache)
        self.accumulate_grad("weight", grads["routing_weight"])
        if "routing_bias" in grads:
            self.accumulate_grad("bias", grads["routing_bias"])
        return _add_global_avg_pool_grad(np.zeros(x_shape, dtype=dtype), dpooled, pool_cache)

    def __repr__(self):
        return (f"CondConvRouting({self.in_channels}, num_experts={self.num_experts}, "
                f"bias={'bias' in self.params})")


class CondConv2d(ConvArgs, AttentionState, Module):
    """CondConv: y[n] = conv2d(x[n], sum_e r[n, e] W_e) + sum_e r[n, e] b_e.

    Parameters (PyTorch ``nn.Conv2d`` names): in_channels, out_channels, kernel_size, stride,
    padding, dilation, groups, bias; num_experts E (the official EfficientNet-CondConv uses 4
    or 8); routing: None (own routing from this layer's input, child "routing") or a shared
    ``CondConvRouting`` of E experts (module docstring); routing_bias (the own routing FC's
    bias); backend "numba" (default), "loops", "numpy" or "cuda"; dtype; rng.

    ``params``: "weight" (E, C_out, C_in/groups, kh, kw), "bias" (E, C_out) unless bias=False.
    ``routing_weights`` (= ``attention``): r (N, E) of the last forward.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, num_experts=8, routing=None, routing_bias=True,
                 backend=DEFAULT_BACKEND, dtype=np.float32, rng=None):
        super().__init__()
        self._init_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation,
                             groups)
        self.num_experts = check_positive_int(num_experts, "num_experts")
        self.dtype = layer_dtype(dtype)
        self._backend = get_backend(backend)
        self.backend = backend
        rng = make_rng(rng)
        e = self.num_experts
        self.add_param("weight", uniform_fan_in(rng, self.kernel_shape(e), self.fan_in,
                                                self.dtype))
        if check_bias_flag(bias):
            self.add_param("bias", uniform_fan_in(rng, (e, self.out_channels), self.fan_in,
                                                  self.dtype))
        if routing is None:
            self.routing = CondConvRouting(self.in_channels, e, bias=routing_bias,
                                           backend=backend, dtype=self.dtype, rng=rng)
            self.shares_routing = False
        else:
            if not isinstance(routing, CondConvRouting):
                raise TypeError(f"routing must be None (own routing) or a CondConvRouting to "
                                f"share; received {type(routing).__name__}")
            if routing.num_experts != e or routing.dtype != self.dtype:
                raise ValueError(f"the shared routing has {routing.num_experts} experts "
                                 f"({routing.dtype}); this layer needs num_experts={e} "
                                 f"({self.dtype})")
            self.routing = routing
            self.shares_routing = True

    @property
    def routing_weights(self):
        """r (N, E) of the last forward, a copy."""
        return self.attention

    def named_children(self):
        # a shared routing belongs to the block that runs it (CondConvBlock), not to the layer
        return [] if self.shares_routing else [("routing", self.routing)]

    def forward(self, x, routing_weights=None):
        x = check_layer_input(self, x, 4, self.in_channels, finite=False)  # checked below
        weight, bias = self.params["weight"], self.params.get("bias")
        if self.shares_routing:
            if routing_weights is None:
                raise ValueError("this CondConv2d shares its routing: pass the routing weights, "
                                 "forward(x, routing_weights) (N, E), e.g. by running it "
                                 "inside a CondConvBlock with the shared CondConvRouting")
            check_condconv_args(x, routing_weights, weight, bias, self.geometry)
            r = contiguous(routing_weights)
        else:
            if routing_weights is not None:
                raise ValueError("this CondConv2d computes its own routing from x; build it "
                                 "with routing=CondConvRouting(...) to pass routing weights")
            check_condconv_args(x, None, weight, bias, self.geometry, finite=False)
            r = self.routing(x)  # screens x through its pooled means
        check_placement(self._backend, x=x)
        y, cache = _condconv2d_forward(x, r, weight, bias, self.geometry, self._backend)
        self._attention = cache["routing"]
        return self._remember(y, cache)

    def backward(self, dy):
        """dx (own routing: both paths summed), or (dx, drouting_weights) for a layer whose
        routing is shared (the block sums the routing gradients)."""
        dx, drouting, dweight, dbias = self._screened_backward(  # dy screened through db_n
            lambda dy, cache: screened_backward(_condconv2d_backward, dy, cache), dy)
        self.accumulate_grad("weight", dweight)
        if dbias is not None:
            self.accumulate_grad("bias", dbias)
        if self.shares_routing:
            return dx, drouting
        return np.add(dx, self.routing.backward(drouting))

    def __repr__(self):
        return self._conv_repr(bias="bias" in self.params, num_experts=self.num_experts,
                               shared_routing=self.shares_routing, backend=self.backend)


class CondConvBlock(Module):
    """A chain of layers whose CondConv2d layers share one routing computed from the block's
    input (EfficientNet-CondConv's MBConv block):

        r = routing(x);   h_0 = x;   h_l = layer_l(h_{l-1}, r) if layer_l shares ``routing``
                                           else layer_l(h_{l-1});   y = h_L
        backward:  dr = sum_l dr_l  over the sharing layers,   dx = dh_0 + routing'(dr)

    Children: "routing", then the layers by index ("0", "1", ...). Every CondConv2d built
    with ``routing`` must be a direct layer of the block (one nested deeper, e.g. inside a
    Sequential, would not receive r: ValueError). Wrap the block in ``Residual`` for the skip.
    """

    def __init__(self, routing, *layers):
        super().__init__()
        if not isinstance(routing, CondConvRouting):
            raise TypeError(f"routing must be a CondConvRouting; received "
                            f"{type(routing).__name__}")
        self.routing = routing
        self.layers = [_check_module(layer, f"CondConvBlock layer {index}")
                       for index, layer in enumerate(layers)]
        self._shares = []
        for index, layer in enumerate(self.layers):
            shares = isinstance(layer, CondConv2d) and layer.shares_routing
            if shares and layer.routing is not routing:
                raise ValueError(f"layer {index} ({layer!r}) shares another CondConvRouting "
                                 "than this block's")
            for name, inner in layer.named_modules():
                if inner is not layer and isinstance(inner, CondConv2d) and inner.shares_routing:
                    raise ValueError(f"layer {index} contains a CondConv2d with shared routing "
                                     f"({name}); make it a direct layer of the block so it "
                                     "receives the routing weights")
            self._shares.append(shares)
        self.in_channels = routing.in_channels

    def named_children(self):
        return [("routing", self.routing)] + [(str(i), layer) for i, layer in
                                              enumerate(self.layers)]

    @property
    def routing_weights(self):
        """r (N, E) of the last forward (the routing's), a copy."""
        return self.routing.routing_weights

    def forward(self, x):
        check_float_array(x, "x", finite=False)  # the routing screens x
        r = self.routing(x)
        h = x
        for layer, shares in zip(self.layers, self._shares):
            h = layer.forward(h, r) if shares else layer(h)
        return self._remember(h, {})

    def backward(self, dy):
        dh, _ = self._recall(dy)
        dr = None
        for layer, shares in zip(reversed(self.layers), reversed(self._shares)):
            if shares:
                dh, dr_layer = layer.backward(dh)
                dr = dr_layer if dr is None else dr + dr_layer
            else:
                dh = layer.backward(dh)
        if dr is None:  # no layer used r: the routing still ran, with a zero gradient
            dr = np.zeros((dy.shape[0], self.routing.num_experts), dtype=dy.dtype)
        return np.add(dh, self.routing.backward(dr))

    def __repr__(self):
        inner = "".join(f"\n  ({i}): " + repr(layer).replace("\n", "\n  ")
                        for i, layer in enumerate(self.layers))
        return f"CondConvBlock(routing={self.routing!r},{inner}\n)"


# -- cost accounting (dynconv_np.models.profile's conventions) ------------------------------
def extra_costs(layer, input_shape):
    """Params and multiply-adds of a CondConv layer for ``input_shape`` (N, C, H, W) (or
    (C, H, W), N = 1), split as
    ``models.profile`` splits DynamicConv2d's (every MAdd count for the whole batch):

    CondConv2d (E experts, C_in, C_out, groups g, kernel kh x kw, output H' x W'):
        conv            N C_out H' W' (C_in/g) kh kw              (as the static convolution)
        attention_pool  N C_in H W           own routing only (a shared one: at the routing)
        attention_fc    N C_in E             own routing only (the routing FC, one layer)
        aggregation     N E (C_out (C_in/g) kh kw + C_out if bias)
        params          E (C_out (C_in/g) kh kw [+ C_out]) [+ E C_in + E (routing bias)]
        extra_params    params - (C_out (C_in/g) kh kw [+ C_out])    (vs the static layer)
    CondConvRouting (C_in, E): attention_pool N C_in H W, attention_fc N C_in E, params
        E C_in [+ E] (all extra). A CondConvBlock is its children's sum: the routing once at
        the block input, each sharing convolution without routing costs.
    Returns a dict: output_shape, params, extra_params, conv, attention_pool, attention_fc,
    aggregation.
    """
    if not isinstance(layer, (CondConv2d, CondConvRouting)):
        raise TypeError(f"extra_costs counts CondConv2d and CondConvRouting; received "
                        f"{type(layer).__name__}")
    n, c, height, width = check_cost_shape(layer, input_shape)
    routing_params = lambda r: sum(int(p.size) for p in r.params.values())  # noqa: E731
    if isinstance(layer, CondConvRouting):
        params = routing_params(layer)
        return dict(output_shape=(n, layer.num_experts), params=params, extra_params=params,
                    conv=0, attention_pool=n * c * height * width,
                    attention_fc=n * c * layer.num_experts, aggregation=0)
    out = (n, layer.out_channels) + layer.output_size(height, width)
    static = layer.out_channels * layer.fan_in + (layer.out_channels if "bias" in layer.params
                                                  else 0)
    params = layer.num_experts * static
    own = not layer.shares_routing
    if own:
        params += routing_params(layer.routing)
    return dict(output_shape=out, params=params, extra_params=params - static,
                conv=n * layer.conv_madds(height, width),
                attention_pool=n * c * height * width if own else 0,
                attention_fc=n * c * layer.num_experts if own else 0,
                aggregation=n * layer.num_experts * static)

