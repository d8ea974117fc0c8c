"""The fused attention branch (``numba_fast/attention.py``) against the composition written out
here in NumPy, run in long double, forward and backward, float32 and float64.

Tolerance: every stage is a sum of m terms, allowed m * eps * sum |terms| of its own (the bound
of ``checks.py``) plus the errors of its inputs carried through to first order (``_product``):
    h  = relu([pooled, 1] @ [W1^T; b1])   m = C + 1       (relu does not enlarge an error)
    z  = [h, 1] @ [W2^T; b2]              m = hidden + 1
    pi = softmax(z / tau): with a = z/tau - max, an error da_k in a_k (the carried error of z
         over tau, and the roundings of the division and the subtraction) changes pi_k by at
         most pi_k (da_k + max_j da_j), and exp, the K-term sum and the division add
         (K + 2) eps relative (the shift itself cancels: softmax ignores it);
backward (from the same pi, hidden inputs): <dpi, pi> m = K; dz adds three roundings; dW2, db2,
dW1, db1 m = N; dh m = K; dpooled m = hidden.
Below the smallest normal number (exp of a very negative a_k, and what is multiplied by it)
relative bounds fail; there each rounding may add one smallest subnormal, ``tiny`` below.
"""
import numpy as np
from hypothesis import given, strategies as st

from dynconv_np.backends.numba_fast import attention

from .checks import DTYPES, REFERENCE, assert_within

SHAPES = dict(n=st.integers(1, 5), c=st.integers(1, 9), hidden=st.integers(1, 6),
              k=st.integers(1, 6))
# From sharp (0.2) to beyond the paper's starting temperature (30).
TEMPERATURES = st.floats(0.2, 50.0)


def _product(a, error_a, b, error_b, eps, tiny):
    """(a @ b, its error bound): the sum's own rounding, m (eps |a| @ |b| + tiny) with
    m = a.shape[1], plus the errors of a and b carried through (first order)."""
    return a @ b, (a.shape[1] * (eps * (np.abs(a) @ np.abs(b)) + tiny) + error_a @ np.abs(b)
                   + np.abs(a) @ error_b)


def _with_ones(a, error):
    """[a, 1] and its error [error, 0]: a bias as one more term of the sum."""
    ones = np.ones((a.shape[0], 1), a.dtype)
    return np.hstack([a, ones]), np.hstack([error, 0 * ones])


def _forward_with_bounds(pooled, w1, b1, w2, b2, tau, eps, tiny):
    """(pi, hidden) of the composition, each with the error bound of the module docstring."""
    zero = np.zeros_like
    a, error_a = _with_ones(pooled, zero(pooled))
    weights = np.vstack([w1.T, b1])
    hidden_pre, error_hidden = _product(a, error_a, weights, zero(weights), eps, tiny)
    hidden = np.maximum(hidden_pre, 0)
    a, error_a = _with_ones(hidden, error_hidden)
    weights = np.vstack([w2.T, b2])
    z, error_z = _product(a, error_a, weights, zero(weights), eps, tiny)
    t = z / tau
    shifted = t - t.max(axis=1, keepdims=True)
    pi = np.exp(shifted)
    pi /= pi.sum(axis=1, keepdims=True)
    error_shifted = error_z / tau + eps * (np.abs(t) + np.abs(shifted))
    relative = (error_shifted + error_shifted.max(axis=1, keepdims=True)
                + (z.shape[1] + 2) * eps)
    return (pi, pi * relative + 3 * tiny), (hidden, error_hidden)


