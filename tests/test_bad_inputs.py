"""Bad inputs at the public boundary: every public entry point, one corrupted argument at a time.

``ENTRIES`` is a table of the public entry points, each with a valid call: every functional
``*_forward`` and ``*_backward``; the constructors, ``forward``, ``backward``, ``params``
assignment (and temperature setter) of Conv2d, DynamicConv2d, DynamicLinear, Linear,
BatchNorm2d (its running variance too), the activations, the pooling layers and Dropout;
``gradcheck``'s own arguments (function and layer targets); SGD's hyper-parameters and its lr;
CosineWarmupLR, TemperatureAnnealing and apply_temperature. Each entry lists the corruptions of
its arguments that must be refused: wrong ndim, wrong shape (for an upstream gradient also
shapes that would broadcast), int/float16/complex/object/bool dtypes, the other float dtype
where the dtypes are tied, a Python list or float or str instead of an array, NaN and +-inf
values, an empty batch or empty planes where nothing can be computed, a CUDA device array on a
host backend, non-positive / non-finite / non-integer / bool / str / None scalars, pairs of the
wrong length, absurd sizes, missing keys of a params dict, foreign caches.

``test_bad_input_is_named`` lets hypothesis draw, per entry, the valid call (dtype, batch size,
values, backend numpy/loops/numba) and one corruption; ``test_every_corruption_of`` runs every
corruption of the entry once. Both require a ValueError or TypeError (raised by dynconv_np, not
by NumPy or Numba internals) whose message names the argument, and the other arguments left
unchanged.

The other tests: read-only, Fortran-order, negative-stride and strided inputs give the result
of C-contiguous copies and are never modified (functional pairs on backends numpy, loops and
numba, and the layers); numba against numpy on random configurations, N = 1 included, with
read-only non-contiguous inputs; an empty batch gives the same clear error on every backend;
a fake ``__cuda_array_interface__`` object on a host backend is refused by name; a temperature
outside the dtype's range is refused naming the usable range; absurd padding is refused.

Bad-input cases drawn per run: 97 entries x 30 hypothesis examples = 2910, plus the
exhaustive sweep of 3765 (entry, corruption) pairs: 6675 in all
(``test_case_count_in_docstring`` keeps these numbers true).
"""
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dynconv_np import functional as F
from dynconv_np import nn
from dynconv_np.backends import get_backend
from dynconv_np.gradcheck import gradcheck
from dynconv_np.train.optim import SGD
from dynconv_np.train.schedules import CosineWarmupLR, TemperatureAnnealing, apply_temperature
from tests.strategies import conv_configs, pair

CPU_BACKENDS = ("numpy", "loops", "numba")
FLOATS = (np.float32, np.float64)
EXAMPLES = 30  # hypothesis examples per entry

# -- the corruptions ---------------------------------------------------------------------------


class Ctx:
    """What a valid call is drawn from: a seeded rng, the dtype, the batch size, the backend."""

    def __init__(self, seed=0, dtype=np.float64, backend="numpy", n=2):
        self.seed, self.rng = seed, np.random.default_rng(seed)
        self.dtype, self.backend, self.n = np.dtype(dtype), backend, n
        self.args = None  # the valid arguments, while a corruption is applied

    def array(self, *shape):
        return self.rng.standard_normal(shape).astype(self.dtype)

    def like(self, a):
        return self.rng.standard_normal(a.shape).astype(a.dtype)

    def other_dtype(self):
        return np.dtype(np.float64 if self.dtype == np.float32 else np.float32)

    def tau(self):
        return float(self.rng.uniform(0.5, 30.0))


@dataclass(frozen=True)
class Bad:
    """One corruption: ``make(args, ctx)`` -> the arguments with ``arg`` corrupted; the error
    message must name one of ``names``."""
    arg: str
    label: str
    make: object
    names: tuple

    def __repr__(self):
        return f"<{self.arg}: {self.label}>"

    @property
    def key(self):
        return f"{self.arg}: {self.label}"


class Dyn:
    """A corrupted scalar that depends on the valid call: ``fn(ctx)``."""

    def __init__(self, fn):
        self.fn = fn


def _bad(arg, label, fn, names, key=None):
    """A Bad replacing ``args[arg]`` (or ``args[arg][key]``) by ``fn(value, ctx)``."""
    def make(args, ctx):
        args = dict(args)
        ctx.args = args
        if key is None:
            args[arg] = fn(args[arg], ctx)
        else:
            inner = dict(args[arg])
            inner[key] = fn(inner[key], ctx)
            args[arg] = inner
        return args
    return Bad(arg if key is None else f"{arg}[{key!r}]", label, make, tuple(names))


def _set_one(value):
    def fn(a, ctx):
        a = np.array(a, copy=True)
        a.flat[int(ctx.rng.integers(a.size))] = value
        return a
    return fn


def _resized(axis, size):
    def fn(a, ctx):
        shape = list(a.shape)
        shape[axis] = size(shape[axis])
        return ctx.rng.standard_normal(shape).astype(a.dtype)
    return fn


VALUE_BADS = [
    ("a Python list", lambda a, c: a.tolist()),
    ("int64 dtype", lambda a, c: np.round(a).astype(np.int64)),
    ("float16 dtype", lambda a, c: a.astype(np.float16)),
    ("complex dtype", lambda a, c: a.astype(np.complex128)),
    ("object dtype", lambda a, c: a.astype(object)),
    ("bool dtype", lambda a, c: a > 0),
    ("a str", lambda a, c: "not an array"),
    ("a Python float", lambda a, c: 1.0),
    ("a NaN", _set_one(np.nan)),
    ("a +inf", _set_one(np.inf)),
    ("a -inf", _set_one(-np.inf)),
]


class FakeDeviceArray:
    """Just enough of a CUDA device array for the checks: shape, dtype, ndim and
    ``__cuda_array_interface__``; any attempt to compute with it fails."""

    def __init__(self, a):
        a = np.asarray(a)
        self.shape, self.dtype, self.ndim, self.size = a.shape, a.dtype, a.ndim, a.size
        self.__cuda_array_interface__ = {"shape": a.shape, "typestr": a.dtype.str,
                                         "data": (0, False), "version": 3, "strides": None}


def array_bads(arg, ndim=None, axes=(), zero_axes=(), tied=False, optional=False, free_ndim=False,
               extra=(), names=None, key=None, device=True, ndim_bads=None):
    """The corruptions of an array argument.

    ndim: the required ndim (None: any, unless ``ndim_bads``); axes: the axes whose size the
    other arguments fix, an int or (axis, other names the message may blame instead);
    zero_axes: axes that may not be empty; tied: the dtype must match the other arrays';
    optional: None is valid; extra: (label, fn) corruptions of this argument only.
    """
    own = names or (key or arg,)
    bads = [_bad(arg, label, fn, own, key) for label, fn in VALUE_BADS]
    if not optional:
        bads.append(_bad(arg, "None", lambda a, c: None, own, key))
    if device:
        bads.append(_bad(arg, "a CUDA device array on a host backend",
                         lambda a, c: FakeDeviceArray(a), own, key))
    if ndim_bads if ndim_bads is not None else ndim is not None:
        bads += [_bad(arg, "an extra leading axis", lambda a, c: a[None], own, key),
                 _bad(arg, "one axis fewer", lambda a, c: a[0], own, key),
                 _bad(arg, "0-d", lambda a, c: np.array(a.flat[0]), own, key)]
    for axis in axes:
        axis, blamed = axis if isinstance(axis, tuple) else (axis, ())
        bads.append(_bad(arg, f"axis {axis} one longer", _resized(axis, lambda s: s + 1),
                         own + tuple(blamed), key))
    for axis in zero_axes:
        bads.append(_bad(arg, f"axis {axis} empty", _resized(axis, lambda s: 0), own, key))
    if tied:
        bads.append(_bad(arg, "the other float dtype", lambda a, c: a.astype(c.other_dtype()),
                         own, key))
    bads += [_bad(arg, label, fn, own, key) for label, fn in extra]
    return bads


def upstream_bads(arg, ndim):
    """The corruptions of an upstream gradient of an ``ndim``-D output: everything an array can
    get wrong, shapes that would broadcast against the output's, the other float dtype."""
    bads = array_bads(arg, ndim=ndim, tied=True)
    bads.append(_bad(arg, "the shape reversed", lambda a, c: c.like(a.T) if a.shape != a.T.shape
                     else c.like(a[None]), (arg,)))
    for axis in range(ndim):
        bads += [_bad(arg, f"axis {axis} one longer", _resized(axis, lambda s: s + 1), (arg,)),
                 _bad(arg, f"axis {axis} broadcastable (size 1, or 2 where it is 1)",
                      _resized(axis, lambda s: 1 if s != 1 else 2), (arg,))]
    return bads


