"""The base class of every layer: parameters, gradients, buffers, per-call caches, state.

A module owns ``params`` (arrays it learns) and ``grads`` (their gradients, same keys, same
shapes), and ``buffers`` (state that is saved but not learned, e.g. BatchNorm's running
statistics). Assigning ``params[name] = array`` checks the array against the parameter it
replaces (shape and dtype, naming it) and resets its gradient, so the two stay in step.

Calls and caches, right by construction. Each ``forward`` call pushes its cache on a stack and
each ``backward`` call pops one, so a module called several times before backward (a shared
activation, a Linear whose weight is tied by using it twice, a block applied twice) gets its
backward calls matched to its forward calls in reverse order, and its gradients accumulate
(``+=``, as in micrograd): the gradients are exactly those of the unrolled computation. A
backward with no forward left to match is a clear error. In evaluation mode a module keeps only
its last call's cache (inference loops keep no memory; a second backward is then an error).

Names. ``named_children()`` gives each sub-module a name (containers: their indices; blocks:
attribute names), and ``named_parameters()`` / ``state_dict()`` join them with dots, e.g.
``features.3.weight``. A module reached twice (used twice in one network) is listed once.
"""
import warnings

import numpy as np

from .._validation import (check_float_array, check_float_dtype, check_upstream, contiguous,
                           stage_cache)
from ..backends import add_into


PENDING_WARNING = 256  # training-mode forwards without a backward before a module warns


class ParameterDict(dict):
    """``params``: a dict whose assignments keep the parameter's shape and dtype and reset the
    owner's gradient (a new key registers a new parameter with a zero gradient)."""

    def __init__(self, owner):
        super().__init__()
        self._owner = owner

    def __setitem__(self, name, value):
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            raise TypeError(f"params[{name!r}] must be an array; received {type(value).__name__}")
        old = dict.get(self, name)
        if old is not None:
            if tuple(value.shape) != tuple(old.shape) or np.dtype(value.dtype) != old.dtype:
                raise ValueError(f"params[{name!r}] of {type(self._owner).__name__} must be "
                                 f"{old.dtype} {tuple(old.shape)}; received "
                                 f"{np.dtype(value.dtype)} {tuple(value.shape)}")
        dict.__setitem__(self, name, value)
        grad = self._owner.grads.get(name)
        if grad is None or grad.shape != value.shape or grad is value:
            self._owner.grads[name] = np.zeros(value.shape, dtype=value.dtype)
        elif old is not None and value is not old:
            grad[...] = 0  # a new array starts a new gradient (in place: optimisers keep theirs)

    def __reduce__(self):
        # copy.deepcopy and pickle rebuild the owner's state before its grads exist: restore the
        # entries without __setitem__ (they were checked when they were assigned)
        return _restore_parameter_dict, (self._owner, dict(self))


def _restore_parameter_dict(owner, entries):
    params = ParameterDict(owner)
    dict.update(params, entries)
    return params


