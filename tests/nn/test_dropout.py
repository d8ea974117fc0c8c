"""Dropout layer: identity in eval mode, inverted dropout in training, backward reuses the mask."""
import numpy as np
import pytest

from dynconv_np.nn import Dropout, Sequential


def test_eval_mode_is_the_identity():
    layer = Dropout(0.9, rng=0).eval()
    x = np.random.default_rng(0).standard_normal((4, 5))
    dy = np.random.default_rng(1).standard_normal((4, 5))
    np.testing.assert_array_equal(layer.forward(x), x)
    np.testing.assert_array_equal(layer.backward(dy), dy)


def test_training_mode_scales_kept_entries_and_backward_reuses_the_mask():
    p = 0.3
    layer = Dropout(p, rng=7)
    x = np.random.default_rng(0).uniform(1, 2, (20, 30))  # no zeros of its own
    y = layer.forward(x)
    kept = y != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-15)
    dy = np.random.default_rng(1).standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(dy), np.where(kept, dy / (1 - p), 0), rtol=1e-15)


def test_each_forward_draws_a_new_mask_and_a_seed_reproduces_them():
    x = np.ones((10, 10))
    first, second = Dropout(0.5, rng=3), Dropout(0.5, rng=3)
    a, b = first.forward(x), first.forward(x)
    assert not np.array_equal(a != 0, b != 0)
    np.testing.assert_array_equal(second.forward(x), a)
    np.testing.assert_array_equal(second.forward(x), b)


def test_expectation_is_the_input():
    """Mean over 2000 forwards of x = 1 with p = 0.5: each draw is 0 or 2 (sd 1), so the mean's
    sd is 1/sqrt(2000) = 0.022 per element; 6 sd = 0.13. A missing rescale would give 0.5."""
    layer = Dropout(0.5, rng=0)
    x = np.ones(8)
    draws = []
    for _ in range(2000):
        draws.append(layer.forward(x))
        layer.clear_calls()  # no backward follows these training-mode forwards
    mean = np.mean(draws, axis=0)
    np.testing.assert_allclose(mean, 1.0, atol=6 / np.sqrt(2000))


def test_train_and_eval_reach_dropout_inside_containers():
    layer = Dropout(0.5, rng=0)
    net = Sequential(Sequential(layer))
    x = np.ones((50, 4))
    net.eval()
    assert not layer.training
    np.testing.assert_array_equal(net.forward(x), x)
    net.train()
    assert layer.training and np.any(net.forward(x) == 0)


@pytest.mark.parametrize("p, error", [(1.01, ValueError), (-0.5, ValueError), (None, TypeError)])
def test_bad_probability_is_named(p, error):
    with pytest.raises(error, match=r"p \(drop probability\)"):
        Dropout(p)
