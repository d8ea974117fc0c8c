"""Layer layouts of other dynamic-convolution implementations, and layer import/export.

A preset says how another implementation names and shapes one dynamic convolution's state,
how wide its attention branch is, and where its temperature lives. Written from their
published state-dict layouts:

    preset       our name      their key                        their shape
    kaijieshi7   weight        weight                           (K, out, in/g, k, k)
    (Dynamic_    bias          bias                             (K, out)
     conv2d)     fc1_weight    attention.fc1.weight             (hidden, in, 1, 1), no bias
                 fc2_weight    attention.fc2.weight             (K, hidden, 1, 1)
                 fc2_bias      attention.fc2.bias               (K,)
                 hidden = int(in * ratio) + 1 (ratio 0.25), or K when in == 3; temperature
                 an attribute (34 by default, lowered by 3 per epoch), not in the state dict
    tardelean    weight        kernels_weights                  (K, out, in/g, kh, kw)
    (Dynamic     bias          kernels_bias                     (K, out)
     Convolution)fc1_weight    attention.to_scores.0.weight     (hidden, in)
                 fc1_bias      attention.to_scores.0.bias       (hidden,)
                 fc2_weight    attention.to_scores.2.weight     (K, hidden)
                 fc2_bias      attention.to_scores.2.bias       (K,)
                 hidden = max(1, in // reduce); temperature passed to forward (default 1)
    dynconv_np   our own names (``DynamicConv2d.state_dict()``), temperature included

kaijieshi7 maps to ``DynamicConv2d(..., hidden=that, attention_bias=False)``. Stride, padding
and dilation are not in any state dict: pass them when building a layer from a state.
"""
from dataclasses import dataclass, field

import numpy as np

from .state import check_entry, load_state
from .._validation import check_temperature
from ..backends import DEFAULT_BACKEND
from ..nn import DynamicConv2d


