"""The PyTorch twin of one of our networks, for the network benchmark: ``torch_twin(model)`` walks
our module tree and builds, module by module, the torch module with the same math and a copy of
the same parameters and buffers (``DynamicConv2d``: the attention branch and one grouped
convolution over the batch, the grouped-convolution trick of ``layers.py``).
"""
import functools
from dataclasses import dataclass

import numpy as np

@dataclass
class Twin:
    """The torch module, and its parameters and buffers under our dotted names."""
    module: object
    params: list   # [(our name, torch Parameter)]
    buffers: list  # [(our name, torch tensor)]


@functools.lru_cache(maxsize=None)
def _torch_modules():
    """The torch modules our layers translate to that torch does not have (defined on first
    use, so that this file imports without torch)."""
    import torch
    import torch.nn.functional as F

    class DynamicConv2d(torch.nn.Module):
        """pi = softmax(FC2(relu(FC1(mean_hw x))) / tau); W_n = sum_k pi[n, k] W_k,
        b_n = sum_k pi[n, k] b_k; y[n] = conv2d(x[n], W_n) + b_n as ONE grouped convolution:
        x as (1, N C_in, H, W), the W_n as (N C_out, C_in/groups, kh, kw), N groups groups."""

        def __init__(self, layer, param):
            super().__init__()
            self.geometry = dict(stride=layer.stride, padding=layer.padding,
                                 dilation=layer.dilation)
            self.groups, self.tau = layer.groups, float(layer.temperature)
            for name in ("weight", "bias", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"):
                setattr(self, name, param(name))   # None where our layer has no such parameter

        def forward(self, x):
            n, c_in, h, w = x.shape
            k, c_out = self.weight.shape[:2]
            hidden = F.relu(F.linear(x.mean(dim=(2, 3)), self.fc1_weight, self.fc1_bias))
            pi = torch.softmax(F.linear(hidden, self.fc2_weight, self.fc2_bias) / self.tau, 1)
            w_n = (pi @ self.weight.reshape(k, -1)).reshape((n * c_out,) + self.weight.shape[2:])
            b_n = None if self.bias is None else (pi @ self.bias).reshape(-1)
            y = F.conv2d(x.reshape(1, n * c_in, h, w), w_n, b_n, groups=n * self.groups,
                         **self.geometry)
            return y.reshape(n, c_out, y.shape[2], y.shape[3])

    class Residual(torch.nn.Module):
        """y = body(x) + shortcut(x), or body(x) + x."""

        def __init__(self, body, shortcut):
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x):
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

    class SqueezeExcite(torch.nn.Module):
        """y = x * excite(x)[:, :, None, None]."""

        def __init__(self, excite):
            super().__init__()
            self.excite = excite

        def forward(self, x):
            return x * self.excite(x)[:, :, None, None]

    class HardSigmoid(torch.nn.Module):
        """relu6(x + 3) / 6, composed: torch's own Hardsigmoid backward multiplies by a float32
        1/6 (3e-8 off in float64). Only the SE gates use it, on (N, C) arrays."""

        def forward(self, x):
            return F.relu6(x + 3) / 6

    class GlobalAvgPool2d(torch.nn.Module):
        """(N, C, H, W) -> (N, C), the mean over (H, W)."""

        def forward(self, x):
            return x.mean(dim=(2, 3))

    return {"DynamicConv2d": DynamicConv2d, "Residual": Residual,
            "SqueezeExcite": SqueezeExcite, "GlobalAvgPool2d": GlobalAvgPool2d,
            "HardSigmoid": HardSigmoid}


def torch_twin(model):
    """The PyTorch twin of our ``model`` (a tree of Sequential, Residual, Conv2d,
    DynamicConv2d, BatchNorm2d, activations, SqueezeExcite, pooling, Linear, Flatten, Dropout)
    with copies of its parameters and buffers, in its mode (training or eval) -> ``Twin``.
    Another module type is a TypeError naming it."""
    twin = Twin(None, [], [])
    twin.module = _translate(model, "", twin)
    ours = [name for name, _, _ in model.named_parameters()]
    if sorted(ours) != sorted(name for name, _ in twin.params):
        raise AssertionError("the twin's parameters do not match the model's")
    return twin


def _translate(module, prefix, twin):
    import torch
    from .. import nn
    extra = _torch_modules()
    kind = type(module)

    def param(name):
        if name not in module.params:
            return None
        tensor = torch.nn.Parameter(torch.tensor(np.array(module.params[name])))
        twin.params.append((prefix + name, tensor))
        return tensor

    def child(sub, name):
        return _translate(sub, f"{prefix}{name}.", twin)

    if kind is nn.Sequential:
        out = torch.nn.Sequential(*(child(layer, str(i)) for i, layer in enumerate(module)))
    elif kind is nn.Residual:
        shortcut = None if module.shortcut is None else child(module.shortcut, "shortcut")
        out = extra["Residual"](child(module.body, "body"), shortcut)
    elif kind is nn.DynamicConv2d:
        out = extra["DynamicConv2d"](module, param)
    elif kind in (nn.Conv2d, nn.Linear, nn.BatchNorm2d):
        if kind is nn.Conv2d:
            out = torch.nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size,
                                  module.stride, module.padding, module.dilation, module.groups,
                                  bias="bias" in module.params)
        elif kind is nn.Linear:
            out = torch.nn.Linear(module.in_features, module.out_features,
                                  bias="bias" in module.params)
        else:
            out = torch.nn.BatchNorm2d(module.num_features, eps=module.eps,
                                       momentum=module.momentum)
        out = out.to(torch.float64 if module.dtype == np.float64 else torch.float32)
        for name in module.params:
            setattr(out, name, param(name))
        for name, value in module.buffers.items():   # BatchNorm's running statistics
            setattr(out, name, torch.tensor(np.array(value)))
            twin.buffers.append((prefix + name, getattr(out, name)))
    elif kind is nn.SqueezeExcite:
        out = extra["SqueezeExcite"](child(module.excite, "excite"))
    elif kind in (nn.MaxPool2d, nn.AvgPool2d):
        geometry = (module.kernel_size, module.stride, module.padding)
        out = (torch.nn.MaxPool2d(*geometry) if kind is nn.MaxPool2d
               else torch.nn.AvgPool2d(*geometry, count_include_pad=True))
    elif kind in (nn.GlobalAvgPool2d, nn.HardSigmoid):
        out = extra[kind.__name__]()
    elif kind is nn.Dropout:
        out = torch.nn.Dropout(module.p)
    else:
        simple = {nn.ReLU: torch.nn.ReLU, nn.ReLU6: torch.nn.ReLU6,
                  nn.HardSwish: torch.nn.Hardswish,
                  nn.Sigmoid: torch.nn.Sigmoid, nn.Flatten: torch.nn.Flatten}
        if kind not in simple:
            raise TypeError(f"no PyTorch twin for {kind.__name__} (at {prefix or 'the root'!r})")
        out = simple[kind]()
    return out.train(module.training)