def scalar_bads(arg, values, names=None, valid=()):
    """Corruptions replacing ``arg`` by each value (a ``Dyn`` value is computed from ctx), but
    those labelled in ``valid`` (None where None is the default, say)."""
    names = names or (arg,)
    return [_bad(arg, label, (lambda a, c, v=value: v.fn(c) if isinstance(v, Dyn) else v), names)
            for label, value in values if label not in valid]


NAN, INF = float("nan"), float("inf")
REAL_COMMON = [("NaN", NAN), ("+inf", INF), ("-inf", -INF), ("an int too large for a float", 10 ** 400),
               ("a str", "1"), ("None", None), ("bool True", True), ("complex", 1j),
               ("a list", [1.0]), ("an array", np.array([1.0]))]
REAL_POSITIVE = REAL_COMMON + [("0", 0.0), ("-1", -1.0)]
REAL_NONNEGATIVE = REAL_COMMON + [("-1", -1.0), ("-1e-12", -1e-12)]
PROBABILITY = REAL_COMMON + [("-0.1", -0.1), ("1.1", 1.1)]
INT_POSITIVE = [("0", 0), ("-1", -1), ("float 2.0", 2.0), ("float 1.5", 1.5), ("a str", "2"),
                ("None", None), ("bool True", True), ("NaN", NAN), ("a list", [2])]
INT_NONNEGATIVE = [("-1", -1), ("float 1.5", 1.5), ("a str", "1"), ("None", None),
                   ("bool True", True), ("NaN", NAN)]
PAIR_POSITIVE = [("0", 0), ("-1", -1), ("a pair with 0", (1, 0)), ("a 1-tuple", (1,)),
                 ("a 3-tuple", (1, 1, 1)), ("float", 1.5), ("a str", "1"), ("None", None),
                 ("bool True", True), ("a pair with a bool", (True, 1)), ("NaN", NAN),
                 ("a pair of floats", (1.0, 1.0)), ("an array pair", np.array([1, 1]))]
PAIR_NONNEGATIVE = [("-1", -1), ("a pair with -1", (0, -1)), ("a 3-tuple", (0, 0, 0)),
                    ("float", 0.5), ("a str", "0"), ("None", None), ("bool False", False),
                    ("NaN", NAN)]
ABSURD_PADDING = [("absurd 10**6", 10 ** 6), ("absurd 10**12", 10 ** 12)]
BOOL = [("a str", "yes"), ("int 1", 1), ("None", None), ("float 1.0", 1.0), ("a list", [True])]
DTYPE = [("a typo", "flaot32"), ("int32", np.int32), ("float16", np.float16),
         ("complex64", np.complex64), ("None", None), ("object", object), ("a number", 32)]
BACKEND = [("unknown", "numpi"), ("None", None), ("an int", 3), ("empty", ""),
           ("upper case", "NUMPY"), ("a module", np)]
SEED = [("a str", "seed"), ("float", 1.5), ("a list of str", ["a"]), ("negative", -1),
        ("bool True", True)]
GENERATOR = [("None", None), ("an int", 0), ("a str", "rng"),
             ("a RandomState", np.random.RandomState(0))]
MODEL = [("None", None), ("a str", "model"), ("a list", []), ("an object", object())]


def tau_bads(arg, names=("tau", "temperature")):
    """A temperature: positive reals, plus values outside the dtype's usable range."""
    return scalar_bads(arg, REAL_POSITIVE + [
        ("below the dtype's smallest normal",
         Dyn(lambda c: 1e-39 if c.dtype == np.float32 else 1e-310)),
        ("above the dtype's largest value",
         Dyn(lambda c: 1e39 if c.dtype == np.float32 else 1e-320))], names)


def _foreign_cache(ctx, arg):
    """The cache of another stage than the one ``ctx.args[arg]`` came from."""
    stage = ctx.args[arg]["stage"]
    return F.relu_forward(np.ones(2))[1] if stage != "relu" else F.sigmoid_forward(np.ones(2))[1]


def cache_bads(arg="cache"):
    return scalar_bads(arg, [("None", None), ("an empty dict", {}), ("a list", []),
                             ("a str", "cache"),
                             ("another stage's cache", Dyn(lambda c: _foreign_cache(c, arg))),
                             ("a dict with the stage name only",
                              Dyn(lambda c: {"stage": c.args[arg]["stage"]}))])


def params_bads(arg, keys, required):
    """A params dict: not a dict, a missing required key, each key's array corrupted."""
    bads = scalar_bads(arg, [("None", None), ("a list of pairs", Dyn(lambda c: list(c.args[arg].items())))])
    for key in required:
        def make(args, ctx, key=key):
            args = dict(args)
            args[arg] = {k: v for k, v in args[arg].items() if k != key}
            return args
        bads.append(Bad(arg, f"missing {key!r}", make, (key,)))
    for key, spec in keys.items():
        bads += array_bads(arg, key=key, optional=key not in required, **spec)
    return bads


# -- the table ---------------------------------------------------------------------------------


@dataclass
class Entry:
    name: str
    build: object      # ctx -> (call, valid args)
    bads: list


ENTRIES = []
PAIRS = []  # (name, forward, backward, make_args, output names, has backend) for layout tests


def register(name, bads, build):
    ENTRIES.append(Entry(name, build, list(bads)))


def functional(name, make_args, bads, outputs, ndims, has_backend=False):
    """Register ``F.<name>_forward(**make_args(ctx))`` and its backward (upstream gradients
    ``outputs``, of ndims ``ndims``, then the cache)."""
    forward, backward = getattr(F, f"{name}_forward"), getattr(F, f"{name}_backward")
    register(f"F.{name}_forward", bads, lambda ctx: (forward, make_args(ctx)))

    def build_backward(ctx):
        out, cache = forward(**make_args(ctx))
        outs = out if isinstance(out, tuple) else (out,)
        args = {g: None if o is None else ctx.like(o) for g, o in zip(outputs, outs)}
        args["cache"] = cache
        return (lambda **kw: backward(*[kw[g] for g in outputs], kw["cache"])), args

    register(f"F.{name}_backward", [b for g, d in zip(outputs, ndims) for b in upstream_bads(g, d)]
             + cache_bads(), build_backward)
    PAIRS.append((name, forward, backward, make_args, outputs, has_backend))


BACKEND_BADS = scalar_bads("backend", BACKEND)

# activations
for _act in ("relu", "relu6", "hardsigmoid", "hardswish", "sigmoid"):
    functional(_act, lambda ctx: {"x": ctx.array(ctx.n, 3, 4)}, array_bads("x"), ["dy"], [3])

# kernel aggregation
functional("aggregate_kernels",
           lambda ctx: {"pi": ctx.array(ctx.n, 3), "weight": ctx.array(3, 5, 2, 3, 2),
                        "bias": ctx.array(3, 5), "backend": ctx.backend},
           array_bads("pi", ndim=2, axes=[(1, ("weight",))], tied=True)
           + array_bads("weight", ndim_bads=True, axes=[(0, ("pi",)), (1, ("bias",))], tied=True)
           + array_bads("bias", ndim=2, axes=[(0, ("weight",)), (1, ("weight",))], tied=True,
                        optional=True)
           + BACKEND_BADS, ["dw_n", "db_n"], [5, 2], has_backend=True)


def _attention_args(ctx):
    return {"pooled": ctx.array(ctx.n, 5), "fc1_weight": ctx.array(4, 5), "fc1_bias": ctx.array(4),
            "fc2_weight": ctx.array(3, 4), "fc2_bias": ctx.array(3), "tau": ctx.tau()}


functional("attention", _attention_args,
           array_bads("pooled", ndim=2, axes=[(1, ("fc1_weight",))], tied=True)
           + array_bads("fc1_weight", ndim=2, axes=[(0, ("fc1_bias", "fc2_weight")),
                                                    (1, ("pooled",))], tied=True)
           + array_bads("fc1_bias", ndim=1, axes=[(0, ("fc1_weight",))], tied=True, optional=True)
           + array_bads("fc2_weight", ndim=2, axes=[(0, ("fc2_bias",)), (1, ("fc1_weight",))],
                        tied=True)
           + array_bads("fc2_bias", ndim=1, axes=[(0, ("fc2_weight",))], tied=True)
           + tau_bads("tau"), ["dpi"], [2])