@dataclass(frozen=True)
class Preset:
    """One implementation's layout of a dynamic convolution (see the module docstring).

    keys: our parameter name -> their key (relative to the layer); four_d: our names whose
    tensors are 1x1 convolutions there ((out, in) here, (out, in, 1, 1) there); hooks: stage ->
    (submodule path, "in" or "out") where the comparison harness reads that intermediate;
    temperature: "attribute" or "argument" (of forward); default_temperature.
    """
    name: str
    keys: dict
    attention_bias: bool
    hooks: dict = field(default_factory=dict)
    four_d: tuple = ()
    temperature: str = "attribute"
    default_temperature: float = 1.0
    rule: str = ""

    def torch_key(self, name, prefix=""):
        return prefix + self.keys[name]

    def torch_shape(self, name, shape):
        return tuple(shape) + ((1, 1) if name in self.four_d else ())

    def hidden(self, in_channels, num_kernels=4, ratio=0.25, reduce=4, reduction=4,
               min_hidden=4):
        """The attention's hidden width this implementation builds for ``in_channels``."""
        if self.name == "kaijieshi7":
            return num_kernels if in_channels == 3 else int(in_channels * ratio) + 1
        if self.name == "tardelean":
            return max(1, in_channels // reduce)
        return max(int(in_channels // reduction), min_hidden)


PRESETS = {
    "kaijieshi7": Preset(
        "kaijieshi7",
        {"weight": "weight", "bias": "bias", "fc1_weight": "attention.fc1.weight",
         "fc2_weight": "attention.fc2.weight", "fc2_bias": "attention.fc2.bias"},
        attention_bias=False,
        hooks={"pooled": ("attention.fc1", "in"), "logits": ("attention.fc2", "out"),
               "pi": ("attention", "out")},
        four_d=("fc1_weight", "fc2_weight"), temperature="attribute", default_temperature=34.0,
        rule="hidden = int(in * ratio) + 1 (ratio 0.25), K when in == 3"),
    "tardelean": Preset(
        "tardelean",
        {"weight": "kernels_weights", "bias": "kernels_bias",
         "fc1_weight": "attention.to_scores.0.weight", "fc1_bias": "attention.to_scores.0.bias",
         "fc2_weight": "attention.to_scores.2.weight", "fc2_bias": "attention.to_scores.2.bias"},
        attention_bias=True,
        hooks={"pooled": ("attention.to_scores.0", "in"),
               "logits": ("attention.to_scores.2", "out"), "pi": ("attention", "out")},
        temperature="argument", default_temperature=1.0,
        rule="hidden = max(1, in // reduce)"),
    "dynconv_np": Preset(
        "dynconv_np",
        {name: name for name in ("weight", "bias", "fc1_weight", "fc1_bias", "fc2_weight",
                                 "fc2_bias")},
        attention_bias=True, temperature="argument", default_temperature=30.0,
        rule="hidden = max(in // reduction, min_hidden)"),
}
LAYER_PRESETS = tuple(PRESETS)


def get_preset(preset, name_map=None):
    """A ``Preset`` by name (or itself); ``name_map`` {our name: their key} overrides keys
    (a preset of None needs a full name_map: a custom layout)."""
    if isinstance(preset, Preset):
        spec = preset
    elif preset is None:
        if not name_map or "weight" not in name_map:
            raise ValueError("preset=None needs name_map {our name: their key} with at least "
                             "'weight', 'fc1_weight', 'fc2_weight', 'fc2_bias'")
        spec = Preset("custom", {}, attention_bias="fc1_bias" in name_map,
                      temperature="argument")
    elif preset in PRESETS:
        spec = PRESETS[preset]
    else:
        raise ValueError(f"preset must be one of {sorted(PRESETS)} (or None with a name_map); "
                         f"received {preset!r}")
    if name_map:
        unknown = sorted(set(name_map) - set(PRESETS["dynconv_np"].keys))
        if unknown:
            raise ValueError(f"name_map keys must be our parameter names "
                             f"{sorted(PRESETS['dynconv_np'].keys)}; received {unknown}")
        keys = {**spec.keys, **name_map}
        spec = Preset(spec.name if preset is not None else "custom", keys,
                      attention_bias="fc1_bias" in keys, hooks=spec.hooks if preset else {},
                      four_d=spec.four_d, temperature=spec.temperature,
                      default_temperature=spec.default_temperature, rule=spec.rule)
    return spec


def make_layer(preset, in_channels, out_channels, kernel_size, num_kernels=4, ratio=0.25,
               reduce=4, **options):
    """A ``DynamicConv2d`` laid out as ``preset`` builds it (its hidden width and attention
    bias), so that the two exchange state. ``options``: DynamicConv2d's other arguments."""
    spec = get_preset(preset)
    if spec.name == "dynconv_np":
        return DynamicConv2d(in_channels, out_channels, kernel_size, num_kernels=num_kernels,
                             **options)
    options.setdefault("temperature", spec.default_temperature)
    hidden = spec.hidden(in_channels, num_kernels, ratio=ratio, reduce=reduce)
    return DynamicConv2d(in_channels, out_channels, kernel_size, num_kernels=num_kernels,
                         hidden=hidden, attention_bias=spec.attention_bias, **options)


def layer_arrays(layer, state, spec, prefix="", cast=False, strict=True):
    """{our name: array} for ``layer`` from ``state`` (already loaded) under ``prefix``:
    every key present, of the shape and dtype it must have (ValueError naming the key)."""
    own = dict(layer.params)
    layout = "" if spec.name == "custom" else f"preset {spec.name!r} "
    for name in own:
        if name not in spec.keys:
            raise ValueError(f"{type(layer).__name__} has {name!r}, which the {layout}layout "
                             f"does not hold; build the layer with attention_bias="
                             f"{'fc1_bias' in spec.keys} (make_layer({spec.name!r}, ...) does)")
    arrays, wanted = {}, set()
    for name, value in own.items():
        key = spec.torch_key(name, prefix)
        wanted.add(key)
        if key not in state:
            raise ValueError(f"state has no {key!r} (our {name}, {np.shape(value)}); its keys "
                             f"under {prefix!r}: {[k for k in state if k.startswith(prefix)]}")
        arrays[name] = check_entry(key, state[key], np.shape(value), layer.dtype, cast=cast,
                                   target=f"{name} of {type(layer).__name__}")
    if strict:
        extra = [key for key in state if key.startswith(prefix) and key not in wanted
                 and key[len(prefix):] in spec.keys.values()]
        if extra:
            raise ValueError(f"state has {extra}, which this layer has no parameter for (it "
                             f"was built with bias={'bias' in own}, attention_bias="
                             f"{'fc1_bias' in own})")
    return arrays


def load_layer(layer, source, preset="dynconv_np", prefix="", cast=False, temperature=None,
               name_map=None):
    """Load ``source`` (anything ``load_state`` reads) into ``layer`` (a DynamicConv2d), laid
    out as ``preset`` under ``prefix`` (e.g. "layer1.0.conv1."); all or nothing. Every key,
    shape and dtype is checked (ValueError naming the key; ``cast=True`` converts dtypes).
    ``temperature`` sets tau (the presets keep it outside the state dict)."""
    spec = get_preset(preset, name_map)
    state = load_state(source)
    arrays = layer_arrays(layer, state, spec, prefix, cast)
    tau = layer.temperature
    if spec.name == "dynconv_np" and prefix + "temperature" in state:
        tau = float(np.asarray(state[prefix + "temperature"]))
    if temperature is not None:
        tau = temperature
    arrays["temperature"] = np.float64(check_temperature(tau, layer.dtype))
    layer.load_state_dict(arrays)
    return layer


def layer_from_state(source, preset="dynconv_np", stride=1, padding=0, dilation=1,
                     temperature=None, prefix="", dtype=None, backend=DEFAULT_BACKEND,
                     name_map=None):
    """A new ``DynamicConv2d`` holding ``source`` (laid out as ``preset`` under ``prefix``).

    K, channels, kernel size, groups (C_in / weight.shape[2]), bias and the attention's hidden
    width come from the shapes; stride, padding and dilation are not in a state dict and are
    given here; temperature: tau (default: the state's for dynconv_np, else the preset's
    default); dtype: the state's unless given (then cast).
    """
    spec = get_preset(preset, name_map)
    state = load_state(source)
    weight_key, fc1_key = spec.torch_key("weight", prefix), spec.torch_key("fc1_weight", prefix)
    for key in (weight_key, fc1_key):
        if key not in state:
            raise ValueError(f"state has no {key!r} (preset {spec.name!r}); its keys: "
                             f"{list(state)}")
    weight = np.asarray(state[weight_key])
    if weight.ndim != 5:
        raise ValueError(f"state[{weight_key!r}] must be (K, out, in/groups, kh, kw); received "
                         f"{weight.shape}")
    fc1 = np.asarray(state[fc1_key])
    hidden, in_channels = fc1.shape[:2]
    num_kernels, out_channels, c_group = weight.shape[:3]
    if in_channels % c_group:
        raise ValueError(f"state[{fc1_key!r}] says {in_channels} input channels, which "
                         f"state[{weight_key!r}]'s {c_group} channels per group do not divide")
    dtype = weight.dtype if dtype is None else np.dtype(dtype)
    if temperature is None:
        temperature = spec.default_temperature
        if spec.name == "dynconv_np" and prefix + "temperature" in state:
            temperature = float(np.asarray(state[prefix + "temperature"]))
    layer = DynamicConv2d(
        in_channels, out_channels, weight.shape[3:], stride=stride, padding=padding,
        dilation=dilation, groups=in_channels // c_group,
        bias=spec.torch_key("bias", prefix) in state if "bias" in spec.keys else False,
        num_kernels=num_kernels, hidden=hidden,
        attention_bias=("fc1_bias" in spec.keys
                        and spec.torch_key("fc1_bias", prefix) in state),
        temperature=temperature, backend=backend, dtype=dtype, rng=0)
    return load_layer(layer, state, spec, prefix, cast=True, temperature=temperature)


def export_layer(layer, preset="dynconv_np", prefix="", tensors=False, name_map=None):
    """``layer``'s state laid out as ``preset`` under ``prefix``: {their key: array} (torch
    tensors with ``tensors=True``; load it with their ``module.load_state_dict``). The
    presets keep tau outside the state dict: read ``layer.temperature``."""
    spec = get_preset(preset, name_map)
    if spec.name == "dynconv_np":
        state = {prefix + name: value for name, value in layer.state_dict().items()}
    else:
        for name in layer.params:
            if name not in spec.keys:
                raise ValueError(f"preset {spec.name!r} has no place for {name!r}; build the "
                                 f"layer with make_layer({spec.name!r}, ...) "
                                 "(attention_bias=False for kaijieshi7)")
        state = {spec.torch_key(name, prefix):
                 np.array(value).reshape(spec.torch_shape(name, np.shape(value)))
                 for name, value in layer.state_dict().items() if name in layer.params}
    if tensors:
        from ._torch import to_tensors
        return to_tensors(state)
    return state
