"""Softmax cross-entropy: value, gradient (finite differences), stability, smoothing, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.train.losses import accuracy, cross_entropy_backward, cross_entropy_forward


def _naive_cross_entropy(logits, labels, smoothing):
    """-mean_n sum_c q log softmax, written the direct (unstable) way, for small logits."""
    n, c = logits.shape
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    q = np.full((n, c), smoothing / c)
    q[np.arange(n), labels] += 1 - smoothing
    return -np.sum(q * np.log(p)) / n


@given(n=st.integers(1, 5), c=st.integers(2, 6), smoothing=st.sampled_from([0.0, 0.1, 0.5]),
       seed=st.integers(0, 2**16))
def test_value_matches_naive_formula(n, c, smoothing, seed):
    rng = np.random.default_rng(seed)
    logits, labels = rng.standard_normal((n, c)), rng.integers(0, c, n)
    loss, _ = cross_entropy_forward(logits, labels, smoothing)
    assert loss == pytest.approx(_naive_cross_entropy(logits, labels, smoothing), rel=1e-12)


@given(n=st.integers(1, 5), c=st.integers(2, 6), smoothing=st.sampled_from([0.0, 0.2]),
       scale=st.sampled_from([1.0, 10.0]), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(n, c, smoothing, scale, seed):
    rng = np.random.default_rng(seed)
    logits, labels = scale * rng.standard_normal((n, c)), rng.integers(0, c, n)

    def forward(logits):
        loss, cache = cross_entropy_forward(logits, labels, smoothing)
        return np.array(loss), cache

    # The loss is smooth (log-sum-exp); central differences in float64 are accurate to ~1e-9.
    gradcheck(forward, {"logits": logits},
              lambda dloss, cache: {"logits": cross_entropy_backward(float(dloss), cache)})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_for_huge_logits_and_keeps_dtype(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-3e4, 3e4, 2.9e4]], dtype=dtype)
    loss, cache = cross_entropy_forward(logits, np.array([0, 2]))
    # Row 0 is right with certainty (loss 0); row 1 misses by 1e3 logits (loss 1e3).
    assert loss == pytest.approx(1e3 / 2, rel=1e-6)
    dlogits = cross_entropy_backward(1.0, cache)
    assert dlogits.dtype == dtype and np.all(np.isfinite(dlogits))
    np.testing.assert_allclose(dlogits, [[0, 0, 0], [0, 0.5, -0.5]], atol=1e-7)


def test_label_smoothing_target_and_minimum():
    # With smoothing eps the loss is minimised by log p = log q, where it equals the entropy of q.
    c, eps = 4, 0.2
    q = np.full(c, eps / c)
    q[1] += 1 - eps
    loss, cache = cross_entropy_forward(np.log(q)[None], np.array([1]), eps)
    assert loss == pytest.approx(-np.sum(q * np.log(q)), rel=1e-12)
    np.testing.assert_allclose(cross_entropy_backward(1.0, cache), 0, atol=1e-15)


def test_inputs_not_modified():
    logits = np.array([[0.5, -1.0, 2.0]])
    copy = logits.copy()
    cross_entropy_forward(logits, np.array([2]), 0.1)
    np.testing.assert_array_equal(logits, copy)


@pytest.mark.parametrize("logits, labels, smoothing, error, match", [
    (np.zeros((2, 3)), np.array([0, 3]), 0.0, ValueError, r"labels must be in 0..2"),
    (np.zeros((2, 3)), np.array([0, -1]), 0.0, ValueError, r"labels must be in 0..2"),
    (np.zeros((2, 3)), np.array([0.0, 1.0]), 0.0, TypeError, "labels must be integers"),
    (np.zeros((2, 3)), np.array([0, 1, 2]), 0.0, ValueError, r"labels must have shape \(2,\)"),
    (np.zeros((2, 3)), np.array([0, 1]), 1.0, ValueError, r"label_smoothing must be in \[0, 1\)"),
    (np.zeros(3), np.array([0]), 0.0, ValueError, "logits must be 2-D"),
    (np.zeros((0, 3)), np.zeros(0, int), 0.0, ValueError, "at least one sample"),
    (np.array([[np.nan, 0.0]]), np.array([0]), 0.0, ValueError, "non-finite"),
])
def test_bad_input_is_named(logits, labels, smoothing, error, match):
    with pytest.raises(error, match=match):
        cross_entropy_forward(logits, labels, smoothing)


def test_accuracy():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 4.0]])
    assert accuracy(logits, np.array([0, 1, 1])) == pytest.approx(2 / 3)
