"""Checkpoints: bit-exact round trip (params, BatchNorm buffers, momentum, metadata), atomic
save, and clear errors for damaged, foreign, other-version and mismatched files."""
import os

import numpy as np
import pytest

from dynconv_np.models.small import small_cnn
from dynconv_np.train import checkpoint as checkpoint_module
from dynconv_np.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dynconv_np.train.loop import train_step
from dynconv_np.train.optim import SGD

from .helpers import digits_subset


def _trained(seed=0, dtype=np.float32, width=2):
    """A dynamic small CNN after two SGD steps: non-trivial params, BN buffers and momentum."""
    data = digits_subset(64, 8, dtype=dtype)
    model = small_cnn(width=width, dynamic=True, num_kernels=2, backend="numpy", dtype=dtype,
                      rng=seed)
    optimizer = SGD(model, lr=0.05, momentum=0.9, weight_decay=1e-3)
    for batch in (slice(0, 32), slice(32, 64)):
        train_step(model, optimizer, data.x_train[batch], data.y_train[batch])
    return model, optimizer, data


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_exact(tmp_path, dtype):
    model, optimizer, data = _trained(dtype=dtype)
    path = tmp_path / "model.npz"
    save_checkpoint(path, model, optimizer, meta={"epoch": 3, "seed": 0})
    fresh, _, _ = _trained(seed=1, dtype=dtype)
    fresh_optimizer = SGD(fresh, lr=0.05, momentum=0.9)
    assert load_checkpoint(path, fresh, fresh_optimizer) == {"epoch": 3, "seed": 0}
    for (name, a, _), (_, b, _) in zip(model.named_parameters(), fresh.named_parameters()):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    buffers = dict(fresh.named_buffers())
    assert buffers and all(value.tobytes() == buffers[name].tobytes()
                           for name, value in model.named_buffers())
    assert fresh_optimizer.velocity.keys() == optimizer.velocity.keys()
    assert all(v.tobytes() == fresh_optimizer.velocity[k].tobytes()
               for k, v in optimizer.velocity.items())
    model.eval(), fresh.eval()
    np.testing.assert_array_equal(model(data.x_test), fresh(data.x_test))


def test_load_writes_into_the_models_own_arrays(tmp_path):
    model, _, _ = _trained()
    save_checkpoint(tmp_path / "a.npz", model)
    fresh, optimizer, _ = _trained(seed=2)
    before = [p for _, p, _ in fresh.named_parameters()]
    load_checkpoint(tmp_path / "a.npz", fresh)
    assert all(a is b for a, b in zip(before, [p for _, p, _ in fresh.named_parameters()]))
    assert all(a is p for (_, a, _), p in zip(optimizer.parameters, before))


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, _, _ = _trained()
    path = tmp_path / "model.npz"
    save_checkpoint(path, model, meta={"epoch": 1})
    good = path.read_bytes()

    def crash(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, meta={"epoch": 2})
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["model.npz"]          # no temporary file left behind


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"\x00" * 64,
                                    lambda b: b""])
def test_damaged_file_is_named(tmp_path, damage):
    model, _, _ = _trained()
    path = tmp_path / "model.npz"
    save_checkpoint(path, model)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=r"model.npz' is damaged or not an .npz archive"):
        load_checkpoint(path, model)


def test_foreign_archive_and_other_version_are_named(tmp_path):
    model, _, _ = _trained()
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(CheckpointError, match="is not a dynconv_np checkpoint"):
        load_checkpoint(tmp_path / "other.npz", model)
    path = tmp_path / "model.npz"
    save_checkpoint(path, model)
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["__version__"] = np.array(99)
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=r"format version 99; this dynconv_np reads version 1"):
        load_checkpoint(path, model)


def test_mismatched_model_is_named(tmp_path):
    model, optimizer, _ = _trained(width=2)
    path = tmp_path / "model.npz"
    save_checkpoint(path, model, optimizer)
    wider, _, _ = _trained(width=3)
    with pytest.raises(CheckpointError, match=r"param '0.weight' must be float32 \(3, 1, 3, 3\)"):
        load_checkpoint(path, wider)
    as_float64, _, _ = _trained(dtype=np.float64)
    with pytest.raises(CheckpointError, match=r"must be float64 .* the file has float32"):
        load_checkpoint(path, as_float64)
    static = small_cnn(width=2, dynamic=False, backend="numpy", rng=0)
    with pytest.raises(CheckpointError, match=r"does not fit the model: params missing"):
        load_checkpoint(path, static)


def test_missing_file(tmp_path):
    model, _, _ = _trained()
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_checkpoint(tmp_path / "nope.npz", model)
