"""Whole networks in and out: our names, torchvision's static models, dynamic-layer presets.

Presets:

* "dynconv_np": the names ``model.state_dict()`` gives (temperatures included).
* "torchvision": torchvision's ResNet / MobileNetV2 / MobileNetV3 state dicts for our static
  models (``models.resnet10/18``, ``mobilenet_v2``, ``mobilenet_v3_small/large``).
* "kaijieshi7", "tardelean": networks whose dynamic convolutions are laid out as those
  implementations lay them (``presets``); their static layers as torch names them.

How a model is matched: by walking both orderings. Our side is a list of *units* - the modules
that own parameters or buffers, in ``named_modules()`` order, each with its entries in
``state_dict()`` order; the other side's keys (BatchNorm's ``num_batches_tracked`` skipped) are
grouped into units by their module prefix, a dynamic layer of the preset being one unit. Unit
i is paired with unit i; within a unit, entries pair in order and must agree in their last name
(weight, bias, running_mean, running_var) and in shape (a 1x1 convolution's (out, in, 1, 1)
fits a Linear's (out, in): torchvision's squeeze-excitation FCs are 1x1 convolutions); a
preset dynamic unit must meet a ``DynamicConv2d``. Anything that does not fit is a ValueError
naming both keys. torchvision, like us, registers a block's layers in the order they run, so
the two orderings agree.
"""
from collections import OrderedDict

import numpy as np

from .presets import PRESETS, get_preset, layer_arrays
from .state import check_entry, load_state
from .._validation import check_real, check_temperature
from ..nn import BatchNorm2d, Conv2d, DynamicConv2d, Sequential
from ..nn.module import is_dynamic

MODEL_PRESETS = ("dynconv_np", "torchvision", "kaijieshi7", "tardelean")
SKIPPED = ("num_batches_tracked",)


def _check_preset(preset):
    if preset not in MODEL_PRESETS:
        raise ValueError(f"preset must be one of {list(MODEL_PRESETS)}; received {preset!r}")
    return None if preset == "torchvision" else PRESETS[preset]


def _our_units(model):
    """[(prefix, module, [(name, array)])] for every module owning parameters or buffers."""
    units = []
    for prefix, module in model.named_modules():
        entries = list(module.params.items()) + list(module.buffers.items())
        if entries:
            units.append((prefix, module, entries))
    return units


def _their_units(shapes, spec):
    """Group their keys ({key: shape}, in order) into units -> [(prefix, kind, [keys])] with
    kind "dynamic" for a preset's dynamic layer, else "static"."""
    dynamic = set()
    if spec is not None and spec.name != "dynconv_np":
        marker, weight = spec.keys["fc2_weight"], spec.keys["weight"]
        for key in shapes:
            if key == marker or key.endswith("." + marker):
                prefix = key[:len(key) - len(marker)]
                if prefix + weight in shapes and len(shapes[prefix + weight]) == 5:
                    dynamic.add(prefix)
    units = OrderedDict()
    layer_keys = set(spec.keys.values()) if spec is not None else set()
    for key in shapes:
        if key.rsplit(".", 1)[-1] in SKIPPED:
            continue
        owner = next((p for p in dynamic if key.startswith(p) and key[len(p):] in layer_keys),
                     None)
        if owner is not None:
            units.setdefault(owner, ("dynamic", []))[1].append(key)
        else:
            prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
            units.setdefault(prefix, ("static", []))[1].append(key)
    return [(prefix, kind, keys) for prefix, (kind, keys) in units.items()]


def _describe(units, index):
    if index >= len(units):
        return "nothing (the other side has more units)"
    unit = units[index]
    return f"{unit[0] or '(top)'!r}"


