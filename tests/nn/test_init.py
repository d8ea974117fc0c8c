"""Parameter initialisation (nn/init.py): PyTorch's fan-in uniform bound, seeding."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dynconv_np.nn.init import make_rng, uniform_fan_in


@given(fan_in=st.integers(1, 500), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_draws_fill_the_fan_in_interval(fan_in, dtype, seed):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in the requested dtype. With 2000 draws the largest
    |value| falls short of the bound by more than 1% with probability 0.99^2000 ~ 2e-9, and the
    mean (sd bound / sqrt(3 * 2000) = 0.013 bound) stays within 0.1 bound (7.7 sd)."""
    values = uniform_fan_in(make_rng(seed), (40, 50), fan_in, dtype)
    bound = 1 / np.sqrt(fan_in)
    assert values.shape == (40, 50) and values.dtype == dtype
    assert np.abs(values).max() <= np.float32(bound) * (1 + 1e-6)
    assert np.abs(values).max() > 0.99 * bound
    assert abs(values.mean()) < 0.1 * bound


def test_a_seed_reproduces_the_draws_and_a_generator_is_used_as_is():
    a = uniform_fan_in(make_rng(3), (5,), 4, np.float64)
    np.testing.assert_array_equal(uniform_fan_in(make_rng(3), (5,), 4, np.float64), a)
    generator = np.random.default_rng(3)
    assert make_rng(generator) is generator
    assert make_rng(np.int64(3)).random() == np.random.default_rng(3).random()
    assert isinstance(make_rng(None), np.random.Generator)


@pytest.mark.parametrize("rng", ["seed", 1.5, np.random.RandomState(0)])
def test_anything_else_is_refused_by_name(rng):
    with pytest.raises(TypeError, match=r"rng must be None, an int seed or a "
                                        r"numpy.random.Generator; received"):
        make_rng(rng)