def _bn_args(ctx, running=False):
    args = {"x": ctx.array(ctx.n, 3, 4, 5), "weight": ctx.array(3), "bias": ctx.array(3)}
    if running:
        args["running_mean"] = ctx.array(3)
        args["running_var"] = np.abs(ctx.array(3)) + ctx.dtype.type(0.1)
    args["eps"] = 1e-5
    return args


_BN_ARRAYS = (array_bads("x", ndim=4, axes=[(1, ("weight", "bias"))], tied=True)
              + array_bads("weight", ndim=1, axes=[(0, ("x",))], tied=True)
              + array_bads("bias", ndim=1, axes=[(0, ("x",))], tied=True)
              + scalar_bads("eps", REAL_NONNEGATIVE))
functional("batchnorm2d_train", _bn_args, _BN_ARRAYS + [
    _bad("x", "one value per channel", lambda a, c: a[:1, :, :1, :1], ("x",))], ["dy"], [4])
functional("batchnorm2d_eval", lambda ctx: _bn_args(ctx, running=True), _BN_ARRAYS
           + array_bads("running_mean", ndim=1, axes=[(0, ("x",))], tied=True)
           + array_bads("running_var", ndim=1, axes=[(0, ("x",))], tied=True,
                        extra=[("a negative variance", _set_one(-0.5))]), ["dy"], [4])

functional("channel_scale", lambda ctx: {"x": ctx.array(ctx.n, 3, 4, 5), "s": ctx.array(ctx.n, 3)},
           array_bads("x", ndim=4, axes=[(0, ("s",)), (1, ("s",))], tied=True)
           + array_bads("s", ndim=2, axes=[(0, ("x",)), (1, ("x",))], tied=True), ["dy"], [4])


def _geometry(ctx):
    return {"stride": int(ctx.rng.integers(1, 3)), "padding": int(ctx.rng.integers(0, 2)),
            "dilation": 1, "groups": 1}


def _too_small(a, ctx):
    """x with a height the (3-high) kernel cannot fit, given the padding."""
    padding = pair(ctx.args["padding"])[0]
    return a[:, :, :max(0, 2 - 2 * padding)]


def _conv_args(ctx, per_sample=False):
    lead = (ctx.n,) if per_sample else ()
    kw = int(ctx.rng.integers(2, 4))
    h, w = int(ctx.rng.integers(3, 7)), int(ctx.rng.integers(3, 7))
    return {"x": ctx.array(ctx.n, 2, h, w), "weight": ctx.array(*lead, 5, 2, 3, kw),
            "bias": ctx.array(*lead, 5), **_geometry(ctx), "backend": ctx.backend}


GEOMETRY_BADS = (scalar_bads("stride", PAIR_POSITIVE)
                 + scalar_bads("padding", PAIR_NONNEGATIVE + ABSURD_PADDING)
                 + scalar_bads("dilation", PAIR_POSITIVE + [("absurd 10**6", 10 ** 6)])
                 + scalar_bads("groups", INT_POSITIVE + [("not dividing the channels", 3),
                                                         ("dividing only C_in", 2)]))
X_CONV = array_bads("x", ndim=4, axes=[(1, ("weight",))], zero_axes=[0], tied=True,
                    extra=[("too small for the kernel", _too_small)], names=("x", "input"))
functional("conv2d", _conv_args,
           X_CONV + array_bads("weight", ndim=4, axes=[(0, ("bias",)), (1, ("x",))], tied=True)
           + array_bads("bias", ndim=1, axes=[(0, ("weight",))], tied=True, optional=True)
           + GEOMETRY_BADS + BACKEND_BADS, ["dy"], [4], has_backend=True)
functional("per_sample_conv2d", lambda ctx: _conv_args(ctx, per_sample=True),
           X_CONV + array_bads("weight", ndim=5, axes=[(0, ("x",)), (1, ("bias",)), (2, ("x",))],
                               tied=True)
           + array_bads("bias", ndim=2, axes=[(0, ("weight", "x")), (1, ("weight",))], tied=True,
                        optional=True)
           + GEOMETRY_BADS + BACKEND_BADS, ["dy"], [4], has_backend=True)

functional("dropout", lambda ctx: {"x": ctx.array(ctx.n, 3, 4), "p": 0.3,
                                   "rng": np.random.default_rng(ctx.seed)},
           array_bads("x") + scalar_bads("p", PROBABILITY) + scalar_bads("rng", GENERATOR),
           ["dy"], [3])


def _attention_params(ctx, k, c_in, hidden):
    return {"fc1_weight": ctx.array(hidden, c_in), "fc1_bias": ctx.array(hidden),
            "fc2_weight": ctx.array(k, hidden), "fc2_bias": ctx.array(k)}


ATTENTION_KEYS = {
    "fc1_weight": dict(ndim=2, axes=[(0, ("fc1_bias", "fc2_weight")), (1, ("x",))], tied=True),
    "fc1_bias": dict(ndim=1, axes=[(0, ("fc1_weight",))], tied=True),
    "fc2_weight": dict(ndim=2, axes=[(0, ("fc2_bias", "weight")), (1, ("fc1_weight",))], tied=True),
    "fc2_bias": dict(ndim=1, axes=[(0, ("fc2_weight", "weight"))], tied=True)}
REQUIRED = ("weight", "fc1_weight", "fc2_weight", "fc2_bias")


def _dynamic_conv_args(ctx):
    args = _conv_args(ctx)
    x, weight, bias = args.pop("x"), args.pop("weight"), args.pop("bias")
    params = {"weight": np.stack([weight] + [ctx.like(weight) for _ in range(2)]),
              "bias": np.stack([bias] + [ctx.like(bias) for _ in range(2)]),
              **_attention_params(ctx, 3, 2, 4)}
    return {"x": x, "params": params, "tau": ctx.tau(), **args}


functional("dynamic_conv2d", _dynamic_conv_args,
           array_bads("x", ndim=4, axes=[(1, ("weight", "fc1_weight"))], zero_axes=[0], tied=True,
                      extra=[("too small for the kernel", _too_small)], names=("x", "input"))
           + params_bads("params", {
               "weight": dict(ndim=5, axes=[(0, ("bias", "fc2_weight", "fc2_bias")),
                                            (1, ("bias",)), (2, ("x",))], tied=True),
               "bias": dict(ndim=2, axes=[(0, ("weight",)), (1, ("weight",))], tied=True),
               **ATTENTION_KEYS}, REQUIRED)
           + tau_bads("tau") + GEOMETRY_BADS + BACKEND_BADS, ["dy"], [4], has_backend=True)


def _dynamic_linear_args(ctx):
    params = {"weight": ctx.array(3, 4, 5), "bias": ctx.array(3, 4),
              **_attention_params(ctx, 3, 5, 6)}
    return {"x": ctx.array(ctx.n, 5), "params": params, "tau": ctx.tau(), "backend": ctx.backend}


functional("dynamic_linear", _dynamic_linear_args,
           array_bads("x", ndim=2, axes=[(1, ("weight", "fc1_weight"))], tied=True)
           + params_bads("params", {
               "weight": dict(ndim=3, axes=[(0, ("bias", "fc2_weight", "fc2_bias")),
                                            (1, ("bias",)), (2, ("x",))], tied=True),
               "bias": dict(ndim=2, axes=[(0, ("weight",)), (1, ("weight",))], tied=True),
               **ATTENTION_KEYS}, REQUIRED)
           + tau_bads("tau") + BACKEND_BADS, ["dy"], [2], has_backend=True)

functional("linear", lambda ctx: {"x": ctx.array(ctx.n, 5), "weight": ctx.array(4, 5),
                                  "bias": ctx.array(4)},
           array_bads("x", ndim=2, axes=[(1, ("weight",))], tied=True)
           + array_bads("weight", ndim=2, axes=[(0, ("bias",)), (1, ("x",))], tied=True)
           + array_bads("bias", ndim=1, axes=[(0, ("weight",))], tied=True, optional=True),
           ["dy"], [2])
