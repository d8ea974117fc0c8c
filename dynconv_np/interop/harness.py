"""The comparison harness: a PyTorch dynamic convolution against the reference, stage by stage.

    report = dynconv_np.compare(torch_layer, x, preset="kaijieshi7")
    python -m dynconv_np compare my_port.py:DynConv --preset tardelean --input-shape 2,8,9,9

What is compared. Our side is ``stages.run_reference`` on the NumPy backend with the torch
layer's own weights (read through the preset's layout). Their side is the torch layer itself,
run forward and backward (autograd, upstream gradient ``dy``) with its intermediates read where
the preset says they are: pooled = the input of the first attention FC, logits = the output of
the second, pi = the output of the attention submodule (forward hooks), and the per-sample
kernels w_n, b_n = the weight and bias of the layer's grouped/per-sample ``conv2d`` call
(intercepted with a ``TorchFunctionMode``); their gradients come from ``retain_grad``. Rows,
in the order data flows: forward pooled, logits, pi, w_n, b_n, y; backward dw_n, db_n,
dweight, dbias, dpi, dlogits, dfc2_weight, dfc2_bias, dpooled, dfc1_weight, dfc1_bias, dx;
then batch semantics (y of N = 1 equals the first sample of the batch; permuting the batch
permutes y), for their layer and ours. A stage the harness cannot reach is "n/a", not a
failure; a reachable stage torch gives no gradient for is compared as zeros.

Both sides run in float64 (the torch layer is deep-copied and cast), and again in the layer's
own dtype when that is float32.

Tolerances. Each stage's tolerance is derived from the dtype and the problem's conditioning,
elementwise, by forward error analysis (``stages.error_bounds``): a sum of m terms carries at
most m u sum|terms| (u = eps/2, the unit roundoff), so each stage's bound is computed from the
magnitudes |inputs| of its terms (e.g. conv(|x|, |w_n|) + |b_n| for y), plus the bounds of the
stages it reads propagated through |coefficients|. The softmax backward
dz = pi (dpi - <pi, dpi>)/tau cancels when dpi is nearly the same for every kernel, losing
log10(|dpi|/|dz|) digits; its bound scales with |dpi|, i.e. the relative tolerance is scaled by
|dpi|/|dz|. Two correct implementations differ
by at most twice the bound: tol = 2 bound + eps |value|. Columns: max abs error, max relative
error (max abs error / max |reference|), tol (the largest elementwise tolerance), err/tol (the
worst element's ratio: > 1 fails) and cond = tol / (eps max|reference|), the number of ulps of
the stage's scale its conditioning allows (log10 of it: digits lost). The first failing row is
named: that is the stage that first goes wrong.
"""
import argparse
import copy
import importlib.util
import json
import sys
from dataclasses import dataclass, field

import numpy as np

from ._torch import is_tensor, require_torch, to_numpy
from .probe import (ConvCapture, default_call, find_geometry, find_temperature, module_dtype,
                    pair_of, torch_pass)
from .presets import get_preset, layer_from_state
from .stages import BACKWARD, FORWARD, error_bounds, run_reference, tolerances
from .state import load_state

STAGES = tuple(name for name in FORWARD if name != "hidden") + BACKWARD
SEED = 0


@dataclass
class Row:
    """One comparison: ``status`` is "ok", "FAIL" or "n/a" (not reachable)."""
    stage: str
    dtype: str
    max_abs: float = float("nan")
    max_rel: float = float("nan")
    tol: float = float("nan")
    ratio: float = float("nan")
    cond: float = float("nan")
    status: str = "n/a"
    note: str = ""

    @property
    def ok(self):
        return self.status != "FAIL"


@dataclass
class CompareReport:
    """The harness's result: ``passed``, ``rows`` (``Row``), ``first_failure``; prints as the
    table."""
    rows: list
    header: str = ""
    config: dict = field(default_factory=dict)

    @property
    def passed(self):
        return all(row.ok for row in self.rows)

    @property
    def first_failure(self):
        """The first row (in data-flow order, float64 first) that fails, or None."""
        return next((row for row in self.rows if not row.ok), None)

    def row(self, stage, dtype="float64"):
        return next(r for r in self.rows if r.stage == stage and r.dtype == dtype)

    def table(self):
        lines = [self.header] if self.header else []
        lines.append(f"{'stage':<22} {'dtype':<8} {'max abs':>9} {'max rel':>9} {'tol':>9} "
                     f"{'err/tol':>8} {'cond':>8}  status")
        fmt = lambda v: "-" if not np.isfinite(v) else f"{v:.2e}"  # noqa: E731
        for r in self.rows:
            ratio = "-" if not np.isfinite(r.ratio) else f"{r.ratio:.3g}"
            cond = "-" if not np.isfinite(r.cond) else f"{r.cond:.3g}"
            line = (f"{r.stage:<22} {r.dtype:<8} {fmt(r.max_abs):>9} {fmt(r.max_rel):>9} "
                    f"{fmt(r.tol):>9} {ratio:>8} {cond:>8}  {r.status}")
            lines.append(line + (f"  ({r.note})" if r.note else ""))
        first = self.first_failure
        if first is None:
            lines.append(f"all {sum(r.status == 'ok' for r in self.rows)} compared stages "
                         "agree within tolerance")
        else:
            lines.append(f"first wrong stage: {first.stage} ({first.dtype})"
                         + (f": {first.note}" if first.note else ""))
        return "\n".join(lines)

    __str__ = table

    def __repr__(self):
        return self.table()


