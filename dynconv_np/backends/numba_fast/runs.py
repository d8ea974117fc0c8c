"""Loops over one contiguous run: the inner loops of every convolution and reduction kernel.

A run is a stretch of grid positions (``grid``: flat) against the plane samples that one kernel
tap reads for them, ``samples = plane[start:start + grid.size]`` (``plane``: an image's phase
planes, flat; ``start`` from ``planes.tap_offsets``; see ``planes.py``). Why they look as they do:

* they index the plane directly with unsigned indices: no view per run (Numba reference-counts
  each one), and Numba vectorises these loops only with unsigned indices (no negative-index
  wraparound);
* one loop per function, with the tap offsets precomputed: a single function that picked its
  loop from an ``op`` argument and divided by the strides per tap is slower.

``run_dot`` and ``run_sum`` are the only kernels here compiled with ``fastmath={"reassoc"}``:
a scalar running sum is one long dependency chain, and reassociation lets LLVM split it into
vector lanes. It changes only the order of summation (as BLAS's own dot products do); the
tolerance this allows is in the README's design note on reassociation.
"""
import numpy as np
from numba import njit


@njit(cache=True)
def gather(grid, plane, start):
    """grid = samples."""
    for k in range(np.uintp(grid.size)):
        grid[k] = plane[start + k]


@njit(cache=True)
def scatter(grid, plane, start):
    """samples += grid."""
    for k in range(np.uintp(grid.size)):
        plane[start + k] += grid[k]


@njit(cache=True)
def grid_axpy(grid, coef, plane, start):
    """grid += coef samples."""
    for k in range(np.uintp(grid.size)):
        grid[k] += coef * plane[start + k]


@njit(cache=True)
def grid_axpy3(grid, c0, c1, c2, plane, s0, s1, s2):
    """grid += c0 samples0 + c1 samples1 + c2 samples2 (three taps' runs in one pass: a
    third of the grid's loads and stores of three ``grid_axpy`` calls)."""
    for k in range(np.uintp(grid.size)):
        grid[k] += c0 * plane[s0 + k] + c1 * plane[s1 + k] + c2 * plane[s2 + k]


@njit(cache=True)
def plane_axpy(grid, coef, plane, start):
    """samples += coef grid."""
    for k in range(np.uintp(grid.size)):
        plane[start + k] += coef * grid[k]


@njit(cache=True, fastmath={"reassoc"})
def run_dot(grid, plane, start):
    """sum_k grid[k] samples[k] (samples = plane[start:start + grid.size], as ``gather``),
    summed in vector lanes (``reassoc``, see the module docstring)."""
    total = grid.dtype.type(0.0)
    for k in range(np.uintp(grid.size)):
        total += grid[k] * plane[start + k]
    return total


@njit(cache=True, fastmath={"reassoc"})
def run_sum(run):
    """sum_k run[k], vectorised as ``run_dot``."""
    total = run.dtype.type(0.0)
    for k in range(np.uintp(run.size)):
        total += run[k]
    return total


@njit(cache=True)
def zero(run):
    """run[:] = 0, as a plain loop (vectorised; Numba's slice fill is not)."""
    for k in range(np.uintp(run.size)):
        run[k] = 0.0


@njit(cache=True)
def copy_run(target, target_start, target_step, source, source_start, source_step, count):
    """target[t0 + k t_step] = source[s0 + k s_step] for k < count (flat arrays).

    Indexes the flat arrays directly: a view per short run (Numba reference-counts every
    view) costs more than the copy. The indices are unsigned, so Numba skips its
    negative-index wraparound, and with unit steps known when compiling the loop vectorises.
    """
    t, ts = np.uintp(target_start), np.uintp(target_step)
    s, ss = np.uintp(source_start), np.uintp(source_step)
    for k in range(np.uintp(count)):
        target[t + k * ts] = source[s + k * ss]
