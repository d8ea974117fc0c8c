"""The ``cuda`` backend's kernels against the ``numpy`` reference (the judge).

Not collected by a plain ``pytest`` run (the name does not match ``test_*.py``):
``tests/backends/test_cuda.py`` runs this module in a fresh interpreter, on the GPU
when one is present and otherwise under Numba's CUDA simulator, which has to be
switched on before numba is first imported. Run it by hand with
``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda_sim/cuda_cases.py``.

The simulator runs one Python thread per CUDA thread, so shapes are tiny (a few
channels, images of a few pixels) and tile sizes are drawn small, which also
exercises partial tiles at the output's edges.

Tolerance: two summation orders of the same n products a_i b_i can differ by at
most 2 n eps sum_i |a_i b_i| (the standard bound for recursive summation, used for
both results). The bound is computed element by element by running the reference on
absolute values, so it is tight where values are large and zero where every product
is zero; n is the longest sum in the operation.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np.backends import cuda as cuda_backend, get_backend, reference
from tests.backends.contract_checks import check_behaviour, check_members
from tests.strategies import conv_configs, pair, random_array

cuda_backend.ensure_available()   # without a GPU or the simulator: one clear error, not 20
cuda = cuda_backend.cuda
dtypes = st.sampled_from([np.float32, np.float64])


def assert_within_rounding(got, want, bound, terms, what):
    """|got - want| <= 2 terms eps bound, element by element; the report names the worst element."""
    got = cuda_backend.to_host(got)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    tolerance = 2 * terms * np.finfo(want.dtype).eps * np.asarray(bound, dtype=np.float64)
    error = np.abs(got.astype(np.float64) - want)
    if error.size and not (error <= tolerance).all():
        worst = np.unravel_index(np.argmax(error - tolerance), error.shape)
        raise AssertionError(f"{what}: element {worst}: cuda {got[worst]!r}, numpy {want[worst]!r}, "
                             f"|difference| {error[worst]:.3g} > bound {tolerance[worst]:.3g}")


def draw_conv(data, dtype):
    """A drawn valid convolution: arrays x, w (Nw in {1, N}), b or None, and its geometry."""
    config = data.draw(conv_configs(max_batch=2, max_extra_side=2), label="config")
    shared = data.draw(st.booleans(), label="one kernel for the batch")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    n, groups = config["n"], config["groups"]
    nw = 1 if shared else n
    x = random_array(rng, (n, config["in_channels"]) + config["size"], dtype)
    w = random_array(rng, (nw, config["out_channels"], config["in_channels"] // groups)
                     + config["kernel"], dtype)
    b = random_array(rng, (nw, config["out_channels"]), dtype) if config["bias"] else None
    geometry = (pair(config["stride"]), pair(config["padding"]), pair(config["dilation"]), groups)
    return rng, x, w, b, geometry


def longest_sum(x, w, y_shape, groups):
    """Most products in any one sum of the forward or backward pass."""
    (n, _, h_out, w_out), (c_out, cg, kh, kw) = y_shape, w.shape[1:]
    return max(cg * kh * kw + 1, (c_out // groups) * kh * kw, n * h_out * w_out)


@given(data=st.data(), dtype=dtypes)
def test_naive_forward_matches_reference(data, dtype):
    _, x, w, b, geometry = draw_conv(data, dtype)
    want = reference.conv2d_forward(x, w, b, *geometry)
    bound = reference.conv2d_forward(abs(x), abs(w), None if b is None else abs(b), *geometry)
    got = cuda_backend.conv2d_forward_naive(x, w, b, *geometry)
    assert isinstance(got, np.ndarray)
    assert_within_rounding(got, want, bound, longest_sum(x, w, want.shape, geometry[3]), "y")


@given(data=st.data(), dtype=dtypes, tile=st.tuples(st.integers(1, 4), st.integers(1, 3)),
       co_block=st.sampled_from([1, 2, 4]), ci_chunk=st.integers(1, 3))
def test_tiled_forward_matches_reference(data, dtype, tile, co_block, ci_chunk):
    """Small drawn tiles: partial tiles at the edges, channel blocks and chunks with remainders."""
    _, x, w, b, geometry = draw_conv(data, dtype)
    want = reference.conv2d_forward(x, w, b, *geometry)
    bound = reference.conv2d_forward(abs(x), abs(w), None if b is None else abs(b), *geometry)
    got = cuda_backend.conv2d_forward(x, w, b, *geometry, tile=tile, co_block=co_block,
                                      ci_chunk=ci_chunk)
    assert_within_rounding(got, want, bound, longest_sum(x, w, want.shape, geometry[3]), "y")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_forward_default_launch(dtype):
    """The launch the layers use (default tile and blocking); a 2 x 19 output spans two 16-wide tiles."""
    rng = np.random.default_rng(0)
    x, w, b = (random_array(rng, (2, 6, 6, 20), dtype), random_array(rng, (2, 10, 3, 2, 2), dtype),
               random_array(rng, (2, 10), dtype))
    geometry = ((2, 1), (0, 0), (2, 1), 2)
    want = reference.conv2d_forward(x, w, b, *geometry)
    got = cuda_backend.conv2d_forward(x, w, b, *geometry)
    assert want.shape == (2, 10, 2, 19)
    bound = reference.conv2d_forward(abs(x), abs(w), abs(b), *geometry)
    assert_within_rounding(got, want, bound, 13, "y")


def test_tiled_forward_falls_back_when_the_patch_exceeds_shared_memory():
    """Dilation 120 needs a 128 x 136 patch per channel (> 48 KiB): the naive kernel runs."""
    rng = np.random.default_rng(1)
    x, w = random_array(rng, (1, 1, 122, 122)), random_array(rng, (1, 1, 1, 2, 2))
    geometry = ((1, 1), (0, 0), (120, 120), 1)
    want = reference.conv2d_forward(x, w, None, *geometry)
    got = cuda_backend.conv2d_forward(x, w, None, *geometry)
    assert_within_rounding(got, want, reference.conv2d_forward(abs(x), abs(w), None, *geometry),
                           4, "y")


@given(data=st.data(), dtype=dtypes)
def test_backward_matches_reference(data, dtype):
    rng, x, w, b, geometry = draw_conv(data, dtype)
    y_shape = reference.conv2d_forward(x, w, b, *geometry).shape
    dy = random_array(rng, y_shape, dtype)
    has_bias = b is not None
    want = reference.conv2d_backward(dy, x, w, *geometry, has_bias)
    bound = reference.conv2d_backward(abs(dy), abs(x), abs(w), *geometry, has_bias)
    got = cuda_backend.conv2d_backward(dy, x, w, *geometry, has_bias)
    terms = longest_sum(x, w, y_shape, geometry[3])
    for name, g, expected, bounded in zip(("dx", "dw", "db"), got, want, bound):
        if expected is None:
            assert g is None, f"{name} should be None without bias"
        else:
            assert_within_rounding(g, expected, bounded, terms, name)


def draw_aggregation(data, dtype):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    n, k = data.draw(st.integers(1, 3), label="N"), data.draw(st.integers(1, 4), label="K")
    kernel_shape = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 2), st.integers(1, 3),
                                       st.integers(1, 3)), label="kernel shape")
    pi = rng.dirichlet(np.ones(k), size=n).astype(dtype)
    weight = random_array(rng, (k,) + kernel_shape, dtype)
    bias = random_array(rng, (k, kernel_shape[0]), dtype) if data.draw(st.booleans()) else None
    return rng, pi, weight, bias


@given(data=st.data(), dtype=dtypes)
def test_aggregation_matches_reference(data, dtype):
    rng, pi, weight, bias = draw_aggregation(data, dtype)
    n, k = pi.shape
    abs_bias = None if bias is None else abs(bias)
    want = reference.aggregate_forward(pi, weight, bias)
    bound = reference.aggregate_forward(pi, abs(weight), abs_bias)
    got = cuda_backend.aggregate_forward(pi, weight, bias)
    for name, g, expected, bounded in zip(("W_n", "b_n"), got, want, bound):
        if expected is None:
            assert g is None
        else:
            assert_within_rounding(g, expected, bounded, k, name)

    dw_n = random_array(rng, want[0].shape, dtype)
    db_n = None if bias is None else random_array(rng, want[1].shape, dtype)
    want = reference.aggregate_backward(dw_n, db_n, pi, weight, bias)
    bound = reference.aggregate_backward(abs(dw_n), None if db_n is None else abs(db_n), pi,
                                         abs(weight), abs_bias)
    got = cuda_backend.aggregate_backward(dw_n, db_n, pi, weight, bias)
    terms = max(n, weight[0].size + weight.shape[1])
    for name, g, expected, bounded in zip(("dpi", "dweight", "dbias"), got, want, bound):
        if expected is None:
            assert g is None
        else:
            assert_within_rounding(g, expected, bounded, terms, name)


@given(data=st.data(), dtype=dtypes)
def test_spatial_mean_and_its_gradient_match_reference(data, dtype):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    shape = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 4),
                                st.integers(1, 4)), label="shape")
    x = random_array(rng, shape, dtype)
    pooled = cuda_backend.spatial_mean(x)
    assert isinstance(pooled, np.ndarray)
    assert_within_rounding(pooled, reference.spatial_mean(x), reference.spatial_mean(abs(x)),
                           shape[2] * shape[3] + 1, "pooled")

    dpooled = random_array(rng, shape[:2], dtype)
    dx = random_array(rng, shape, dtype)
    want = dx.copy()
    reference.add_spatial_mean_grad(want, dpooled)
    cuda_backend.add_spatial_mean_grad(dx, dpooled)       # host dx: updated in place
    assert_within_rounding(dx, want, abs(want), 1, "dx (host)")


# -- where the data lives --------------------------------------------------------------
class ForeignDeviceArray:
    """Exports only ``__cuda_array_interface__``, as a CuPy array or a PyTorch CUDA tensor does."""

    def __init__(self, device_array):
        self._owner = device_array
        if cuda_backend.SIMULATOR:   # simulated device memory is host memory
            host = device_array._ary.__array_interface__
            self.__cuda_array_interface__ = dict(shape=host["shape"], typestr=host["typestr"],
                                                 data=host["data"], strides=None, version=3)
        else:
            self.__cuda_array_interface__ = device_array.__cuda_array_interface__


@pytest.fixture
def transfers(monkeypatch):
    """A log of every host -> device ("up") and device -> host ("down") copy, by shape."""
    log = []
    upload, device_array_type = cuda.to_device, type(cuda.device_array(1))
    download = device_array_type.copy_to_host

    def logged_upload(array, *args, **kwargs):
        log.append(("up", np.shape(array)))
        return upload(array, *args, **kwargs)

    def logged_download(self, *args, **kwargs):
        log.append(("down", tuple(self.shape)))
        return download(self, *args, **kwargs)

    monkeypatch.setattr(cuda, "to_device", logged_upload)
    monkeypatch.setattr(device_array_type, "copy_to_host", logged_download)
    return log


def conv_problem(dtype=np.float64):
    rng = np.random.default_rng(2)
    x, w, b = (random_array(rng, (2, 4, 5, 5), dtype), random_array(rng, (2, 6, 2, 3, 3), dtype),
               random_array(rng, (2, 6), dtype))
    geometry = ((1, 2), (1, 1), (1, 1), 2)
    dy = random_array(rng, reference.conv2d_forward(x, w, b, *geometry).shape, dtype)
    return x, w, b, dy, geometry


on_device = pytest.mark.parametrize("wrap", [lambda a: a, ForeignDeviceArray],
                                    ids=["numba device array", "cuda array interface"])


def assert_on_device(*arrays):
    for a in arrays:
        assert cuda_backend.is_device_array(a) and not isinstance(a, np.ndarray), type(a)


@on_device
def test_convolution_of_device_arrays_stays_on_device(wrap, transfers):
    x, w, b, dy, geometry = conv_problem()
    x_d, w_d, b_d, dy_d = (wrap(cuda_backend.to_device(a)) for a in (x, w, b, dy))
    transfers.clear()
    ys = [cuda_backend.conv2d_forward(x_d, w_d, b_d, *geometry),
          cuda_backend.conv2d_forward_naive(x_d, w_d, b_d, *geometry)]
    grads = cuda_backend.conv2d_backward(dy_d, x_d, w_d, *geometry, True)
    assert transfers == [], "arrays already on the device were copied"
    assert_on_device(*ys, *grads)
    for got in ys:
        np.testing.assert_allclose(got.copy_to_host(), reference.conv2d_forward(x, w, b, *geometry),
                                   rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, reference.conv2d_backward(dy, x, w, *geometry, True)):
        np.testing.assert_allclose(got.copy_to_host(), want, rtol=1e-12, atol=1e-12)


def test_gradients_are_placed_like_the_arrays_they_belong_to():
    """dx goes where x is, dw and db where w is (a layer accumulates them next to its params)."""
    x, w, b, dy, geometry = conv_problem()
    want = reference.conv2d_backward(dy, x, w, *geometry, True)
    x_d, w_d, dy_d = (cuda_backend.to_device(a) for a in (x, w, dy))
    for arguments, dx_on_device in (((dy_d, x_d, w), True), ((dy, x, w_d), False)):
        dx, dw, db = cuda_backend.conv2d_backward(*arguments, *geometry, True)
        assert isinstance(dx, np.ndarray) != dx_on_device
        assert isinstance(dw, np.ndarray) == isinstance(db, np.ndarray) == dx_on_device
        for got, expected in zip((dx, dw, db), want):
            np.testing.assert_allclose(cuda_backend.to_host(got), expected, rtol=1e-12, atol=1e-12)


@on_device
def test_aggregation_and_pooling_of_device_arrays_move_only_the_attention(wrap, transfers):
    """Only pi (N, K) goes up, dpi (N, K) and the pooled means (N, C) come down."""
    rng = np.random.default_rng(3)
    pi = rng.dirichlet(np.ones(3), size=2)
    weight, bias = random_array(rng, (3, 4, 2, 3, 3)), random_array(rng, (3, 4))
    dw_n, db_n = random_array(rng, (2, 4, 2, 3, 3)), random_array(rng, (2, 4))
    x, dpooled = random_array(rng, (2, 3, 4, 5)), random_array(rng, (2, 3))
    weight_d, bias_d, dw_d, db_d, x_d = (wrap(cuda_backend.to_device(a))
                                         for a in (weight, bias, dw_n, db_n, x))
    dx_d = cuda_backend.to_device(x)
    transfers.clear()

    w_n, b_n = cuda_backend.aggregate_forward(pi, weight_d, bias_d)
    assert transfers == [("up", (2, 3))]
    assert_on_device(w_n, b_n)
    transfers.clear()
    dpi, dweight, dbias = cuda_backend.aggregate_backward(dw_d, db_d, pi, weight_d, bias_d)
    assert sorted(transfers) == [("down", (2, 3))] * 2 + [("up", (2, 3))]
    assert isinstance(dpi, np.ndarray)
    assert_on_device(dweight, dbias)
    transfers.clear()
    pooled = cuda_backend.spatial_mean(x_d)
    cuda_backend.add_spatial_mean_grad(dx_d, dpooled)
    assert transfers == [("down", (2, 3)), ("up", (2, 3))]
    assert isinstance(pooled, np.ndarray)

    want_dx = x.copy()
    reference.add_spatial_mean_grad(want_dx, dpooled)
    for got, want in zip((w_n, b_n, dpi, dweight, dbias, pooled, dx_d),
                         reference.aggregate_forward(pi, weight, bias)
                         + reference.aggregate_backward(dw_n, db_n, pi, weight, bias)
                         + (reference.spatial_mean(x), want_dx)):
        np.testing.assert_allclose(cuda_backend.to_host(got), want, rtol=1e-12, atol=1e-12)


def test_host_inputs_are_not_modified():
    x, w, b, dy, geometry = conv_problem()
    copies = [a.copy() for a in (x, w, b, dy)]
    cuda_backend.conv2d_forward(x, w, b, *geometry)
    cuda_backend.conv2d_backward(dy, x, w, *geometry, True)
    for original, copy in zip((x, w, b, dy), copies):
        np.testing.assert_array_equal(original, copy)


def test_get_backend_returns_this_module():
    assert get_backend("cuda") is cuda_backend and cuda_backend.NAME == "cuda"


# -- the layer end to end ------------------------------------------------------------------
def layer_pair(dtype=np.float64):
    from dynconv_np.nn import DynamicConv2d
    settings = dict(stride=(1, 2), padding=1, groups=2, num_kernels=3, temperature=2.0,
                    dtype=dtype, rng=4)
    return (DynamicConv2d(4, 6, 3, backend="numpy", **settings),
            DynamicConv2d(4, 6, 3, backend="cuda", **settings))


def test_dynamic_conv2d_on_numpy_inputs_matches_the_numpy_backend():
    judge, layer = layer_pair()
    rng = np.random.default_rng(5)
    x = random_array(rng, (2, 4, 5, 5))
    y = layer.forward(x)
    dy = random_array(rng, y.shape)
    dx = layer.backward(dy)
    assert isinstance(y, np.ndarray) and isinstance(dx, np.ndarray)
    np.testing.assert_allclose(y, judge.forward(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, judge.backward(dy), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.attention, judge.attention, rtol=1e-12, atol=1e-14)
    for name, grad in judge.grads.items():
        np.testing.assert_allclose(layer.grads[name], grad, rtol=1e-12, atol=1e-12, err_msg=name)


def test_dynamic_conv2d_keeps_parameters_and_activations_on_the_device(transfers):
    """Kernels and biases moved to the device stay there over two steps; gradients accumulate
    there; only the attention branch's (N, C) and (N, K) arrays cross to the host."""
    judge, layer = layer_pair()
    layer.to_device()
    rng = np.random.default_rng(6)
    x = random_array(rng, (2, 4, 5, 5))
    want_y = judge.forward(x)
    dy = random_array(rng, want_y.shape)
    want_dx = judge.backward(dy)
    judge.forward(x)              # every backward consumes one forward
    judge.backward(dy)            # grads accumulate: the judge's are now two steps' worth
    x_d, dy_d = cuda_backend.to_device(x), cuda_backend.to_device(dy)
    transfers.clear()
    for _ in range(2):
        y = layer.forward(x_d)
        dx = layer.backward(dy_d)
    assert_on_device(y, dx, layer.params["weight"], layer.grads["weight"], layer.grads["bias"])
    assert {shape for _, shape in transfers} <= {(2, 4), (2, 3)}, transfers
    np.testing.assert_allclose(y.copy_to_host(), want_y, rtol=1e-12, atol=1e-12)
    layer.to_host()
    for name, grad in judge.grads.items():
        assert isinstance(layer.grads[name], np.ndarray)
        np.testing.assert_allclose(layer.grads[name], grad, rtol=1e-12, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(dx.copy_to_host(), want_dx, rtol=1e-12, atol=1e-12)
    for name, grad in judge.grads.items():
        got = cuda_backend.to_host(layer.grads[name])
        np.testing.assert_allclose(got, grad, rtol=1e-12, atol=1e-12, err_msg=name)
    layer.zero_grad()
    assert not cuda_backend.to_host(layer.grads["weight"]).any()


def test_dynamic_conv2d_with_host_parameters_takes_device_activations():
    """Parameters left on the host: y and dx stay on the device, the gradients come home.

    float32: every sum here has at most 54 terms (dW: 2 samples x 5 x 3 pixels; dx: 3 x 3 x 3
    taps x channels; y: 2 x 3 x 3 + 1), products of O(1) values, so two summation orders
    differ by at most ~2 x 54 x 6e-8 x (sum of |terms|, < 50) ~ 3e-4 in the worst case and by
    ~1e-6 typically; 1e-5 on these fixed inputs leaves a 20x margin over the 4.8e-7 measured.
    """
    judge, layer = layer_pair(np.float32)
    rng = np.random.default_rng(7)
    x = random_array(rng, (2, 4, 5, 5), np.float32)
    want_y = judge.forward(x)
    dy = random_array(rng, want_y.shape, np.float32)
    want_dx = judge.backward(dy)
    y = layer.forward(cuda_backend.to_device(x))
    dx = layer.backward(cuda_backend.to_device(dy))
    assert_on_device(y, dx)
    np.testing.assert_allclose(y.copy_to_host(), want_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx.copy_to_host(), want_dx, rtol=1e-5, atol=1e-5)
    for name, grad in judge.grads.items():
        assert isinstance(layer.grads[name], np.ndarray), name
        np.testing.assert_allclose(layer.grads[name], grad, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_dynamic_conv2d_rejects_a_non_finite_device_input(bad):
    """A device x is screened through its pooled means (computed on the device, read on the
    host): a NaN or inf in one plane is reported by sample and channel, before any kernel runs."""
    _, layer = layer_pair()
    x = random_array(np.random.default_rng(8), (2, 4, 5, 5))
    x[1, 3, 4, 0] = bad
    with pytest.raises(ValueError, match=rf"x must be finite; the mean of x\[1, 3\] over "
                                         rf"\(H, W\) is {bad}"):
        layer.forward(cuda_backend.to_device(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backend_keeps_the_contract(dtype):
    """The checks every backend passes (tests/backends/contract_checks.py)."""
    check_members(cuda_backend)
    check_behaviour(cuda_backend, dtype)
