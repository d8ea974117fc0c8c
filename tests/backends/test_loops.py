"""The ``loops`` backend against the NumPy reference (the judge), for every contract function,
and its kernels against the CUDA naive kernels they mirror (names and arguments).

Tolerances (worst-case rounding bounds, no fudge factor). A sum of D products evaluated in
any order in a precision with unit roundoff u = eps / 2 is off the exact value by at most
gamma_D * sum |products|, gamma_D = D u / (1 - D u) (Higham, Accuracy and Stability of
Numerical Algorithms, sec. 3.1; adding an exact zero is exact, so padded taps do not count
against either side). The loops accumulate in the arrays' dtype; the reference runs in
float64 on the same (exactly widened) inputs. So per element

    |loops - reference| <= (gamma_D(dtype) + gamma_D(float64)) * scale,

with ``scale`` = the same function of |inputs| (the sum of |products|, computed by the
reference) and D an upper bound on the terms (or roundings) behind that element: for y,
Cg kh kw products plus the bias; for dx, Cog kh kw; for dw and db, H_out W_out per summed
sample; for the aggregation, K, the kernel size E (plus C_out for the bias part of dpi) or N;
for the spatial mean, H W (H W - 1 additions and a division); for its gradient, 2 (a division
and an addition). The reference's own order (im2col matmuls, col2im's per-tap adds, the batch
sum of shared gradients) never needs more roundings than that D. A wrong index or a missed
term is off by the order of ``scale`` itself, i.e. by ~1/(D u) times the bound.
"""
import ast
import inspect
import pathlib

import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np.backends import get_backend, loops, reference
from dynconv_np.backends.geometry import conv_output_shape

from ..strategies import conv_configs, pair, random_array

DTYPES = st.sampled_from([np.float32, np.float64])
CUDA_KERNELS = pathlib.Path(reference.__file__).with_name("cuda_kernels.py")


def gamma(terms, dtype):
    """Higham's gamma_D: the relative error bound of a D-term sum of products in ``dtype``."""
    u = np.finfo(dtype).eps / 2
    return terms * u / (1 - terms * u)


def assert_within_rounding(actual, expected, scale, terms, dtype, name):
    """|actual - expected| <= (gamma_D(dtype) + gamma_D(float64)) * scale, element-wise; the
    result keeps the inputs' dtype and the reference's shape."""
    assert actual.dtype == dtype, f"{name}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    bound = (gamma(terms, dtype) + gamma(terms, np.float64)) * scale + np.finfo(dtype).tiny
    excess = np.abs(actual.astype(np.float64) - expected) - bound
    worst = np.unravel_index(np.argmax(excess), excess.shape) if excess.size else ()
    assert excess.size == 0 or excess[worst] <= 0, (
        f"{name} mismatch at {worst}: loops {actual[worst]!r}, reference {expected[worst]!r}, "
        f"allowed {bound[worst]!r} (D = {terms})")


def _abs(arrays):
    return [None if a is None else np.abs(a) for a in arrays]


def _as64(arrays):
    return [None if a is None else a.astype(np.float64) for a in arrays]


def check_conv(c, per_sample, dtype, seed):
    """loops forward and backward == reference within the rounding bound; inputs untouched."""
    rng = np.random.default_rng(seed)
    n, groups = c["n"], c["groups"]
    nw, cg = (n if per_sample else 1), c["in_channels"] // groups
    x = random_array(rng, (n, c["in_channels"]) + tuple(c["size"]), dtype)
    w = random_array(rng, (nw, c["out_channels"], cg) + tuple(c["kernel"]), dtype)
    b = random_array(rng, (nw, c["out_channels"]), dtype) if c["bias"] else None
    geometry = (pair(c["stride"]), pair(c["padding"]), pair(c["dilation"]), groups)
    originals = [None if a is None else a.copy() for a in (x, w, b)]
    taps = int(np.prod(c["kernel"]))

    y = loops.conv2d_forward(x, w, b, *geometry)
    inputs64 = _as64((x, w, b))
    assert_within_rounding(y, reference.conv2d_forward(*inputs64, *geometry),
                           reference.conv2d_forward(*_abs(inputs64), *geometry),
                           cg * taps + 1, dtype, "y")

    dy = random_array(rng, y.shape, dtype)
    got = loops.conv2d_backward(dy, x, w, *geometry, b is not None)
    arrays64 = _as64((dy, x, w))
    want = reference.conv2d_backward(*arrays64, *geometry, b is not None)
    scales = reference.conv2d_backward(*_abs(arrays64), *geometry, b is not None)
    samples_per_kernel = n if nw == 1 else 1
    terms = (c["out_channels"] // groups * taps, samples_per_kernel * y.shape[2] * y.shape[3],
             samples_per_kernel * y.shape[2] * y.shape[3])
    for name, g, e, s, d in zip(("dx", "dw", "db"), got, want, scales, terms):
        if e is None:
            assert g is None, f"{name} should be None without a bias"
        else:
            assert_within_rounding(g, e, s, d, dtype, name)
    for before, after in zip(originals, (x, w, b)):
        if before is not None:
            np.testing.assert_array_equal(before, after, err_msg="an input was modified")