functional("per_sample_linear", lambda ctx: {"x": ctx.array(ctx.n, 5),
                                             "weights": ctx.array(ctx.n, 4, 5),
                                             "biases": ctx.array(ctx.n, 4)},
           array_bads("x", ndim=2, axes=[(0, ("weights",)), (1, ("weights",))], tied=True)
           + array_bads("weights", ndim=3, axes=[(0, ("x",)), (1, ("biases",)), (2, ("x",))],
                        tied=True)
           + array_bads("biases", ndim=2, axes=[(0, ("weights",)), (1, ("weights",))], tied=True,
                        optional=True), ["dy"], [2])


def _pool_args(ctx):
    k = int(ctx.rng.integers(2, 4))
    return {"x": ctx.array(ctx.n, 3, int(ctx.rng.integers(4, 8)), int(ctx.rng.integers(4, 8))),
            "kernel_size": k, "stride": [None, 1, 2][int(ctx.rng.integers(3))],
            "padding": int(ctx.rng.integers(0, 2))}


def _pool_too_small(a, ctx):
    k, p = pair(ctx.args["kernel_size"])[0], pair(ctx.args["padding"])[0]
    return a[:, :, :max(1, k - 2 * p - 1)] if k - 2 * p - 1 >= 1 else a[:, :, :0]


POOL_BADS = (array_bads("x", ndim=4, names=("x", "input"),
                        extra=[("too small for the window", _pool_too_small),
                               ("empty planes", lambda a, c: a[:, :, :0, :0])])
             + scalar_bads("kernel_size", PAIR_POSITIVE + [("larger than the input", 1000)],
                           names=("kernel_size", "kernel"))
             + scalar_bads("stride", PAIR_POSITIVE, valid=("None",))
             + scalar_bads("padding", PAIR_NONNEGATIVE + [
                 ("more than half the kernel", Dyn(lambda c: pair(c.args["kernel_size"])[0]))]))
POOL_ABSURD = scalar_bads("kernel_size", [("absurd 10**6 (with padding 5*10**5)", 10 ** 6)])
functional("max_pool2d", _pool_args, POOL_BADS, ["dy"], [4])
functional("avg_pool2d", _pool_args, POOL_BADS, ["dy"], [4])
functional("global_avg_pool", lambda ctx: {"x": ctx.array(ctx.n, 3, 4, 5), "backend": ctx.backend},
           array_bads("x", ndim=4, extra=[("empty planes", lambda a, c: a[:, :, :0, :0])])
           + BACKEND_BADS, ["dpooled"], [2], has_backend=True)
functional("flatten", lambda ctx: {"x": ctx.array(ctx.n, 3, 4)},
           array_bads("x", extra=[("1-D", lambda a, c: a.reshape(-1)),
                                  ("0-d", lambda a, c: np.array(a.flat[0]))]), ["dy"], [2])
functional("softmax", lambda ctx: {"z": ctx.array(ctx.n, 4), "tau": ctx.tau()},
           array_bads("z", extra=[("an empty last axis", lambda a, c: a[:, :0])])
           + tau_bads("tau"), ["dpi"], [2])


# -- layers ------------------------------------------------------------------------------------

def layer_entries(name, make_layer, ctor_args, ctor_bads, make_x, x_bads, out_ndim, params=(),
                  setup=None):
    """Constructor, forward, backward and params assignment of a layer."""
    cls = getattr(nn, name)
    register(f"nn.{name}()", ctor_bads, lambda ctx: (cls, ctor_args(ctx)))

    def built(ctx):
        layer = make_layer(ctx)
        if setup is not None:
            setup(layer)
        return layer

    register(f"nn.{name}.forward", x_bads,
             lambda ctx: ((lambda x, layer=built(ctx): layer.forward(x)), {"x": make_x(ctx)}))

    def build_backward(ctx):
        layer = built(ctx)
        y = layer.forward(make_x(ctx))
        return (lambda dy: layer.backward(dy)), {"dy": ctx.like(y)}

    register(f"nn.{name}.backward", upstream_bads("dy", out_ndim), build_backward)
    if params:
        def build_params(ctx):
            layer, x = built(ctx), make_x(ctx)

            def assign(**values):
                for key, value in values.items():
                    layer.params[key] = value
                return layer.forward(x)
            return assign, {key: ctx.like(layer.params[key]) for key in params}

        register(f"nn.{name}.params[...] = ", [
            b for key in params for b in array_bads(key, ndim_bads=True, tied=True,
                                                    axes=[0], names=(key, "params"))],
            build_params)


def _ctor(**fixed):
    return lambda ctx: {**fixed, "dtype": ctx.dtype}


CONV_CTOR = (scalar_bads("in_channels", INT_POSITIVE) + scalar_bads("out_channels", INT_POSITIVE)
             + scalar_bads("kernel_size", PAIR_POSITIVE)
             + scalar_bads("stride", PAIR_POSITIVE) + scalar_bads("padding", PAIR_NONNEGATIVE)
             + scalar_bads("dilation", PAIR_POSITIVE)
             + scalar_bads("groups", INT_POSITIVE + [("not dividing the channels", 3)])
             + scalar_bads("bias", BOOL) + BACKEND_BADS + scalar_bads("dtype", DTYPE)
             + scalar_bads("rng", SEED))
X4 = dict(ndim=4, axes=[1], zero_axes=[0], tied=True, names=("x", "input"))

layer_entries("Conv2d", lambda ctx: nn.Conv2d(2, 4, 3, padding=1, backend=ctx.backend,
                                              dtype=ctx.dtype, rng=0),
              lambda ctx: {"in_channels": 2, "out_channels": 4, "kernel_size": 3, "stride": 1,
                           "padding": 1, "dilation": 1, "groups": 1, "bias": True,
                           "backend": ctx.backend, "dtype": ctx.dtype, "rng": 0},
              CONV_CTOR, lambda ctx: ctx.array(ctx.n, 2, 5, 6),
              array_bads("x", **X4, extra=[("empty planes", lambda a, c: a[:, :, :0, :0])]),
              4, params=("weight", "bias"))

DYNAMIC_CTOR = (scalar_bads("num_kernels", INT_POSITIVE)
                + scalar_bads("reduction", REAL_POSITIVE)  # a real: hidden = floor(C_in / r)
                + tau_bads("temperature") + scalar_bads("min_hidden", INT_POSITIVE))
