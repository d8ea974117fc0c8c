"""verify_family.py: the family's rows of ``python -m dynconv_np verify`` - one per variant and
BatchNorm mode, each a passing gradient check of the layer with its output equal to the NumPy
reference's, on every host backend; ODConv, DCD and FDY are skipped on cuda."""
import numpy as np
import pytest

from dynconv_np.verify_family import HOST_ONLY, VARIANTS, family_rows

HOST_BACKENDS = ["numpy", "loops", "numba"]


def test_every_variant_and_mode_is_a_row():
    assert VARIANTS == ("CondConv2d", "ODConv2d train", "ODConv2d eval", "DCDConv2d train",
                        "DCDConv2d eval", "FDYConv2d train", "FDYConv2d eval")


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_rows_pass_on_every_host_backend(backend):
    rows = list(family_rows(backend, np.random.default_rng(0)))
    assert tuple(row[0] for row in rows) == VARIANTS
    for op, config, report, difference in rows:
        assert report.passed, (op, report)
        assert difference < 1e-12, (op, backend, difference)
        names = {result.name for result in report.results}
        assert "x" in names and "weight" in names and len(names) > 3  # x and every parameter


def test_eval_rows_read_the_running_statistics():
    """An eval row's layer is in eval mode with running statistics that are not the initial
    (0, 1): the gradient check goes through the affine BatchNorm, not an identity."""
    from dynconv_np.verify_family import CASES, _prepared
    for name in HOST_ONLY:
        layer = _prepared(CASES[name][1], "numpy", "eval")
        assert not layer.training
        assert all(not np.allclose(buffer, 0) and not np.allclose(buffer, 1)
                   for buffer in layer.buffers.values())


def test_host_only_variants_are_skipped_on_cuda(monkeypatch):
    """ODConv, DCD and FDY refuse the cuda backend: their rows are skipped there, before any
    layer is built (so this needs no GPU)."""
    import dynconv_np.verify_family as verify_family
    monkeypatch.setattr(verify_family, "CASES", {name: verify_family.CASES[name]
                                                 for name in HOST_ONLY})
    assert list(family_rows("cuda", np.random.default_rng(0))) == []
