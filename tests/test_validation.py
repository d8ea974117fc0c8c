"""The boundary's checks (``dynconv_np/_validation.py``), one by one: what each accepts, and
that each refusal is a ValueError or TypeError naming the argument and the received value."""
import numpy as np
import pytest

from dynconv_np import _validation as v


def test_check_float_array_names_kind_ndim_dtype_and_the_first_non_finite_element():
    a = np.zeros((2, 3))
    assert v.check_float_array(a, "x", ndim=2) is a
    with pytest.raises(TypeError, match=r"x must be a numpy.ndarray .*received list"):
        v.check_float_array([1.0], "x")
    with pytest.raises(ValueError, match=r"x must be 3-D; received shape \(2, 3\)"):
        v.check_float_array(a, "x", ndim=3)
    with pytest.raises(TypeError, match=r"x must have dtype float32 or float64; received int64"):
        v.check_float_array(np.zeros(2, np.int64), "x")
    b = a.copy()
    b[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value\(s\); the first is inf "
                                         r"at index \(1, 2\)"):
        v.check_float_array(b, "x")
    v.check_float_array(b, "x", finite=False)


def test_check_size_refuses_more_than_the_limit_naming_the_culprits():
    v.check_size((2, v.MAX_ELEMENTS // 2), "the output", "padding")
    with pytest.raises(ValueError, match=r"the output would have shape .* check padding=5"):
        v.check_size((3, v.MAX_ELEMENTS // 2), "the output", "padding=5")


@pytest.mark.parametrize("value, error", [("float32", None), (np.float64, None),
                                          ("flaot32", TypeError), (None, TypeError),
                                          (np.int32, TypeError), ("float16", TypeError)])
def test_check_float_dtype(value, error):
    if error is None:
        assert v.check_float_dtype(value) in v.FLOAT_DTYPES
    else:
        with pytest.raises(error, match=r"dtype must be float32 or float64; received"):
            v.check_float_dtype(value)


def test_check_real_intervals_and_types():
    assert v.check_real(0.5, "lr", low=0, low_open=True) == 0.5
    for bad in (0.0, float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match=r"lr must be finite and in \(0, inf\)"):
            v.check_real(bad, "lr", low=0, low_open=True)
    with pytest.raises(ValueError, match=r"momentum must be finite and in \[0, 1\)"):
        v.check_real(1.0, "momentum", low=0, high=1, high_open=True)
    for bad in ("0.1", True, None, [0.1]):
        with pytest.raises(TypeError, match="lr must be a real number"):
            v.check_real(bad, "lr", low=0)


def test_check_temperature_against_the_dtype():
    assert v.check_temperature(1, np.float32) == 1.0
    tiny = float(np.finfo(np.float32).tiny)
    assert v.check_temperature(tiny, np.float32) == tiny
    with pytest.raises(ValueError, match=r"usable range"):
        v.check_temperature(tiny / 2, np.float32)
    v.check_temperature(tiny / 2, np.float64)
    with pytest.raises(ValueError, match=r"temperature \(tau\) must be finite and > 0"):
        v.check_temperature(0.0)


def test_check_finite_via_screens_through_the_reduction_and_names_the_element():
    x = np.ones((2, 3, 4, 4))
    v.check_finite_via(x, "x", x.mean(axis=(2, 3)), "mean")
    x[1, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value\(s\); the first is nan "
                                         r"at index \(1, 2, 3, 0\)"):
        v.check_finite_via(x, "x", x.mean(axis=(2, 3)), "mean")
    huge = np.full((1, 1, 2, 2), np.finfo(np.float32).max, np.float32)  # finite, sum overflows
    with np.errstate(over="ignore"):
        sums = huge.sum(axis=(2, 3))
    with pytest.raises(ValueError, match=r"the sum of dy\[0, 0\] over \(H, W\) is inf"):
        v.check_finite_via(huge, "dy", sums, "sum")


@pytest.mark.parametrize("dtype", [">f4", ">f8"] if np.little_endian else ["<f4", "<f8"])
def test_floats_of_the_other_byte_order_are_refused_by_name(dtype):
    """Non-native float32/float64 are not the float32/float64 the kernels compile for."""
    with pytest.raises(TypeError, match=rf"x must have dtype float32 or float64; received "
                                        rf"{np.dtype(dtype)}"):
        v.check_float_array(np.zeros((2, 3), dtype), "x", ndim=2)
    from dynconv_np.functional import conv2d_forward
    with pytest.raises(TypeError, match=r"x must have dtype float32 or float64"):
        conv2d_forward(np.zeros((1, 2, 4, 4), dtype), np.zeros((3, 2, 3, 3), dtype),
                       backend="numba")


def test_check_finite_through_judges_by_the_derived_array_and_names_the_element():
    weight = np.ones((3, 2, 2), np.float32)
    v.check_finite_through(weight, "weight", weight.sum(axis=0), "the mix")
    weight[2, 1, 0] = -np.inf
    with pytest.raises(ValueError, match=r"weight contains 1 non-finite value\(s\); the first "
                                         r"is -inf at index \(2, 1, 0\)"):
        v.check_finite_through(weight, "weight", weight.sum(axis=0), "the mix")
    huge = np.full((2, 2), np.finfo(np.float32).max, np.float32)  # finite, its sum overflows
    with np.errstate(over="ignore"):
        mixed = huge.sum(axis=0)
    with pytest.raises(ValueError, match=r"weight is finite, but the mix overflows float32"):
        v.check_finite_through(huge, "weight", mixed, "the mix")


def test_check_upstream_compares_with_the_forward_outputs():
    y = np.zeros((2, 3), np.float32)
    cache = v.stage_cache("relu", {}, y, None)
    dy, db = v.check_upstream(cache, "relu", dy=np.ones((2, 3), np.float32), db=None)
    assert dy.shape == (2, 3) and db is None
    with pytest.raises(TypeError, match=r"cache must be the cache returned by softmax_forward; "
                                        r"received 'relu'"):
        v.check_upstream(cache, "softmax", dy=dy, db=None)
    with pytest.raises(ValueError, match=r"dy must have the shape of the forward output \(2, 3\); "
                                         r"received \(1, 3\)"):
        v.check_upstream(cache, "relu", dy=np.ones((1, 3), np.float32), db=None)
    with pytest.raises(TypeError, match=r"dy must have the dtype of the forward output \(float32\)"):
        v.check_upstream(cache, "relu", dy=np.ones((2, 3)), db=None)
    with pytest.raises(ValueError, match=r"db must be None: the forward pass produced no such"):
        v.check_upstream(cache, "relu", dy=dy, db=np.ones(3, np.float32))
    bad = np.ones((2, 3), np.float32)
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match=r"dy contains 1 non-finite"):
        v.check_upstream(cache, "relu", dy=bad, db=None)


def test_contiguous_copies_only_what_a_kernel_cannot_take():
    a = np.zeros((3, 4))
    assert v.contiguous(a) is a
    assert v.contiguous(a.T).flags.c_contiguous
    read_only = np.zeros(3)
    read_only.setflags(write=False)
    copied = v.contiguous(read_only)
    assert copied is not read_only and copied.flags.writeable


def test_as_pair_and_positive_int():
    assert v.as_pair(2, "stride", 1) == (2, 2)
    assert v.as_pair((1, 3), "stride", 1) == (1, 3)
    with pytest.raises(ValueError, match=r"stride must be positive; received \(0, 1\)"):
        v.as_pair((0, 1), "stride", 1)
    with pytest.raises(TypeError, match=r"padding must be an int or a pair of ints"):
        v.as_pair(1.5, "padding", 0)
    with pytest.raises(ValueError, match=r"groups must be a positive int; received 0"):
        v.check_positive_int(0, "groups")


def test_screened_backward_screens_dy_through_the_reduction_or_scans_it():
    dy = np.ones((1, 2, 3, 3))
    through_sums = lambda d, cache: (d * 2, d.sum(axis=(2, 3)))  # noqa: E731
    without = lambda d, cache: (d * 2, None)  # noqa: E731
    (dx,) = v.screened_backward(through_sums, dy, None)
    np.testing.assert_array_equal(dx, 2 * dy)
    dy[0, 1, 2, 2] = np.nan
    for backward in (through_sums, without):
        with pytest.raises(ValueError, match=r"dy contains 1 non-finite value\(s\); the first is "
                                             r"nan at index \(0, 1, 2, 2\)"):
            v.screened_backward(backward, dy, None)
