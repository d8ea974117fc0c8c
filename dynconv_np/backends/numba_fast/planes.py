"""Padded phase planes and output grids: the geometry every convolution kernel shares.

An input channel is zero-padded once and split into s0*s1 "phase planes" (polyphase):

    phase (a, b) [r, q] = x_padded[r s0 + a, q s1 + b],   flat with row pitch Wq = ceil(Wp/s1)

(Wp = W + 2 p1; a few slack zeros follow each phase plane). Outputs are computed on a "grid"
with the same row pitch Wq. Grid position (h, w) reads, for tap (i, j),

    x_padded[h s0 + i d0, w s1 + j d1]
        = phase (i d0 % s0, j d1 % s1) [h + i d0 // s0, w + j d1 // s1]

i.e. flat index h Wq + w + shift(i, j) of one phase plane: for every stride and dilation, a tap
reads ONE contiguous run for a whole block of grid rows, so every inner loop (``runs.py``) is a
long, unit-stride, vectorised loop with no bounds tests (padding is real zeros). The price: grid
columns w >= W_out (Wq - W_out of every Wq) are computed and dropped in the forward pass; in the
backward pass they hold zeros in dy, so they add nothing.

Also here: how many per-thread scratch buffers a kernel allocates (``thread_slots``), and how
the gradient of a kernel shared by the batch is summed (``sums_batch_in_kernel``).
"""
import functools

import numba
import numpy as np
from numba import njit, prange

from .runs import copy_run, zero


def thread_slots():
    """How many per-thread scratch buffers a kernel needs (one per possible thread id)."""
    return numba.config.NUMBA_NUM_THREADS


# Work units a kernel that splits output channels or positions aims for: a fixed number
# (enough for 8 threads), not the thread count, so that every product, and its rounding, is
# the same whatever the number of threads
WORK_UNITS = 16