def _pair(model, shapes, spec):
    """[(our prefix, our module, their prefix, kind, their keys)] by walking both orderings."""
    ours, theirs = _our_units(model), _their_units(shapes, spec)
    for index, (ours_unit, their_unit) in enumerate(zip(ours, theirs)):
        prefix, module, entries = ours_unit
        their_prefix, kind, keys = their_unit
        if kind == "dynamic" and not isinstance(module, DynamicConv2d):
            raise ValueError(f"unit {index}: their {their_prefix!r} is a {spec.name} dynamic "
                             f"convolution but our {prefix!r} is a {type(module).__name__}")
        if kind == "static" and is_dynamic(module):
            raise ValueError(f"unit {index}: their {their_prefix!r} ({keys}) is a static layer "
                             f"but our {prefix!r} is a {type(module).__name__} (to start a "
                             "dynamic net from static weights, load them into its static twin "
                             "and use static_to_dynamic)")
        if kind == "static" and len(keys) != len(entries):
            raise ValueError(f"unit {index}: their {their_prefix!r} has {keys}, our {prefix!r} "
                             f"({type(module).__name__}) has "
                             f"{[prefix + name for name, _ in entries]}")
    if len(ours) != len(theirs):
        k = min(len(ours), len(theirs))
        raise ValueError(f"the model has {len(ours)} layers with parameters, the state "
                         f"{len(theirs)}; the first unpaired: ours {_describe(ours, k)}, theirs "
                         f"{_describe(theirs, k)}")
    return [(p, m, tp, kind, keys) for (p, m, _), (tp, kind, keys) in zip(ours, theirs)]


def load_model(model, source, preset="dynconv_np", cast=False, temperature=None):
    """Load ``source`` (anything ``load_state`` reads) into ``model``, all or nothing.

    preset: "dynconv_np" (our names), "torchvision", "kaijieshi7" or "tardelean" (module
    docstring). Every name, shape and dtype is checked first (ValueError naming the key; a
    dtype differs only with ``cast=True``). temperature: tau for every dynamic layer (a float,
    or {our layer prefix: tau}); the presets keep it outside their state dicts, so without it
    the model's current temperatures stay. Returns the model.
    """
    spec = _check_preset(preset)
    state = load_state(source)
    current = model.state_dict()
    if preset == "dynconv_np":
        target = OrderedDict()
        for key, value in current.items():
            if key not in state:
                if key.endswith("temperature"):
                    target[key] = value
                    continue
                raise ValueError(f"state has no {key!r}; missing keys "
                                 f"{[k for k in current if k not in state]}")
            dtype = np.float64 if key.endswith("temperature") else value.dtype
            target[key] = check_entry(key, state[key], value.shape, dtype, cast=cast)
        unexpected = [key for key in state if key not in current]
        if unexpected:
            raise ValueError(f"state has keys the model does not: {unexpected}")
    else:
        target = OrderedDict((key, value) for key, value in current.items()
                             if key.endswith("temperature"))
        shapes = OrderedDict((key, np.shape(value)) for key, value in state.items())
        for prefix, module, their_prefix, kind, keys in _pair(model, shapes, spec):
            if kind == "dynamic":
                arrays = layer_arrays(module, state, spec, their_prefix, cast)
                target.update((prefix + name, value) for name, value in arrays.items())
                continue
            for (name, value), key in zip(list(module.params.items())
                                          + list(module.buffers.items()), keys):
                if key.rsplit(".", 1)[-1] != name:
                    raise ValueError(f"state[{key!r}] pairs with our {prefix + name!r} "
                                     f"({type(module).__name__}) by position, but their names "
                                     "differ: the two models are not laid out alike")
                target[prefix + name] = check_entry(key, state[key], np.shape(value),
                                                    value.dtype, cast=cast,
                                                    target=prefix + name)
    if temperature is not None:
        _set_temperatures(model, target, temperature)
    model.load_state_dict(target)
    return model


def _set_temperatures(model, target, temperature):
    layers = {prefix: module for prefix, module in model.named_modules() if is_dynamic(module)}
    if isinstance(temperature, dict):
        unknown = sorted(set(temperature) - set(layers))
        if unknown:
            raise ValueError(f"temperature names layers the model does not have: {unknown}; "
                             f"dynamic layers: {sorted(layers)}")
        chosen = temperature
    else:
        chosen = {prefix: temperature for prefix in layers}
    for prefix, tau in chosen.items():
        target[prefix + "temperature"] = np.float64(check_temperature(tau, layers[prefix].dtype))


