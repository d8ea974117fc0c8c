"""``python -m dynconv_np costs``: params and multiply-adds of the paper's networks, static vs DY.

    python -m dynconv_np costs                              every model at 224 x 224
    python -m dynconv_np costs --model resnet18 --per-layer   one model, layer by layer (DY)
    python -m dynconv_np costs --model mobilenet_v3_small --time   also time one forward
    python -m dynconv_np costs --variant odconv             static vs ODConv (condconv, dcd)

Counting conventions: see ``dynconv_np.models.profile``. "extra" is the dynamic network's
attention + aggregation MAdds as a percentage of the static network's MAdds. ``--variant``
(default dyconv, the paper's DynamicConv2d) picks the dynamic layer (``models.builder``); for
ODConv the attention's input/output scaling is counted in "aggregation", for DCD "aggregation"
is its dynamic part on the features (``models.profile``).
"""
import argparse
import functools
import time

import numpy as np

from .builder import VARIANTS
from .mobilenetv2 import mobilenet_v2
from .mobilenetv3 import mobilenet_v3_large, mobilenet_v3_small
from .profile import profile
from .resnet import resnet10, resnet18
from ..backends import DEFAULT_BACKEND, available_backends

MODELS = {
    "mobilenet_v2_1.0": functools.partial(mobilenet_v2, 1.0),
    "mobilenet_v2_0.75": functools.partial(mobilenet_v2, 0.75),
    "mobilenet_v2_0.5": functools.partial(mobilenet_v2, 0.5),
    "mobilenet_v2_0.35": functools.partial(mobilenet_v2, 0.35),
    "mobilenet_v3_small": mobilenet_v3_small,
    "mobilenet_v3_large": mobilenet_v3_large,
    "resnet18": resnet18,
    "resnet10": resnet10,
}


LABELS = {"dyconv": "DY", "condconv": "CondConv", "odconv": "ODConv", "dcd": "DCD"}


def _kind(variant, num_kernels):
    """"DY (K=4)", "CondConv (E=4)", "ODConv (K=4)", "DCD" (K does not apply)."""
    letter = {"condconv": "E", "dcd": None}.get(variant, "K")
    return LABELS[variant] + (f" ({letter}={num_kernels})" if letter else "")


def _millions(count, digits=1):
    return f"{count / 1e6:.{digits}f}M"


def format_table(headers, rows, left=1):
    """Columns right-aligned to their widest cell (the first ``left`` columns left-aligned)."""
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _percent(part, whole):
    return f"+{100 * part / whole:.1f}%"


def static_and_dynamic(name, resolution=224, num_kernels=4, variant="dyconv"):
    """Profiles (static, dynamic) of model ``name`` on one resolution x resolution RGB image;
    the dynamic one made of ``variant`` layers (``models.builder.VARIANTS``)."""
    shape = (3, resolution, resolution)
    return tuple(profile(MODELS[name](dynamic=dynamic, num_kernels=num_kernels, backend="numpy",
                                      rng=0), shape) for dynamic in (False, variant))


def summary_table(names, resolution, num_kernels, variant="dyconv"):
    """One row per model: static vs dynamic params and MAdds, and the dynamic extra."""
    rows = []
    label = LABELS[variant]
    for name in names:
        static, dynamic = static_and_dynamic(name, resolution, num_kernels, variant)
        extra = dynamic.attention + dynamic.aggregation
        rows.append((name, _millions(static.params, 2), _millions(dynamic.params, 2),
                     _millions(static.madds), _millions(dynamic.madds),
                     _millions(dynamic.attention_pool, 2), _millions(dynamic.attention_fc, 2),
                     _millions(dynamic.aggregation, 2), _percent(extra, static.madds),
                     _percent(extra - dynamic.attention_pool, static.madds)))
    headers = ("model", "params", f"{label} params", "MAdds", f"{label} MAdds", "att. pool",
               "att. FC", "aggregation", "extra", "extra w/o pool")
    return (f"Static vs {_kind(variant, num_kernels)} networks at {resolution} x {resolution}, "
            "one image (counting rules: dynconv_np.models.profile)\n" +
            format_table(headers, rows) +
            f"\nextra = {label} MAdds / MAdds - 1 = (att. pool + att. FC + aggregation) / MAdds; "
            "'w/o pool' leaves out\nthe attention's global average pooling (C_in H W additions "
            "per dynamic convolution).")


