"""The ``cuda`` backend: the backend contract (``backends/__init__.py``) on an NVIDIA GPU.

The kernels are Numba CUDA kernels (``cuda_kernels.py``): one straightforward
one-thread-per-output-element kernel each for the forward pass, dx, dw and db, and
a shared-memory tiled forward kernel, the fast path used by ``conv2d_forward``
(``conv2d_forward_naive`` runs the straightforward one, for tests and benchmarks).
Formulas are those of the reference backend (``reference.py``), which is the judge.

Where the data lives
--------------------
Every function accepts host NumPy arrays and device arrays: Numba device arrays and
any object that exports ``__cuda_array_interface__`` (CuPy, PyTorch CUDA tensors),
which is viewed in place, without a copy. Host arrays are copied in. Results on the
device are Numba device arrays (``cupy.asarray`` views them without a copy); results
for the host are copied back as NumPy arrays. Where each result goes:

* a forward result (y, and W_n, b_n of the aggregation) stays on the device when an
  input it is computed from is there (for W_n, b_n: the parameters weight, bias);
* a gradient is placed like the array it is the gradient of: dx like x, dw and db like
  w, dweight and dbias like weight and bias. A layer thus accumulates each parameter
  gradient where it keeps the parameter, and with everything on the device nothing
  makes a host round trip.

The attention weights ``pi`` and ``dpi`` and the pooled means are host arrays, as the
contract says: the attention branch (two tiny fully connected layers on (N, C) values)
runs on the host, so per layer only N x C means go down and N x K weights go up and down.

Without a GPU
-------------
``ensure_available`` (called by ``get_backend("cuda")``) raises
``CudaUnavailableError``, a ``RuntimeError``, when no CUDA GPU and driver are usable
or when ``numba-cuda`` is missing (``pip install dynconv_np[cuda]``). Numba's CUDA
simulator runs these kernels on the CPU (one Python thread per CUDA thread: slow,
for tests and teaching only); it is switched on by ``NUMBA_ENABLE_CUDASIM=1`` in
the environment *before numba is first imported*.
"""
import numpy as np
import numba

try:
    from numba import cuda
except ImportError as error:   # numba-cuda (the `cuda` extra) is not installed
    cuda = None
    _IMPORT_ERROR = error
else:
    _IMPORT_ERROR = None
    from . import cuda_kernels as kernels

from .geometry import conv_output_shape
from .._validation import is_device_array

NAME = "cuda"

SIMULATOR = bool(numba.config.ENABLE_CUDASIM)
#: Threads per block of the one-dimensional kernels. Under the simulator every thread
#: is a Python thread, so its blocks are kept small (fewer idle threads past the end).
THREADS = 32 if SIMULATOR else 128
#: (TW, TH): output tile of one block of the tiled forward, and its thread block.
DEFAULT_TILE = (16, 8)
#: Most output channels one thread of the tiled forward accumulates (in registers).
MAX_CO_BLOCK = 8
#: Most input channels the tiled forward stages in shared memory at a time.
MAX_CI_CHUNK = 8
#: Shared memory a block may use on every CUDA GPU without opting in to more (48 KiB).
SHARED_MEMORY_BYTES = 48 * 1024

_SIMULATOR_HINT = ("To run the CUDA kernels without a GPU, on Numba's CUDA simulator (slow; "
                   "for tests and teaching), set NUMBA_ENABLE_CUDASIM=1 in the environment "
                   "before numba is first imported, e.g. `NUMBA_ENABLE_CUDASIM=1 python ...`.")


class CudaUnavailableError(RuntimeError):
    """backend="cuda" was requested but no CUDA GPU (or simulator) can run its kernels."""


def ensure_available():
    """Raise ``CudaUnavailableError`` (a ``RuntimeError``) unless the kernels can run.

    They can on a CUDA GPU with a working driver, or on the simulator.
    """
    if cuda is None:
        raise CudaUnavailableError(
            f"backend='cuda' needs the numba-cuda package, which could not be imported "
            f"({_IMPORT_ERROR}). Install it with `pip install dynconv_np[cuda]`. "
            + _SIMULATOR_HINT)
    if not cuda.is_available():
        raise CudaUnavailableError(
            f"backend='cuda' found no usable CUDA GPU ({_driver_complaint()}). "
            f"It needs an NVIDIA GPU with its driver and numba-cuda "
            f"(`pip install dynconv_np[cuda]`). " + _SIMULATOR_HINT)