DYNAMIC_PARAMS = ("weight", "bias", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")
layer_entries("DynamicConv2d",
              lambda ctx: nn.DynamicConv2d(2, 4, 3, padding=1, num_kernels=3, temperature=5.0,
                                           backend=ctx.backend, dtype=ctx.dtype, rng=0),
              lambda ctx: {"in_channels": 2, "out_channels": 4, "kernel_size": 3, "stride": 1,
                           "padding": 1, "dilation": 1, "groups": 1, "bias": True,
                           "num_kernels": 3, "reduction": 4, "temperature": 5.0,
                           "backend": ctx.backend, "dtype": ctx.dtype, "rng": 0, "min_hidden": 4},
              CONV_CTOR + DYNAMIC_CTOR, lambda ctx: ctx.array(ctx.n, 2, 5, 6),
              array_bads("x", **X4, extra=[("empty planes", lambda a, c: a[:, :, :0, :0])]),
              4, params=DYNAMIC_PARAMS)
layer_entries("DynamicLinear",
              lambda ctx: nn.DynamicLinear(5, 4, num_kernels=3, temperature=5.0,
                                           backend=ctx.backend, dtype=ctx.dtype, rng=0),
              lambda ctx: {"in_features": 5, "out_features": 4, "bias": True, "num_kernels": 3,
                           "reduction": 4, "temperature": 5.0, "backend": ctx.backend,
                           "dtype": ctx.dtype, "rng": 0, "min_hidden": 4},
              scalar_bads("in_features", INT_POSITIVE) + scalar_bads("out_features", INT_POSITIVE)
              + scalar_bads("bias", BOOL) + DYNAMIC_CTOR + BACKEND_BADS
              + scalar_bads("backend", [("cuda", "cuda")]) + scalar_bads("dtype", DTYPE)
              + scalar_bads("rng", SEED), lambda ctx: ctx.array(ctx.n, 5),
              array_bads("x", ndim=2, axes=[1], tied=True), 2, params=DYNAMIC_PARAMS)
layer_entries("Linear", lambda ctx: nn.Linear(5, 4, dtype=ctx.dtype, rng=0),
              lambda ctx: {"in_features": 5, "out_features": 4, "bias": True, "dtype": ctx.dtype,
                           "rng": 0},
              scalar_bads("in_features", INT_POSITIVE) + scalar_bads("out_features", INT_POSITIVE)
              + scalar_bads("bias", BOOL) + scalar_bads("dtype", DTYPE) + scalar_bads("rng", SEED),
              lambda ctx: ctx.array(ctx.n, 5), array_bads("x", ndim=2, axes=[1], tied=True), 2,
              params=("weight", "bias"))
_BN_CTOR = (scalar_bads("num_features", INT_POSITIVE) + scalar_bads("eps", REAL_POSITIVE)
            + scalar_bads("momentum", PROBABILITY) + scalar_bads("dtype", DTYPE))
layer_entries("BatchNorm2d", lambda ctx: nn.BatchNorm2d(3, dtype=ctx.dtype),
              lambda ctx: {"num_features": 3, "eps": 1e-5, "momentum": 0.1, "dtype": ctx.dtype},
              _BN_CTOR, lambda ctx: ctx.array(ctx.n, 3, 4, 5),
              array_bads("x", ndim=4, axes=[1], tied=True, extra=[
                  ("one value per channel", lambda a, c: a[:1, :, :1, :1])]), 4,
              params=("weight", "bias"))


def _bn_eval_buffers(ctx):
    layer, x = nn.BatchNorm2d(3, dtype=ctx.dtype).eval(), ctx.array(ctx.n, 3, 4, 5)

    def call(running_mean, running_var):
        layer.buffers["running_mean"], layer.buffers["running_var"] = running_mean, running_var
        return layer.forward(x)
    return call, {"running_mean": ctx.array(3), "running_var": np.abs(ctx.array(3)) + 0.5}


register("nn.BatchNorm2d.forward (eval, buffers)",
         array_bads("running_mean", ndim=1, axes=[0], tied=True, device=False)
         + array_bads("running_var", ndim=1, axes=[0], tied=True, device=False,
                      extra=[("a negative variance", _set_one(-0.5))]), _bn_eval_buffers)

for _name in ("ReLU", "ReLU6", "HardSigmoid", "HardSwish", "Sigmoid"):
    _cls = getattr(nn, _name)
    register(f"nn.{_name}.forward", array_bads("x"),
             lambda ctx, cls=_cls: ((lambda x, layer=cls(): layer.forward(x)),
                                    {"x": ctx.array(ctx.n, 3, 4)}))

    def _act_backward(ctx, cls=_cls):
        layer = cls()
        y = layer.forward(ctx.array(ctx.n, 3, 4))
        return layer.backward, {"dy": ctx.like(y)}
    register(f"nn.{_name}.backward", upstream_bads("dy", 3), _act_backward)

for _name in ("MaxPool2d", "AvgPool2d"):
    layer_entries(_name, lambda ctx, name=_name: getattr(nn, name)(2, stride=1, padding=1),
                  lambda ctx: {"kernel_size": 3, "stride": 2, "padding": 1},
                  scalar_bads("kernel_size", PAIR_POSITIVE, names=("kernel_size", "kernel"))
                  + scalar_bads("stride", PAIR_POSITIVE, valid=("None",))
                  + scalar_bads("padding", PAIR_NONNEGATIVE + [("more than half the kernel", 2)]),
                  lambda ctx: ctx.array(ctx.n, 3, 4, 5),
                  array_bads("x", ndim=4, names=("x", "input"),
                             extra=[("empty planes", lambda a, c: a[:, :, :0, :0])]), 4)

register("nn.GlobalAvgPool2d.forward",
         array_bads("x", ndim=4, extra=[("empty planes", lambda a, c: a[:, :, :0, :0])]),
         lambda ctx: ((lambda x, layer=nn.GlobalAvgPool2d(): layer.forward(x)),
                      {"x": ctx.array(ctx.n, 3, 4, 5)}))


def _gap_backward(ctx):
    layer = nn.GlobalAvgPool2d()
    return layer.backward, {"dy": ctx.like(layer.forward(ctx.array(ctx.n, 3, 4, 5)))}


register("nn.GlobalAvgPool2d.backward", upstream_bads("dy", 2), _gap_backward)
layer_entries("Dropout", lambda ctx: nn.Dropout(0.3, rng=0), lambda ctx: {"p": 0.3, "rng": 0},
              scalar_bads("p", PROBABILITY) + scalar_bads("rng", SEED),
              lambda ctx: ctx.array(ctx.n, 3, 4), array_bads("x"), 3)


def _temperature_setter(cls, *args):
    def build(ctx):
        layer = cls(*args, dtype=ctx.dtype, backend=ctx.backend, rng=0)
        return (lambda temperature: setattr(layer, "temperature", temperature)), \
            {"temperature": 2.0}
    return build


register("nn.DynamicConv2d.temperature = ", tau_bads("temperature"),
         _temperature_setter(nn.DynamicConv2d, 2, 4, 3))
register("nn.DynamicLinear.temperature = ", tau_bads("temperature"),
         _temperature_setter(nn.DynamicLinear, 5, 4))


# -- gradcheck, SGD, schedules -----------------------------------------------------------------

def _gradcheck_function(ctx):
    rng = np.random.default_rng(ctx.seed)
    return gradcheck, {
        "target": lambda x, weight: F.linear_forward(x, weight),
        "inputs": {"x": rng.standard_normal((3, 4)), "weight": rng.standard_normal((2, 4))},
        "backward": lambda dy, cache: F.linear_backward(dy, cache)[:2],
        "mode": "central", "eps": None, "atol": 1e-7, "rtol": 1e-5, "seed": 0,
        "max_elements": None, "raise_exception": True}


FLOAT64_INPUT = [("float32", lambda a, c: a.astype(np.float32)), ("a list", lambda a, c: a.tolist()),
                 ("int64", lambda a, c: np.round(a).astype(np.int64)),
                 ("complex", lambda a, c: a.astype(np.complex128)), ("None", lambda a, c: None),
                 ("a NaN", _set_one(np.nan)), ("a +inf", _set_one(np.inf))]
GRADCHECK_OPTIONS = (scalar_bads("mode", [("unknown", "centre"), ("None", None), ("an int", 3),
                                          ("a list", ["central"])])
                     + scalar_bads("eps", REAL_POSITIVE, valid=("None",))
                     + scalar_bads("atol", REAL_NONNEGATIVE)
                     + scalar_bads("rtol", REAL_NONNEGATIVE)
                     + scalar_bads("max_elements", [v for v in INT_POSITIVE if v[0] != "None"])
                     + scalar_bads("seed", SEED) + scalar_bads("raise_exception", BOOL))
register("gradcheck(function)",
         GRADCHECK_OPTIONS
         + scalar_bads("target", [("not callable", "f"), ("None", None)])
         + scalar_bads("backward", [("not callable", 3)])
         + scalar_bads("inputs", [("None", None), ("an empty dict", {}), ("a list", [1.0]),
                                  ("an array", np.ones(3))])
         + [_bad("inputs", label, fn, ("x", "inputs"), key="x") for label, fn in FLOAT64_INPUT],
         _gradcheck_function)


def _gradcheck_layer(ctx):
    rng = np.random.default_rng(ctx.seed)
    return gradcheck, {"target": nn.Linear(4, 2, dtype=np.float64, rng=0),
                       "inputs": rng.standard_normal((3, 4)), "mode": "central"}


register("gradcheck(layer)",
         scalar_bads("target", [("an object that is no layer", object()), ("None", None)])
         + [_bad("inputs", label, fn, ("x", "inputs")) for label, fn in FLOAT64_INPUT]
         + scalar_bads("mode", [("complex, for a layer", "complex"), ("unknown", "centre")]),
         _gradcheck_layer)


def _sgd(ctx):
    return SGD, {"model": nn.Linear(3, 2, dtype=ctx.dtype, rng=0), "lr": 0.1, "momentum": 0.9,
                 "nesterov": False, "weight_decay": 1e-4}


register("train.SGD()", scalar_bads("model", MODEL) + scalar_bads("lr", REAL_POSITIVE)
         + scalar_bads("momentum", PROBABILITY + [("1 (no decay)", 1.0)])
         + scalar_bads("nesterov", BOOL) + scalar_bads("weight_decay", REAL_NONNEGATIVE)
         + [Bad("nesterov", "True without momentum",
                lambda args, c: {**args, "nesterov": True, "momentum": 0.0}, ("nesterov",))],
         _sgd)


def _sgd_lr(ctx):
    optimizer = SGD(nn.Linear(3, 2, rng=0), 0.1)
    return (lambda lr: setattr(optimizer, "lr", lr)), {"lr": 0.05}


register("train.SGD.lr = ", scalar_bads("lr", REAL_POSITIVE), _sgd_lr)
register("train.CosineWarmupLR()",
         scalar_bads("base_lr", REAL_POSITIVE) + scalar_bads("total_epochs", REAL_POSITIVE)
         + scalar_bads("warmup_epochs", REAL_NONNEGATIVE + [("= total_epochs", 10)])
         + scalar_bads("min_lr", REAL_NONNEGATIVE + [("> base_lr", 0.2)]),
         lambda ctx: (CosineWarmupLR, {"base_lr": 0.1, "total_epochs": 10, "warmup_epochs": 2,
                                       "min_lr": 0.0}))
PROGRESS_BADS = (scalar_bads("epoch", REAL_NONNEGATIVE)
                 + scalar_bads("iteration", INT_NONNEGATIVE + [("= iterations_per_epoch", 4)])
                 + scalar_bads("iterations_per_epoch", INT_POSITIVE))
register("train.CosineWarmupLR.lr_at", PROGRESS_BADS,
         lambda ctx: (CosineWarmupLR(0.1, 10, 2).lr_at,
                      {"epoch": 3, "iteration": 1, "iterations_per_epoch": 4}))
register("train.TemperatureAnnealing()",
         tau_bads("start", ("start", "tau", "temperature"))[:-2]
         + tau_bads("end", ("end", "tau", "temperature"))[:-2]
         + scalar_bads("start", [("a subnormal", 1e-310)], ("start", "tau", "temperature"))
         + scalar_bads("epochs", REAL_POSITIVE) + scalar_bads("per_iteration", BOOL),
         lambda ctx: (TemperatureAnnealing, {"start": 30.0, "end": 1.0, "epochs": 10,
                                             "per_iteration": True}))
register("train.TemperatureAnnealing.tau_at", PROGRESS_BADS,
         lambda ctx: (TemperatureAnnealing(per_iteration=True).tau_at,
                      {"epoch": 3, "iteration": 1, "iterations_per_epoch": 4}))
register("train.apply_temperature", scalar_bads("model", MODEL) + tau_bads("tau"),
         lambda ctx: (apply_temperature, {"model": nn.DynamicLinear(5, 4, dtype=ctx.dtype, rng=0),
                                          "tau": 2.0}))

ENTRY = {entry.name: entry for entry in ENTRIES}

# -- checking one corruption -------------------------------------------------------------------

def names_any(message, names):
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message)
               for name in names)