def export_model(model, preset="dynconv_np", template=None, tensors=False):
    """``model``'s state as ``preset`` names it -> {key: array} (tensors with ``tensors=True``).

    "dynconv_np": ``model.state_dict()``. Other presets take their names from ``template``
    (their model, its state dict or a file: only its keys and shapes are read), walked against
    ours as ``load_model`` walks them; BatchNorm's num_batches_tracked is written as 0 where the
    template has it. Without a template (kaijieshi7 / tardelean only) the keys are our layer
    prefixes with the preset's names inside each dynamic layer. The presets keep temperatures
    outside the state dict.
    """
    spec = _check_preset(preset)
    if preset == "dynconv_np":
        state = model.state_dict()
    elif template is not None:
        shapes = OrderedDict((key, np.shape(value)) for key, value in load_state(template).items())
        values = {}
        for prefix, module, their_prefix, kind, keys in _pair(model, shapes, spec):
            if kind == "dynamic":
                for name, value in module.params.items():
                    key = spec.torch_key(name, their_prefix)
                    values[key] = _as_shape(key, value, shapes.get(key))
                continue
            for (name, value), key in zip(list(module.params.items())
                                          + list(module.buffers.items()), keys):
                if key.rsplit(".", 1)[-1] != name:
                    raise ValueError(f"template key {key!r} pairs with our {prefix + name!r} by "
                                     "position, but their names differ")
                values[key] = _as_shape(key, value, shapes[key])
        state = OrderedDict()
        for key in shapes:
            if key in values:
                state[key] = values[key]
            elif key.rsplit(".", 1)[-1] in SKIPPED:
                state[key] = np.zeros(shapes[key], dtype=np.int64)
            else:
                raise ValueError(f"template key {key!r} has no counterpart in the model")
    elif spec is None:
        raise ValueError("export_model(..., preset='torchvision') needs template= (a torchvision "
                         "model or its state dict) to take the names from")
    else:
        from .presets import export_layer
        state = OrderedDict()
        for prefix, module, entries in _our_units(model):
            if isinstance(module, DynamicConv2d):
                state.update(export_layer(module, spec, prefix))
            else:
                state.update((prefix + name, np.array(value)) for name, value in entries)
                if isinstance(module, BatchNorm2d):
                    state[prefix + "num_batches_tracked"] = np.zeros((), dtype=np.int64)
    if tensors:
        from ._torch import to_tensors
        return to_tensors(state)
    return state


def _as_shape(key, value, shape):
    value = np.array(value)
    if shape is None:
        return value
    if value.size != int(np.prod(shape)):
        raise ValueError(f"template[{key!r}] has shape {tuple(shape)}; ours is {value.shape}")
    return value.reshape(shape)


def _replace_child(parent, name, new):
    if isinstance(parent, Sequential):
        parent.layers[int(name)] = new
    else:
        setattr(parent, name, new)


def conform(model, preset, ratio=0.25, reduce=4, rng=0):
    """Rebuild every ``DynamicConv2d`` of ``model`` whose attention branch is not laid out as
    ``preset`` builds it (hidden width, first-FC bias), in place, so that the model exchanges
    state with a network of that preset. Geometry, K, dtype, backend, temperature and kernels
    are kept; a rebuilt attention branch is freshly initialised from ``rng``. Returns model."""
    from .presets import make_layer
    spec = get_preset(preset)
    parents = {}
    for prefix, module in model.named_modules():
        for child_name, child in module.named_children():
            parents[id(child)] = (module, child_name)
    for prefix, module in list(model.named_modules()):
        if not isinstance(module, DynamicConv2d):
            continue
        hidden = spec.hidden(module.in_channels, module.num_kernels, ratio=ratio, reduce=reduce)
        if hidden == module.hidden and ("fc1_bias" in module.params) == spec.attention_bias:
            continue
        new = make_layer(spec, module.in_channels, module.out_channels, module.kernel_size,
                         num_kernels=module.num_kernels, ratio=ratio, reduce=reduce,
                         stride=module.stride, padding=module.padding, dilation=module.dilation,
                         groups=module.groups, bias="bias" in module.params,
                         temperature=module.temperature, backend=module.backend,
                         dtype=module.dtype, rng=rng)
        for name in ("weight", "bias"):
            if name in module.params:
                new.params[name][...] = module.params[name]
        if id(module) not in parents:
            raise ValueError("conform needs the dynamic layers inside a container (model is "
                             "itself a DynamicConv2d: use make_layer)")
        _replace_child(*parents[id(module)], new)
    return model