class Module:
    """Stateful layer with explicit ``forward`` and ``backward`` (see the module docstring)."""

    def __init__(self):
        self.grads = {}
        self.params = ParameterDict(self)
        self.buffers = {}
        self.training = True
        self._calls = []  # (cache, output shape, output dtype) per forward not yet backpropagated

    # -- the two passes -------------------------------------------------
    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def _remember(self, y, cache):
        """Keep ``cache`` for the backward call that will match this forward; return y.

        Training-mode forwards that no backward consumes pile up (a PyTorch habit: inference
        in training mode): at PENDING_WARNING of them the module warns once, naming the fix."""
        if not self.training:
            self._calls.clear()
        self._calls.append((stage_cache(type(self).__name__, {"cache": cache}, y)))
        if len(self._calls) == PENDING_WARNING:
            warnings.warn(f"{type(self).__name__} holds {PENDING_WARNING} forward calls that no "
                          "backward has consumed: in training mode each forward keeps its cache "
                          "(and its memory) until a backward; run inference after .eval(), or "
                          "call .clear_calls()", RuntimeWarning, stacklevel=3)
        return y

    def _recall(self, dy, finite=True, consume=True):
        """The cache of the latest unmatched forward, after checking dy against its output
        (shape, dtype, finite unless ``finite=False``); returns (dy contiguous, cache). A dy
        that fails a check consumes no call; ``consume=False`` leaves the call for a caller
        that finishes checking dy itself (then ``self._calls.pop()``)."""
        if not self._calls:
            raise ValueError(f"{type(self).__name__}.backward called without a matching forward "
                             "(every backward consumes one earlier forward call; in eval mode "
                             "only the last call is kept)")
        record = self._calls[-1]
        dy = check_upstream(record, type(self).__name__, finite=finite, dy=dy)
        if consume:
            self._calls.pop()
        return dy, record["cache"]

    def clear_calls(self):
        """Forget the caches of forward calls not yet backpropagated, below this module."""
        for module in self.modules():
            module._calls.clear()

    # -- parameters -----------------------------------------------------
    def add_param(self, name, value):
        """Register ``value`` as parameter ``name`` with a zero gradient of the same shape."""
        self.params[name] = value

    def accumulate_grad(self, name, value):
        """grads[name] += value, wherever the gradient lives (host or GPU)."""
        add_into(self.grads[name], value)

    def state_scalars(self):
        """Non-array state saved with the parameters (dynamic layers: their temperature)."""
        return {}

    def load_state_scalar(self, name, value):
        raise KeyError(name)

    def check_state_scalar(self, name, value):
        """Raise unless ``value`` may be loaded as state scalar ``name``: ``load_state_dict``
        calls it for every scalar before it loads anything (all or nothing). Modules whose
        ``load_state_scalar`` can refuse a value override it with the same check."""

    # -- the tree -------------------------------------------------------
    def named_children(self):
        """(name, sub-module) pairs, in order. Containers and blocks override this (or, for
        index names "0", "1", ..., only ``children``)."""
        if type(self).children is not Module.children:
            return [(str(index), child) for index, child in enumerate(self.children())]
        return []

    def children(self):
        """Direct sub-modules, in order."""
        return [child for _, child in self.named_children()]

    def named_modules(self, prefix=""):
        """(qualified name, module) for this module and every one below it, each module once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            stack.extend(reversed([(f"{name}{child_name}.", child)
                                   for child_name, child in module.named_children()]))

    def modules(self):
        """This module and every module below it, depth first, each once."""
        return (module for _, module in self.named_modules())

    def named_parameters(self, prefix=""):
        """Yield (qualified_name, param, grad) below this module, each parameter once."""
        seen = {}
        for module_prefix, module in self.named_modules(prefix):
            for name, value in module.params.items():
                first = seen.get(id(value))
                if first is not None:
                    raise ValueError(f"parameter {module_prefix}{name} is the same array as "
                                     f"{first}, but has a gradient of its own; share the module "
                                     "(call it twice) to tie weights")
                seen[id(value)] = module_prefix + name
                yield module_prefix + name, value, module.grads[name]

    def parameters(self):
        """Every parameter array below this module, each once, in a stable order."""
        return [value for _, value, _ in self.named_parameters()]

    def named_buffers(self, prefix=""):
        """Yield (qualified_name, buffer) below this module."""
        for module_prefix, module in self.named_modules(prefix):
            for name, value in module.buffers.items():
                yield module_prefix + name, value

    def zero_grad(self):
        """Set every gradient below this module to zero, in place."""
        for module in self.modules():
            for grad in module.grads.values():
                grad[...] = 0

    # -- state ----------------------------------------------------------
    def state_dict(self):
        """{dotted name: array}: every parameter, buffer and state scalar (as a 0-d float64
        array), copied to the host; the names say where each lives, e.g. ``3.weight``."""
        from ..backends import to_host
        state = {}
        for module_prefix, module in self.named_modules():
            for name, value in module.params.items():
                state[module_prefix + name] = np.array(to_host(value))
            for name, value in module.buffers.items():
                state[module_prefix + name] = np.array(value)
            for name, value in module.state_scalars().items():
                state[module_prefix + name] = np.array(value, dtype=np.float64)
        return state

    def load_state_dict(self, state, strict=True):
        """Load ``state`` (as ``state_dict()`` gives it) into this module, all or nothing.

        Every name, shape and dtype is checked first (a ValueError names the offending key);
        with ``strict=False`` missing and unexpected keys are allowed (and returned as
        ``(missing, unexpected)``), mismatched shapes never are. Arrays are copied into the
        module's own arrays in place (optimizers keep valid references); gradients are zeroed.
        """
        if not hasattr(state, "keys"):
            raise TypeError(f"state must be a mapping of names to arrays; received "
                            f"{type(state).__name__}")
        targets = {}
        for module_prefix, module in self.named_modules():
            for name, value in module.params.items():
                targets[module_prefix + name] = ("param", module, name, value)
            for name, value in module.buffers.items():
                targets[module_prefix + name] = ("buffer", module, name, value)
            for name, value in module.state_scalars().items():
                targets[module_prefix + name] = ("scalar", module, name, np.float64(value))
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        if strict and (missing or unexpected):
            raise ValueError(f"state does not fit {type(self).__name__}: missing keys {missing}, "
                             f"unexpected keys {unexpected}")
        for key in set(targets) & set(state):
            _, _, _, current = targets[key]
            value = np.asarray(state[key])
            if value.shape != np.shape(current) or value.dtype != np.asarray(current).dtype:
                raise ValueError(f"state[{key!r}] must be {np.asarray(current).dtype} "
                                 f"{np.shape(current)}; received {value.dtype} {value.shape}")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ValueError(f"state[{key!r}] contains NaN or inf")
            kind, module, name, _ = targets[key]
            if kind == "scalar":
                module.check_state_scalar(name, float(value))
        for key in set(targets) & set(state):
            kind, module, name, current = targets[key]
            if kind == "scalar":
                module.load_state_scalar(name, float(state[key]))
            elif kind == "param" and not isinstance(current, np.ndarray):
                from ..backends import get_backend
                module.params[name] = get_backend("cuda").to_device(np.asarray(state[key]))
            else:
                current[...] = state[key]
        self.zero_grad()
        return missing, unexpected

    # -- modes ----------------------------------------------------------
    def train(self, mode=True):
        """Switch this module and every module below it to training (or eval) mode."""
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self):
        """Switch this module and every module below it to evaluation mode."""
        return self.train(False)


def is_dynamic(module):
    """True for a module with K kernels mixed by attention (it has a temperature)."""
    return hasattr(type(module), "temperature") and hasattr(module, "num_kernels")


def layer_dtype(dtype):
    """The ``dtype`` constructor argument -> np.dtype float32 or float64 (else TypeError)."""
    return check_float_dtype(dtype)


def check_bias_flag(bias, name="bias"):
    """A bool constructor argument (``bias``, ``attention_bias``)."""
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; received {bias!r}")
    return bool(bias)


def check_layer_input(layer, x, ndim, features, finite=True, host=False):
    """x must be an ndim-D float array with ``features`` entries on axis 1 and the layer's
    dtype; ``finite=False`` leaves the NaN/inf screen to the caller; ``host=True`` (a layer that
    computes with NumPy) refuses device arrays. Returns x contiguous."""
    name = type(layer).__name__
    check_float_array(x, "x", ndim=ndim, finite=finite, host=host)
    if x.shape[1] != features:
        raise ValueError(f"x must have {features} channels/features on axis 1 ({name} was built "
                         f"for {features}); received shape {tuple(x.shape)}")
    if np.dtype(x.dtype) != layer.dtype:
        raise TypeError(f"x has dtype {np.dtype(x.dtype)} but {name}'s parameters are "
                        f"{layer.dtype}; build the layer with dtype={np.dtype(x.dtype).name} "
                        "or cast x")
    return contiguous(x)
