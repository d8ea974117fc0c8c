"""The Numba CPU backend: jitted, multi-threaded loops with the reference's semantics.

Same contract as ``reference.py`` (see ``backends/__init__.py``). Every convolution
zero-pads the input and splits it into stride phases, flat "phase planes" (the dense and
grouped kernels once per call into a batch-sized buffer; the depthwise kernels per work
unit into a per-thread buffer that stays in cache), and computes outputs on a "grid"
whose rows share the planes' pitch (see "Padded planes and output grids" below): each
kernel tap then reads one contiguous run, so the inner loops are long, unit-stride and
vectorised, with no bounds tests. Two strategies on top of that:

* dense and grouped convolutions (C_in/groups > 1) are im2col + matrix multiply, per work
  unit, into per-thread scratch buffers that stay in cache::

      cols (Cg*kh*kw, P) = im2col(x[n, group g])          P = grid positions of the unit
      y[n, g] (Cog, P)   = W[n, g] (Cog, Cg*kh*kw) @ cols + b[n, g]
      dW[n, g]           = dy[n, g] @ cols^T               (summed over n when Nw = 1)
      dcols              = W[n, g]^T @ dy[n, g]  -> col2im -> dx[n, g]

  The products call CBLAS ``?gemm`` directly (``_blas.py``: NumPy's OpenBLAS, 1.1-1.8x
  faster on these shapes than ``np.dot`` in jitted code, which goes through SciPy's
  Fortran wrappers and remains the fallback). BLAS runs single-threaded inside the
  ``prange`` loops: on a small machine a multi-threaded BLAS called from Numba's threads
  (or alternating with them) makes both thread pools spin against each other and runs up
  to 10x slower.
* depthwise convolutions (C_in/groups = 1, optionally with a channel multiplier) are
  direct loops: each output channel reads one input channel, so a matrix multiply would
  have an inner dimension of kh*kw only. Their backward pass computes dx and dW in one
  fused pass over each (sample, channel).

Every ``prange`` runs over an index that the iteration owns (no two iterations write the
same element): (sample, group, block of output rows) for y; (sample, group) for dx; for
dW either the sample (Nw = N) or a per-thread partial sum that is reduced afterwards
(Nw = 1; depthwise: per-sample dW summed afterwards). The only fastmath flag is
``reassoc`` on the sums and dot products of runs (``_run_sum``, ``_run_dot``), which lets
them use vector lanes, so results differ from the reference only by the order of
floating-point summation. Kernels compile on first use (``cache=True`` keeps
the machine code on disk for the next process).
"""
import contextlib
import functools

import numba
import numpy as np
from numba import njit, prange

from ._blas import cblas_gemm, matmul
from .cpu_attention import attention_backward, attention_forward  # noqa: F401 (contract)
from .geometry import conv_output_shape

NAME = "numba"

# Grid positions per forward work unit, at most: the unit's im2col block (Cg*kh*kw x this)
# and its product stay in cache, and the matrix product is still large enough for BLAS.
_POSITIONS_PER_BLOCK = 512
# The forward product is formed transposed, (P, Cog) = cols^T @ W^T, when C_out/groups is
# below this: measured ~10% faster on 32 output channels, ~10% slower on 128.
_TRANSPOSED_BELOW = 64


