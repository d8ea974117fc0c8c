"""BatchNorm2d: gradients in both modes, running statistics, mode switch, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np import gradcheck
from dynconv_np.nn import BatchNorm2d

from ..functional.test_batchnorm import bn_shapes


def _layer(c, seed, training):
    rng = np.random.default_rng(seed)
    layer = BatchNorm2d(c, dtype=np.float64)
    layer.params["weight"][...] = rng.standard_normal(c)
    layer.params["bias"][...] = rng.standard_normal(c)
    layer.buffers["running_mean"][...] = rng.standard_normal(c)
    layer.buffers["running_var"][...] = rng.uniform(0.1, 3.0, c)
    return layer.train(training)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@given(shape=bn_shapes(), seed=st.integers(0, 2**16))
def test_backward_matches_finite_differences(training, shape, seed):
    layer = _layer(shape[1], seed, training)
    # Tolerances as in tests/functional/test_batchnorm.py (smooth in train mode, affine in eval).
    report = gradcheck(layer, np.random.default_rng(seed + 1).standard_normal(shape))
    assert {r.name for r in report.results} == {"x", "weight", "bias"}


def test_eval_mode_uses_running_statistics_and_leaves_them_alone():
    layer = BatchNorm2d(2, eps=1e-3, dtype=np.float64).eval()
    layer.params["weight"][...] = [2.0, -1.0]
    layer.params["bias"][...] = [0.5, 1.0]
    layer.buffers["running_mean"][...] = [1.0, -2.0]
    layer.buffers["running_var"][...] = [4.0, 0.25]
    x = np.random.default_rng(0).standard_normal((3, 2, 2, 2))
    y = layer.forward(x)
    expected_0 = 2.0 * (x[:, 0] - 1.0) / np.sqrt(4.0 + 1e-3) + 0.5
    expected_1 = -1.0 * (x[:, 1] + 2.0) / np.sqrt(0.25 + 1e-3) + 1.0
    np.testing.assert_allclose(y[:, 0], expected_0, rtol=1e-14)
    np.testing.assert_allclose(y[:, 1], expected_1, rtol=1e-14)
    np.testing.assert_array_equal(layer.buffers["running_mean"], [1.0, -2.0])
    np.testing.assert_array_equal(layer.buffers["running_var"], [4.0, 0.25])
    # each sample is normalised on its own: the batch does not matter in eval mode
    np.testing.assert_allclose(layer.forward(x[1:2]), y[1:2], rtol=1e-15)


def test_running_statistics_follow_the_momentum_update():
    layer = BatchNorm2d(3, momentum=0.3, dtype=np.float64)
    mean_buffer, var_buffer = layer.buffers["running_mean"], layer.buffers["running_var"]
    rng = np.random.default_rng(1)
    expected_mean, expected_var = np.zeros(3), np.ones(3)
    for step in range(3):
        x = 2.0 + 3.0 * rng.standard_normal((4, 3, 2, 5))
        layer.forward(x)
        per_channel = x.transpose(1, 0, 2, 3).reshape(3, -1)  # 40 values per channel
        expected_mean = 0.7 * expected_mean + 0.3 * per_channel.mean(axis=1)
        expected_var = 0.7 * expected_var + 0.3 * per_channel.var(axis=1, ddof=1)
        np.testing.assert_allclose(layer.buffers["running_mean"], expected_mean, rtol=1e-13)
        np.testing.assert_allclose(layer.buffers["running_var"], expected_var, rtol=1e-13)
    # updated in place: references held elsewhere (checkpoints, optimisers) stay valid
    assert layer.buffers["running_mean"] is mean_buffer and layer.buffers["running_var"] is var_buffer


def test_train_mode_normalises_with_the_batch_statistics():
    layer = BatchNorm2d(2, dtype=np.float64)
    layer.buffers["running_mean"][...] = 100.0  # must not be used in training mode
    x = 5 + 3 * np.random.default_rng(2).standard_normal((6, 2, 3, 3))
    y = layer.forward(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-13)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1, rtol=1e-5)


def test_one_value_per_channel_in_training_is_named():
    with pytest.raises(ValueError, match=r"more than one value per channel"):
        BatchNorm2d(3).forward(np.ones((1, 3, 1, 1), dtype=np.float32))
    BatchNorm2d(3).eval().forward(np.ones((1, 3, 1, 1), dtype=np.float32))  # fine in eval mode


def test_parameters_and_buffers_start_like_pytorch():
    layer = BatchNorm2d(4)
    np.testing.assert_array_equal(layer.params["weight"], np.ones(4, np.float32))
    np.testing.assert_array_equal(layer.params["bias"], np.zeros(4, np.float32))
    assert dict(layer.named_buffers()).keys() == {"running_mean", "running_var"}
    np.testing.assert_array_equal(layer.buffers["running_mean"], 0)
    np.testing.assert_array_equal(layer.buffers["running_var"], 1)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(num_features=0), ValueError, r"num_features must be a positive int; received 0"),
    (dict(eps=0.0), ValueError, r"eps must be finite and in \(0, inf\); received 0.0"),
    (dict(eps=np.inf), ValueError, r"eps must be finite and in \(0, inf\); received inf"),
    (dict(eps="small"), TypeError, r"eps must be a real number; received str"),
    (dict(momentum=1.5), ValueError, r"momentum must be finite and in \[0, 1\]; received 1.5"),
    (dict(momentum=None), TypeError, r"momentum must be a real number; received NoneType"),
    (dict(dtype=np.float16), TypeError, r"dtype must be float32 or float64"),
])
def test_bad_constructor_arguments_are_named(kwargs, error, message):
    args = dict(num_features=3)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        BatchNorm2d(**args)


def test_a_negative_running_variance_is_named_in_eval_mode():
    """Running statistics are buffers (loaded from checkpoints, edited in place): eval mode
    checks them, by name, before normalising with them."""
    layer = BatchNorm2d(3, dtype=np.float64).eval()
    layer.buffers["running_var"][1] = -0.25
    with pytest.raises(ValueError, match=r"running_var must be >= 0 \(a variance\); received "
                                         r"-0.25 at index 1"):
        layer.forward(np.ones((2, 3, 2, 2)))
    layer.buffers["running_var"][1] = 1.0
    layer.buffers["running_mean"][2] = np.nan
    with pytest.raises(ValueError, match=r"running_mean contains 1 non-finite"):
        layer.forward(np.ones((2, 3, 2, 2)))
    layer.train().forward(np.ones((2, 3, 2, 2)))  # training mode normalises with the batch's


def test_buffers_are_in_the_state_dict():
    layer = BatchNorm2d(2, dtype=np.float64)
    layer.forward(np.random.default_rng(0).standard_normal((3, 2, 2, 2)))
    state = layer.state_dict()
    assert sorted(state) == ["bias", "running_mean", "running_var", "weight"]
    np.testing.assert_array_equal(state["running_mean"], layer.buffers["running_mean"])
