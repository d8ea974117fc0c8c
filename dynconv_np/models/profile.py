"""Cost accounting: parameters and multiply-adds (MAdds) of a model, per layer and in total.

``profile(model, input_shape)`` walks the model's layers and propagates the input shape through
them; it reads only layer geometry (channels, kernel sizes, strides, parameter shapes) and never
touches data, so a 224 x 224 ResNet-18 is profiled in milliseconds.

Counting conventions (the MobileNet papers' and torchvision's: one multiply-add = one MAdd;
products with a weight are counted, and so are the additions of average pooling):

=======================  ==================================================================
conv                     convolution (static or dynamic):
                         C_out * H_out * W_out * (C_in / groups) * kh * kw
                         Linear and DynamicLinear: in_features * out_features
                         GlobalAvgPool2d: C * H * W;  AvgPool2d: C * H_out * W_out * kh * kw
                         SqueezeExcite: pool C * H * W + FC1 C * S + FC2 S * C (S squeezed)
attention_pool           DynamicConv2d's global average pool of its input: C_in * H * W
attention_fc             the attention FCs: FC1 in * hidden + FC2 hidden * K
aggregation              K per kernel entry and per bias entry (paper section 3.2):
                         K * (C_out * C_in/groups * kh * kw + C_out if bias)
                         (the family: CondConv2d, ODConv2d, DCDConv2d, FDYConv2d, each by
                         its module's ``extra_costs``; see "The family" below)
not counted              bias additions, BatchNorm, activations, softmax, max pooling,
                         residual additions, the SE gate product (element-wise work)
=======================  ==================================================================

"conv" is what the static network computes too; ``attention`` (= attention_pool +
attention_fc) and ``aggregation`` are the paper's extra cost of dynamic convolution. The pooling
is kept apart because it dominates the attention of a light network yet is additions only; a
reader comparing with a count that leaves it out can subtract it. Every count is per sample times
the batch size N of ``input_shape``. Parameters are every entry of every ``params`` array
(weights, biases, BatchNorm gamma and beta, attention FCs), not ``buffers`` (BatchNorm running
statistics), as in torchvision's parameter counts.

The family (``nn/condconv.py``, ``nn/odconv.py``, ``nn/dcd.py``, ``nn/fdy.py``): each layer's
row is its module's ``extra_costs`` for one sample, times N, in the same four fields.
"attention_*" is the branch that computes the attention, "aggregation" is everything that
applies it (the dynamic work beyond one static convolution):

=================  ====================================================================
CondConv2d         pool and routing FC C_in E (own routing only); aggregation E per kernel
                   and bias entry. ``CondConvBlock``: walked like Sequential, its shared
                   ``routing`` counted once, as a row of its own, at the block input
ODConv2d           pool; FC d C_in + heads d S; aggregation P (K + 1 [spatial head]) *plus
                   the input/output scaling* C_in H W + C_out H' W' [filter head] (alpha_c x,
                   alpha_f u: folded into aggregation, as DCD's lambda scaling is)
DCDConv2d          pool; FCs C_in S + S^2 + S L^2 + S C_out; aggregation the dynamic part on
                   features, (C_in L + L^2 + L C_out + C_out) H' W'
FDYConv2d          temporal pool; conv1d branch; aggregation the K - 1 extra convolutions and
                   the K-way output mixing K C_out H' W' (FDY mixes outputs, not kernels)
=================  ====================================================================
"""
from dataclasses import dataclass

from ..backends.geometry import conv_output_size
from ..nn import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, DynamicConv2d, DynamicLinear, Flatten,
                  GlobalAvgPool2d, HardSigmoid, HardSwish, Linear, MaxPool2d, ReLU, ReLU6,
                  Residual, Sequential, Sigmoid, SqueezeExcite)
from ..nn import condconv as _condconv, dcd as _dcd, fdy as _fdy, odconv as _odconv

MADD_FIELDS = ("conv", "attention_pool", "attention_fc", "aggregation")


