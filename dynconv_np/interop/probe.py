"""The torch side of the comparison harness: run a PyTorch dynamic convolution forward and
backward and read its intermediates where a preset says they are.

pooled is the input of the first attention FC and logits the output of the second, pi the output
of the attention submodule (forward hooks); the per-sample kernels w_n, b_n are the weight and
bias of the layer's grouped or per-sample ``conv2d`` call, intercepted with a
``TorchFunctionMode``; gradients come from ``retain_grad``. ``harness.compare`` judges them.
"""
import copy
import sys

import numpy as np

from ._torch import require_torch, to_numpy
from .stages import GRADIENT_OF


class ConvCapture:
    """Record every conv2d call's arguments while active (a TorchFunctionMode); keep the
    gradients of non-leaf weights and biases."""

    def __new__(cls):
        torch = require_torch("compare")
        from torch.overrides import TorchFunctionMode

        class Mode(TorchFunctionMode):
            def __init__(self):
                super().__init__()
                self.calls = []

            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if getattr(func, "__name__", "") == "conv2d":
                    names = ("input", "weight", "bias", "stride", "padding", "dilation",
                             "groups")
                    call = dict(zip(names, args))
                    call.update(kwargs)
                    for name in ("weight", "bias"):
                        t = call.get(name)
                        if isinstance(t, torch.Tensor) and t.requires_grad and not t.is_leaf:
                            t.retain_grad()
                    self.calls.append(call)
                return func(*args, **kwargs)
        return Mode()


def _keep(kept, stage, tensor):
    torch = sys.modules["torch"]
    if isinstance(tensor, (tuple, list)):
        tensor = tensor[0]
    if isinstance(tensor, torch.Tensor):
        if tensor.requires_grad and not tensor.is_leaf:
            tensor.retain_grad()
        kept[stage] = tensor


def _grad(tensor):
    """tensor.grad where autograd keeps one (a leaf, or a tensor we asked to retain it)."""
    if tensor is None or not (tensor.is_leaf or tensor.retains_grad):
        return None
    return tensor.grad


def pair_of(value):
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value)
    return (int(value), int(value))


def find_geometry(module, geometry):
    """stride, padding, dilation from ``geometry`` (a dict), the module's attributes (stride,
    padding, dilation, or a conv_args dict), else None for each not found."""
    found = {}
    sources = [geometry or {}, vars(module), getattr(module, "conv_args", None) or {}]
    for name in ("stride", "padding", "dilation"):
        for source in sources:
            value = source.get(name)
            if isinstance(value, (int, tuple, list)) and not isinstance(value, bool):
                found[name] = pair_of(value)
                break
    return found


def find_temperature(module, spec, temperature):
    if temperature is not None:
        return float(temperature)
    for owner in (module, getattr(module, "attention", None)):
        value = getattr(owner, "temperature", None) if owner is not None else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    if spec.temperature == "argument":
        return float(spec.default_temperature)
    raise ValueError(f"found no temperature attribute on the {type(module).__name__} (nor on its "
                     "attention); pass temperature=")


def _set_temperature(module, tau):
    for owner in (module, getattr(module, "attention", None)):
        if owner is not None and isinstance(getattr(owner, "temperature", None), (int, float)):
            owner.temperature = tau


def default_call(spec):
    if spec.temperature == "argument":
        return lambda module, x, tau: module(x, tau)
    return lambda module, x, tau: module(x)


def module_dtype(module):
    """The layer's float dtype as NumPy's, or None (no float parameters, or half precision,
    which the reference does not run in)."""
    names = {"torch.float32": np.dtype(np.float32), "torch.float64": np.dtype(np.float64)}
    for p in module.parameters():
        if p.is_floating_point():
            return names.get(str(p.dtype))
    return None


def torch_pass(module, spec, x, dy, tau, dtype, call, shapes):
    """Run the torch layer forward and backward in ``dtype``; -> ({stage: array}, notes,
    conv calls)."""
    torch = require_torch("compare")
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    m = copy.deepcopy(module).to(tdtype)
    _set_temperature(m, tau)
    xt = torch.tensor(x, dtype=tdtype, requires_grad=True)
    kept, notes, handles = {}, {}, []
    for stage, (path, where) in spec.hooks.items():
        try:
            sub = m.get_submodule(path)
        except AttributeError:
            notes[stage] = f"no submodule {path!r}"
            continue
        if where == "in":
            handles.append(sub.register_forward_pre_hook(
                lambda mod, args, stage=stage: _keep(kept, stage, args)))
        else:
            handles.append(sub.register_forward_hook(
                lambda mod, args, out, stage=stage: _keep(kept, stage, out)))
    capture = ConvCapture()
    try:
        with capture:
            y = call(m, xt, tau)
    finally:
        for handle in handles:
            handle.remove()
    values = {"y": y}
    values.update(kept)
    n, c_out = x.shape[0], shapes["w_n"][1]
    kernel = tuple(shapes["w_n"][2:])
    main = [c for c in capture.calls if isinstance(c.get("weight"), torch.Tensor)
            and tuple(c["weight"].shape[1:]) == kernel]
    if main and main[-1]["weight"].shape[0] == n * c_out:
        values["w_n"], values["b_n"] = main[-1]["weight"], main[-1].get("bias")
    elif len(main) >= n and all(c["weight"].shape[0] == c_out for c in main[-n:]):
        values["w_n"] = list(c["weight"] for c in main[-n:])
        values["b_n"] = list(c.get("bias") for c in main[-n:])
    else:
        notes["w_n"] = notes["b_n"] = "no per-sample conv2d call found"
    if values.get("b_n") is None or (isinstance(values["b_n"], list)
                                     and any(b is None for b in values["b_n"])):
        values.pop("b_n", None)
    y.backward(torch.as_tensor(dy, dtype=tdtype).reshape(y.shape))
    out = {}
    for stage, value in values.items():
        if isinstance(value, list):
            out[stage] = np.stack([to_numpy(v) for v in value])
            grads = [_grad(v) for v in value]
            if all(g is not None for g in grads):
                out["d" + stage] = np.stack([to_numpy(g) for g in grads])
        else:
            out[stage] = to_numpy(value)
            if _grad(value) is not None:
                out["d" + stage] = to_numpy(value.grad)
            elif stage != "y":
                out["d" + stage] = np.zeros(value.shape)
                notes["d" + stage] = "torch computes no gradient here (compared as zeros)"
    out["dx"] = to_numpy(xt.grad) if xt.grad is not None else np.zeros(x.shape)
    if xt.grad is None:
        notes["dx"] = "torch computes no gradient for x (compared as zeros)"
    for grad_name, name in GRADIENT_OF.items():
        if name not in spec.keys or name not in shapes:
            continue
        param = m.get_parameter(spec.keys[name])
        if param.grad is None:
            out[grad_name] = np.zeros(param.shape)
            notes[grad_name] = "torch computes no gradient here (compared as zeros)"
        else:
            out[grad_name] = to_numpy(param.grad)
    return out, notes, capture.calls, m