def _compare_arrays(stage, dtype, ours, theirs, tol, eps, note=""):
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    if theirs.shape != ours.shape:
        if theirs.size == ours.size:
            theirs = theirs.reshape(ours.shape)
        else:
            return Row(stage, dtype, status="FAIL",
                       note=f"shape {theirs.shape}, expected {ours.shape}")
    if not np.isfinite(theirs).all():
        return Row(stage, dtype, status="FAIL", note="NaN or inf")
    err = np.abs(ours - theirs)
    scale = float(np.abs(ours).max()) if ours.size else 0.0
    ratio = float((err / tol).max()) if err.size else 0.0
    max_abs = float(err.max()) if err.size else 0.0
    max_tol = float(tol.max()) if tol.size else 0.0
    return Row(stage, dtype, max_abs, max_abs / scale if scale else max_abs, max_tol, ratio,
               max_tol / (eps * scale) if scale else float("nan"),
               "ok" if ratio <= 1 else "FAIL", note)


def compare(torch_module, x, preset="kaijieshi7", dy=None, name_map=None, *, temperature=None,
            geometry=None, call=None, verbose=True, seed=SEED):
    """Compare a PyTorch dynamic convolution with the reference, stage by stage -> CompareReport.

    torch_module: the layer (an ``nn.Module``); x: input (N, C_in, H, W), array or tensor;
    preset: its layout ("kaijieshi7", "tardelean", "dynconv_np", or None with ``name_map``
    {our parameter name: its state-dict key}; name_map also overrides a preset's keys); dy: the
    upstream gradient (default: standard normal, seeded - never all ones, which hides bugs);
    temperature: tau (default: the module's ``temperature`` attribute, or its attention's, or
    the preset's default for a forward argument); geometry: {"stride", "padding", "dilation"}
    (default: the module's attributes, its ``conv_args``, else its conv2d call's); call:
    ``call(module, x, tau) -> y`` (default: ``module(x)``, or ``module(x, tau)`` for presets
    that pass tau to forward). Prints the table unless ``verbose=False``. See the module
    docstring for the stages, the tolerances and the columns.
    """
    torch = require_torch("compare")
    spec = get_preset(preset, name_map)
    call = call or default_call(spec)
    x64 = to_numpy(x).astype(np.float64) if is_tensor(x) else np.asarray(x, dtype=np.float64)
    if x64.ndim != 4:
        raise ValueError(f"x must be (N, C_in, H, W); received shape {x64.shape}")
    tau = find_temperature(torch_module, spec, temperature)
    state = load_state(torch_module)
    found = find_geometry(torch_module, geometry)
    notes_geometry = ""
    if len(found) < 3:
        # from the layer's own conv2d call (a port that drops e.g. padding is then not caught)
        probe = layer_from_state(state, spec, dtype=np.float64, backend="numpy")
        with torch.no_grad():
            capture = ConvCapture()
            m = copy.deepcopy(torch_module).double()
            with capture:
                call(m, torch.tensor(x64), tau)
        kernel = tuple(probe.params["weight"].shape[2:])
        calls = [c for c in capture.calls if tuple(c["weight"].shape[1:]) == kernel]
        if not calls:
            raise ValueError("cannot tell stride/padding/dilation: pass geometry=")
        for name in ("stride", "padding", "dilation"):
            found.setdefault(name, pair_of(calls[-1].get(name, 0 if name == "padding" else 1)))
        notes_geometry = " (geometry read from its conv2d call)"
    layer = layer_from_state(state, spec, found["stride"], found["padding"], found["dilation"],
                             temperature=tau, dtype=np.float64, backend="numpy")
    params64 = {name: np.asarray(value) for name, value in layer.params.items()}
    geometry_tuple = (found["stride"], found["padding"], found["dilation"], layer.groups)
    ref64 = run_reference(x64, params64, tau, geometry_tuple)
    if dy is None:
        dy64 = np.random.default_rng(seed).standard_normal(ref64["y"].shape)
    else:
        dy64 = to_numpy(dy).astype(np.float64) if is_tensor(dy) else np.asarray(dy, np.float64)
    ref64 = run_reference(x64, params64, tau, geometry_tuple, dy64)
    shapes = {name: value.shape for name, value in ref64.items()}
    shapes.update({name: value.shape for name, value in params64.items()})
    dtypes = [np.dtype(np.float64)]
    if module_dtype(torch_module) == np.float32:
        dtypes.append(np.dtype(np.float32))
    rows = []
    for dtype in dtypes:
        eps = float(np.finfo(dtype).eps)
        if dtype == np.float64:
            ref = ref64
        else:
            ref = run_reference(x64.astype(dtype), {k: v.astype(dtype) for k, v in
                                                   params64.items()},
                                tau, geometry_tuple, dy64.astype(dtype))
        bounds = error_bounds(x64, params64, tau, geometry_tuple, ref64, dy64, eps)
        tol = tolerances(bounds, ref, eps, floor=np.finfo(dtype).tiny)
        theirs, notes, _, copied = torch_pass(torch_module, spec, x64.astype(dtype),
                                               dy64.astype(dtype), tau, dtype, call, shapes)
        for stage in STAGES:
            if stage not in ref:
                continue
            if stage not in theirs:
                rows.append(Row(stage, dtype.name, note=notes.get(stage, "not reachable")))
                continue
            rows.append(_compare_arrays(stage, dtype.name, ref[stage], theirs[stage],
                                        tol[stage], eps, notes.get(stage, "")))
        if dtype == np.float64:
            rows += _batch_rows(copied, x64, tau, call, ref64, tol["y"], eps, params64,
                                geometry_tuple)
    header = (f"dynconv_np.compare: {type(torch_module).__name__} as preset {spec.name!r}; "
              f"x {x64.shape}, K {layer.num_kernels}, hidden {layer.hidden}, tau {tau:g}, "
              f"stride {found['stride']}, padding {found['padding']}, dilation "
              f"{found['dilation']}, groups {layer.groups}{notes_geometry}")
    report = CompareReport(rows, header, {"preset": spec.name, "tau": tau,
                                          "geometry": geometry_tuple})
    if verbose:
        print(report)
    return report