class _Totals:
    """attention = attention_pool + attention_fc; madds = conv + attention + aggregation."""

    @property
    def attention(self):
        return self.attention_pool + self.attention_fc

    @property
    def madds(self):
        return self.conv + self.attention + self.aggregation


@dataclass(frozen=True)
class LayerCost(_Totals):
    """Cost of one leaf layer for the profiled batch.

    name: position in the model as in ``named_parameters`` ("3.0.1" = child 1 of child 0 of
    child 3); layer: the layer's class name; output_shape (N, ...); params; MAdds by category
    (module docstring): conv, attention_pool, attention_fc, aggregation.
    """
    name: str
    layer: str
    output_shape: tuple
    params: int
    conv: int
    attention_pool: int
    attention_fc: int
    aggregation: int


def _layer_sum(field):
    return property(lambda self: sum(getattr(layer, field) for layer in self.layers),
                    doc=f"total {field} over all layers")


@dataclass(frozen=True, repr=False)
class Profile(_Totals):
    """Per-layer costs (``layers``, in model order) and their totals, for ``input_shape``.

    ``print(result)`` (``str``) gives one row per leaf layer and a total row (the attention and
    aggregation columns only when the model has dynamic layers); ``repr`` is one summary line.
    """
    input_shape: tuple
    output_shape: tuple
    layers: tuple

    params = _layer_sum("params")
    conv = _layer_sum("conv")
    attention_pool = _layer_sum("attention_pool")
    attention_fc = _layer_sum("attention_fc")
    aggregation = _layer_sum("aggregation")

    def summary(self):
        """One line: shapes, params, MAdds, and the dynamic share when there is one."""
        extra = self.attention + self.aggregation
        share = (f" ({extra:,} of them attention + aggregation: "
                 f"+{100 * extra / max(self.conv, 1):.1f}% over the {self.conv:,} of a static "
                 f"twin)" if extra else "")
        return (f"{_shape(self.input_shape)} -> {_shape(self.output_shape)}: "
                f"{len(self.layers)} layers, {self.params:,} params, {self.madds:,} MAdds"
                f"{share}")

    def __repr__(self):
        return f"<Profile {self.summary()}; print() it for the per-layer table>"

    def __str__(self):
        dynamic = any(layer.attention or layer.aggregation for layer in self.layers)
        fields = ("params", "conv") + (MADD_FIELDS[1:] if dynamic else ())
        headers = ("layer", "type", "output") + tuple(_HEADERS[f] for f in fields)
        rows = [(layer.name, layer.layer, _shape(layer.output_shape),
                 *(f"{getattr(layer, f):,}" for f in fields)) for layer in self.layers]
        rows.append(("total", "", "", *(f"{getattr(self, f):,}" for f in fields)))
        cells = [headers] + rows
        widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
        lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.insert(len(lines) - 1, lines[1])
        return "\n".join([self.summary()] + lines)


_HEADERS = {"params": "params", "conv": "conv MAdds", "attention_pool": "att. pool",
            "attention_fc": "att. FC", "aggregation": "aggregation"}


def _shape(shape):
    """(N, C, H, W) -> "NxCxHxW"."""
    return "x".join(str(s) for s in shape)


def profile(model, input_shape):
    """Params and multiply-adds of ``model`` for an input of ``input_shape`` -> ``Profile``.

    input_shape: (C, H, W) (one sample) or (N, C, H, W); (N, features) for a model that starts
    with a fully connected layer. Raises ValueError if a layer cannot take
    the shape that reaches it (naming the layer), TypeError for a layer type it cannot count.
    """
    shape = _check_input_shape(input_shape)
    costs = []
    output_shape = _walk(model, shape, "", costs)
    return Profile(shape, output_shape, tuple(costs))


def _check_input_shape(input_shape):
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else ()
    if len(shape) not in (2, 3, 4) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f"input_shape must be (C, H, W), (N, C, H, W) or (N, features) of "
                         f"positive ints; received {input_shape!r}")
    return (1,) + shape if len(shape) == 3 else shape


