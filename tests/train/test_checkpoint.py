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
    with pytest.raises(CheckpointError, match=r"format version 99; this dynconv_np reads version 2"):
        load_checkpoint(path, model)


def test_mismatched_model_is_named(tmp_path):
    model, optimizer, _ = _trained(width=2)
    path = tmp_path / "model.npz"
    save_checkpoint(path, model, optimizer)
    wider, _, _ = _trained(width=3)
    with pytest.raises(CheckpointError, match=r"'0.weight' must be float32 \(3, 1, 3, 3\)"):
        load_checkpoint(path, wider)
    as_float64, _, _ = _trained(dtype=np.float64)
    with pytest.raises(CheckpointError, match=r"must be float64 .* the file has float32"):
        load_checkpoint(path, as_float64)
    static = small_cnn(width=2, dynamic=False, backend="numpy", rng=0)
    with pytest.raises(CheckpointError, match=r"does not fit the model: entries missing"):
        load_checkpoint(path, static)


def test_missing_file(tmp_path):
    model, _, _ = _trained()
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_checkpoint(tmp_path / "nope.npz", model)


def test_the_temperature_travels_with_the_checkpoint(tmp_path):
    """A model annealed to tau = 1 comes back at tau = 1, not at its initial 30."""
    model, _, data = _trained()
    for module in model.modules():
        if hasattr(module, "num_kernels"):
            module.temperature = 1.0
    save_checkpoint(tmp_path / "m.npz", model)
    fresh, _, _ = _trained(seed=1)
    load_checkpoint(tmp_path / "m.npz", fresh)
    taus = [m.temperature for m in fresh.modules() if hasattr(m, "num_kernels")]
    assert taus and all(tau == 1.0 for tau in taus)
    model.eval(), fresh.eval()
    np.testing.assert_array_equal(model(data.x_test), fresh(data.x_test))


def _snapshot(model):
    return {name: value.copy() for name, value in model.state_dict().items()}


def _unchanged(model, snapshot):
    return all(np.array_equal(value, snapshot[name]) for name, value in model.state_dict().items())


def _rewrite(path, **changes):
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del arrays[key]
    np.savez(path, **arrays)


@pytest.mark.parametrize("case, match", [
    ("version 1", r"format version 1, which did not store the dynamic layers' temperatures"),
    ("version text", r"malformed __version__"),
    ("meta not json", r"malformed __meta__"),
    ("meta a list", r"malformed __meta__"),
    ("no meta", r"malformed __meta__"),
    ("nan parameter", r"contains NaN or inf"),
    ("npy file", r"holds one array \(an .npy file\)"),
])
def test_malformed_checkpoints_are_refused_before_anything_changes(tmp_path, case, match):
    model, optimizer, _ = _trained()
    path = tmp_path / "model.npz"
    save_checkpoint(path, model, optimizer)
    first = next(iter(model.state_dict()))
    if case == "version 1":
        _rewrite(path, __version__=np.array(1))
    elif case == "version text":
        _rewrite(path, __version__=np.array("2"))
    elif case == "meta not json":
        _rewrite(path, __meta__=np.array("{epoch: 3"))
    elif case == "meta a list":
        _rewrite(path, __meta__=np.array("[1, 2]"))
    elif case == "no meta":
        _rewrite(path, __meta__=None)
    elif case == "nan parameter":
        bad = model.state_dict()[first].copy()
        bad.reshape(-1)[0] = np.nan
        _rewrite(path, **{f"state/{first}": bad})
    else:
        path = tmp_path / "model.npy"
        np.save(path, np.zeros(3))
    target, target_optimizer, _ = _trained(seed=3)
    before = _snapshot(target)
    velocity = {k: v.copy() for k, v in target_optimizer.velocity.items()}
    with pytest.raises(CheckpointError, match=match) as raised:
        load_checkpoint(path, target, target_optimizer)
    assert path.name in str(raised.value)
    assert _unchanged(target, before)
    assert all(np.array_equal(v, target_optimizer.velocity[k]) for k, v in velocity.items())


def test_every_flipped_byte_is_caught_or_harmless(tmp_path):
    """Flip one byte at a time over the archive: loading either raises CheckpointError naming
    the file, or (a byte in padding or the zip comment) gives exactly the saved model."""
    model, _, _ = _trained()
    path = tmp_path / "model.npz"
    save_checkpoint(path, model)
    good = path.read_bytes()
    saved = _snapshot(model)
    rng = np.random.default_rng(0)
    for position in rng.choice(len(good), size=60, replace=False):
        damaged = bytearray(good)
        damaged[position] ^= 0xFF
        path.write_bytes(bytes(damaged))
        target, _, _ = _trained(seed=4)
        before = _snapshot(target)
        try:
            load_checkpoint(path, target)
        except CheckpointError as error:
            assert "model.npz" in str(error)
            assert _unchanged(target, before)
        else:
            assert _unchanged(target, saved), f"byte {position} changed the model silently"


def test_metadata_that_cannot_be_stored_is_named(tmp_path):
    model, _, _ = _trained()
    with pytest.raises(TypeError, match="meta must be JSON-serialisable"):
        save_checkpoint(tmp_path / "m.npz", model, meta={"array": np.zeros(2)})
    with pytest.raises(TypeError, match="meta must be"):
        save_checkpoint(tmp_path / "m.npz", model, meta={"nan": float("nan")})
    with pytest.raises(TypeError, match="meta must be a dict"):
        save_checkpoint(tmp_path / "m.npz", model, meta=[1, 2])
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failing_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failing):
    model, _, _ = _trained()
    path = tmp_path / "model.npz"
    save_checkpoint(path, model, meta={"epoch": 1})
    good = path.read_bytes()

    def fail(*args):
        raise OSError(f"{failing} failed")

    monkeypatch.setattr(checkpoint_module.os, failing, fail)
    with pytest.raises(OSError, match=f"{failing} failed"):
        save_checkpoint(path, model, meta={"epoch": 2})
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["model.npz"]


def test_a_killed_save_leaves_nothing_behind_after_the_next_save(tmp_path):
    """A process killed mid-save cannot clean up its temporary file; the next save of the same
    path removes it."""
    import subprocess
    import sys
    import textwrap
    path = tmp_path / "model.npz"
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from dynconv_np.models.small import small_cnn
        from dynconv_np.train import checkpoint
        def die(handle, **arrays):
            handle.write(b"PK half")
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        checkpoint.np.savez = die
        checkpoint.save_checkpoint({str(path)!r}, small_cnn(width=1, dynamic=True,
                                   backend="numpy", rng=0))
    """)
    process = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert process.returncode == -9, process.stderr.decode()
    leftovers = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert leftovers and not path.exists()
    model, _, _ = _trained()
    save_checkpoint(path, model)
    assert os.listdir(tmp_path) == ["model.npz"]