def ensure_available():
    """Numba's ``np.dot`` calls BLAS through SciPy; fail early with a clear message."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError as error:
        raise ImportError("the 'numba' backend needs SciPy (Numba calls BLAS through it): "
                          "pip install scipy") from error


_BLAS_LIBRARIES = []  # threadpoolctl's controllers of the loaded BLAS libraries


@contextlib.contextmanager
def _single_threaded_blas():
    """Context in which BLAS (NumPy's and SciPy's, which jitted code calls) uses one thread.

    Uses threadpoolctl when it is installed; without it BLAS keeps its threads: results
    are the same, but the dense kernels can run several times slower (see module docstring).
    Sets the thread counts through the library controllers directly: threadpoolctl's
    ``limit`` context costs ~35 us a call, a sizeable share of a small layer.
    """
    if not _BLAS_LIBRARIES:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _BLAS_LIBRARIES.append(())
        else:
            ensure_available()  # loads SciPy's BLAS, so that the controller sees it
            _BLAS_LIBRARIES.append(tuple(ThreadpoolController().select(user_api="blas")
                                         .lib_controllers))
    libraries = _BLAS_LIBRARIES[0]
    before = [library.get_num_threads() for library in libraries]
    for library, threads in zip(libraries, before):
        if threads != 1:
            library.set_num_threads(1)
    try:
        yield
    finally:
        for library, threads in zip(libraries, before):
            if threads != 1:
                library.set_num_threads(threads)


def _thread_slots():
    """How many per-thread scratch buffers a kernel needs (one per possible thread id)."""
    return numba.config.NUMBA_NUM_THREADS


# ----------------------------------------------------------------------------------------
# Padded planes and output grids: the geometry every convolution kernel below shares.
#
# An input channel is zero-padded once and split into s0*s1 "phase planes" (polyphase):
#
#     phase (a, b) [r, q] = x_padded[r s0 + a, q s1 + b],   flat with row pitch Wq = ceil(Wp/s1)
#
# (Wp = W + 2 p1; a few slack zeros follow each phase plane). Outputs are computed on a "grid"
# with the same row pitch Wq. Grid position (h, w) reads, for tap (i, j),
#
#     x_padded[h s0 + i d0, w s1 + j d1]
#         = phase (i d0 % s0, j d1 % s1) [h + i d0 // s0, w + j d1 // s1]
#
# i.e. flat index h Wq + w + shift(i, j) of one phase plane: for every stride and dilation,
# a tap reads ONE contiguous run for a whole block of grid rows, so every inner loop is a
# long, unit-stride, vectorised loop with no bounds tests (padding is real zeros). The price:
# grid columns w >= W_out (Wq - W_out of every Wq) are computed and dropped in the forward
# pass; in the backward pass they hold zeros in dy, so they add nothing.

def _plane_geometry(x_shape, kw, stride, padding, dilation):
    """(number of phases, phase-plane length, row pitch Wq) for images of x_shape."""
    padded_h, padded_w = x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1]
    pitch = -(-padded_w // stride[1])
    rows = -(-padded_h // stride[0])
    length = (rows + 1) * pitch + (kw - 1) * dilation[1] // stride[1] + 1
    return stride[0] * stride[1], length, pitch


@functools.lru_cache(maxsize=256)
def _tap_offsets(kh, kw, length, pitch, stride, dilation):
    """offsets[i * kw + j]: where the run of samples that tap (i, j) reads for grid row 0
    starts in an image's phase planes flattened to one array (phase * length + start);
    grid row h0 adds h0 * pitch. Computed outside the kernels: a tap's run is short (a few
    hundred samples), so integer divisions per tap inside the kernels cost measurably; and
    remembered per geometry (a network calls each layer's geometry again and again; the
    NumPy steps cost ~20 us a call). The cached array is shared: kernels only read it."""
    i, j = np.divmod(np.arange(kh * kw), kw)
    row_shift, col_shift = i * dilation[0], j * dilation[1]
    phase = (row_shift % stride[0]) * stride[1] + col_shift % stride[1]
    start = row_shift // stride[0] * pitch + col_shift // stride[1]
    return (phase * length + start).astype(np.uintp)


# One contiguous run of grid positions (grid: flat) against the plane samples that a
# tap reads for them, samples = plane[start:start + grid.size] (plane: an image's phase
# planes, flat; start from ``_tap_offsets``). These index the plane directly with unsigned
# indices: no view per run (Numba reference-counts each), and Numba vectorises these loops
# only with unsigned indices (no negative-index wraparound). One loop per function, and
# the tap offsets precomputed: one function that picked its loop from an ``op`` argument
# and divided by the strides per tap measured 1.5x slower on a depthwise layer.

@njit(cache=True)
def _gather(grid, plane, start):
    """grid = samples."""
    for k in range(np.uintp(grid.size)):
        grid[k] = plane[start + k]


@njit(cache=True)
def _scatter(grid, plane, start):
    """samples += grid."""
    for k in range(np.uintp(grid.size)):
        plane[start + k] += grid[k]


@njit(cache=True)
def _grid_axpy(grid, coef, plane, start):
    """grid += coef samples."""
    for k in range(np.uintp(grid.size)):
        grid[k] += coef * plane[start + k]


@njit(cache=True)
def _grid_axpy3(grid, c0, c1, c2, plane, s0, s1, s2):
    """grid += c0 samples0 + c1 samples1 + c2 samples2 (three taps' runs in one pass: a
    third of the grid's loads and stores of three ``_grid_axpy`` calls)."""
    for k in range(np.uintp(grid.size)):
        grid[k] += c0 * plane[s0 + k] + c1 * plane[s1 + k] + c2 * plane[s2 + k]


@njit(cache=True)
def _plane_axpy(grid, coef, plane, start):
    """samples += coef grid."""
    for k in range(np.uintp(grid.size)):
        plane[start + k] += coef * grid[k]


@njit(cache=True, fastmath={"reassoc"})
def _run_dot(grid, plane, start):
    """sum_k grid[k] samples[k] (samples = plane[start:start + grid.size], as ``_gather``).

    ``reassoc`` lets LLVM split the sum into vector lanes (a scalar running sum is one long
    dependency chain, several times slower); it changes only the order of summation, as
    BLAS's own dot products do.
    """
    total = grid.dtype.type(0.0)
    for k in range(np.uintp(grid.size)):
        total += grid[k] * plane[start + k]
    return total


@njit(cache=True, fastmath={"reassoc"})
def _run_sum(run):
    """sum_k run[k], vectorised as ``_run_dot``."""
    total = run.dtype.type(0.0)
    for k in range(np.uintp(run.size)):
        total += run[k]
    return total


@njit(cache=True)
def _zero(run):
    """run[:] = 0, as a plain loop (vectorised; Numba's slice fill is not)."""
    for k in range(np.uintp(run.size)):
        run[k] = 0.0


@njit(cache=True)
def _copy_run(target, target_start, target_step, source, source_start, source_step, count):
    """target[t0 + k t_step] = source[s0 + k s_step] for k < count (flat arrays).

    Indexes the flat arrays directly: a view per short run (Numba reference-counts every
    view) costs more than the copy. The indices are unsigned, so Numba skips its
    negative-index wraparound, and with unit steps known when compiling the loop vectorises.
    """
    t, ts = np.uintp(target_start), np.uintp(target_step)
    s, ss = np.uintp(source_start), np.uintp(source_step)
    for k in range(np.uintp(count)):
        target[t + k * ts] = source[s + k * ss]


@njit(cache=True)
def _pad_transfer(image, phases, padding, pitch, stride, into_phases):
    """into_phases: phases = the phase planes of image zero-padded by ``padding``; else the
    adjoint, image = the interior of the phase planes (see the comment above).

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
                    _copy_run(plane, start, 1, image_flat, at, 1, count)
                elif stride[1] == 1:
                    _copy_run(image_flat, at, 1, plane, start, 1, count)
                elif into_phases:
                    _copy_run(plane, start, 1, image_flat, at, stride[1], count)
                else:
                    _copy_run(image_flat, at, stride[1], plane, start, 1, count)
                start += pitch


@njit(cache=True)
def _image_onto_grid(image, grid, pitch):
    """grid rows = image rows, zeros in the columns beyond the image's width."""
    _zero(grid)
    height, width = image.shape
    image_flat = image.reshape(image.size)
    for h in range(height):
        _copy_run(grid, h * pitch, 1, image_flat, h * width, 1, width)


@njit(cache=True, parallel=True)
def _pad_batch(x, planes, padding, pitch, stride):
    """planes[n, c] = phase planes of padded x[n, c], one (sample, channel) per unit."""
    n_batch, n_channels = x.shape[0], x.shape[1]
    for unit in prange(n_batch * n_channels):
        n, c = unit // n_channels, unit % n_channels
        _pad_transfer(x[n, c], planes[n, c], padding, pitch, stride, True)


# ----------------------------------------------------------------------------------------
# Dense and grouped convolution: im2col + BLAS

@njit(cache=True, parallel=True)
def _gemm_conv_forward(gemm, planes, w, b, y, cols_buf, prod_buf, taps, pitch, rows_per_block,
                       transposed):
    """y[n, g] = W[n, g] @ im2col(x[n, g]) + b[n, g], one (sample, group, row block) per unit.

    Blocked by output rows: a unit covers rows_per_block grid rows (at most
    _POSITIONS_PER_BLOCK positions), so its im2col block cols (Cg*kh*kw, P) and the product
    (Cog, P) = W @ cols live in the thread's scratch (cols_buf[t], prod_buf[t]) in cache,
    and even N = 1 spreads over the threads. ``transposed`` forms the product as
    (P, Cog) = cols^T @ W^T instead: OpenBLAS is faster so when C_out/groups is small (the
    copy into y then reads with a stride of Cog instead of contiguous runs).
    planes (N, G, Cg, s0*s1*L) (each image's phase planes, flat); taps from ``_tap_offsets``;
    w (Nw, G, Cog, Cg*kh*kw); b (Nw, G, Cog); y (N, G, Cog, Ho, Wo).
    """
    n_batch, n_groups, c_group = planes.shape[0], planes.shape[1], planes.shape[2]
    n_out, depth = w.shape[2], w.shape[3]
    out_h, out_w = y.shape[3], y.shape[4]
    n_blocks = (out_h + rows_per_block - 1) // rows_per_block
    for unit in prange(n_batch * n_groups * n_blocks):
        n, rest = unit // (n_groups * n_blocks), unit % (n_groups * n_blocks)
        g, block = rest // n_blocks, rest % n_blocks
        wn = n if w.shape[0] > 1 else 0
        h0 = block * rows_per_block
        h1 = min(out_h, h0 + rows_per_block)
        positions = (h1 - h0) * pitch
        thread = numba.get_thread_id()
        cols = cols_buf[thread, :depth * positions].reshape(depth, positions)
        shift = np.uintp(h0 * pitch)
        for c in range(c_group):
            plane = planes[n, g, c]
            for tap in range(taps.size):
                _gather(cols[c * taps.size + tap], plane, taps[tap] + shift)
        product = prod_buf[thread, :n_out * positions]
        if transposed:
            matmul(gemm, cols, True, w[wn, g], True, product.reshape(positions, n_out))
        else:
            matmul(gemm, w[wn, g], False, cols, False, product.reshape(n_out, positions))
        for o in range(n_out):
            target = y[n, g, o].reshape(out_h * out_w)
            for h in range(h0, h1):
                if transposed:
                    _copy_run(target, h * out_w, 1, product, (h - h0) * pitch * n_out + o,
                              n_out, out_w)
                else:  # unit step known when compiling: vectorised
                    _copy_run(target, h * out_w, 1, product, o * positions + (h - h0) * pitch,
                              1, out_w)
            block, bias = target[h0 * out_w:h1 * out_w], b[wn, g, o]
            for q in range(block.size):
                block[q] += bias


@njit(cache=True, parallel=True)
def _gemm_conv_backward(gemm, dy, planes, w, dx, dw_slots, cols_buf, dy_buf, plane_buf, dw_buf,
                        taps, pitch, stride, padding):
    """dx and dW of ``_gemm_conv_forward``: two units per (sample, group), one for each.

    Blocked by (sample, group), split into a weight-gradient and an input-gradient unit so
    that even one sample keeps two threads busy. A unit holds its (sample, group)'s whole
    im2col matrix (or its gradient) in the thread's scratch cols_buf[t], and dy on the grid
    (zeros in the dropped columns) in dy_buf[t]:
        weight unit: cols = im2col(x[n, g]);  dW += dy[n, g] @ cols^T
        input unit:  cols = W[n, g]^T @ dy[n, g];  col2im onto the padded planes
                     plane_buf[t], cropped into dx[n, g] (the unit owns dx[n, g])
    dW goes into dw_slots[n, g] when the kernels are per sample (Nw = N, or N = 1), and
    otherwise accumulates into dw_slots[thread, g] (per-thread partial sums, zeroed by the
    caller, that it reduces afterwards).
    dy (N, G, Cog, Ho, Wo); planes (N, G, Cg, s0*s1*L); dx (N, G, Cg, H, W); w (Nw, G, Cog, D).
    """
    n_batch, n_groups, c_group = planes.shape[0], planes.shape[1], planes.shape[2]
    n_out, depth = w.shape[2], w.shape[3]
    out_h = dy.shape[3]
    positions = out_h * pitch
    per_sample = w.shape[0] > 1 or n_batch == 1
    for unit in prange(2 * n_batch * n_groups):
        n, g = unit // 2 // n_groups, unit // 2 % n_groups
        thread = numba.get_thread_id()
        wn = n if w.shape[0] > 1 else 0
        cols = cols_buf[thread, :depth * positions].reshape(depth, positions)
        dy_grid = dy_buf[thread, :n_out * positions].reshape(n_out, positions)
        for o in range(n_out):
            _image_onto_grid(dy[n, g, o], dy_grid[o], pitch)
        if unit % 2 == 0:
            for c in range(c_group):
                plane = planes[n, g, c]
                for tap in range(taps.size):
                    _gather(cols[c * taps.size + tap], plane, taps[tap])
            if per_sample:  # the unit owns dW[n, g]: the product goes straight there
                matmul(gemm, dy_grid, False, cols, True, dw_slots[n, g])
            else:
                dw_unit = dw_buf[thread]
                matmul(gemm, dy_grid, False, cols, True, dw_unit)
                dw_slot = dw_slots[thread, g].reshape(n_out * depth)
                dw_flat = dw_unit.reshape(n_out * depth)
                for q in range(n_out * depth):
                    dw_slot[q] += dw_flat[q]
        else:
            matmul(gemm, w[wn, g], True, dy_grid, False, cols)
            for c in range(c_group):
                plane = plane_buf[thread, c]
                flat = plane.reshape(plane.size)
                _zero(flat)
                for tap in range(taps.size):
                    _scatter(cols[c * taps.size + tap], flat, taps[tap])
                _pad_transfer(dx[n, g, c], plane, padding, pitch, stride, False)


# ----------------------------------------------------------------------------------------
# Depthwise convolution (C_in/groups = 1): direct loops

@njit(cache=True, parallel=True)
def _depthwise_forward(x, w, b, y, plane_buf, grid_buf, taps, padding, pitch, stride):
    """y[n, o] = b[n, o] + sum_{i,j} w[n, o, i, j] x[n, o // m] shifted by tap (i, j).

    One (sample, input channel) per unit, padding fused in: the unit pads its input
    channel into the thread's phase planes (plane_buf[t], in L1/L2; no whole-batch padded
    copy), then for each of the channel's m output channels fills its output grid
    (grid_buf[t]) with the bias, accumulates the kh*kw shifted planes on it in vectorised
    runs, three taps per pass over the grid (measured ~15% faster than one), and crops the
    grid into y.
    x (N, C, H, W); w (Nw, C*m, kh*kw); b (Nw, C*m); y (N, C*m, Ho, Wo).
    """
    n_batch, n_in = x.shape[0], x.shape[1]
    n_out = w.shape[1]
    out_h, out_w = y.shape[2], y.shape[3]
    multiplier = n_out // n_in
    for unit in prange(n_batch * n_in):
        n, c = unit // n_in, unit % n_in
        wn = n if w.shape[0] > 1 else 0
        thread = numba.get_thread_id()
        plane = plane_buf[thread]
        grid = grid_buf[thread, :out_h * pitch]
        _pad_transfer(x[n, c], plane, padding, pitch, stride, True)
        flat = plane.reshape(plane.size)
        for o in range(c * multiplier, (c + 1) * multiplier):
            bias = b[wn, o]
            for q in range(np.uintp(grid.size)):
                grid[q] = bias
            w_taps = w[wn, o]
            triples = taps.size // 3 * 3
            for tap in range(0, triples, 3):
                _grid_axpy3(grid, w_taps[tap], w_taps[tap + 1], w_taps[tap + 2], flat,
                            taps[tap], taps[tap + 1], taps[tap + 2])
            for tap in range(triples, taps.size):
                _grid_axpy(grid, w_taps[tap], flat, taps[tap])
            target = y[n, o].reshape(out_h * out_w)
            for h in range(out_h):
                _copy_run(target, h * out_w, 1, grid, h * pitch, 1, out_w)


@njit(cache=True, parallel=True)
def _depthwise_backward(dy, x, w, dx, dw_n, grid_buf, x_buf, dx_buf, taps, padding, pitch,
                        stride):
    """dx and per-sample dW of ``_depthwise_forward``, one (sample, input channel) per unit:

        dw_n[n, o, t] = sum_{h,w} dy[n, o, h, w] x[n, c] at tap t of (h, w)
        dx[n, c]      = sum over the m output channels o of c and the taps t of
                        w[n, o, t] dy[n, o] shifted back onto the input

    The unit owns dx[n, c] and dw_n[n, o] for its output channels o, and makes one pass over
    its data for both: it pads x[n, c] into phase planes (x_buf[t]) once, puts each dy[n, o]
    on the output grid (grid_buf[t]) once, then per tap takes the run's dot product with the
    grid (dW) and adds w times the grid onto the padded dx planes (dx_buf[t]), which it crops
    into dx at the end. Kernels shared by the batch (w has one row) get per-sample dW here
    too; the caller sums them over the batch.
    """
    n_batch, n_in = x.shape[0], x.shape[1]
    n_out, n_taps = w.shape[1], w.shape[2]
    positions = dy.shape[2] * pitch
    multiplier = n_out // n_in
    for unit in prange(n_batch * n_in):
        n, c = unit // n_in, unit % n_in
        wn = n if w.shape[0] > 1 else 0
        thread = numba.get_thread_id()
        grid = grid_buf[thread, :positions]
        x_flat = x_buf[thread].reshape(x_buf.shape[1] * x_buf.shape[2])
        dx_planes = dx_buf[thread]
        dx_flat = dx_planes.reshape(x_flat.size)
        _pad_transfer(x[n, c], x_buf[thread], padding, pitch, stride, True)
        _zero(dx_flat)
        for o in range(c * multiplier, (c + 1) * multiplier):
            _image_onto_grid(dy[n, o], grid, pitch)
            w_taps, dw_taps = w[wn, o], dw_n[n, o]
            for tap in range(n_taps):
                dw_taps[tap] = _run_dot(grid, x_flat, taps[tap])
                _plane_axpy(grid, w_taps[tap], dx_flat, taps[tap])
        _pad_transfer(dx[n, c], dx_planes, padding, pitch, stride, False)


# ----------------------------------------------------------------------------------------
# Public contract

def _padded_planes(x, kh, kw, stride, padding, dilation):
    """(planes (N, C, s0*s1 * L), taps, Wq): x padded and split into phases once for this
    call, each image's phase planes flat; taps from ``_tap_offsets``."""
    phases, length, pitch = _plane_geometry(x.shape, kw, stride, padding, dilation)
    planes = np.zeros(x.shape[:2] + (phases, length), x.dtype)
    _pad_batch(x, planes, padding, pitch, stride)
    taps = _tap_offsets(kh, kw, length, pitch, stride, dilation)
    return planes.reshape(x.shape[:2] + (phases * length,)), taps, pitch


def _rows_per_block(out_h, pitch, n_units):
    """Equal blocks of grid rows of at most _POSITIONS_PER_BLOCK positions, and at least two
    blocks per thread in all when there are few (sample, group) pairs."""
    blocks = max(-(-out_h * pitch // _POSITIONS_PER_BLOCK), -(-2 * _thread_slots() // n_units))
    return -(-out_h // min(out_h, blocks))


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """y (N, C_out, H_out, W_out) = per-sample (or shared) convolution of x with w, plus b."""
    n, c_out, out_h, out_w = conv_output_shape(x.shape, w.shape, stride, padding, dilation)
    nw, _, c_group, kh, kw = w.shape
    stride, padding, dilation = tuple(stride), tuple(padding), tuple(dilation)
    y = np.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    b = np.zeros((nw, c_out), x.dtype) if b is None else b
    slots = _thread_slots()
    if c_group == 1:
        phases, length, pitch = _plane_geometry(x.shape, kw, stride, padding, dilation)
        plane_buf = np.zeros((slots, phases, length), x.dtype)
        grid_buf = np.empty((slots, out_h * pitch), x.dtype)
        _depthwise_forward(x, w.reshape(nw, c_out, kh * kw), b, y, plane_buf, grid_buf,
                           _tap_offsets(kh, kw, length, pitch, stride, dilation), padding,
                           pitch, stride)
        return y
    planes, taps, pitch = _padded_planes(x, kh, kw, stride, padding, dilation)
    depth, c_out_group = c_group * kh * kw, c_out // groups
    rows_per_block = _rows_per_block(out_h, pitch, n * groups)
    positions = rows_per_block * pitch
    cols_buf = np.empty((slots, depth * positions), x.dtype)
    prod_buf = np.empty((slots, positions * c_out_group), x.dtype)
    with _single_threaded_blas():
        _gemm_conv_forward(cblas_gemm(x.dtype),
                           planes.reshape((n, groups, c_group) + planes.shape[2:]),
                           w.reshape(nw, groups, c_out_group, depth),
                           b.reshape(nw, groups, c_out_group),
                           y.reshape(n, groups, c_out_group, out_h, out_w), cols_buf, prod_buf,
                           taps, pitch, rows_per_block, c_out_group < _TRANSPOSED_BELOW)
    return y


def conv2d_backward(dy, x, w, stride, padding, dilation, groups, has_bias):
    """(dx, dw, db) of ``conv2d_forward``; dw has w's shape, db is (Nw, C_out) or None."""
    n, c_out, out_h, out_w = dy.shape
    nw, _, c_group, kh, kw = w.shape
    stride, padding, dilation = tuple(stride), tuple(padding), tuple(dilation)
    shared = nw == 1 and n != 1
    db = None
    if has_bias:
        db = _spatial_sums(dy)
        db = db.sum(axis=0, keepdims=True) if shared else db
    dx = np.empty_like(x)
    phases, length, pitch = _plane_geometry(x.shape, kw, stride, padding, dilation)
    slots, positions = _thread_slots(), out_h * pitch
    if c_group == 1:
        taps = _tap_offsets(kh, kw, length, pitch, stride, dilation)
        dw_n = np.empty((n, c_out, kh * kw), x.dtype)
        _depthwise_backward(dy, x, w.reshape(nw, c_out, kh * kw), dx, dw_n,
                            np.empty((slots, positions), x.dtype),
                            np.zeros((slots, phases, length), x.dtype),
                            np.empty((slots, phases, length), x.dtype), taps, padding, pitch,
                            stride)
        dw = dw_n.sum(axis=0, keepdims=True) if shared else dw_n
        return dx, dw.reshape(w.shape), db
    planes, taps, pitch = _padded_planes(x, kh, kw, stride, padding, dilation)
    depth, c_out_group = c_group * kh * kw, c_out // groups
    dw_slots = (np.zeros((slots, groups, c_out_group, depth), x.dtype) if shared
                else np.empty((nw, groups, c_out_group, depth), x.dtype))
    cols_buf = np.empty((slots, depth * positions), x.dtype)
    dy_buf = np.empty((slots, c_out_group * positions), x.dtype)
    plane_buf = np.empty((slots, c_group, phases, length), x.dtype)
    dw_buf = np.empty((slots, c_out_group, depth), x.dtype)
    with _single_threaded_blas():
        _gemm_conv_backward(cblas_gemm(x.dtype),
                            dy.reshape(n, groups, c_out_group, out_h, out_w),
                            planes.reshape((n, groups, c_group) + planes.shape[2:]),
                            w.reshape(nw, groups, c_out_group, depth),
                            dx.reshape((n, groups, c_group) + x.shape[2:]), dw_slots,
                            cols_buf, dy_buf, plane_buf, dw_buf, taps, pitch, stride,
                            padding)
    dw = dw_slots.sum(axis=0, keepdims=True) if shared else dw_slots
    return dx, dw.reshape(w.shape), db


# ----------------------------------------------------------------------------------------
# Kernel aggregation (paper section 3.1): memory-bound mixes of K kernels

_MIX_CHUNK = 4096  # elements per work unit: a few units per kernel row keep both threads busy


@njit(cache=True, parallel=True)
def _mix_rows(coefficients, rows, out):
    """out[n, f] = sum_k coefficients[n, k] rows[k, f].

    Blocked into chunks of _MIX_CHUNK columns, one (output row, chunk) per unit; each
    unit streams its K input chunks with a contiguous (vectorised) inner loop. (Inner loops
    here and below run over 1-D slices: Numba vectorises those, not multi-index loops.)
    """
    n_out, n_terms = coefficients.shape
    width = rows.shape[1]
    n_chunks = (width + _MIX_CHUNK - 1) // _MIX_CHUNK
    for unit in prange(n_out * n_chunks):
        n, chunk = unit // n_chunks, unit % n_chunks
        lo, hi = chunk * _MIX_CHUNK, min(width, (chunk + 1) * _MIX_CHUNK)
        target, first, weight = out[n, lo:hi], rows[0, lo:hi], coefficients[n, 0]
        for f in range(hi - lo):
            target[f] = weight * first[f]
        for k in range(1, n_terms):
            source, weight = rows[k, lo:hi], coefficients[n, k]
            for f in range(hi - lo):
                target[f] += weight * source[f]


@njit(cache=True, parallel=True)
def _row_inner_products(a, b, out):
    """out[n, k] = <a[n], b[k]>: one (n, k) pair per unit."""
    n_terms = b.shape[0]
    for unit in prange(a.shape[0] * n_terms):
        n, k = unit // n_terms, unit % n_terms
        out[n, k] = _run_dot(a[n], b[k], np.uintp(0))


def aggregate_forward(pi, weight, bias):
    """W_n = sum_k pi[n,k] weight[k];  b_n = sum_k pi[n,k] bias[k]  (paper eq. 1, 3.1).

    pi (N, K), weight (K, ...), bias (K, C_out) or None -> (W (N, ...), b (N, C_out) or None).
    """
    k = weight.shape[0]
    w_n = np.empty((pi.shape[0],) + weight.shape[1:], np.result_type(pi, weight))
    _mix_rows(pi, weight.reshape(k, -1), w_n.reshape(pi.shape[0], -1))
    b_n = None if bias is None else pi @ bias
    return w_n, b_n


def aggregate_backward(dw_n, db_n, pi, weight, bias):
    """Gradients of ``aggregate_forward``.

    dpi[n,k] = <dW_n, weight[k]> + <db_n, bias[k]>
    dweight[k] = sum_n pi[n,k] dW_n;   dbias[k] = sum_n pi[n,k] db_n
    """
    n, k = pi.shape
    dw_flat = dw_n.reshape(n, -1)
    w_flat = weight.reshape(k, -1)
    dpi = np.empty((n, k), np.result_type(dw_n, weight))
    dweight = np.empty(weight.shape, np.result_type(pi, dw_n))
    _row_inner_products(dw_flat, w_flat, dpi)
    _mix_rows(np.ascontiguousarray(pi.T), dw_flat, dweight.reshape(k, -1))
    dbias = None
    if bias is not None:
        dpi += db_n @ bias.T
        dbias = pi.T @ db_n
    return dpi, dweight, dbias


@njit(cache=True, parallel=True)
def _plane_sums(planes, out):
    """out[n, c] = sum of planes[n, c, :], one (sample, channel) plane per unit."""
    n_channels = planes.shape[1]
    for unit in prange(planes.shape[0] * n_channels):
        n, c = unit // n_channels, unit % n_channels
        out[n, c] = _run_sum(planes[n, c])


def _spatial_sums(x):
    """sums[n, c] = sum_{h,w} x[n, c, h, w]: (N, C, H, W) -> (N, C) (parallel over planes;
    several times faster than NumPy's single-threaded ``x.sum(axis=(2, 3))``)."""
    n, c, h, w = x.shape
    sums = np.empty((n, c), x.dtype)
    _plane_sums(x.reshape(n, c, h * w), sums)
    return sums


def spatial_mean(x):
    """pooled[n, c] = mean_{h,w} x[n, c, h, w]: (N, C, H, W) -> (N, C)."""
    pooled = _spatial_sums(x)
    pooled /= x.shape[2] * x.shape[3]
    return pooled


@njit(cache=True, parallel=True)
def _add_to_planes(planes, values):
    """planes[n, c, :] += values[n, c], one (sample, channel) plane per unit."""
    n_channels = planes.shape[1]
    for unit in prange(planes.shape[0] * n_channels):
        plane = planes[unit // n_channels, unit % n_channels]
        value = values[unit // n_channels, unit % n_channels]
        for q in range(np.uintp(plane.size)):
            plane[q] += value


def add_spatial_mean_grad(dx, dpooled):
    """In place: dx[n, c, h, w] += dpooled[n, c] / (H W), the adjoint of ``spatial_mean``
    (parallel over planes; NumPy's broadcast add runs on one thread)."""
    n, c, h, w = dx.shape
    _add_to_planes(dx.reshape(n, c, h * w), (dpooled / (h * w)).astype(dx.dtype, copy=False))
