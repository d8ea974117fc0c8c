"""The one tolerance every test of the numba backend allows, and the convolution check.

Tolerance (the README's design note on reassociation). A result that is a sum of m terms
(products count as terms, a bias as one more) computed in floating point, in ANY order (a
sequential loop, a reassociated vectorised loop, BLAS's blocking, per-thread partial sums), is
within gamma_m * sum |terms| of the exact sum, gamma_m = m u / (1 - m u), u = eps / 2. The
tests allow

    |numba - exact| <= m * eps(dtype) * sum |terms|          (= ``bound(m, scale, dtype)``)

where "exact" is the reference backend run in long double (``REFERENCE``: eps 1.1e-19 on
x86-64, so its own error is negligible next to float64's) and sum |terms| is the same
reference function evaluated on |inputs|. A wrong index or a missed term changes a result by
the order of that scale itself.
"""
import numpy as np
from hypothesis import assume, strategies as st

from dynconv_np.backends import reference

from ...strategies import pair

REFERENCE = np.longdouble
DTYPES = st.sampled_from([np.float32, np.float64])


def bound(terms, scale, dtype):
    """m * eps * sum |terms|: the most a sum of ``terms`` terms of dtype may be off."""
    return terms * np.finfo(dtype).eps * scale


def assert_within(actual, expected, allowed, dtype, name):
    """|actual - expected| <= allowed element-wise, and actual keeps the dtype."""
    assert actual.dtype == dtype, f"{name}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    excess = np.abs(actual.astype(REFERENCE) - expected) - allowed
    worst = np.unravel_index(np.argmax(excess), excess.shape) if excess.size else ()
    assert excess.size == 0 or excess[worst] <= 0, (
        f"{name} mismatch at {worst}: numba {actual[worst]!r}, reference {expected[worst]!r}, "
        f"allowed {allowed[worst]!r}")


def assert_within_rounding(actual, expected, scale, terms, dtype, name):
    """|actual - expected| <= bound(terms, scale, dtype) element-wise, actual keeps dtype."""
    assert_within(actual, expected, bound(terms, scale, dtype), dtype, f"{name} ({terms} terms)")


def up(a):
    """a in the reference precision (None stays None)."""
    return None if a is None else a.astype(REFERENCE)


def absolute(a):
    """|a| in the reference precision (None stays None)."""
    return None if a is None else np.abs(a.astype(REFERENCE))


def conv_arrays(rng, c, per_sample, dtype):
    """(x, w, b) for a config drawn by ``tests.strategies.conv_configs`` (or alike)."""
    n = c["n"]
    nw = n if per_sample else 1
    x = rng.standard_normal((n, c["in_channels"]) + tuple(c["size"])).astype(dtype)
    w = rng.standard_normal((nw, c["out_channels"], c["in_channels"] // c["groups"])
                            + tuple(c["kernel"])).astype(dtype)
    b = rng.standard_normal((nw, c["out_channels"])).astype(dtype) if c["bias"] else None
    return x, w, b


def check_conv(backend, c, per_sample, dtype, seed):
    """backend's conv2d forward and backward == reference, to rounding; inputs untouched.

    Terms per result: y: Cg*kh*kw products and the bias; dx: at most C_out/groups * kh*kw
    (the output channels and taps that read an input pixel); dW and db: H_out*W_out per
    sample, times N when the batch shares its kernels (Nw = 1).
    """
    rng = np.random.default_rng(seed)
    x, w, b = conv_arrays(rng, c, per_sample, dtype)
    geometry = pair(c["stride"]), pair(c["padding"]), pair(c["dilation"]), c["groups"]
    originals = [a.copy() for a in (x, w, b) if a is not None]
    n, c_out, c_group, kh, kw = x.shape[0], w.shape[1], w.shape[2], w.shape[3], w.shape[4]

    y = backend.conv2d_forward(x, w, b, *geometry)
    expected = reference.conv2d_forward(up(x), up(w), up(b), *geometry)
    scale = reference.conv2d_forward(absolute(x), absolute(w), absolute(b), *geometry)
    assert_within_rounding(y, expected, scale, c_group * kh * kw + (b is not None), dtype, "y")

    dy = rng.standard_normal(y.shape).astype(dtype)
    grads = backend.conv2d_backward(dy, x, w, *geometry, b is not None)
    expected = reference.conv2d_backward(up(dy), up(x), up(w), *geometry, b is not None)
    scales = reference.conv2d_backward(absolute(dy), absolute(x), absolute(w), *geometry,
                                       b is not None)
    summed = y.shape[2] * y.shape[3] * (n if w.shape[0] == 1 else 1)
    terms = {"dx": c_out // c["groups"] * kh * kw, "dw": summed, "db": summed}
    for name, got, want, scale in zip(("dx", "dw", "db"), grads, expected, scales):
        if want is None:
            assert got is None, f"{name} should be None without a bias"
        else:
            assert_within_rounding(got, want, scale, terms[name], dtype, name)
    for before, after in zip(originals, [a for a in (x, w, b) if a is not None]):
        np.testing.assert_array_equal(before, after, err_msg="an input was modified")


@st.composite
def large_image_configs(draw, c_group):
    """Images with more output pixels than one forward work unit of the GEMM path holds, so
    the forward splits samples into several row blocks (with a shorter last block), and
    batches larger than the thread count, so shared-kernel gradients go through per-thread
    partial sums (GEMM path) or per-sample sums (depthwise path, c_group = 1)."""
    groups = draw(st.sampled_from([1, 2]))
    c_out_group = draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return dict(n=draw(st.integers(1, 5)), in_channels=groups * c_group,
                out_channels=groups * c_out_group, kernel=kernel,
                stride=(draw(st.integers(1, 2)), 1), padding=(1, draw(st.integers(0, 1))),
                dilation=(1, draw(st.integers(1, 2))), groups=groups,
                size=(draw(st.integers(17, 40)), draw(st.integers(5, 40))),
                bias=draw(st.booleans()))


@st.composite
def small_map_geometry(draw, max_positions, max_stride=3, max_side=7):
    """(kernel, stride, padding, dilation, size) of a convolution with at most
    ``max_positions`` output positions: every stride, padding and dilation, and taps that fall
    outside the image."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    size = tuple(draw(st.integers(max(1, (k - 1) * d + 1 - 2 * p), max_side))
                 for k, d, p in zip(kernel, dilation, padding))
    out = [(s + 2 * p - (k - 1) * d - 1) // st_ + 1
           for s, p, k, d, st_ in zip(size, padding, kernel, dilation, stride)]
    assume(out[0] * out[1] <= max_positions)
    return kernel, stride, padding, dilation, size