def _driver_complaint():
    """What the CUDA driver says when asked for a context (why no GPU is usable)."""
    try:
        cuda.current_context()
    except Exception as error:   # any driver failure is the answer we want to show
        return " ".join(str(error).split()).rstrip(" :") or type(error).__name__
    return "the driver reports no device"


# -- where arrays live (``is_device_array`` comes from the validation helpers) ------
def to_device(a):
    """A Numba device array holding ``a``: a copy of a host array, a view of a device one."""
    if getattr(a, "__cuda_ndarray__", False):
        return a
    if hasattr(a, "__cuda_array_interface__"):
        return _view_foreign_device_array(a)
    return cuda.to_device(np.ascontiguousarray(a))


def to_host(a):
    """``a`` as a NumPy array: device arrays are copied back, host arrays returned as they are."""
    if a is None or isinstance(a, np.ndarray):
        return a
    return to_device(a).copy_to_host()


def _view_foreign_device_array(obj):
    """A Numba device view (no copy) of an object exporting ``__cuda_array_interface__``."""
    if not SIMULATOR:
        return cuda.as_cuda_array(obj)
    # The simulator's "device memory" is host memory, so the exported pointer is a
    # host pointer: read it through NumPy's array interface and wrap it as a device array.
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    interface = dict(obj.__cuda_array_interface__, version=3)
    holder = type("_HostView", (), {"__array_interface__": interface})()
    return FakeCUDAArray(np.asarray(holder))


def add_into(dst, src):
    """In place, on the device: dst += src (same shape; ``dst`` a C-contiguous device array).

    Layers use it to accumulate gradients of parameters kept on the device.
    """
    dst, src = to_device(dst), to_device(src)
    _launch_1d(kernels.add_into, dst.size, dst.reshape(dst.size), src.reshape(src.size))


def _any_on_device(*arrays):
    return any(is_device_array(a) for a in arrays if a is not None)


def _deliver(on_device, *results):
    """Results as they go back to the caller: on the device, or copied to the host."""
    delivered = tuple(r if on_device or r is None else r.copy_to_host() for r in results)
    return delivered if len(delivered) > 1 else delivered[0]


def _launch_1d(kernel, total, *args):
    kernel[kernels.blocks_for(total, THREADS), THREADS](*args)