@given(c=conv_configs(max_batch=3), per_sample=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference(c, per_sample, dtype, seed):
    """Dense, grouped, depthwise (with multiplier); any stride/padding/dilation pairs; 1x1 and
    non-square kernels; N incl. 1; Nw = N (dynamic) and Nw = 1 (shared); with/without bias."""
    check_conv(c, per_sample, dtype, seed)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("per_sample", [True, False], ids=["per_sample", "shared"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_every_kernel_kind_on_one_grouped_strided_case(n, per_sample, bias, dtype):
    """Every (N = 1 or not, Nw, bias, dtype) combination on sure footing, whatever hypothesis
    draws: 2 groups, stride (2, 1), padding (1, 2), dilation (1, 2), a 3x2 kernel."""
    c = dict(n=n, in_channels=4, out_channels=6, kernel=(3, 2), stride=(2, 1), padding=(1, 2),
             dilation=(1, 2), groups=2, size=(7, 6), bias=bias)
    check_conv(c, per_sample, dtype, seed=n)


@given(n=st.integers(1, 4), k=st.integers(1, 5),
       shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), bias=st.booleans(),
       dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_aggregation_matches_reference(n, k, shape, bias, dtype, seed):
    """W_n = sum_k pi[n,k] weight[k] (and b_n), and its backward (dpi, dweight, dbias)."""
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(k), size=n).astype(dtype)
    weight = random_array(rng, (k,) + tuple(shape), dtype)
    b = random_array(rng, (k, shape[0]), dtype) if bias else None
    originals = [None if a is None else a.copy() for a in (pi, weight, b)]
    inputs64 = _as64((pi, weight, b))
    for name, g, e, s in zip(("W_n", "b_n"), loops.aggregate_forward(pi, weight, b),
                             reference.aggregate_forward(*inputs64),
                             reference.aggregate_forward(*_abs(inputs64))):
        if e is None:
            assert g is None, f"{name} should be None without a bias"
        else:
            assert_within_rounding(g, e, s, k, dtype, name)

    dw_n = random_array(rng, (n,) + tuple(shape), dtype)
    db_n = random_array(rng, (n, shape[0]), dtype) if bias else None
    grads64 = _as64((dw_n, db_n))
    entries = int(np.prod(shape))
    terms = (entries + (shape[0] if bias else 0), n, n)
    for name, g, e, s, d in zip(("dpi", "dweight", "dbias"),
                                loops.aggregate_backward(dw_n, db_n, pi, weight, b),
                                reference.aggregate_backward(*grads64, *inputs64),
                                reference.aggregate_backward(*_abs(grads64), *_abs(inputs64)),
                                terms):
        if e is None:
            assert g is None, f"{name} should be None without a bias"
        else:
            assert_within_rounding(g, e, s, d, dtype, name)
    for before, after in zip(originals, (pi, weight, b)):
        if before is not None:
            np.testing.assert_array_equal(before, after, err_msg="an input was modified")


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9),
                       st.integers(1, 9)), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_spatial_mean_and_its_gradient_match_reference(shape, dtype, seed):
    """pooled[n, c] = mean_{h,w} x; backward adds dpooled / (H W) into dx in place."""
    rng = np.random.default_rng(seed)
    x = random_array(rng, shape, dtype)
    x_before = x.copy()
    x64 = x.astype(np.float64)
    assert_within_rounding(loops.spatial_mean(x), reference.spatial_mean(x64),
                           reference.spatial_mean(np.abs(x64)), shape[2] * shape[3], dtype,
                           "pooled")
    np.testing.assert_array_equal(x, x_before, err_msg="spatial_mean modified x")

    dpooled = random_array(rng, shape[:2], dtype)
    dx = random_array(rng, shape, dtype)
    expected = dx.astype(np.float64)
    reference.add_spatial_mean_grad(expected, dpooled.astype(np.float64))
    scale = np.abs(dx.astype(np.float64)) + np.abs(
        dpooled.astype(np.float64)[:, :, None, None] / (shape[2] * shape[3]))
    loops.add_spatial_mean_grad(dx, dpooled)
    assert_within_rounding(dx, expected, scale, 2, dtype, "dx (in place)")


