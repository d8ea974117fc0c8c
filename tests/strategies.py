"""Hypothesis strategies shared by the test modules: only valid configurations are drawn."""
import numpy as np
from hypothesis import strategies as st


def int_or_pair(low, high):
    """An int or a pair of ints in [low, high], as the API accepts both."""
    return st.one_of(st.integers(low, high), st.tuples(st.integers(low, high),
                                                       st.integers(low, high)))


def pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


@st.composite
def conv_configs(draw, max_batch=3, max_extra_side=4):
    """A valid convolution: shapes, stride, padding, dilation and groups drawn together.

    Covers dense, grouped, depthwise (C_in/groups = 1) and depthwise with a channel multiplier
    (C_out = m * C_in), 1x1 and non-square kernels, and N = 1.
    """
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if kind == "dense":
        groups, c_group, c_out_group = 1, draw(st.integers(1, 4)), draw(st.integers(1, 4))
    elif kind == "grouped":
        groups, c_group, c_out_group = (draw(st.integers(2, 3)), draw(st.integers(1, 2)),
                                        draw(st.integers(1, 2)))
    else:
        groups, c_group, c_out_group = draw(st.integers(1, 4)), 1, draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride, padding, dilation = (draw(int_or_pair(1, 3)), draw(int_or_pair(0, 2)),
                                 draw(int_or_pair(1, 2)))
    sides = []
    for k, p, d in zip(kernel, pair(padding), pair(dilation)):
        smallest = max(1, d * (k - 1) + 1 - 2 * p)
        sides.append(draw(st.integers(smallest, smallest + max_extra_side)))
    return dict(n=draw(st.integers(1, max_batch)), in_channels=groups * c_group,
                out_channels=groups * c_out_group, kernel=kernel, stride=stride,
                padding=padding, dilation=dilation, groups=groups, size=tuple(sides),
                bias=draw(st.booleans()))


# Temperatures for gradient checks: from sharp (0.2) to beyond the paper's starting value (30).
# Much smaller tau makes pi nearly one-hot, where the softmax Jacobian is ~0 and a gradient
# check says little; stability at extreme tau is tested separately.
temperatures = st.floats(0.2, 50.0)


def random_array(rng, shape, dtype=np.float64):
    """Standard-normal array of ``shape`` in ``dtype``."""
    return rng.standard_normal(shape).astype(dtype)