def _walk(layer, shape, prefix, costs):
    """Append the cost of every leaf below ``layer`` to ``costs``; return its output shape."""
    if isinstance(layer, Sequential):
        for child_name, child in layer.named_children():
            shape = _walk(child, shape, f"{prefix}{child_name}.", costs)
        return shape
    name = prefix.rstrip(".") or "(model)"
    if isinstance(layer, _condconv.CondConvBlock):
        # the shared routing runs once on the block input; its (N, E) output is not the
        # feature map the layers see, so the shape walks on from the block input
        _walk(layer.routing, shape, f"{prefix}routing.", costs)
        for index, child in enumerate(layer.layers):
            shape = _walk(child, shape, f"{prefix}{index}.", costs)
        return shape
    if isinstance(layer, Residual):
        children = dict(layer.named_children())
        out = _walk(children["body"], shape, f"{prefix}body.", costs)
        skip = (_walk(children["shortcut"], shape, f"{prefix}shortcut.", costs)
                if "shortcut" in children else shape)
        if out != skip:
            raise ValueError(f"residual block {name}: body output {out} and shortcut output "
                             f"{skip} differ; they cannot be added")
        return out
    rule = next((RULES[cls] for cls in type(layer).__mro__ if cls in RULES), None)
    if rule is None:
        raise TypeError(f"profile cannot count layer {name} of type {type(layer).__name__}; "
                        f"it counts {sorted(cls.__name__ for cls in RULES)}, Sequential and "
                        "Residual")
    out, per_sample = rule(layer, shape, name)
    madds = {field: shape[0] * per_sample.get(field, 0) for field in MADD_FIELDS}
    params = sum(int(p.size) for _, p, _ in layer.named_parameters())
    costs.append(LayerCost(name, type(layer).__name__, out, params, **madds))
    return out


def _expect(shape, ndim, channels, name, layer):
    """The shape reaching ``layer`` must be ndim-D with ``channels`` (None: any) on axis 1."""
    if len(shape) != ndim or channels not in (None, shape[1]):
        kind = "(N, C, H, W)" if ndim == 4 else "(N, features)"
        wanted = "" if channels is None else f" with {channels} on axis 1"
        raise ValueError(f"layer {name} ({type(layer).__name__}) expects input {kind}{wanted}; "
                         f"the shape reaching it is {shape}")


