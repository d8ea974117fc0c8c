"""check-fixtures: a correct implementation passes (in float64 and float32), a perturbed or
misshapen result fails with exit status 1, and missing arrays are reported."""
import json
import shutil

import numpy as np
import pytest

from dynconv_np.interop import grade as checker
from dynconv_np.interop import fixtures
from dynconv_np.interop.stages import run_reference

CASES = ["dense", "stride_padding_dilation", "tau_0.25"]


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fixtures")
    fixtures.write_fixtures(out, CASES)
    return out


def _results_from_an_implementation(fixture_dir, out):
    """What a port computing in the fixture's own dtype would hand in: our pipeline run in
    float32 for the float32 fixtures (a different rounding from the stored reference)."""
    out.mkdir()
    for path in sorted(fixture_dir.glob("*.npz")):
        with np.load(path) as f:
            c = json.loads(str(f["meta"]))["config"]
            params = {k: f[k] for k in ("weight", "bias", "fc1_weight", "fc1_bias",
                                        "fc2_weight", "fc2_bias") if k in f.files}
            values = run_reference(f["x"], params, c["tau"],
                                   (c["stride"], c["padding"], c["dilation"], c["groups"]),
                                   f["dy"])
        np.savez(out / path.name, **values)
    return out


def test_a_correct_implementation_passes(fixture_dir, tmp_path, capsys):
    results = _results_from_an_implementation(fixture_dir, tmp_path / "results")
    assert checker.main([str(fixture_dir), str(results)]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and " 0 failed" in out
    grades = checker.check_fixtures(fixture_dir, results)
    assert {g.status for g in grades} == {"pass"}
    index = json.loads((fixture_dir / "index.json").read_text())
    assert len(grades) == sum(sum("atol" in a for a in c["arrays"].values())
                              for c in index["cases"])


@pytest.mark.parametrize("scale,fails", [(3.0, True), (0.3, False)])
def test_a_perturbed_result_fails_beyond_the_tolerance(fixture_dir, tmp_path, capsys, scale,
                                                        fails):
    results = _results_from_an_implementation(fixture_dir, tmp_path / "results")
    index = json.loads((fixture_dir / "index.json").read_text())
    atol = next(c for c in index["cases"] if c["name"] == "dense.float32")["arrays"][
        "dlogits"]["atol"]
    path = results / "dense.float32.npz"
    with np.load(path) as f:
        values = dict(f)
    with np.load(fixture_dir / "dense.float32.npz") as f:
        values["dlogits"] = f["dlogits"].astype(np.float64)
    values["dlogits"][0, 1] += scale * atol
    np.savez(path, **values)
    assert checker.main([str(fixture_dir), str(results)]) == int(fails)
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.endswith("FAIL")]
    if fails:
        assert len(failed) == 1 and failed[0].split()[:2] == ["dense.float32", "dlogits"]
    else:
        assert not failed


def test_shape_nan_missing_and_nothing_graded(fixture_dir, tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    with np.load(fixture_dir / "dense.float64.npz") as f:
        np.savez(results / "dense.float64.npz", y=f["y"][:1], pi=np.full_like(f["pi"], np.nan),
                 w_n=f["w_n"], extra=np.zeros(2))
    grades = {(g.case, g.array): g for g in checker.check_fixtures(fixture_dir, results)}
    assert grades["dense.float64", "y"].status == "FAIL" and "shape" in grades[
        "dense.float64", "y"].note
    assert grades["dense.float64", "pi"].note == "NaN or inf"
    assert grades["dense.float64", "w_n"].status == "pass"
    assert grades["dense.float64", "extra"].status == "ignored"
    assert grades["dense.float64", "dx"].status == "missing"
    assert grades["tau_0.25.float32", "*"].status == "missing"
    strict = checker.check_fixtures(fixture_dir, results, require_all=True)
    assert any(g.status == "FAIL" and g.array == "dx" for g in strict)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert checker.main([str(fixture_dir), str(empty)]) == 1
    assert "nothing was graded" in capsys.readouterr().out


def test_the_cli_dispatches_both_commands(tmp_path):
    from dynconv_np.cli import main
    assert main(["fixtures", "--out", str(tmp_path / "fx"), "--cases", "batch_1"]) == 0
    shutil.copytree(tmp_path / "fx", tmp_path / "same", ignore=shutil.ignore_patterns("*.md"))
    assert main(["check-fixtures", str(tmp_path / "fx"), str(tmp_path / "same")]) == 0
