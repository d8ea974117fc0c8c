"""``backends/blas_threads.py``: BLAS held to one thread inside the context (nested entries
included), every library's thread count restored after the outermost exit, also when the body
raises; and the layers' own products run inside it."""
import numpy as np
import pytest

from dynconv_np.backends import blas_threads
from dynconv_np.functional import linear


def blas_thread_counts():
    from threadpoolctl import threadpool_info
    return {info["filepath"]: info["num_threads"] for info in threadpool_info()
            if info.get("user_api") == "blas"}


@pytest.fixture
def two_blas_threads():
    """Every BLAS library on two threads for the test (on a 1-core machine they start at one,
    and a restore to one could not be told from no restore)."""
    from threadpoolctl import threadpool_limits
    with blas_threads.single_threaded_blas():  # loads SciPy's BLAS too, once
        pass
    with threadpool_limits(limits=2, user_api="blas"):
        yield blas_thread_counts()


def test_blas_runs_on_one_thread_inside_and_gets_its_threads_back(two_blas_threads):
    assert set(two_blas_threads.values()) == {2}
    with pytest.raises(RuntimeError):
        with blas_threads.single_threaded_blas():
            assert set(blas_thread_counts().values()) == {1}
            with blas_threads.single_threaded_blas():
                assert set(blas_thread_counts().values()) == {1}
            assert set(blas_thread_counts().values()) == {1}, "an inner exit restored early"
            raise RuntimeError("body fails")
    assert blas_thread_counts() == two_blas_threads


def test_the_linear_products_run_on_one_blas_thread(two_blas_threads, monkeypatch):
    seen = []
    real_matmul = np.ndarray.__matmul__

    class Spy(np.ndarray):
        def __matmul__(self, other):
            seen.append(set(blas_thread_counts().values()))
            return real_matmul(np.asarray(self), np.asarray(other))

    rng = np.random.default_rng(0)
    x, weight = rng.standard_normal((3, 4)).view(Spy), rng.standard_normal((5, 4)).view(Spy)
    y, cache = linear._linear_forward(x, weight, None)
    linear._linear_backward(np.ones((3, 5)).view(Spy), cache)
    assert seen == [{1}] * 3, seen
    assert blas_thread_counts() == two_blas_threads
