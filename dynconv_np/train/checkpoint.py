"""Checkpoints: a model's state dict (parameters, buffers, temperatures) and optionally SGD's
momentum, in one ``.npz``.

Layout of the archive (NumPy's ``.npz``, loaded with ``allow_pickle=False``):

    __format__     "dynconv_np.checkpoint"
    __version__    FORMAT_VERSION (int)
    __meta__       a JSON object of the caller's metadata (epoch, seed, ...)
    state/<name>   every entry of ``model.state_dict()``: parameters, buffers (BatchNorm's running
                   statistics) and each dynamic layer's temperature (a 0-d float64 array)
    optim/<name>   SGD momentum buffers, when an optimizer is given

Version 1 archives (before version 2) held parameters and buffers but no temperatures: a model
trained with annealing would silently come back at its initial tau, so they are refused with a
``CheckpointError`` that says so.

Saving is atomic: the archive is written to a temporary file beside the destination, flushed to
disk, then moved over it with ``os.replace``; an interrupted save leaves the previous checkpoint
untouched, and its temporary file is removed (at the latest by the next save of the same path).
Loading reads and checks everything (format, version, metadata, every name, shape and dtype)
before the model or the optimizer changes, then copies the arrays into the model's own arrays;
values round-trip bit for bit.
"""
import glob
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

FORMAT_NAME = "dynconv_np.checkpoint"
FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A checkpoint file is damaged, of another format or version, or does not fit the model."""


def save_checkpoint(path, model, optimizer=None, meta=None):
    """Write ``model`` (and ``optimizer``'s momentum) to ``path`` atomically; return ``path``."""
    path = os.fspath(path)
    try:
        meta_json = json.dumps({} if meta is None else meta, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"meta must be JSON-serialisable (dict of str, numbers, lists); "
                        f"received {meta!r}: {error}") from error
    if not isinstance(json.loads(meta_json), dict):
        raise TypeError(f"meta must be a dict; received {type(meta).__name__}")
    arrays = {"__format__": np.array(FORMAT_NAME), "__version__": np.array(FORMAT_VERSION),
              "__meta__": np.array(meta_json)}
    arrays.update({f"state/{name}": value for name, value in model.state_dict().items()})
    if optimizer is not None:
        arrays.update({f"optim/{name}": value for name, value in optimizer.state_dict().items()})
    directory, base = os.path.split(os.path.abspath(path))
    prefix = f".{base}.ckpt-"
    for stale in glob.glob(os.path.join(glob.escape(directory), glob.escape(prefix) + "*.tmp")):
        os.unlink(stale)  # left by a save that was killed before it could clean up
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=prefix, suffix=".tmp",
                                         delete=False)
    try:
        with handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        os.unlink(handle.name)
        raise
    return path


def load_checkpoint(path, model, optimizer=None):
    """Load ``path`` into ``model`` (and ``optimizer``) in place; return the metadata dict."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    arrays = _read(path)
    meta = _check_header(path, arrays)
    state = {key[len("state/"):]: value for key, value in arrays.items()
             if key.startswith("state/")}
    optim_state = {key[len("optim/"):]: value for key, value in arrays.items()
                   if key.startswith("optim/")}
    _check_fit(path, model.state_dict(), state)
    if optimizer is not None:
        try:
            optimizer.check_state_dict(optim_state)
        except ValueError as error:
            raise CheckpointError(f"checkpoint {path!r}: {error}") from error
    model.load_state_dict(state)  # checked above: cannot fail half-way
    if optimizer is not None:
        optimizer.load_state_dict(optim_state)
    return meta


def _read(path):
    """Every array of the archive (read fully, so a damaged member is found now)."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not hasattr(loaded, "files"):
            raise CheckpointError(f"{path!r} is not a dynconv_np checkpoint: it holds one array "
                                  "(an .npy file), not an .npz archive")
        with loaded as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
            NotImplementedError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint {path!r} is damaged or not an .npz archive: "
                              f"{type(error).__name__}: {error}") from error


def _check_header(path, arrays):
    """Format, version and metadata; returns the metadata dict."""
    kind = arrays.get("__format__")
    if kind is None or kind.shape != () or str(kind) != FORMAT_NAME:
        received = "no __format__ entry" if kind is None else str(kind)[:80]
        raise CheckpointError(f"{path!r} is not a dynconv_np checkpoint: expected __format__ = "
                              f"{FORMAT_NAME!r}; received {received!r}")
    version = arrays.get("__version__")
    if version is None or version.shape != () or version.dtype.kind not in "iu":
        raise CheckpointError(f"checkpoint {path!r} has a malformed __version__ "
                              f"({None if version is None else version.tolist()!r})")
    if int(version) == 1:
        raise CheckpointError(f"checkpoint {path!r} has format version 1, which did not store "
                              "the dynamic layers' temperatures (a model trained with annealing "
                              "would come back at its initial tau); re-save it from the training "
                              "script, setting each layer's temperature first")
    if int(version) != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path!r} has format version {int(version)}; this "
                              f"dynconv_np reads version {FORMAT_VERSION}")
    raw = arrays.get("__meta__")
    try:
        meta = json.loads(str(raw)) if raw is not None and raw.shape == () else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path!r} has a malformed __meta__ entry (a JSON "
                              "object is expected)")
    return meta


def _check_fit(path, expected, stored):
    """The archive's state entries must match the model's state dict in names, shapes, dtypes."""
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path!r} does not fit the model: entries missing from "
                              f"the file {missing}, entries the model lacks {unexpected}")
    for name, value in expected.items():
        got = stored[name]
        if got.shape != value.shape or got.dtype != value.dtype:
            raise CheckpointError(f"checkpoint {path!r}: {name!r} must be {value.dtype} "
                                  f"{value.shape} for this model; the file has {got.dtype} "
                                  f"{got.shape}")
        if got.dtype.kind == "f" and not np.isfinite(got).all():
            raise CheckpointError(f"checkpoint {path!r}: {name!r} contains NaN or inf")
