"""Golden fixtures: every case and dtype written, byte-stable across runs, complete, and
readable by a NumPy-only program that reproduces y within the stored tolerance."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynconv_np.interop import fixtures
from dynconv_np.interop.stages import BACKWARD, FORWARD
from dynconv_np.nn import DynamicConv2d

READER = Path(__file__).with_name("numpy_reader.py")


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fixtures")
    assert fixtures.main(["--out", str(out)]) == 0
    return out


def test_two_runs_write_identical_bytes(fixture_dir, tmp_path):
    fixtures.write_fixtures(tmp_path)
    names = sorted(p.name for p in fixture_dir.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        assert (fixture_dir / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_every_case_in_both_dtypes_with_every_array_and_tolerance(fixture_dir):
    index = json.loads((fixture_dir / "index.json").read_text())
    names = [c["name"] for c in index["cases"]]
    assert names == [f"{case}.{dtype}" for case in fixtures.CASES for dtype in ("float64",
                                                                               "float32")]
    assert (fixture_dir / "README.md").read_text().startswith("# Dynamic convolution golden")
    for case in index["cases"]:
        with np.load(fixture_dir / case["file"], allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            config = case["config"]
            assert meta["config"] == config
            expected = set(FORWARD) | set(BACKWARD) | {"x", "dy", "weight", "fc1_weight",
                                                        "fc2_weight", "fc2_bias"}
            if not config["bias"]:
                expected -= {"b_n", "db_n", "dbias"}
            else:
                expected |= {"bias"}
            if config["attention_bias"]:
                expected |= {"fc1_bias", "dfc1_bias"}
            else:
                expected -= {"dfc1_bias"}
            assert set(f.files) - {"meta"} == expected, case["name"]
            for name in f.files:
                if name == "meta":
                    continue
                assert f[name].dtype == np.dtype(case["dtype"]), (case["name"], name)
                assert list(f[name].shape) == case["arrays"][name]["shape"]
            graded = {n for n, spec in case["arrays"].items() if "atol" in spec}
            assert graded == expected - {"x", "dy", "weight", "bias", "fc1_weight", "fc1_bias",
                                         "fc2_weight", "fc2_bias"}
            assert all(0 < meta["tolerance"][n] < (1e-9 if case["dtype"] == "float64" else 1)
                       for n in graded)


def test_the_fixtures_are_what_the_library_computes(fixture_dir):
    """The stored y and gradients equal DynamicConv2d's own forward/backward (numpy backend)."""
    for name in ("stride_padding_dilation", "depthwise_multiplier", "no_attention_bias"):
        with np.load(fixture_dir / f"{name}.float64.npz") as f:
            c = json.loads(str(f["meta"]))["config"]
            layer = DynamicConv2d(c["c_in"], c["c_out"], c["kernel"], c["stride"], c["padding"],
                                  c["dilation"], c["groups"], bias=c["bias"],
                                  num_kernels=c["num_kernels"], temperature=c["tau"],
                                  hidden=c["hidden"], attention_bias=c["attention_bias"],
                                  dtype=np.float64, backend="numpy")
            for key in layer.params:
                layer.params[key] = f[key].copy()
            np.testing.assert_allclose(layer(f["x"]), f["y"], rtol=1e-13, atol=1e-14)
            np.testing.assert_allclose(layer.backward(f["dy"]), f["dx"], rtol=1e-12,
                                       atol=1e-14)
            for key in layer.params:
                np.testing.assert_allclose(layer.grads[key], f["d" + key], rtol=1e-12,
                                           atol=1e-14, err_msg=key)


def test_a_numpy_only_reader_reproduces_y_within_the_stored_tolerance(fixture_dir):
    result = subprocess.run([sys.executable, "-I", str(READER), str(fixture_dir)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 * len(fixtures.CASES) and all(": ok" in line for line in lines)


def test_unknown_cases_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown fixture cases"):
        fixtures.write_fixtures(tmp_path, ["dense", "nope"])
