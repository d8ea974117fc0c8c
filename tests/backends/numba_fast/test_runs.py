"""The run loops (``numba_fast/runs.py``): the plain ones compute exactly NumPy's elementwise
expression (same operations, same order: bit for bit); the two that reassociate, ``run_dot``
and ``run_sum``, stay within the bound of the README's design note (``checks.py``)."""
import numpy as np
from hypothesis import given, strategies as st

from dynconv_np.backends.numba_fast import runs

from .checks import DTYPES, REFERENCE, assert_within_rounding

LENGTHS = st.integers(0, 700)  # across vector widths and unrolled tails
SEEDS = st.integers(0, 2**32 - 1)


def _run_and_plane(rng, length, offset, dtype):
    grid = rng.standard_normal(length).astype(dtype)
    plane = rng.standard_normal(length + offset + 3).astype(dtype)
    return grid, plane


@given(length=LENGTHS, offset=st.integers(0, 9), dtype=DTYPES, seed=SEEDS)
def test_plain_runs_compute_numpys_expressions_bit_for_bit(length, offset, dtype, seed):
    rng = np.random.default_rng(seed)
    grid, plane = _run_and_plane(rng, length, offset, dtype)
    c0, c1, c2 = (dtype(value) for value in rng.standard_normal(3))
    start = np.uintp(offset)
    samples = plane[offset:offset + length]
    shifted = [plane[offset + s:offset + s + length] for s in (0, 1, 3)]

    out = grid.copy()
    runs.gather(out, plane, start)
    np.testing.assert_array_equal(out, samples)
    target = plane.copy()
    runs.scatter(grid, target, start)
    np.testing.assert_array_equal(target[offset:offset + length], samples + grid)
    out = grid.copy()
    runs.grid_axpy(out, c0, plane, start)
    np.testing.assert_array_equal(out, grid + c0 * samples)
    out = grid.copy()
    runs.grid_axpy3(out, c0, c1, c2, plane, start, start + np.uintp(1), start + np.uintp(3))
    np.testing.assert_array_equal(out, grid + (c0 * shifted[0] + c1 * shifted[1]
                                               + c2 * shifted[2]))
    target = plane.copy()
    runs.plane_axpy(grid, c0, target, start)
    np.testing.assert_array_equal(target[offset:offset + length], samples + c0 * grid)
    untouched = np.r_[0:offset, offset + length:plane.size]
    np.testing.assert_array_equal(target[untouched], plane[untouched])
    out = grid.copy()
    runs.zero(out)
    assert not out.any()


@given(count=st.integers(0, 40), steps=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       starts=st.tuples(st.integers(0, 5), st.integers(0, 5)), seed=SEEDS)
def test_copy_run_copies_strided_runs(count, steps, starts, seed):
    source = np.random.default_rng(seed).standard_normal(starts[1] + 3 * count + 1)
    target = np.zeros(starts[0] + 3 * count + 1)
    runs.copy_run(target, starts[0], steps[0], source, starts[1], steps[1], count)
    expected = np.zeros_like(target)
    expected[starts[0]:starts[0] + steps[0] * count:steps[0]] = \
        source[starts[1]:starts[1] + steps[1] * count:steps[1]]
    np.testing.assert_array_equal(target, expected)


@given(length=LENGTHS, offset=st.integers(0, 9), dtype=DTYPES, seed=SEEDS)
def test_reassociated_sums_stay_within_the_rounding_bound(length, offset, dtype, seed):
    """run_dot: `length` products; run_sum: `length` terms (m = length in the bound). Numba
    returns the scalar as a Python float: it must hold a value of the dtype."""
    rng = np.random.default_rng(seed)
    grid, plane = _run_and_plane(rng, length, offset, dtype)
    run, samples = grid.astype(REFERENCE), plane[offset:offset + length].astype(REFERENCE)
    for name, got, exact, scale in (
            ("run_dot", runs.run_dot(grid, plane, np.uintp(offset)), run @ samples,
             np.abs(run) @ np.abs(samples)),
            ("run_sum", runs.run_sum(grid), run.sum(), np.abs(run).sum())):
        assert dtype(got) == got, f"{name} returned {got!r}, not a {np.dtype(dtype)} value"
        assert_within_rounding(np.asarray(dtype(got)), np.asarray(exact), np.asarray(scale),
                               length, dtype, name)
