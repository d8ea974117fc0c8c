"""``numba_fast/threads.py``: calls below PARALLEL_FROM run on one thread, larger ones on all,
and the thread count is restored afterwards (also when the call raises)."""
import numba
import pytest

from dynconv_np.backends.numba_fast import threads


def test_small_work_runs_on_one_thread_and_restores_the_count():
    before = numba.get_num_threads()
    with threads.threads_for(threads.PARALLEL_FROM - 1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before


def test_large_work_keeps_every_thread():
    before = numba.get_num_threads()
    with threads.threads_for(threads.PARALLEL_FROM):
        assert numba.get_num_threads() == before


def test_the_count_is_restored_when_the_call_raises():
    before = numba.get_num_threads()
    with pytest.raises(RuntimeError):
        with threads.threads_for(0):
            raise RuntimeError("inside")
    assert numba.get_num_threads() == before
