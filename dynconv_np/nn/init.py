"""Parameter initialisation, as PyTorch's ``nn.Conv2d`` and ``nn.Linear`` do it.

PyTorch initialises weights with ``kaiming_uniform_(a=sqrt(5))``, i.e. U(-bound, bound) with
bound = gain * sqrt(3 / fan_in) and gain = sqrt(2 / (1 + a^2)) = sqrt(1/3), which simplifies to

    bound = 1 / sqrt(fan_in)

and biases with U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in = (C_in / groups) kh kw for a
convolution and in_features for a linear layer. A dynamic layer draws each of its K kernels
(and K biases) independently from this distribution ("Kaiming-uniform per kernel").
"""
import numpy as np

from .._validation import check_size


def make_rng(rng):
    """None, a non-negative int seed or a numpy Generator -> a numpy Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (bool, np.bool_)):
        raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator; received "
                        f"{rng!r}")
    if isinstance(rng, (int, np.integer)) and rng < 0:
        raise ValueError(f"rng (a seed) must be a non-negative int; received {rng!r}")
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator; "
                    f"received {type(rng).__name__}")


def uniform_fan_in(rng, shape, fan_in, dtype):
    """Array of ``shape`` drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in ``dtype``; refuses
    an absurd size (a typo in kernel_size or the channel counts) before allocating it."""
    check_size(shape, "a parameter", "kernel_size and the channel counts")
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)