# -- convolution ---------------------------------------------------------------------
def conv2d_forward(x, w, b, stride, padding, dilation, groups,
                   tile=DEFAULT_TILE, co_block=None, ci_chunk=None):
    """y = conv(x, w) + b with the shared-memory tiled kernel (the fast path).

    y[n,co,oh,ow] = sum_{c,i,j} x[n, g Cg + c, oh s0 - p0 + i d0, ow s1 - p1 + j d1]
                    * w[nw, co, c, i, j] + b[nw, co],   g = co // (C_out / groups),
    nw = n (per-sample kernels) or 0 (shared kernel). ``tile`` = (TW, TH) is the output
    tile and thread block of one block; ``co_block`` output channels per thread
    (default: the smallest power of two >= C_out/groups, at most 8) and ``ci_chunk``
    input channels staged at a time (default: C_in/groups, at most 8) are exposed for
    tests and tuning. When even one staged channel would not fit in 48 KiB of shared
    memory (huge dilation), the straightforward kernel runs instead.
    """
    on_device = _any_on_device(x, w, b)
    x, w, b = to_device(x), to_device(w), None if b is None else to_device(b)
    cog, cg = w.shape[1] // groups, w.shape[2]
    if co_block is None:
        co_block = min(MAX_CO_BLOCK, 1 << (cog - 1).bit_length())
    if ci_chunk is None:
        ci_chunk = min(MAX_CI_CHUNK, cg)
        while ci_chunk > 1 and _shared_bytes(x, w, stride, dilation, tile, co_block,
                                             ci_chunk) > SHARED_MEMORY_BYTES:
            ci_chunk -= 1
    shared_bytes = _shared_bytes(x, w, stride, dilation, tile, co_block, ci_chunk)
    if shared_bytes > SHARED_MEMORY_BYTES:
        return _deliver(on_device, _forward_naive(x, w, b, stride, padding, dilation, groups))

    y_shape = conv_output_shape(x.shape, w.shape, stride, padding, dilation)
    y = cuda.device_array(y_shape, dtype=x.dtype)
    tw, th = tile
    grid = (y_shape[0] * groups * -(-cog // co_block), -(-y_shape[2] // th), -(-y_shape[3] // tw))
    kernel = kernels.tiled_forward_kernel(np.dtype(x.dtype), co_block)
    kernel[grid, (tw, th), 0, shared_bytes](x, w, b, y, *stride, *padding, *dilation,
                                            groups, ci_chunk)
    return _deliver(on_device, y)


def _shared_bytes(x, w, stride, dilation, tile, co_block, ci_chunk):
    elements = kernels.tiled_shared_elements(tile, w.shape[3:], stride, dilation,
                                             co_block, ci_chunk)
    return elements * np.dtype(x.dtype).itemsize


def conv2d_forward_naive(x, w, b, stride, padding, dilation, groups):
    """y = conv(x, w) + b (formula of ``conv2d_forward``), one thread per output element."""
    on_device = _any_on_device(x, w, b)
    x, w, b = to_device(x), to_device(w), None if b is None else to_device(b)
    return _deliver(on_device, _forward_naive(x, w, b, stride, padding, dilation, groups))


def _forward_naive(x, w, b, stride, padding, dilation, groups):
    """The straightforward forward kernel on device arrays; returns y on the device."""
    y_shape = conv_output_shape(x.shape, w.shape, stride, padding, dilation)
    y = cuda.device_array(y_shape, dtype=x.dtype)
    forward = kernels.naive_kernels(np.dtype(x.dtype))[0]
    _launch_1d(forward, y.size, x, w, b, y, *stride, *padding, *dilation, groups)
    return y


def conv2d_backward(dy, x, w, stride, padding, dilation, groups, has_bias):
    """(dx, dw, db) of the convolution, each element gathered by one thread; dx is placed like
    x, dw and db like w (the module docstring says why).

    dx[n,ci,ih,iw] = sum_{co in g, i, j: ih = oh s0 - p0 + i d0, iw = ow s1 - p1 + j d1}
                     dy[n,co,oh,ow] w[nw,co,c,i,j]
    dw[nw,co,c,i,j] = sum_{n of nw, oh, ow} dy[n,co,oh,ow] x[n, g Cg + c, oh s0 - p0 + i d0, ...]
    db[nw,co]       = sum_{n of nw, oh, ow} dy[n,co,oh,ow]
    where "n of nw" is n = nw for per-sample kernels and the whole batch for a shared one.
    """
    x_on_device, w_on_device = _any_on_device(x), _any_on_device(w)
    dy, x, w = to_device(dy), to_device(x), to_device(w)
    _, backward_input, backward_weight, backward_bias = kernels.naive_kernels(np.dtype(dy.dtype))
    geometry = (*stride, *padding, *dilation, groups)
    dx = cuda.device_array(x.shape, dtype=dy.dtype)
    _launch_1d(backward_input, dx.size, dy, w, dx, *geometry)
    dw = cuda.device_array(w.shape, dtype=dy.dtype)
    _launch_1d(backward_weight, dw.size, dy, x, dw, *geometry)
    db = None
    if has_bias:
        db = cuda.device_array(w.shape[:2], dtype=dy.dtype)
        _launch_1d(backward_bias, db.size, dy, db)
    return _deliver(x_on_device, dx), _deliver(w_on_device, dw), _deliver(w_on_device, db)


# -- kernel aggregation (paper section 3.1) -------------------------------------------
def _matmul(a, bmat, dtype, a_transposed=False, b_transposed=False):
    """A @ B on the device, A = a or a^T, B = bmat or bmat^T; one thread per output element."""
    shape = (a.shape[1] if a_transposed else a.shape[0],
             bmat.shape[0] if b_transposed else bmat.shape[1])
    out = cuda.device_array(shape, dtype=dtype)
    _launch_1d(kernels.matmul_kernel(np.dtype(dtype)), out.size, a, bmat, out,
               a_transposed, b_transposed)
    return out


def _flat(a, rows):
    """Device view of the C-contiguous device array ``a`` as (rows, size / rows)."""
    return a.reshape(rows, a.size // rows)


def aggregate_forward(pi, weight, bias):
    """W_n = sum_k pi[n,k] weight[k];  b_n = sum_k pi[n,k] bias[k]  (paper, section 3.1).

    pi (N, K) host; weight (K, C_out, Cg, kh, kw), bias (K, C_out) or None, on host
    or device -> (W (N, C_out, Cg, kh, kw), b (N, C_out) or None), placed like weight.
    """
    on_device = _any_on_device(weight, bias)   # W_n and b_n are placed like the parameters
    weight, bias = to_device(weight), None if bias is None else to_device(bias)
    n, k = pi.shape
    dtype = np.result_type(pi.dtype, weight.dtype)
    pi_d = to_device(pi)
    w_n = _matmul(pi_d, _flat(weight, k), dtype).reshape((n,) + tuple(weight.shape[1:]))
    b_n = None if bias is None else _matmul(pi_d, bias, dtype)
    return _deliver(on_device, w_n, b_n)


def aggregate_backward(dw_n, db_n, pi, weight, bias):
    """Gradients of ``aggregate_forward``: (dpi (host), dweight, dbias).

    dpi[n,k] = <dW_n, weight[k]> + <db_n, bias[k]>
    dweight[k] = sum_n pi[n,k] dW_n;   dbias[k] = sum_n pi[n,k] db_n
    """
    on_device = _any_on_device(weight, bias)   # like the parameters (see the module docstring)
    dw_n, weight = to_device(dw_n), to_device(weight)
    n, k = pi.shape
    dtype = np.result_type(pi.dtype, weight.dtype)
    pi_d = to_device(pi)
    dw_flat, w_flat = _flat(dw_n, n), _flat(weight, k)
    dpi = _matmul(dw_flat, w_flat, dtype, b_transposed=True).copy_to_host()
    dweight = _matmul(pi_d, dw_flat, dtype, a_transposed=True).reshape(tuple(weight.shape))
    dbias = None
    if bias is not None:
        db_n, bias = to_device(db_n), to_device(bias)
        dpi += _matmul(db_n, bias, dtype, b_transposed=True).copy_to_host()
        dbias = _matmul(pi_d, db_n, dtype, a_transposed=True)
    dweight, dbias = _deliver(on_device, dweight, dbias)
    return dpi, dweight, dbias


# -- the attention branch's global average pool ----------------------------------------
def spatial_mean(x):
    """pooled[n, c] = mean_{h,w} x[n, c, h, w]: (N, C, H, W) -> host (N, C)."""
    x = to_device(x)
    pooled = cuda.device_array(x.shape[:2], dtype=x.dtype)
    _launch_1d(kernels.pooling_kernels(np.dtype(x.dtype))[0], pooled.size, x, pooled)
    return pooled.copy_to_host()


def add_spatial_mean_grad(dx, dpooled):
    """In place: dx[n, c, h, w] += dpooled[n, c] / (H W), the adjoint of ``spatial_mean``.

    ``dx`` is a gradient this backend returned (device or host); ``dpooled`` is host.
    """
    dx_d = to_device(dx)
    height, width = dx_d.shape[2], dx_d.shape[3]
    scaled = (np.asarray(dpooled) / (height * width)).astype(dx_d.dtype, copy=False)
    _launch_1d(kernels.pooling_kernels(np.dtype(dx_d.dtype))[1], dx_d.size, dx_d,
               to_device(scaled))
    if not is_device_array(dx):
        dx_d.copy_to_host(dx)