def static_to_dynamic(static, dynamic, noise=0.0, seed=0):
    """Initialise ``dynamic`` (a DY network) from its static twin ``static``, in place.

    Walks both networks' units in order: each ``DynamicConv2d`` gets every one of its K kernels
    (and biases) from the static ``Conv2d`` it replaces,

        W_k = W_static + noise * std(W_static) * N(0, 1)      (independent draws per k),

    so with noise=0 the dynamic net computes exactly the static one (sum_k pi_k = 1) whatever
    its attention; BatchNorm, Linear and the convolutions that stay static are copied. The
    attention branches keep their own initialisation. A common way to start DY training from
    a pretrained static model (load it first: ``load_model(static, ..., "torchvision")``).
    Returns ``dynamic``.
    """
    noise = check_real(noise, "noise", low=0)
    rng = np.random.default_rng(seed)
    ours, theirs = _our_units(dynamic), _our_units(static)
    if len(ours) != len(theirs):
        raise ValueError(f"the dynamic model has {len(ours)} layers with parameters, the static "
                         f"one {len(theirs)}: they are not twins")
    target = dynamic.state_dict()
    for (prefix, module, _), (static_prefix, source, _) in zip(ours, theirs):
        if isinstance(module, DynamicConv2d):
            if not isinstance(source, Conv2d):
                raise ValueError(f"our {prefix!r} is a DynamicConv2d but the static model's "
                                 f"{static_prefix!r} is a {type(source).__name__}")
            if module.geometry != (source.stride, source.padding, source.dilation,
                                   source.groups):
                raise ValueError(f"{prefix!r} and {static_prefix!r} differ in stride, padding, "
                                 "dilation or groups")
            for name in ("weight", "bias"):
                if name not in module.params:
                    if name in source.params:
                        raise ValueError(f"{static_prefix}{name} has nowhere to go: "
                                         f"{prefix!r} has no {name}")
                    continue
                bank = np.asarray(module.params[name])
                base = (np.asarray(source.params[name], dtype=np.float64) if name in source.params
                        else np.zeros(bank.shape[1:]))
                if base.shape != bank.shape[1:]:
                    raise ValueError(f"{static_prefix}{name} has shape {base.shape}; each of the "
                                     f"K kernels of {prefix}{name} is {bank.shape[1:]}")
                new = np.broadcast_to(base, bank.shape).copy()
                if noise:
                    new += noise * base.std() * rng.standard_normal(bank.shape)
                target[prefix + name] = new.astype(bank.dtype)
            continue
        if type(module) is not type(source):
            raise ValueError(f"our {prefix!r} is a {type(module).__name__} but the static "
                             f"model's {static_prefix!r} is a {type(source).__name__}")
        source_state = dict(list(source.params.items()) + list(source.buffers.items()))
        for name, value in list(module.params.items()) + list(module.buffers.items()):
            if name not in source_state or np.shape(source_state[name]) != np.shape(value):
                raise ValueError(f"{static_prefix}{name} does not fit {prefix}{name} "
                                 f"{np.shape(value)}")
            target[prefix + name] = np.asarray(source_state[name]).astype(value.dtype)
    dynamic.load_state_dict(target)
    return dynamic


__all__ = ["MODEL_PRESETS", "conform", "export_model", "load_model", "static_to_dynamic"]