def _batch_rows(module, x, tau, call, ref, tol_y, eps, params, geometry):
    """N = 1 equals the first sample's slice; permuting the batch permutes y (theirs, ours)."""
    torch = sys.modules["torch"]
    n = x.shape[0]
    if n < 2:
        return [Row("batch N=1 [torch]", "float64", note="needs N >= 2"),
                Row("batch perm [torch]", "float64", note="needs N >= 2")]
    perm = np.roll(np.arange(n), 1)   # a cycle: not its own inverse for N > 2 (a reversal
    #                                   would hide a port that mixes sample i with N - 1 - i)
    with torch.no_grad():
        full = to_numpy(call(module, torch.tensor(x), tau)).reshape(ref["y"].shape)
        one = to_numpy(call(module, torch.tensor(x[:1]), tau))
        permuted = to_numpy(call(module, torch.tensor(x[perm]), tau))
    ours_one = run_reference(x[:1], params, tau, geometry)["y"]
    ours_perm = run_reference(x[perm], params, tau, geometry)["y"]
    return [_compare_arrays("batch N=1 [torch]", "float64", full[:1], one, tol_y[:1], eps),
            _compare_arrays("batch perm [torch]", "float64", full[perm], permuted, tol_y[perm],
                            eps),
            _compare_arrays("batch N=1 [ours]", "float64", ref["y"][:1], ours_one, tol_y[:1], eps),
            _compare_arrays("batch perm [ours]", "float64", ref["y"][perm], ours_perm,
                            tol_y[perm], eps)]


def _load_class(target):
    path, _, name = target.rpartition(":")
    if not path or not name:
        raise SystemExit(f"expected FILE.py:CLASS; received {target!r}")
    spec = importlib.util.spec_from_file_location("_dynconv_compare_target", path)
    if spec is None:
        raise SystemExit(f"cannot import {path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        return getattr(module, name)
    except AttributeError:
        raise SystemExit(f"{path} has no {name!r}") from None


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m dynconv_np compare",
        description="Compare a PyTorch dynamic convolution (FILE.py:CLASS) with the reference, "
                    "stage by stage; exit 1 when a stage disagrees.")
    parser.add_argument("target", help="FILE.py:CLASS, the torch module to build")
    parser.add_argument("--preset", default="kaijieshi7",
                        choices=["kaijieshi7", "tardelean", "dynconv_np"])
    parser.add_argument("--input-shape", required=True,
                        help="N,C,H,W of the random input, e.g. 2,8,9,9")
    parser.add_argument("--init-args", default="{}",
                        help="JSON: a list of positional or a dict of keyword arguments")
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--geometry", default=None,
                        help='JSON, e.g. {"stride": 1, "padding": 1, "dilation": 1}')
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    cls = _load_class(args.target)
    init = json.loads(args.init_args)
    require_torch("compare").manual_seed(args.seed)
    module = cls(*init) if isinstance(init, list) else cls(**init)
    shape = tuple(int(s) for s in args.input_shape.split(","))
    x = np.random.default_rng(args.seed).standard_normal(shape)
    geometry = json.loads(args.geometry) if args.geometry else None
    report = compare(module, x, preset=args.preset, temperature=args.temperature,
                     geometry=geometry, seed=args.seed)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