def _cuda_kernel_arguments(factory):
    """{name: argument names} of the kernels that ``factory`` in cuda_kernels.py returns,
    read from the source (numba.cuda need not be importable, nor a GPU present)."""
    module = ast.parse(CUDA_KERNELS.read_text())
    function = next(node for node in module.body
                    if isinstance(node, ast.FunctionDef) and node.name == factory)
    returned = function.body[-1].value
    names = [e.id for e in returned.elts] if isinstance(returned, ast.Tuple) else [returned.id]
    kernels = {node.name: [a.arg for a in node.args.args] for node in function.body
               if isinstance(node, ast.FunctionDef)}
    return {name: kernels[name] for name in names}


@pytest.mark.parametrize("factory, renamed", [
    ("naive_kernels", {}), ("matmul_kernel", {}),
    ("pooling_kernels", {"spatial_mean": "spatial_mean_kernel"})])
def test_kernels_mirror_the_cuda_kernels(factory, renamed):
    """Each CUDA kernel has a jitted loop of the same name and arguments (the pooling mean is
    renamed: ``spatial_mean`` is the contract function), compiled parallel, without fastmath."""
    for name, arguments in _cuda_kernel_arguments(factory).items():
        kernel = getattr(loops, renamed.get(name, name))
        assert list(inspect.signature(kernel.py_func).parameters) == arguments, name
        assert kernel.targetoptions.get("parallel") is True, name
        assert not kernel.targetoptions.get("fastmath", False), name


def test_the_registry_serves_this_module():
    assert get_backend("loops") is loops and loops.NAME == "loops"



@pytest.mark.parametrize("per_sample", [True, False], ids=["per_sample", "shared"])
def test_compiled_loops_do_the_arithmetic_of_their_python_source(per_sample):
    """Compiled, each kernel gives float32 results bit for bit equal to its Python source run
    by the interpreter (``py_func``; ``prange`` is ``range`` there): the sums accumulate in
    float32, like the CUDA kernels, in the order written (no float64 accumulator, no
    reassociation). (``spatial_mean_kernel`` is left out: its final division by the int H W
    is float64 in Numba but float32 for NumPy scalars.)"""
    rng = np.random.default_rng(7)
    geometry = (2, 1, 1, 2, 1, 2, 2)                     # s0, s1, p0, p1, d0, d1, groups
    x = random_array(rng, (2, 4, 7, 6), np.float32)
    w = random_array(rng, (2 if per_sample else 1, 6, 2, 3, 2), np.float32)
    b = random_array(rng, w.shape[:2], np.float32)
    y_shape = conv_output_shape(x.shape, w.shape, (2, 1), (1, 2), (1, 2))   # (2, 6, 4, 8)
    dy = random_array(rng, y_shape, np.float32)
    a, bmat = random_array(rng, (5, 9), np.float32), random_array(rng, (3, 9), np.float32)
    cases = {  # name: (arguments before the output, the output's initial value, after it)
        "forward": ((x, w, b), np.zeros(y_shape, np.float32), geometry),
        "backward_input": ((dy, w), np.zeros(x.shape, np.float32), geometry),
        "backward_weight": ((dy, x), np.zeros(w.shape, np.float32), geometry),
        "backward_bias": ((dy,), np.zeros(w.shape[:2], np.float32), ()),
        "matmul": ((a, bmat), np.zeros((5, 3), np.float32), (False, True)),
        "add_spatial_grad": ((), dy.copy(), (random_array(rng, dy.shape[:2], np.float32),)),
    }
    for name, (before, out, after) in cases.items():
        compiled, interpreted = out.copy(), out.copy()
        getattr(loops, name)(*before, compiled, *after)
        getattr(loops, name).py_func(*before, interpreted, *after)
        np.testing.assert_array_equal(compiled, interpreted, err_msg=name)