def _snapshot(args, skip):
    """Copies of every array among the arguments (one level into dicts), but ``skip``."""
    saved = {}
    for name, value in args.items():
        if name == skip or name == "cache":
            continue
        if isinstance(value, np.ndarray):
            saved[name] = value.copy()
        elif isinstance(value, dict):
            for key, inner in value.items():
                if isinstance(inner, np.ndarray):
                    saved[(name, key)] = inner.copy()
    return saved


def _changed(args, saved):
    changed = []
    for where, copy in saved.items():
        now = args[where] if isinstance(where, str) else args[where[0]][where[1]]
        if not np.array_equal(now, copy, equal_nan=True):
            changed.append(where)
    return changed


def run_bad(entry, bad, ctx):
    """None when the corruption is refused properly, else what went wrong."""
    call, args = entry.build(ctx)
    bad_args = bad.make(args, ctx)
    arg = bad.arg.split("[")[0]
    saved = _snapshot(bad_args, arg)
    what = f"{entry.name} with {bad.arg} = {bad.label}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = call(**bad_args)
    except (ValueError, TypeError) as error:
        module = type(error).__module__
        if module != "builtins" and not module.startswith("dynconv_np"):
            return f"{what}: {module}.{type(error).__name__} (a library's own error): {error}"
        if not names_any(str(error), bad.names):
            return f"{what}: the message does not name {' or '.join(bad.names)}: {error}"
    except Exception as error:  # noqa: BLE001 - every other kind is the failure reported
        return f"{what}: {type(error).__name__}, not ValueError/TypeError: {error}"
    else:
        summary = type(result).__name__
        if isinstance(result, tuple) and result and isinstance(result[0], np.ndarray):
            summary += f" (first output finite: {bool(np.isfinite(result[0]).all())})"
        return f"{what}: accepted, returned {summary}"
    changed = _changed(bad_args, saved)
    if changed:
        return f"{what}: modified the other arguments {changed}"
    return None


BAD_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                               HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
@BAD_SETTINGS
@given(data=st.data())
def test_bad_input_is_named(entry, data):
    """Hypothesis draws the valid call and one corruption; it must be refused by name."""
    bads = list(entry.bads)
    bad = data.draw(st.sampled_from(bads), label="corruption")
    ctx = Ctx(seed=data.draw(st.integers(0, 2 ** 16), label="seed"),
              dtype=data.draw(st.sampled_from(FLOATS), label="dtype"),
              backend=data.draw(st.sampled_from(CPU_BACKENDS), label="backend"),
              n=data.draw(st.integers(1, 3), label="N"))
    problem = run_bad(entry, bad, ctx)
    assert problem is None, problem


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_every_corruption_of(entry):
    """Every corruption of the entry once (float32 and float64 alternately, each backend)."""
    problems = []
    for i, bad in enumerate(entry.bads):
        ctx = Ctx(seed=i, dtype=FLOATS[i % 2], backend=CPU_BACKENDS[i % 3], n=1 + i % 3)
        problems.append(run_bad(entry, bad, ctx))
    problems = [p for p in problems if p is not None]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
@pytest.mark.parametrize("dtype", FLOATS, ids=["float32", "float64"])
def test_valid_call_works(entry, dtype):
    """The table's valid calls run, in both dtypes, with finite results (the table is honest)."""
    for backend in CPU_BACKENDS:
        call, args = entry.build(Ctx(seed=3, dtype=dtype, backend=backend, n=2))
        result = call(**args)
        for a in _arrays(result):
            assert np.isfinite(a).all(), f"{entry.name}: non-finite output"


# Public pairs added to dynconv_np.functional while this table was written (by others): they
# still need rows here.
NOT_YET_TABLED = {"condconv2d", "condconv2d_with_routing", "condconv_routing", "odconv2d",
                  "dcd_conv2d_eval", "dcd_conv2d_train", "fdy_conv2d_eval", "fdy_conv2d_train"}


def test_table_covers_every_functional_pair():
    public = {name[:-len("_forward")] for name in dir(F) if name.endswith("_forward")}
    tabled = {name for name, *_ in PAIRS}
    missing = sorted(public - tabled - NOT_YET_TABLED)
    assert not missing, f"functional pairs without rows in ENTRIES: {missing}"


def test_case_count_in_docstring():
    drawn = len(ENTRIES) * EXAMPLES
    swept = sum(1 for entry in ENTRIES for bad in entry.bads)
    line = (f"{len(ENTRIES)} entries x {EXAMPLES} hypothesis examples = {drawn}, plus the\n"
            f"exhaustive sweep of {swept} (entry, corruption) pairs: {drawn + swept} in all")
    print(f"\nbad-input cases: {line}")
    assert line in __doc__, f"update the module docstring: {line}"


# -- layouts: read-only, Fortran order, negative strides ---------------------------------------

def _arrays(value):
    """Every array in a (nested) result: tuples, lists and dicts walked."""
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _arrays(v)]
    if isinstance(value, dict):
        return [a for k in sorted(value) for a in _arrays(value[k])]
    return []


def _readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a


def _negative(a):
    return np.flip(np.flip(a).copy())  # same values, every stride negative


def _strided(a):
    big = np.zeros(a.shape + (2,), a.dtype)
    big[..., 0] = a
    return big[..., 0]  # every other element of a larger buffer


LAYOUTS = {
    "read-only": _readonly,
    "Fortran order": np.asfortranarray,
    "negative strides": _negative,
    "strided": _strided,
    "read-only negative strides": lambda a: _readonly(_negative(a)),
    "read-only Fortran": lambda a: _readonly(np.asfortranarray(a)),
}


def _relaid(args, layout):
    out = {}
    for name, value in args.items():
        if isinstance(value, np.ndarray):
            out[name] = layout(value)
        elif isinstance(value, dict) and name == "params":
            out[name] = {k: layout(v) for k, v in value.items()}
        else:
            out[name] = value
    return out


