"""How many threads a call of the engine uses: all of them for work large enough to pay for a
parallel region, one below that.

A parallel region wakes the worker threads and waits for the slowest: on tiny work (the demo
network's 8 x 8 maps) that costs more than it saves, and when another process holds a core the
region waits for the descheduled worker, which made small calls erratic. ``threads_for`` runs a
call below ``PARALLEL_FROM`` operations (multiply-adds, or elements for the reductions) on the
calling thread alone; work units and their order do not change, so neither do the results.
"""
import contextlib

import numba

# operations (measurements in dynconv_np/bench/README.md): convolutions count multiply-adds;
# the memory-bound reductions (aggregation, plane sums) count elements and pay off sooner, and
# so do the depthwise direct loops on small maps (scalar code, about 1 ns a multiply-add)
PARALLEL_FROM = 1 << 20
REDUCTION_PARALLEL_FROM = 1 << 16
DIRECT_PARALLEL_FROM = 1 << 14


@contextlib.contextmanager
def threads_for(work, parallel_from=PARALLEL_FROM):
    """Run the enclosed kernels on one thread when ``work`` < ``parallel_from``, else on all."""
    before = numba.get_num_threads()
    if work >= parallel_from or before == 1:
        yield
        return
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)
