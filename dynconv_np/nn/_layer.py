"""What the layers of this package share: remembering the last forward pass for ``backward``,
and checking an input against the layer that receives it."""
import numpy as np

from .module import Module
from .._validation import FLOAT_DTYPES, check_float_array


def layer_dtype(dtype):
    """The ``dtype`` constructor argument -> np.dtype float32 or float64 (else TypeError)."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64; received {dtype!r}")
    return resolved


def check_bias_flag(bias):
    """The ``bias`` constructor argument must be a bool."""
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"bias must be True or False; received {bias!r}")
    return bool(bias)


def check_layer_input(layer, x, ndim, features, finite=True):
    """x must be an ndim-D float array with ``features`` entries on axis 1 and the layer's
    dtype; ``finite=False`` leaves the NaN/inf scan to the caller."""
    name = type(layer).__name__
    check_float_array(x, "x", ndim=ndim, finite=finite)
    if x.shape[1] != features:
        raise ValueError(f"x must have {features} channels/features on axis 1 ({name} was built "
                         f"for {features}); received shape {tuple(x.shape)}")
    if np.dtype(x.dtype) != layer.dtype:
        raise TypeError(f"x has dtype {np.dtype(x.dtype)} but {name}'s parameters are "
                        f"{layer.dtype}; build the layer with dtype={np.dtype(x.dtype).name} "
                        "or cast x")


class Layer(Module):
    """A Module whose ``backward`` consumes what its last ``forward`` remembered.

    ``_remember(y, cache)`` stores the cache and y's shape and dtype; ``_recall(dy)`` returns the
    cache after checking that forward ran and that dy matches y in shape and dtype (and is
    finite, unless ``finite=False``: a backward function that scans dy itself).
    """

    def __init__(self):
        super().__init__()
        self._cache = None
        self._out_spec = None

    def _remember(self, y, cache):
        self._cache = cache
        self._out_spec = (tuple(y.shape), np.dtype(y.dtype))
        return y

    def _recall(self, dy, finite=True):
        if self._out_spec is None:
            self._require_cache(None)
        shape, dtype = self._out_spec
        self._check_dy(dy, shape)
        check_float_array(dy, "dy", finite=finite)
        if np.dtype(dy.dtype) != dtype:
            raise TypeError(f"dy must have the dtype of the last output ({dtype}); "
                            f"received {np.dtype(dy.dtype)}")
        return self._cache
