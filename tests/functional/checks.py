"""Assertions shared by the functional test modules (not a test module itself).

Every public ``*_backward(grad, cache)`` checks, before any work, that ``cache`` came from its
own stage's forward and that the upstream gradient is an array of the forward output's shape
and dtype, finite; each refusal names the gradient (``dy``, ``dpi``, ``dpooled``, ...).
"""
import re

import numpy as np
import pytest

from dynconv_np.functional import relu_forward, sigmoid_forward


def assert_upstream_checked(backward, cache, out, name="dy"):
    """``backward(grad, cache)`` refuses a non-array, another shape, the other float dtype, a
    NaN or inf (located), and a cache of another stage, each naming what is wrong; a failed call
    leaves the cache usable (a valid call afterwards succeeds)."""
    shape, dtype = tuple(out.shape), np.dtype(out.dtype)
    other = np.float32 if dtype == np.float64 else np.float64
    with pytest.raises(TypeError, match=rf"{name} must be a numpy.ndarray"):
        backward(np.zeros(shape, dtype).tolist(), cache)
    with pytest.raises(ValueError, match=rf"{name} must have the shape of the forward output "
                                         rf"{re.escape(str(shape))}; received "
                                         rf"{re.escape(str(shape + (1,)))}"):
        backward(np.zeros(shape + (1,), dtype), cache)
    with pytest.raises(TypeError, match=rf"{name} must have the dtype of the forward output "
                                        rf"\({dtype}\); received {np.dtype(other)}"):
        backward(np.zeros(shape, other), cache)
    last = tuple(s - 1 for s in shape)
    for bad, index in ((np.nan, last), (np.inf, (0,) * len(shape))):
        grad = np.zeros(shape, dtype)
        grad[index] = bad
        with pytest.raises(ValueError, match=rf"{name} contains 1 non-finite value\(s\); the "
                                             rf"first is {bad} at index "
                                             rf"{re.escape(str(index))}"):
            backward(grad, cache)
    other, foreign_forward = (("sigmoid", sigmoid_forward) if cache["stage"] == "relu"
                              else ("relu", relu_forward))
    _, foreign = foreign_forward(np.zeros(3))
    with pytest.raises(TypeError, match=rf"cache must be the cache returned by "
                                        rf"{cache['stage']}_forward; received '{other}'"):
        backward(np.zeros(shape, dtype), foreign)
    with pytest.raises(TypeError, match=rf"cache must be the cache returned by "
                                        rf"{cache['stage']}_forward; received 'tuple'"):
        backward(np.zeros(shape, dtype), (cache,))
    backward(np.zeros(shape, dtype), cache)


class FakeDeviceArray:
    """Looks like a CUDA device array to the validation (it has ``__cuda_array_interface__``)
    without a GPU: a host backend must refuse it by name before touching its memory."""

    def __init__(self, like):
        self.shape, self.dtype = tuple(like.shape), np.dtype(like.dtype)
        self.__cuda_array_interface__ = {"shape": self.shape, "typestr": self.dtype.str,
                                         "data": (0, False), "version": 3}

    @property
    def ndim(self):
        return len(self.shape)

    def __getitem__(self, index):  # device arrays index like host arrays (on the device)
        return FakeDeviceArray(np.empty(self.shape, self.dtype)[index])
