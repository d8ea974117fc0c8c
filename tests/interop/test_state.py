"""load_state / save_state / check_entry: every source, the checks, and life without torch."""
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest

from dynconv_np.interop.state import check_entry, load_state, save_state


def _state():
    rng = np.random.default_rng(0)
    return OrderedDict([("conv.weight", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
                        ("bn.running_mean", np.zeros(4, np.float32)),
                        ("bn.num_batches_tracked", np.array(3, dtype=np.int64))])


def test_a_dict_of_arrays_keeps_its_order_and_values():
    state = load_state(_state())
    assert list(state) == list(_state())
    np.testing.assert_array_equal(state["conv.weight"], _state()["conv.weight"])


def test_npz_round_trip(tmp_path):
    path = save_state(_state(), tmp_path / "s.npz")
    state = load_state(path)
    assert list(state) == list(_state())
    assert state["bn.num_batches_tracked"].dtype == np.int64


def test_checkpoint_wrappers_and_dataparallel_prefix_are_unwrapped():
    inner = OrderedDict((f"module.{k}", v) for k, v in _state().items())
    state = load_state({"state_dict": inner, "epoch": 3})
    assert list(state) == list(_state())


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(TypeError, match="mapping"):
        load_state(3)
    with pytest.raises(TypeError, match=r"state\['a'\] must be an array"):
        load_state({"a": "text"})
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "nope.npz")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\.npz"):
        load_state(tmp_path / "w.txt")


def test_check_entry_names_the_key_for_shape_dtype_and_values():
    w = np.ones((4, 3), np.float32)
    assert check_entry("fc.weight", w.reshape(4, 3, 1, 1), (4, 3), np.float32).shape == (4, 3)
    with pytest.raises(ValueError, match=r"state\['fc.weight'\] .*shape \(4, 2\)"):
        check_entry("fc.weight", w, (4, 2), np.float32)
    with pytest.raises(ValueError, match=r"state\['fc.weight'\] has dtype float32, expected "
                                         r"float64 \(pass cast=True"):
        check_entry("fc.weight", w, (4, 3), np.float64)
    assert check_entry("fc.weight", w, (4, 3), np.float64, cast=True).dtype == np.float64
    with pytest.raises(ValueError, match="float array"):
        check_entry("fc.weight", w.astype(np.int32), (4, 3), np.float64, cast=True)
    with pytest.raises(ValueError, match="NaN"):
        check_entry("fc.weight", np.full((4, 3), np.nan, np.float32), (4, 3), np.float32)


def test_without_torch_a_pt_file_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "w.pt").write_bytes(b"not really")
    monkeypatch.setitem(sys.modules, "torch", None)   # import torch now raises ImportError
    with pytest.raises(ImportError, match=r"needs PyTorch.*pip install torch==2\.13\.0.*\.npz"):
        load_state(tmp_path / "w.pt")
    with pytest.raises(ImportError, match="needs PyTorch"):
        save_state(_state(), tmp_path / "out.pt")


def test_the_core_and_interop_never_import_torch(tmp_path):
    code = ("import sys, numpy as np\n"
            "import dynconv_np, dynconv_np.interop as io\n"
            "from dynconv_np.interop import load_layer, export_layer, make_layer\n"
            "layer = make_layer('kaijieshi7', 4, 6, 3, dtype=np.float64, rng=0)\n"
            f"io.save_state(export_layer(layer, 'kaijieshi7'), {str(tmp_path / 'k.npz')!r})\n"
            f"load_layer(layer, {str(tmp_path / 'k.npz')!r}, 'kaijieshi7')\n"
            f"io.write_fixtures({str(tmp_path / 'fx')!r}, ['dense'])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torch_sources():
    torch = pytest.importorskip("torch", reason="reading torch state dicts needs PyTorch")
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    for source in (module, module.state_dict()):
        state = load_state(source)
        assert list(state) == list(module.state_dict())
        assert all(isinstance(v, np.ndarray) for v in state.values())
    np.testing.assert_array_equal(state["0.weight"], module[0].weight.detach().numpy())
    bf16 = load_state({"w": torch.ones(2, dtype=torch.bfloat16)})
    assert bf16["w"].dtype == np.float32


def test_pt_round_trip(tmp_path):
    torch = pytest.importorskip("torch", reason="reading .pt files needs PyTorch")
    path = save_state(_state(), tmp_path / "s.pt")
    assert isinstance(torch.load(path, weights_only=True)["conv.weight"], torch.Tensor)
    state = load_state(path)
    np.testing.assert_array_equal(state["conv.weight"], _state()["conv.weight"])