def _assert_same(got, want, dtype, what):
    got, want = _arrays(got), _arrays(want)
    assert len(got) == len(want), what
    tol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, what
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * max(1.0, float(np.abs(w).max(initial=0))),
                                   err_msg=what)


LAYOUT_CASES = [(name, backend) for name, *_, has_backend in PAIRS
                for backend in (CPU_BACKENDS if has_backend else ("numpy",))]


@pytest.mark.parametrize("name, backend", LAYOUT_CASES, ids=[f"{n}-{b}" for n, b in LAYOUT_CASES])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOATS, ids=["float32", "float64"])
def test_layouts_give_the_contiguous_result(name, backend, layout, dtype):
    """Forward and backward with every array argument (and upstream gradient) in ``layout``:
    the results of C-contiguous copies, and no input modified."""
    _, forward, backward, make_args, outputs, _ = next(p for p in PAIRS if p[0] == name)
    args = make_args(Ctx(seed=5, dtype=dtype, backend=backend, n=2))
    odd = _relaid(make_args(Ctx(seed=5, dtype=dtype, backend=backend, n=2)), LAYOUTS[layout])
    saved = [a.copy() for a in _arrays(odd)]
    want, cache = forward(**args)
    got, odd_cache = forward(**odd)
    _assert_same(got, want, dtype, f"{name} forward, {layout}")
    outs = want if isinstance(want, tuple) else (want,)
    rng = np.random.default_rng(6)
    grads = [None if o is None else rng.standard_normal(o.shape).astype(o.dtype) for o in outs]
    odd_grads = [None if g is None else LAYOUTS[layout](g) for g in grads]
    saved_grads = [None if g is None else g.copy() for g in odd_grads]
    _assert_same(backward(*odd_grads, odd_cache), backward(*grads, cache), dtype,
                 f"{name} backward, {layout}")
    for now, before in zip(_arrays(odd), saved):
        assert np.array_equal(now, before), f"{name}: an input was modified"
    for now, before in zip(odd_grads, saved_grads):
        assert now is None or np.array_equal(now, before), f"{name}: dy was modified"


LAYER_CASES = {
    "Conv2d": (lambda b, d: nn.Conv2d(2, 4, 3, stride=(1, 2), padding=1, backend=b, dtype=d, rng=1),
               (2, 2, 5, 6), True),
    "Conv2d depthwise": (lambda b, d: nn.Conv2d(2, 4, 3, groups=2, backend=b, dtype=d, rng=1),
                         (2, 2, 5, 6), True),
    "DynamicConv2d": (lambda b, d: nn.DynamicConv2d(3, 4, 3, padding=1, num_kernels=3,
                                                    temperature=2.0, backend=b, dtype=d, rng=1),
                      (2, 3, 5, 6), True),
    "DynamicLinear": (lambda b, d: nn.DynamicLinear(5, 4, num_kernels=3, temperature=2.0,
                                                    backend=b, dtype=d, rng=1), (3, 5), True),
    "Linear": (lambda b, d: nn.Linear(5, 4, dtype=d, rng=1), (3, 5), False),
    "BatchNorm2d": (lambda b, d: nn.BatchNorm2d(3, dtype=d), (2, 3, 4, 5), False),
    "BatchNorm2d eval": (lambda b, d: nn.BatchNorm2d(3, dtype=d).eval(), (2, 3, 4, 5), False),
    "MaxPool2d": (lambda b, d: nn.MaxPool2d(3, stride=2, padding=1), (2, 3, 5, 6), False),
    "AvgPool2d": (lambda b, d: nn.AvgPool2d(2), (2, 3, 5, 6), False),
    "GlobalAvgPool2d": (lambda b, d: nn.GlobalAvgPool2d(), (2, 3, 5, 6), False),
    "HardSwish": (lambda b, d: nn.HardSwish(), (2, 3, 5), False),
    "Sigmoid": (lambda b, d: nn.Sigmoid(), (2, 3, 5), False),
}
LAYER_LAYOUT_CASES = [(name, backend) for name, (_, _, has_backend) in LAYER_CASES.items()
                      for backend in (CPU_BACKENDS if has_backend else ("numpy",))]


@pytest.mark.parametrize("name, backend", LAYER_LAYOUT_CASES,
                         ids=[f"{n}-{b}" for n, b in LAYER_LAYOUT_CASES])
@pytest.mark.parametrize("layout", ["read-only", "Fortran order", "read-only negative strides",
                                    "strided"])
@pytest.mark.parametrize("dtype", FLOATS, ids=["float32", "float64"])
def test_layer_layouts_give_the_contiguous_result(name, backend, layout, dtype):
    make, shape, _ = LAYER_CASES[name]
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(dtype)
    reference, layer = make(backend, dtype), make(backend, dtype)
    odd_x = LAYOUTS[layout](x)
    y_want, y_got = reference.forward(x), layer.forward(odd_x)
    _assert_same(y_got, y_want, dtype, f"{name} forward, {layout}")
    dy = rng.standard_normal(y_want.shape).astype(dtype)
    odd_dy = LAYOUTS[layout](dy)
    _assert_same(layer.backward(odd_dy), reference.backward(dy), dtype, f"{name} dx, {layout}")
    _assert_same(layer.grads, reference.grads, dtype, f"{name} grads, {layout}")
    assert np.array_equal(odd_x, x) and np.array_equal(odd_dy, dy), f"{name}: input modified"


# -- numba against numpy, N = 1 and random configurations, read-only non-contiguous inputs ----

def _tolerance(dtype, terms, scale):
    return 4 * terms * np.finfo(dtype).eps * max(1.0, scale)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=conv_configs(max_batch=3), dtype=st.sampled_from(FLOATS),
       single=st.booleans(), kind=st.sampled_from(["conv2d", "per_sample_conv2d",
                                                   "dynamic_conv2d"]),
       layout=st.sampled_from(["read-only negative strides", "read-only Fortran", "strided"]),
       seed=st.integers(0, 2 ** 16))
