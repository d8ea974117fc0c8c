"""Every host backend keeps the backend contract (``dynconv_np/backends/contract.py``); the cuda
backend is checked by the same functions in ``tests/cuda_sim/cuda_cases.py``."""
import numpy as np
import pytest

from dynconv_np.backends import available_backends, get_backend

from .contract_checks import check_behaviour, check_members

HOST_BACKENDS = [name for name in available_backends() if name != "cuda"]


def test_every_backend_is_listed():
    assert set(available_backends()) == {"numpy", "loops", "numba", "cuda"}


@pytest.mark.parametrize("name", HOST_BACKENDS)
def test_members_match_the_contract(name):
    check_members(get_backend(name))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", HOST_BACKENDS)
def test_behaviour_matches_the_reference(name, dtype):
    check_behaviour(get_backend(name), dtype)


def test_an_unknown_backend_is_named():
    with pytest.raises(ValueError, match=r"backend must be one of .*received 'numbaa'"):
        get_backend("numbaa")


def test_the_checks_catch_a_broken_backend():
    """Negative control: a backend missing a member, or with renamed parameters, fails."""
    import types
    reference = get_backend("numpy")
    missing = types.SimpleNamespace(**{n: getattr(reference, n) for n in
                                       ("NAME", "conv2d_forward", "conv2d_backward",
                                        "aggregate_forward", "aggregate_backward",
                                        "spatial_mean")})
    with pytest.raises(AssertionError, match="lacks a required member"):
        check_members(missing)
    renamed = types.SimpleNamespace(**vars(missing), __name__="renamed",
                                    add_spatial_mean_grad=lambda grad, dpooled: None)
    with pytest.raises(AssertionError, match="add_spatial_mean_grad"):
        check_members(renamed)