def _conv(layer, shape, name):
    """Convolution: C_out H_out W_out (C_in / groups) kh kw per sample."""
    _expect(shape, 4, layer.in_channels, name, layer)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (layer.kernel_size, layer.stride, layer.padding,
                                              layer.dilation)
    out = (shape[0], layer.out_channels, conv_output_size(shape[2], kh, sh, ph, dh),
           conv_output_size(shape[3], kw, sw, pw, dw))
    per_position = (layer.in_channels // layer.groups) * kh * kw
    return out, {"conv": layer.out_channels * out[2] * out[3] * per_position}


def _attention_fc(layer, in_features):
    """The two attention FCs on a vector: in * hidden + hidden * K."""
    return in_features * layer.hidden + layer.hidden * layer.num_kernels


def _aggregation(layer):
    """K multiply-adds per entry of one kernel and of one bias: K * (W_k.size + b_k.size)."""
    per_kernel = sum(int(layer.params[key][0].size) for key in ("weight", "bias")
                     if key in layer.params)
    return layer.num_kernels * per_kernel


def _dynamic_conv(layer, shape, name):
    """Dynamic convolution: the convolution, the attention (pool, FC1, FC2), the aggregation."""
    out, counts = _conv(layer, shape, name)
    _, c_in, height, width = shape
    return out, dict(counts, attention_pool=c_in * height * width,
                     attention_fc=_attention_fc(layer, c_in), aggregation=_aggregation(layer))


def _linear(layer, shape, name):
    """Linear: in * out per sample."""
    _expect(shape, 2, layer.in_features, name, layer)
    return (shape[0], layer.out_features), {"conv": layer.in_features * layer.out_features}


def _dynamic_linear(layer, shape, name):
    """Dynamic perceptron: in * out, the attention FCs (no pooling), the aggregation."""
    out, counts = _linear(layer, shape, name)
    return out, dict(counts, attention_fc=_attention_fc(layer, layer.in_features),
                     aggregation=_aggregation(layer))


def _global_avg_pool(layer, shape, name):
    """(N, C, H, W) -> (N, C): C H W additions per sample."""
    _expect(shape, 4, None, name, layer)
    _, c, height, width = shape
    return (shape[0], c), {"conv": c * height * width}


def _pool_out(layer, shape, name):
    _expect(shape, 4, None, name, layer)
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    return shape[:2] + (conv_output_size(shape[2], kh, sh, ph, 1),
                        conv_output_size(shape[3], kw, sw, pw, 1))


def _avg_pool(layer, shape, name):
    """AvgPool2d: kh kw additions per output value."""
    out = _pool_out(layer, shape, name)
    kh, kw = layer.kernel_size
    return out, {"conv": out[1] * out[2] * out[3] * kh * kw}


def _max_pool(layer, shape, name):
    """MaxPool2d: comparisons only, no MAdds."""
    return _pool_out(layer, shape, name), {}


def _squeeze_excite(layer, shape, name):
    """SE block: global pool C H W, FC1 C S, FC2 S C (S = squeeze_channels)."""
    _expect(shape, 4, layer.channels, name, layer)
    _, c, height, width = shape
    return shape, {"conv": c * height * width + 2 * c * layer.squeeze_channels}


def _batch_norm(layer, shape, name):
    """BatchNorm: element-wise, not counted; checks the channel count."""
    _expect(shape, 4, layer.num_features, name, layer)
    return shape, {}


def _elementwise(layer, shape, name):
    """Activations and Dropout: same shape, not counted."""
    return shape, {}


def _flatten(layer, shape, name):
    size = 1
    for s in shape[1:]:
        size *= s
    return (shape[0], size), {}


def _family_rule(costs, fold=()):
    """A rule from a family module's ``extra_costs`` (batch totals): evaluated for one sample;
    the fields in ``fold`` are added into "aggregation" (ODConv's "scaling")."""
    def rule(layer, shape, name):
        _expect(shape, 4, layer.in_channels, name, layer)
        per_sample = costs(layer, (1,) + tuple(shape[1:]))
        counts = {field: int(per_sample[field]) for field in MADD_FIELDS}
        counts["aggregation"] += sum(int(per_sample[field]) for field in fold)
        return (shape[0],) + tuple(per_sample["output_shape"][1:]), counts
    rule.__doc__ = f"The family layer's extra_costs ({costs.__module__}) for one sample."
    return rule


RULES = {
    Conv2d: _conv, DynamicConv2d: _dynamic_conv, Linear: _linear, DynamicLinear: _dynamic_linear,
    GlobalAvgPool2d: _global_avg_pool, AvgPool2d: _avg_pool, MaxPool2d: _max_pool,
    SqueezeExcite: _squeeze_excite, BatchNorm2d: _batch_norm, Flatten: _flatten,
    ReLU: _elementwise, ReLU6: _elementwise, Sigmoid: _elementwise, HardSigmoid: _elementwise,
    HardSwish: _elementwise, Dropout: _elementwise,
    _condconv.CondConv2d: _family_rule(_condconv.extra_costs),
    _condconv.CondConvRouting: _family_rule(_condconv.extra_costs),
    _odconv.ODConv2d: _family_rule(_odconv.extra_costs, fold=("scaling",)),
    _dcd.DCDConv2d: _family_rule(_dcd.extra_costs),
    _fdy.FDYConv2d: _family_rule(_fdy.extra_costs),
}
