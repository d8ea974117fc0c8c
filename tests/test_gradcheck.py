"""The public gradient checker: it passes correct gradients and catches wrong ones."""
import numpy as np
import pytest

from dynconv_np import DynamicLinear, gradcheck
from dynconv_np.nn import Linear, ReLU, Sequential
from dynconv_np.backends import reference
from dynconv_np.gradcheck import GradcheckError


def _square(x):
    return x ** 2, x


def _square_backward(dy, x):
    return {"x": 2 * x * dy}


def _wrong_square_backward(dy, x):
    return {"x": 2 * x * dy + 1e-3 * (x > 0.5)}


@pytest.mark.parametrize("mode", ["central", "complex", "directional"])
def test_correct_gradient_passes_in_every_mode(mode):
    x = np.random.default_rng(0).standard_normal((3, 4))
    report = gradcheck(_square, {"x": x}, backward=_square_backward, mode=mode)
    assert report.passed and report.mode == mode
    assert report.max_abs_error() < 1e-8


@pytest.mark.parametrize("mode", ["central", "complex", "directional"])
def test_wrong_backward_is_caught_and_reported(mode):
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    with pytest.raises(GradcheckError, match="Jacobian mismatch for input"):
        gradcheck(_square, {"x": x}, backward=_wrong_square_backward, mode=mode)
    report = gradcheck(_square, {"x": x}, backward=_wrong_square_backward, mode=mode,
                       raise_exception=False)
    assert not report.passed and "FAILED" in str(report)


def test_report_names_the_worst_element():
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    report = gradcheck(_square, {"x": x}, backward=_wrong_square_backward, raise_exception=False)
    (result,) = report.results
    assert result.name == "x" and not result.passed
    # Every element with x > 0.5 is off by 1e-3 * G; the worst is the largest |G| among them.
    assert x[result.worst_index] > 0.5
    assert result.max_abs_error == pytest.approx(abs(result.numerical - result.analytical))


def test_broken_layer_backward_is_caught():
    """Negative control on a real layer: drop the attention path's contribution to dx (the
    per-sample kernel W(x) = sum_k pi_k W_k is rebuilt from the layer's public attention)."""
    layer = DynamicLinear(4, 3, num_kernels=3, temperature=0.5, backend="numpy",
                          dtype=np.float64, rng=0)
    layer.params["fc2_weight"] *= 10
    x = np.random.default_rng(1).standard_normal((2, 4))
    assert gradcheck(layer, x).passed

    def backward_without_attention_path(dy):
        w_n = np.einsum("nk,koi->noi", layer.attention, layer.params["weight"])
        return np.einsum("noi,no->ni", w_n, dy)  # only the W(x) x path

    layer.backward = backward_without_attention_path
    with pytest.raises(GradcheckError, match="input 'x'"):
        gradcheck(layer, x)


def test_a_layer_check_clears_its_pending_calls_around_the_probes():
    """A module keeps a cache per forward until its backward: gradcheck's probes (forwards
    that are never backpropagated) and a forward made before the check leave none behind."""
    layer = Sequential(Linear(3, 4, dtype=np.float64, rng=0), ReLU(),
                       Linear(4, 2, dtype=np.float64, rng=1))
    x = np.random.default_rng(0).standard_normal((5, 3))
    layer.forward(x)  # pending: a stale call the check must not match its backward to
    assert gradcheck(layer, x).passed
    for module in layer.modules():
        with pytest.raises(ValueError, match="without a matching forward"):
            module.backward(np.ones((5, 2)))


def test_complex_step_on_the_reference_convolution_is_exact():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((2, 3, 2, 3, 2))
    geometry = ((2, 1), (1, 0), (1, 2), 1)

    def forward(x, w):
        return reference.conv2d_forward(x, w, None, *geometry)

    def backward(dy, _):
        return reference.conv2d_backward(dy, x, w, *geometry, False)[:2]

    report = gradcheck(forward, {"x": x, "w": w}, backward=backward, mode="complex",
                       atol=1e-13, rtol=1e-12)
    assert report.max_abs_error() < 1e-13


def test_subset_checks_the_requested_number_of_elements():
    x = np.random.default_rng(0).standard_normal((20, 20))
    report = gradcheck(_square, {"x": x}, backward=_square_backward, max_elements=15)
    assert report.results[0].checked == 15 and report.results[0].size == 400


def test_float32_inputs_are_refused_with_the_reason():
    with pytest.raises(TypeError, match="gradcheck needs float64 arrays"):
        gradcheck(_square, {"x": np.zeros(3, np.float32)}, backward=_square_backward)


def test_unknown_mode_is_named():
    with pytest.raises(ValueError, match="mode must be one of"):
        gradcheck(_square, {"x": np.zeros(3)}, backward=_square_backward, mode="forward")