def per_layer_table(name, resolution, num_kernels, dynamic):
    """One row per leaf layer of one model, with exact counts, and a total row (``dynamic``:
    False, True or a variant name)."""
    model = MODELS[name](dynamic=dynamic, num_kernels=num_kernels, backend="numpy", rng=0)
    result = profile(model, (3, resolution, resolution))
    rows = [(layer.name, layer.layer, "x".join(map(str, layer.output_shape[1:])),
             *(f"{getattr(layer, field):,}" for field in _PER_LAYER_FIELDS))
            for layer in result.layers]
    rows.append(("total", "", "", *(f"{getattr(result, field):,}"
                                    for field in _PER_LAYER_FIELDS)))
    kind = (_kind("dyconv" if dynamic is True else dynamic, num_kernels) if dynamic
            else "static")
    return (f"{name}, {kind}, {resolution} x {resolution}: {_millions(result.madds)} MAdds, "
            f"{_millions(result.params, 2)} params\n" +
            format_table(("layer", "type", "output", "params", "conv MAdds", "att. pool",
                          "att. FC", "aggregation"), rows, left=2))


_PER_LAYER_FIELDS = ("params", "conv", "attention_pool", "attention_fc", "aggregation")


def time_forward(name, resolution, num_kernels, backend, repeats, variant="dyconv"):
    """Forward times of the static and the DY model (eval mode, one random float32 image).

    Returns (first, static, dynamic): seconds of the DY model's first call (includes JIT
    compilation), then the medians of ``repeats`` calls of each model, measured alternately so
    that a change in machine load hits both alike.
    """
    models = [MODELS[name](dynamic=dynamic, num_kernels=num_kernels, backend=backend,
                           rng=0).eval() for dynamic in (False, variant)]
    x = np.random.default_rng(0).standard_normal((1, 3, resolution, resolution)).astype(np.float32)
    start = time.perf_counter()
    models[1](x)
    first = time.perf_counter() - start
    models[0](x)
    runs = ([], [])
    for _ in range(repeats):
        for model, times in zip(models, runs):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return (first,) + tuple(float(np.median(times)) for times in runs)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dynconv_np costs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), help="only this model")
    parser.add_argument("--per-layer", action="store_true",
                        help="per-layer split for --model (the DY network unless --static)")
    parser.add_argument("--static", action="store_true", help="with --per-layer: static network")
    parser.add_argument("--variant", choices=VARIANTS, default="dyconv",
                        help="the dynamic layer: dyconv (DynamicConv2d, default), condconv, "
                             "odconv, dcd")
    parser.add_argument("--resolution", type=int, default=224, help="input height = width")
    parser.add_argument("--num-kernels", type=int, default=4, help="K of the DY networks")
    parser.add_argument("--time", action="store_true",
                        help="also time one forward of each static and DY model on one image")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=available_backends(),
                        help="backend for --time (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the first")
    args = parser.parse_args(argv)
    if args.per_layer and args.model is None:
        parser.error("--per-layer needs --model NAME")
    if args.resolution < 32 or args.num_kernels < 1 or args.repeats < 1:
        parser.error("--resolution must be >= 32, --num-kernels and --repeats >= 1")
    names = [args.model] if args.model else list(MODELS)
    if args.per_layer:
        print(per_layer_table(args.model, args.resolution, args.num_kernels,
                              False if args.static else args.variant))
    else:
        print(summary_table(names, args.resolution, args.num_kernels, args.variant))
    if args.time:
        print(f"\nForward of one {args.resolution} x {args.resolution} float32 image, eval mode, "
              f"backend {args.backend!r} (medians of {args.repeats} alternating runs):")
        rows = []
        for name in names:
            first, static, dynamic = time_forward(name, args.resolution, args.num_kernels,
                                                  args.backend, args.repeats, args.variant)
            rows.append((name, f"{first:.2f} s", f"{1000 * static:.0f} ms",
                         f"{1000 * dynamic:.0f} ms", f"{dynamic / static:.2f}"))
        label = LABELS[args.variant]
        print(format_table(("model", f"{label} first call (incl. JIT)", "static", label,
                            f"{label} / static"), rows))
    return 0
