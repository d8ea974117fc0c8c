"""Checkpoints: a model's parameters and buffers (and optionally SGD momentum) in one ``.npz``.

Layout of the archive (NumPy's ``.npz``, loaded with ``allow_pickle=False``):

    __format__     "dynconv_np.checkpoint"
    __version__    FORMAT_VERSION (int)
    __meta__       a JSON object of the caller's metadata (epoch, seed, ...)
    param/<name>   every array of ``model.named_parameters()``
    buffer/<name>  every array of ``model.named_buffers()`` (BatchNorm running statistics)
    optim/<name>   SGD momentum buffers, when an optimizer is given

Saving is atomic: the archive is written to a temporary file in the destination's directory,
flushed to disk, then moved over the destination with ``os.replace``; an interrupted save leaves
the previous checkpoint untouched. Loading checks the format, the version, and that the names,
shapes and dtypes match the model exactly, then copies the arrays into the model's own arrays
(in place, so optimizers keep valid references); values round-trip bit for bit.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT_NAME = "dynconv_np.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is damaged, of another format or version, or does not fit the model."""


def save_checkpoint(path, model, optimizer=None, meta=None):
    """Write ``model`` (and ``optimizer``'s momentum) to ``path`` atomically; return ``path``."""
    path = os.fspath(path)
    arrays = {"__format__": np.array(FORMAT_NAME), "__version__": np.array(FORMAT_VERSION),
              "__meta__": np.array(json.dumps({} if meta is None else meta))}
    arrays.update({f"param/{name}": value for name, value, _ in model.named_parameters()})
    arrays.update({f"buffer/{name}": value for name, value in model.named_buffers()})
    if optimizer is not None:
        arrays.update({f"optim/{name}": value for name, value in optimizer.state_dict().items()})
    directory = os.path.dirname(os.path.abspath(path))
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=".ckpt-", suffix=".tmp",
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
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as error:
        raise CheckpointError(f"checkpoint {path!r} is damaged or not an .npz archive: "
                              f"{type(error).__name__}: {error}") from error
    _check_header(path, arrays)
    params = {name: value for name, value, _ in model.named_parameters()}
    buffers = dict(model.named_buffers())
    _check_fit(path, "param", params, arrays)
    _check_fit(path, "buffer", buffers, arrays)
    optim_state = {key[len("optim/"):]: value for key, value in arrays.items()
                   if key.startswith("optim/")}
    if optimizer is not None:
        try:
            optimizer.load_state_dict(optim_state)
        except ValueError as error:
            raise CheckpointError(f"checkpoint {path!r}: {error}") from error
    for name, value in params.items():
        value[...] = arrays[f"param/{name}"]
    for name, value in buffers.items():
        value[...] = arrays[f"buffer/{name}"]
    return json.loads(str(arrays["__meta__"]))


def _check_header(path, arrays):
    kind = str(arrays.get("__format__", ""))
    if kind != FORMAT_NAME:
        raise CheckpointError(f"{path!r} is not a dynconv_np checkpoint: expected __format__ = "
                              f"{FORMAT_NAME!r}; received {kind or 'no __format__ entry'!r}")
    version = arrays.get("__version__")
    if version is None or version.shape != () or int(version) != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path!r} has format version "
                              f"{None if version is None else version.tolist()}; this dynconv_np "
                              f"reads version {FORMAT_VERSION}")
    if "__meta__" not in arrays:
        raise CheckpointError(f"checkpoint {path!r} has no __meta__ entry")


def _check_fit(path, kind, expected, arrays):
    """The archive's ``kind/`` entries must match ``expected`` in names, shapes and dtypes."""
    stored = {key[len(kind) + 1:]: value for key, value in arrays.items()
              if key.startswith(kind + "/")}
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path!r} does not fit the model: {kind}s missing from "
                              f"the file {missing}, {kind}s the model lacks {unexpected}")
    for name, value in expected.items():
        got = stored[name]
        if got.shape != value.shape or got.dtype != value.dtype:
            raise CheckpointError(f"checkpoint {path!r}: {kind} {name!r} must be {value.dtype} "
                                  f"{value.shape} for this model; the file has {got.dtype} "
                                  f"{got.shape}")