def _backward_with_bounds(dpi, pi, hidden, pooled, w1, w2, tau, eps, tiny):
    """[(gradient, its error bound)] for dpooled, dW1, db1, dW2, db2 (module docstring)."""
    n = pi.shape[0]
    ones, zero = np.ones((1, n), pi.dtype), np.zeros_like
    inner = (dpi * pi).sum(axis=1, keepdims=True)
    error_inner = pi.shape[1] * (eps * np.abs(dpi * pi).sum(axis=1, keepdims=True) + tiny)
    dz = pi * (dpi - inner) / tau
    error_dz = (pi * error_inner + 3 * eps * np.abs(pi * (dpi - inner))) / tau + 3 * tiny
    dw2 = _product(dz.T, error_dz.T, hidden, zero(hidden), eps, tiny)
    db2 = _product(ones, zero(ones), dz, error_dz, eps, tiny)
    dh, error_dh = _product(dz, error_dz, w2, zero(w2), eps, tiny)
    active = hidden > 0
    dh, error_dh = dh * active, error_dh * active
    dw1 = _product(dh.T, error_dh.T, pooled, zero(pooled), eps, tiny)
    db1 = _product(ones, zero(ones), dh, error_dh, eps, tiny)
    dpooled = _product(dh, error_dh, w1, zero(w1), eps, tiny)
    return [dpooled, dw1, (db1[0][0], db1[1][0]), dw2, (db2[0][0], db2[1][0])]


def _inputs(rng, n, c, hidden, k, dtype):
    shapes = ((n, c), (hidden, c), (hidden,), (k, hidden), (k,))
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


def _up(arrays):
    return [a.astype(REFERENCE) for a in arrays]


@given(**SHAPES, tau=TEMPERATURES, dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_fused_branch_matches_the_composition(n, c, hidden, k, tau, dtype, seed):
    """Forward and backward within the bounds above; dtypes kept; inputs untouched."""
    rng = np.random.default_rng(seed)
    args = _inputs(rng, n, c, hidden, k, dtype)
    before = [a.copy() for a in args]
    pi, h = attention.attention_forward(*args, tau)
    tau_dtype = REFERENCE(dtype(tau))  # the kernels see tau in the arrays' dtype
    rounding = np.finfo(dtype).eps, np.finfo(dtype).smallest_subnormal
    want_pi, want_hidden = _forward_with_bounds(*_up(args), tau_dtype, *rounding)
    for name, got, (want, error) in (("hidden", h, want_hidden), ("pi", pi, want_pi)):
        assert_within(got, want, error, dtype, name)

    dpi = rng.standard_normal((n, k)).astype(dtype)
    pooled, w1, _, w2, _ = args
    grads = attention.attention_backward(dpi, pi, h, pooled, w1, w2, tau)
    expected = _backward_with_bounds(*_up([dpi, pi, h, pooled, w1, w2]), tau_dtype, *rounding)
    for name, got, (want, error) in zip(("dpooled", "dw1", "db1", "dw2", "db2"), grads,
                                        expected):
        assert_within(got, want, error, dtype, name)
    for value, original in zip(args, before):
        np.testing.assert_array_equal(value, original, err_msg="an input was modified")


@given(**SHAPES, tau=TEMPERATURES, seed=st.integers(0, 2**32 - 1))
def test_the_composition_here_is_differentiated_right(n, c, hidden, k, tau, seed):
    """The judge itself: its backward against central differences of its forward, along a
    random direction of every input at once (float64 composition, step 1e-6)."""
    rng = np.random.default_rng(seed)
    args = _inputs(rng, n, c, hidden, k, np.float64)
    directions = _inputs(rng, n, c, hidden, k, np.float64)
    dpi = rng.standard_normal((n, k))

    def loss(step):
        moved = [a + step * d for a, d in zip(args, directions)]
        (pi, _), _ = _forward_with_bounds(*moved, tau, 0.0, 0.0)
        return (dpi * pi).sum()

    (pi, _), (h, _) = _forward_with_bounds(*args, tau, 0.0, 0.0)
    pooled, w1, _, w2, _ = args
    grads = _backward_with_bounds(dpi, pi, h, pooled, w1, w2, tau, 0.0, 0.0)  # input order
    analytic = sum((g * d).sum() for (g, _), d in zip(grads, directions))
    numeric = (loss(1e-6) - loss(-1e-6)) / 2e-6
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)
