"""Containers: Sequential (a chain of layers) and Residual (y = body(x) + shortcut(x)).

Sequential:  y = f_L(... f_1(x)),         dx = f_1'^T (... f_L'^T dy)   (backward in reverse)
Residual:    y = body(x) + s(x),           dx = body'^T dy + s'^T dy     (x fans out to both)
             with s the identity when no shortcut is given: dx = body'^T dy + dy.
"""
import numpy as np

from .module import Module
from .._validation import check_float_array


def _check_module(value, name):
    if not isinstance(value, Module):
        raise TypeError(f"{name} must be a dynconv_np.nn.Module; received {type(value).__name__}")
    return value


class Sequential(Module):
    """Applies its layers in order; its children are the layers, named by index ("0", "1",
    ...); indexable and sized. A layer may appear more than once (it is then applied twice)."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = [_check_module(layer, f"Sequential layer {index}")
                       for index, layer in enumerate(layers)]

    def named_children(self):
        return [(str(index), layer) for index, layer in enumerate(self.layers)]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self.layers[index])
        return self.layers[index]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def forward(self, x):
        if not self.layers:
            check_float_array(x, "x")
        for layer in self.layers:
            x = layer(x)
        return self._remember(x, {})

    def backward(self, dy):
        dy, _ = self._recall(dy)
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def __repr__(self):
        inner = "".join(f"\n  ({i}): " + repr(layer).replace("\n", "\n  ")
                        for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)" if self.layers else "Sequential()"


class Residual(Module):
    """y = body(x) + shortcut(x), or body(x) + x when ``shortcut`` is None (identity).

    Children: "body" and, when given, "shortcut". The two branches' outputs must have one shape.
    """

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = _check_module(body, "body")
        self.shortcut = None if shortcut is None else _check_module(shortcut, "shortcut")

    def named_children(self):
        children = [("body", self.body)]
        return children if self.shortcut is None else children + [("shortcut", self.shortcut)]

    def forward(self, x):
        check_float_array(x, "x")
        main = self.body(x)
        skip = x if self.shortcut is None else self.shortcut(x)
        if main.shape != skip.shape:
            which = "x (identity shortcut)" if self.shortcut is None else "shortcut(x)"
            raise ValueError(f"Residual needs body(x) and {which} of one shape to add them; "
                             f"received body(x) {tuple(main.shape)} and {tuple(skip.shape)}")
        return self._remember(main + skip, {})

    def backward(self, dy):
        dy, _ = self._recall(dy)
        dx_body = self.body.backward(dy)
        dx_skip = dy if self.shortcut is None else self.shortcut.backward(dy)
        return np.add(dx_body, dx_skip)

    def __repr__(self):
        return f"Residual(body={self.body!r}, shortcut={self.shortcut!r})"