def channels_per_unit(n_channels, n_pairs):
    """Output channels per work unit: all of them, unless there are fewer (sample or group)
    pairs than WORK_UNITS; then blocks that make about that many units."""
    blocks = min(n_channels, -(-WORK_UNITS // n_pairs))
    return -(-n_channels // blocks)


def block_shape(n_rows, n_columns, n_pairs, fewest_rows=16, fewest_columns=256):
    """(rows, columns) per work unit of a product (n_rows, n_columns) per (sample, group): the
    whole product, unless there are fewer pairs than WORK_UNITS; then blocks of rows, and then
    of columns, that make about that many units, of at least ``fewest_rows`` rows and
    ``fewest_columns`` columns (narrower products run below BLAS's speed)."""
    wanted = -(-WORK_UNITS // n_pairs)
    row_blocks = max(1, min(wanted, n_rows // fewest_rows))
    column_blocks = max(1, min(-(-wanted // row_blocks), n_columns // fewest_columns))
    return -(-n_rows // row_blocks), -(-n_columns // column_blocks)


def sums_batch_in_kernel(nw, n, kernel_size, dy_size, x_size):
    """True when the gradient of a kernel shared by the batch (``nw`` = 1, ``n`` > 1 samples) is
    summed over the samples inside the kernel: units of output channels, each adding its
    samples in order. Else (per-sample kernels, or parts small next to the data) every sample's
    gradient is a part of its own, written by a unit of its own and summed by the caller in
    sample order: more units for the threads, but N kernels' worth of memory, which on small
    maps with many channels (the last stages of CIFAR-sized networks) outweighs dy and x.
    Either way the order of the sum does not depend on the number of threads."""
    return nw == 1 and n > 1 and n * kernel_size > dy_size + x_size


def plane_geometry(x_shape, kw, stride, padding, dilation):
    """(number of phases, phase-plane length, row pitch Wq) for images of x_shape."""
    padded_h, padded_w = x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1]
    pitch = -(-padded_w // stride[1])
    rows = -(-padded_h // stride[0])
    length = (rows + 1) * pitch + (kw - 1) * dilation[1] // stride[1] + 1
    return stride[0] * stride[1], length, pitch


@functools.lru_cache(maxsize=256)
def tap_offsets(kh, kw, length, pitch, stride, dilation):
    """offsets[i * kw + j]: where the run of samples that tap (i, j) reads for grid row 0
    starts in an image's phase planes flattened to one array (phase * length + start);
    grid row h0 adds h0 * pitch.

    Computed outside the kernels: a tap's run is short, so integer divisions per tap inside
    the kernels would cost a visible share; and remembered per geometry, since a network calls
    each layer's geometry again and again. The cached array is shared: kernels only read it.
    """
    i, j = np.divmod(np.arange(kh * kw), kw)
    row_shift, col_shift = i * dilation[0], j * dilation[1]
    phase = (row_shift % stride[0]) * stride[1] + col_shift % stride[1]
    start = row_shift // stride[0] * pitch + col_shift // stride[1]
    return (phase * length + start).astype(np.uintp)


@njit(cache=True)
def pad_transfer(image, phases, padding, pitch, stride, into_phases):
    """into_phases: phases = the phase planes of image zero-padded by ``padding``; else the
    adjoint, image = the interior of the phase planes.

    Writes (or reads) only the interior: the caller zeroes the phase planes once, and since
    every image of a call has the same geometry, the padding stays zero from image to image.
    Loops phase by phase, so that the divisions happen once per phase, not once per row.
    """
    height, width = image.shape
    image_flat = image.reshape(image.size)
    for a in range(stride[0]):
        first_row = (a - padding[0]) % stride[0]  # first image row in row phase a
        for b in range(stride[1]):
            first = (b - padding[1]) % stride[1]  # first image column in column phase b
            if first >= width:
                continue
            count = (width - 1 - first) // stride[1] + 1
            plane = phases[a * stride[1] + b]
            start = ((first_row + padding[0]) // stride[0] * pitch
                     + (first + padding[1]) // stride[1])
            for r in range(first_row, height, stride[0]):
                at = r * width + first
                if stride[1] == 1 and into_phases:  # unit steps known when compiling
                    copy_run(plane, start, 1, image_flat, at, 1, count)
                elif stride[1] == 1:
                    copy_run(image_flat, at, 1, plane, start, 1, count)
                elif into_phases:
                    copy_run(plane, start, 1, image_flat, at, stride[1], count)
                else:
                    copy_run(image_flat, at, stride[1], plane, start, 1, count)
                start += pitch


@njit(cache=True)
def image_onto_grid(image, grid, pitch):
    """grid rows = image rows, zeros in the columns beyond the image's width."""
    zero(grid)
    height, width = image.shape
    image_flat = image.reshape(image.size)
    for h in range(height):
        copy_run(grid, h * pitch, 1, image_flat, h * width, 1, width)


@njit(cache=True, parallel=True)
def _pad_batch(x, planes, padding, pitch, stride):
    """planes[n, c] = phase planes of padded x[n, c], one (sample, channel) per unit."""
    n_batch, n_channels = x.shape[0], x.shape[1]
    for unit in prange(n_batch * n_channels):
        n, c = unit // n_channels, unit % n_channels
        pad_transfer(x[n, c], planes[n, c], padding, pitch, stride, True)


def padded_batch(x, kh, kw, stride, padding, dilation):
    """(planes (N, C, s0*s1 * L), taps, Wq): x padded and split into phases once for this
    call, each image's phase planes flat; taps from ``tap_offsets``."""
    phases, length, pitch = plane_geometry(x.shape, kw, stride, padding, dilation)
    planes = np.zeros(x.shape[:2] + (phases, length), x.dtype)
    _pad_batch(x, planes, padding, pitch, stride)
    taps = tap_offsets(kh, kw, length, pitch, stride, dilation)
    return planes.reshape(x.shape[:2] + (phases * length,)), taps, pitch
