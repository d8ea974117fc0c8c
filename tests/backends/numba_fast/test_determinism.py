"""The engine's results do not depend on the number of threads: every work unit owns what it
writes, and partial results (per-sample dW of a shared kernel, per-plane sums) are combined in a
fixed order afterwards. Checked bit for bit, kernel by kernel with ``numba.set_num_threads``,
and for a short training run in processes started with NUMBA_NUM_THREADS=1 and 2."""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from dynconv_np.backends import get_backend

engine = get_backend("numba")
THREADS = sorted({1, numba.config.NUMBA_NUM_THREADS})


def _with_threads(count, call):
    before = numba.get_num_threads()
    numba.set_num_threads(count)
    try:
        return call()
    finally:
        numba.set_num_threads(before)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 or more Numba threads "
                    "to compare thread counts (NUMBA_NUM_THREADS=1 here)")
@pytest.mark.parametrize("groups, nw", [(1, 1), (2, 1), (1, 5), (4, 1)])
def test_every_kernel_is_bitwise_independent_of_the_thread_count(groups, nw):
    rng = np.random.default_rng(0)
    n, c_in, c_out = 5, 4, 8
    x = rng.standard_normal((n, c_in, 9, 7)).astype(np.float32)
    w = rng.standard_normal((nw, c_out, c_in // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal((nw, c_out)).astype(np.float32)
    geometry = ((2, 1), (1, 1), (1, 1), groups)
    runs = []
    for count in THREADS:
        y = _with_threads(count, lambda: engine.conv2d_forward(x, w, b, *geometry))
        dy = np.cos(y).astype(np.float32)
        dx, dw, db = _with_threads(count, lambda: engine.conv2d_backward(dy, x, w, *geometry,
                                                                         True))
        pi = rng.random((n, 3)).astype(np.float32) if not runs else runs[0][-1]
        bank = np.ascontiguousarray(np.repeat(w[:1], 3, axis=0))
        mixed = _with_threads(count, lambda: engine.aggregate_backward(
            np.repeat(dw[:1], n, axis=0), np.repeat(db[:1], n, axis=0), pi, bank, b[:1].repeat(
                3, axis=0)))
        pooled = _with_threads(count, lambda: engine.spatial_mean(x))
        runs.append((y, dx, dw, db, *mixed, pooled, pi))
    for first, other in zip(runs[0][:-1], runs[-1][:-1]):
        assert first.tobytes() == other.tobytes()


TRAINING = """
import hashlib, numpy as np
from dynconv_np.models.small import small_cnn
from dynconv_np.train.data import load_digits
from dynconv_np.train.loop import train_step
from dynconv_np.train.optim import SGD
data = load_digits()
digest = hashlib.sha256()
for dynamic in (False, True):
    model = small_cnn(width=2, dynamic=dynamic, num_kernels=4, backend="numba", rng=0)
    optimizer = SGD(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
    for step in range(4):
        batch = slice(32 * step, 32 * step + 32)
        train_step(model, optimizer, data.x_train[batch], data.y_train[batch])
    for name, value, _ in model.named_parameters():
        digest.update(name.encode()); digest.update(value.tobytes())
print(digest.hexdigest())
"""


def test_training_is_bitwise_independent_of_the_thread_count():
    digests = []
    for count in (1, 2):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(count))
        result = subprocess.run([sys.executable, "-c", TRAINING], env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        digests.append(result.stdout.strip())
    assert digests[0] == digests[1]