def test_numba_matches_numpy_on_odd_inputs(config, dtype, single, kind, layout, seed):
    rng = np.random.default_rng(seed)
    n = 1 if single else config["n"]
    c_in, c_out, groups = config["in_channels"], config["out_channels"], config["groups"]
    kernel = config["kernel"]
    x = rng.standard_normal((n, c_in) + config["size"]).astype(dtype)
    geometry = dict(stride=config["stride"], padding=config["padding"],
                    dilation=config["dilation"], groups=groups)
    lead = {"conv2d": (), "per_sample_conv2d": (n,), "dynamic_conv2d": (3,)}[kind]
    weight = rng.standard_normal(lead + (c_out, c_in // groups) + kernel).astype(dtype)
    bias = rng.standard_normal(lead + (c_out,)).astype(dtype) if config["bias"] else None
    if kind == "dynamic_conv2d":
        params = {"weight": weight, **({} if bias is None else {"bias": bias}),
                  "fc1_weight": rng.standard_normal((4, c_in)).astype(dtype),
                  "fc1_bias": rng.standard_normal(4).astype(dtype),
                  "fc2_weight": rng.standard_normal((3, 4)).astype(dtype),
                  "fc2_bias": rng.standard_normal(3).astype(dtype)}
        args = {"x": x, "params": params, "tau": 1.5, **geometry}
    else:
        args = {"x": x, "weight": weight, "bias": bias, **geometry}
    forward, backward = getattr(F, f"{kind}_forward"), getattr(F, f"{kind}_backward")
    odd = _relaid(args, LAYOUTS[layout])
    saved = [a.copy() for a in _arrays(odd)]
    want, cache = forward(**args, backend="numpy")
    got, odd_cache = forward(**odd, backend="numba")
    terms = (c_in // groups) * kernel[0] * kernel[1]
    scale = float(np.abs(want).max(initial=0))
    np.testing.assert_allclose(got, want, rtol=0, atol=_tolerance(dtype, terms + 8, scale))
    dy = rng.standard_normal(want.shape).astype(dtype)
    dy_odd = LAYOUTS[layout](dy)
    for g, w in zip(_arrays(backward(dy_odd, odd_cache)), _arrays(backward(dy, cache))):
        sums = terms * want.shape[0] * want.shape[2] * want.shape[3] * c_out
        np.testing.assert_allclose(g, w, rtol=0, atol=_tolerance(dtype, sums, float(
            np.abs(w).max(initial=0))))
    for now, before in zip(_arrays(odd) + [dy_odd], saved + [dy]):
        assert np.array_equal(now, before), "an input was modified"


# -- special cases -----------------------------------------------------------------------------

def _empty_batch_calls(backend, dtype=np.float32):
    ctx = Ctx(seed=2, dtype=dtype, backend=backend, n=2)
    conv, per_sample, dynamic = _conv_args(ctx), _conv_args(ctx, True), _dynamic_conv_args(ctx)
    for args in (conv, per_sample, dynamic):
        args["x"] = args["x"][:0]
    per_sample["weight"], per_sample["bias"] = per_sample["weight"][:0], per_sample["bias"][:0]
    empty = np.zeros((0, 2, 5, 6), dtype)
    return {
        "conv2d_forward": lambda: F.conv2d_forward(**conv),
        "per_sample_conv2d_forward": lambda: F.per_sample_conv2d_forward(**per_sample),
        "dynamic_conv2d_forward": lambda: F.dynamic_conv2d_forward(**dynamic),
        "Conv2d": lambda: nn.Conv2d(2, 4, 3, backend=backend, dtype=dtype).forward(empty),
        "DynamicConv2d": lambda: nn.DynamicConv2d(2, 4, 3, backend=backend,
                                                  dtype=dtype).forward(empty)}


def _backends_here():
    backends = list(CPU_BACKENDS)
    try:
        get_backend("cuda")
        backends.append("cuda")
    except Exception:  # noqa: BLE001 - no GPU and no simulator: the host backends only
        pass
    return backends


@pytest.mark.parametrize("which", list(_empty_batch_calls("numpy")))
def test_empty_batch_same_clear_error_on_every_backend(which):
    messages = {}
    for backend in _backends_here():
        with pytest.raises(ValueError) as error:
            _empty_batch_calls(backend)[which]()
        messages[backend] = str(error.value)
    assert len(set(messages.values())) == 1, messages
    assert re.search(r"\bx\b", messages["numpy"]) and "N >= 1" in messages["numpy"], messages


DEVICE_CALLS = {
    "F.conv2d_forward x": lambda b: F.conv2d_forward(FakeDeviceArray(np.ones((1, 2, 4, 4), np.float32)),
                                                     np.ones((3, 2, 3, 3), np.float32), backend=b),
    "F.conv2d_forward weight": lambda b: F.conv2d_forward(
        np.ones((1, 2, 4, 4), np.float32), FakeDeviceArray(np.ones((3, 2, 3, 3), np.float32)),
        backend=b),
    "F.global_avg_pool_forward x": lambda b: F.global_avg_pool_forward(
        FakeDeviceArray(np.ones((1, 2, 4, 4), np.float32)), backend=b),
    "F.conv2d_backward dy": lambda b: F.conv2d_backward(
        FakeDeviceArray(np.ones((1, 3, 2, 2), np.float32)),
        F.conv2d_forward(np.ones((1, 2, 4, 4), np.float32), np.ones((3, 2, 3, 3), np.float32),
                         backend=b)[1]),
    "Conv2d.forward x": lambda b: nn.Conv2d(2, 3, 3, backend=b).forward(
        FakeDeviceArray(np.ones((1, 2, 4, 4), np.float32))),
    "DynamicConv2d.forward x": lambda b: nn.DynamicConv2d(2, 3, 3, backend=b).forward(
        FakeDeviceArray(np.ones((1, 2, 4, 4), np.float32))),
}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("which", list(DEVICE_CALLS))
def test_device_array_on_a_host_backend_is_named(which, backend):
    """(The table puts a FakeDeviceArray in every array argument; these are the core cases.)"""
    with pytest.raises(TypeError) as error:
        DEVICE_CALLS[which](backend)
    name = which.split()[-1]
    assert names_any(str(error.value), (name,)) and "CUDA" in str(error.value), str(error.value)


TINY = {np.float32: 1e-39, np.float64: 1e-310}
TAU_CALLS = {
    "F.softmax_forward": lambda d, tau: F.softmax_forward(np.zeros((2, 3), d), tau),
    "F.attention_forward": lambda d, tau: F.attention_forward(
        **{**_attention_args(Ctx(dtype=d)), "tau": tau}),
    "F.dynamic_conv2d_forward": lambda d, tau: F.dynamic_conv2d_forward(
        **{**_dynamic_conv_args(Ctx(dtype=d, backend="numba")), "tau": tau}),
    "F.dynamic_linear_forward": lambda d, tau: F.dynamic_linear_forward(
        **{**_dynamic_linear_args(Ctx(dtype=d, backend="numba")), "tau": tau}),
    "DynamicConv2d(temperature=...)": lambda d, tau: nn.DynamicConv2d(2, 2, 1, temperature=tau,
                                                                      dtype=d),
    "DynamicLinear.temperature = ": lambda d, tau: setattr(nn.DynamicLinear(3, 2, dtype=d),
                                                           "temperature", tau),
    "apply_temperature": lambda d, tau: apply_temperature(nn.DynamicLinear(3, 2, dtype=d), tau),
}


@pytest.mark.parametrize("dtype", FLOATS, ids=["float32", "float64"])
@pytest.mark.parametrize("which", list(TAU_CALLS))
def test_too_small_temperature_names_the_usable_range(which, dtype):
    with pytest.raises(ValueError, match=r"tau.*usable range .*\[[0-9.e+-]+, [0-9.e+-]+\]"):
        TAU_CALLS[which](dtype, TINY[dtype])
    smallest = float(np.finfo(dtype).tiny)
    TAU_CALLS[which](dtype, smallest)  # the edge of the range is usable ...
    pi, cache = F.softmax_forward(np.array([[0.0, 1.0, 1e-30]], dtype), smallest)
    assert np.isfinite(pi).all() and np.array_equal(pi, [[0, 1, 0]])  # ... and one-hot, no NaN
    assert np.isfinite(F.softmax_backward(np.ones_like(pi), cache)).all()


ABSURD_CALLS = {
    "F.conv2d_forward padding=10**6": lambda: F.conv2d_forward(
        np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), padding=10 ** 6),
    "F.conv2d_forward padding=(0, 10**9)": lambda: F.conv2d_forward(
        np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), padding=(0, 10 ** 9)),
    "F.per_sample_conv2d_forward padding=10**6": lambda: F.per_sample_conv2d_forward(
        np.ones((1, 1, 4, 4)), np.ones((1, 1, 1, 3, 3)), padding=10 ** 6),
    "F.dynamic_conv2d_forward padding=10**6": lambda: F.dynamic_conv2d_forward(
        **{**_dynamic_conv_args(Ctx()), "padding": 10 ** 6}),
    "Conv2d(padding=10**6).forward": lambda: nn.Conv2d(1, 1, 3, padding=10 ** 6).forward(
        np.ones((1, 1, 4, 4), np.float32)),
    "DynamicConv2d(padding=10**6).forward": lambda: nn.DynamicConv2d(
        1, 1, 3, padding=10 ** 6).forward(np.ones((1, 1, 4, 4), np.float32)),
    "F.max_pool2d_forward kernel_size=10**6, padding=5*10**5": lambda: F.max_pool2d_forward(
        np.ones((1, 1, 4, 4)), 10 ** 6, padding=5 * 10 ** 5),
    "F.avg_pool2d_forward kernel_size=10**6, padding=5*10**5": lambda: F.avg_pool2d_forward(
        np.ones((1, 1, 4, 4)), 10 ** 6, padding=5 * 10 ** 5),
    "Conv2d(kernel_size=10**6)": lambda: nn.Conv2d(1, 1, 10 ** 6),
    "DynamicConv2d(kernel_size=10**6)": lambda: nn.DynamicConv2d(1, 1, 10 ** 6),
}


@pytest.mark.parametrize("which", list(ABSURD_CALLS))
def test_absurd_sizes_are_refused_before_allocating(which):
    with pytest.raises(ValueError, match=r"padding|kernel"):
        ABSURD_CALLS[which]()


@pytest.mark.parametrize("name", ["Conv2d", "ReLU", "BatchNorm2d", "DynamicLinear"])
def test_backward_without_forward_is_a_clear_error(name):
    layer = {"Conv2d": lambda: nn.Conv2d(2, 2, 1), "ReLU": nn.ReLU,
             "BatchNorm2d": lambda: nn.BatchNorm2d(2), "DynamicLinear": lambda: nn.DynamicLinear(
                 2, 2)}[name]()
    with pytest.raises(ValueError, match="without a matching forward"):
        layer.backward(np.ones((1, 2, 1, 1), np.float32))
