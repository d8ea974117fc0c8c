"""The package as the ``numba`` backend (``numba_fast/__init__.py``): registered under its
name, every contract function present, the convolution dispatched to the GEMM or the depthwise
path and agreeing with the reference for every kind of convolution; and the compile options
the README promises (``cache=True`` everywhere, ``reassoc`` only where its design note says)."""
import importlib
import pkgutil

from hypothesis import given, strategies as st
from numba.core.registry import CPUDispatcher

from dynconv_np.backends import get_backend, numba_fast

from ...strategies import conv_configs
from .checks import DTYPES, check_conv

CONTRACT = ("conv2d_forward", "conv2d_backward", "aggregate_forward", "aggregate_backward",
            "spatial_mean", "add_spatial_mean_grad", "attention_forward", "attention_backward",
            "ensure_available")
# The kernels that may reassociate floating-point sums (README, "Design note: reassociation").
REASSOCIATING = {"runs.run_dot", "runs.run_sum", "attention._forward", "attention._backward"}


def _kernels():
    """{"module.name": dispatcher} for every jitted function of the package."""
    found = {}
    for info in pkgutil.iter_modules(numba_fast.__path__):
        module = importlib.import_module(f"{numba_fast.__name__}.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == module.__name__:
                found[f"{info.name}.{name}"] = value
    return found


def test_the_registry_serves_this_package_as_numba():
    backend = get_backend("numba")
    assert backend is numba_fast and backend.NAME == "numba"
    for name in CONTRACT:
        assert callable(getattr(backend, name)), name


def test_every_kernel_is_cached_and_only_the_listed_ones_reassociate():
    kernels = _kernels()
    assert REASSOCIATING <= set(kernels)
    for name, kernel in kernels.items():
        assert type(kernel._cache).__name__ != "NullCache", f"{name} lacks cache=True"
        fastmath = kernel.targetoptions.get("fastmath")
        if name in REASSOCIATING:
            assert set(fastmath) == {"reassoc"}, f"{name}: fastmath {fastmath}"
        else:
            assert not fastmath, f"{name} has fastmath {fastmath}, not in the design note"


@given(c=conv_configs(max_batch=3), per_sample=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_reference(c, per_sample, dtype, seed):
    """Dense, grouped, depthwise (with multiplier); any stride/padding/dilation pairs;
    kernels incl. 1x1 and non-square; N incl. 1; Nw = N (dynamic) and Nw = 1 (shared)."""
    check_conv(numba_fast, c, per_sample, dtype, seed)

