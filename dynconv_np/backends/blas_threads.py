"""BLAS on one thread while this package's own code calls it.

NumPy's OpenBLAS keeps a thread pool of its own, and so does Numba. When the two alternate on a
small machine (a NumPy product in a Linear layer, then a parallel Numba kernel, then the next
product), each pool's idle workers spin for the cores the other needs: a DY-MobileNetV3-Small
inference on 2 cores took 61 ms with both pools against 19 ms with BLAS on one thread (numbers
in dynconv_np/bench/README.md). So every BLAS call this package makes runs inside
``single_threaded_blas``: the tuned engine's gemm kernels (inside Numba's ``prange`` loops) and
the layers' own products (``functional.linear``: the classifiers, the SE blocks' and the
attention branch's FCs, products of a few thousand multiply-adds per row). The reference
backend's large im2col products keep BLAS's threads: there they are the parallelism. BLAS
calls made outside this package are left alone.
"""
_CONTROLLERS = []  # [tuple of threadpoolctl's BLAS library controllers], filled on first use


def _blas_controllers():
    """threadpoolctl's controllers of the BLAS libraries loaded in this process: NumPy's and
    SciPy's (which Numba's ``np.dot`` calls; loaded here so that the controller sees it).
    Without threadpoolctl: none, and BLAS keeps its threads (results are the same)."""
    if not _CONTROLLERS:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _CONTROLLERS.append(())
        else:
            try:
                import scipy.linalg.cython_blas  # noqa: F401
            except ImportError:
                pass
            _CONTROLLERS.append(tuple(ThreadpoolController().select(user_api="blas")
                                      .lib_controllers))
    return _CONTROLLERS[0]


class single_threaded_blas:
    """Context in which every BLAS library uses one thread; on exit each gets its former count.

    Sets the counts through threadpoolctl's library controllers (about 1 us for a library's
    set and reset), not through its ``threadpool_limits`` context, which inspects the loaded
    libraries on every entry and costs tens of microseconds. Nested entries are free.
    """

    _depth = 0      # entries not yet exited (one process-wide count: BLAS's threads are too)
    _restore = ()   # (controller, former count) of the outermost entry

    def __enter__(self):
        cls = single_threaded_blas
        if cls._depth == 0:
            restore = []
            for controller in _blas_controllers():
                threads = controller.get_num_threads()
                if threads != 1:
                    controller.set_num_threads(1)
                    restore.append((controller, threads))
            cls._restore = tuple(restore)
        cls._depth += 1
        return self

    def __exit__(self, *exc_info):
        cls = single_threaded_blas
        cls._depth -= 1
        if cls._depth == 0:
            for controller, threads in cls._restore:
                controller.set_num_threads(threads)
            cls._restore = ()
        return False
