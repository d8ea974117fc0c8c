"""Image classification datasets as NCHW float arrays: the embedded digits, MNIST-style IDX
files and CIFAR-10 python batches.

Every loader returns a ``Dataset`` with ``x_train``/``x_test`` (N, C, H, W) in the requested
float dtype and ``y_train``/``y_test`` (N,) int64 class indices. Pixels are standardised with
statistics of the *training* images only (one mean and standard deviation per channel):

    x = (pixels / max_value - mean_c) / std_c

* ``load_digits()`` - the UCI optical-digits set shipped in the package (1797 images, 8 x 8,
  10 classes, CC BY 4.0; see ``dynconv_np/data/DIGITS_LICENSE.txt``), split into train and test
  once, with a fixed seed and stratified by class.
* ``load_mnist(data_dir)`` / ``load_mnist(data_dir, fashion=True)`` - the four IDX files of
  MNIST or Fashion-MNIST (the two use the same file names), gzipped or not.
* ``load_cifar10(data_dir)`` - ``data_batch_1`` ... ``data_batch_5`` and ``test_batch`` from the
  "CIFAR-10 python version" (``data_dir`` or ``data_dir/cifar-10-batches-py``).

A missing file raises ``FileNotFoundError`` and a malformed one ``DataFileError`` (a
``ValueError``); both messages name the file and say what was expected. Malformed covers a
corrupt or truncated gzip stream, a file with no images (an empty split), labels that are not
integers or lie outside 0 .. classes - 1, and images and labels of different counts.
"""
import gzip
import math
import numbers
import os
import pickle
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from .._validation import _is_int, check_float_dtype

# What reading a damaged gzip stream raises: BadGzipFile (an OSError) for a bad header or CRC,
# EOFError for a truncated stream, zlib.error for corrupt deflate data.
_GZIP_ERRORS = (OSError, EOFError, zlib.error)

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
DIGITS_FILE = os.path.join(DATA_DIR, "digits.csv.gz")
DATASETS = ("digits", "digits-mixed", "mnist", "fashion-mnist", "cifar10")


class DataFileError(ValueError):
    """A dataset file exists but its content is not what its format requires."""


@dataclass
class Dataset:
    """Train and test images (N, C, H, W) and int64 labels (N,), with the class names."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def image_shape(self):
        """(C, H, W) of one image."""
        return tuple(self.x_train.shape[1:])


def load_dataset(name, data_dir=None, dtype=np.float32):
    """Dispatch on ``name`` ("digits", "mnist", "fashion-mnist", "cifar10").

    ``data_dir`` is required for every dataset except the embedded digits.
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}; received {name!r}")
    if name == "digits":
        return load_digits(dtype=dtype)
    if name == "digits-mixed":  # the digits, clean and restyled: train/mixed_digits.py
        from .mixed_digits import load_mixed_digits
        return load_mixed_digits(dtype=dtype)
    if data_dir is None:
        raise ValueError(f"dataset {name!r} is read from files you download; pass data_dir "
                         "(the directory that holds them)")
    _check_path(data_dir, "data_dir")
    if name == "cifar10":
        return load_cifar10(data_dir, dtype=dtype)
    return load_mnist(data_dir, fashion=(name == "fashion-mnist"), dtype=dtype)


# -- the embedded digits ---------------------------------------------------------------------

def load_digits(test_fraction=0.25, seed=0, dtype=np.float32, path=DIGITS_FILE):
    """The 1797 UCI 8 x 8 digits, split into a fixed, class-stratified train/test split.

    For each class separately, a permutation drawn from ``np.random.default_rng(seed)`` puts
    round(test_fraction * n_class) images in the test set and the rest in the training set; the
    default split (seed 0, 25 %) has 1347 training and 450 test images. Pixels (0..16) are
    divided by 16, then standardised with the training set's mean and standard deviation.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or \
            not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a number in (0, 1); received {test_fraction!r}")
    if not _is_int(seed) or seed < 0:
        raise TypeError(f"seed must be a non-negative int; received {seed!r}")
    dtype = check_float_dtype(dtype)
    path = _check_path(path, "path")
    table = _read_digits_csv(path)
    pixels, labels = table[:, :64], table[:, 64]
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for label in range(10):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(test_fraction * members.size))
        test_idx.append(members[:n_test])
        train_idx.append(members[n_test:])
    train_idx, test_idx = np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))
    for split, idx in (("training", train_idx), ("test", test_idx)):
        if idx.size == 0:
            raise DataFileError(f"{path}: its {table.shape[0]} image(s) leave the {split} split "
                                f"empty with test_fraction={test_fraction}; expected more images "
                                "per class")
    images = pixels.reshape(-1, 1, 8, 8)
    x_train, x_test = _standardise(images[train_idx], images[test_idx], 16.0, dtype)
    return Dataset("digits", x_train, labels[train_idx], x_test, labels[test_idx],
                   tuple(str(d) for d in range(10)))


def _read_digits_csv(path):
    """(1797, 65) int64: 64 pixels in 0..16 then the label in 0..9, one image per line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"embedded digits file {path} is missing; expected a gzipped CSV "
                                "of 65 integers per line (reinstall dynconv_np)")
    try:
        with gzip.open(path, "rt", encoding="ascii") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": reported below
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    except _GZIP_ERRORS + (ValueError, UnicodeDecodeError) as error:
        raise DataFileError(f"{path}: expected a gzipped CSV of 65 integers per line "
                            f"(64 pixels, then the label); could not parse it: "
                            f"{type(error).__name__}: {error}") from error
    if table.size == 0:
        raise DataFileError(f"{path}: expected a gzipped CSV of 65 integers per line; the file "
                            "holds no images")
    if table.shape[1] != 65:
        raise DataFileError(f"{path}: expected 65 columns (64 pixels in 0..16, label in 0..9); "
                            f"received shape {table.shape}")
    pixels, labels = table[:, :64], table[:, 64]
    if pixels.min() < 0 or pixels.max() > 16:
        raise DataFileError(f"{path}: expected 65 columns (64 pixels in 0..16, label in 0..9); "
                            f"received pixel values {pixels.min()}..{pixels.max()}")
    _check_labels(labels, 10, f"{path}: label column")
    return table


# -- MNIST and Fashion-MNIST (IDX files) ------------------------------------------------------

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")


def load_mnist(data_dir, fashion=False, dtype=np.float32):
    """MNIST (or Fashion-MNIST with ``fashion=True``) from the four IDX files in ``data_dir``.

    Each file may be plain or gzipped (``name`` or ``name.gz``): train-images-idx3-ubyte,
    train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte.
    """
    dtype = check_float_dtype(dtype)
    data_dir = _check_path(data_dir, "data_dir")
    paths = {key: _find_file(data_dir, name, (name, name + ".gz"))
             for key, name in MNIST_FILES.items()}
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        image_file, label_file = paths[f"{split}_images"], paths[f"{split}_labels"]
        if images.ndim != 3:
            raise DataFileError(f"{image_file}: expected 3-D images (N, rows, cols); "
                                f"received {images.ndim}-D shape {images.shape}")
        if images.shape[0] == 0 or images.size == 0:
            raise DataFileError(f"{image_file}: the {split} split is empty: expected at least "
                                f"one image; received shape {images.shape}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise DataFileError(f"{label_file}: expected one label per image "
                                f"({images.shape[0]},); received {labels.shape}")
        _check_labels(labels, 10, label_file)
    x_train, x_test = _standardise(arrays["train_images"][:, None], arrays["test_images"][:, None],
                                   255.0, dtype)
    return Dataset("fashion-mnist" if fashion else "mnist", x_train,
                   arrays["train_labels"].astype(np.int64), x_test,
                   arrays["test_labels"].astype(np.int64),
                   FASHION_CLASSES if fashion else MNIST_CLASSES)


def read_idx(path):
    """An unsigned-byte IDX array (the MNIST file format), gzipped if ``path`` ends in .gz.

    Layout: two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions d,
    then d big-endian uint32 sizes, then prod(sizes) bytes.
    """
    path = _check_path(path, "path")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except _GZIP_ERRORS as error:
        kind = "gzip (a corrupt or truncated stream?)" if opener is gzip.open else "a file"
        raise DataFileError(f"{path}: could not read it as {kind}: {type(error).__name__}: "
                            f"{error}") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataFileError(f"{path}: expected an IDX file of unsigned bytes (magic bytes "
                            f"00 00 08 <ndim>); received {raw[:4].hex(' ') or 'an empty file'}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataFileError(f"{path}: IDX header declares {ndim} dimensions; expected 1 to 3 "
                            f"with {header} header bytes; the file has {len(raw)} bytes")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(shape)
    if len(raw) != expected:
        raise DataFileError(f"{path}: IDX header declares shape {shape}, i.e. {expected} bytes; "
                            f"the file has {len(raw)} bytes (truncated or corrupt?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


# -- CIFAR-10 (python batches) ----------------------------------------------------------------

CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")


def load_cifar10(data_dir, dtype=np.float32):
    """CIFAR-10 from the python batches in ``data_dir`` (or ``data_dir/cifar-10-batches-py``)."""
    dtype = check_float_dtype(dtype)
    data_dir = _check_path(data_dir, "data_dir")
    nested = os.path.join(data_dir, "cifar-10-batches-py")
    root = nested if os.path.isdir(nested) else data_dir
    train = [_read_cifar_batch(_find_file(root, name, (name,))) for name in CIFAR_TRAIN_BATCHES]
    x_test, y_test = _read_cifar_batch(_find_file(root, CIFAR_TEST_BATCH, (CIFAR_TEST_BATCH,)))
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    x_train, x_test = _standardise(x_train, x_test, 255.0, dtype)
    return Dataset("cifar10", x_train, y_train, x_test, y_test, CIFAR_CLASSES)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and NumPy arrays only; any other class is refused
    (a CIFAR batch needs nothing else, and refusing the rest stops code execution from a file).

    The allowed callables rebuild arrays and bytes, whichever pickle protocol wrote them:
    ``_reconstruct`` / ``ndarray`` / ``dtype`` (protocols 0 to 4), ``_frombuffer`` (protocol 5)
    and ``_codecs.encode`` (how Python 3 writes bytes with protocol 2)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path):
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) from one CIFAR-10 python batch.

    The keys may be bytes (the published batches, pickled by Python 2) or str (a batch pickled
    by Python 3, any protocol from 2 on)."""
    expected = ("a pickled dict with 'data' (N, 3072) uint8 and 'labels' (N integers in 0..9) "
                "(bytes or str keys), as in the CIFAR-10 python version")
    try:
        with open(path, "rb") as handle:
            batch = _ArrayOnlyUnpickler(handle, encoding="bytes").load()
    except Exception as error:  # pickle raises many kinds; every one means "not a batch"
        raise DataFileError(f"{path}: expected {expected}; could not unpickle it: "
                            f"{type(error).__name__}: {error}") from error
    if isinstance(batch, dict):
        batch = {key.decode("latin1") if isinstance(key, bytes) else key: value
                 for key, value in batch.items()}
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        keys = sorted(batch, key=repr) if isinstance(batch, dict) else type(batch).__name__
        raise DataFileError(f"{path}: expected {expected}; received {keys}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or \
            data.shape[1] != 3072:
        received = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else \
            type(data).__name__
        raise DataFileError(f"{path}: expected {expected}; received data {received}")
    if data.shape[0] == 0:
        raise DataFileError(f"{path}: expected {expected}; the batch holds no images")
    labels = batch["labels"]
    try:
        labels = np.asarray(labels)
    except Exception as error:  # noqa: BLE001 - ragged lists and the like
        raise DataFileError(f"{path}: labels must be a list of integers; could not read them: "
                            f"{error}") from error
    if labels.shape != (data.shape[0],):
        raise DataFileError(f"{path}: expected one label per image ({data.shape[0]},); "
                            f"received labels of shape {labels.shape}")
    _check_labels(labels, 10, path)
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


# -- shared helpers ---------------------------------------------------------------------------

def _check_labels(labels, num_classes, where):
    """Labels must be integers in 0 .. num_classes - 1 (integral floats such as 3.0 pass):
    DataFileError naming ``where`` (the file) and the first offending label and its index."""
    expected = f"labels must be integers in 0..{num_classes - 1} (one per class)"
    flat = labels.reshape(-1)
    if labels.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            fractional = ~np.isfinite(flat) | (flat != np.round(flat))
        if fractional.any():
            index = int(np.argmax(fractional))
            raise DataFileError(f"{where}: {expected}; label {index} is {flat[index].item()!r}, not an "
                                "integer")
    elif labels.dtype.kind not in "iu":
        raise DataFileError(f"{where}: {expected}; received labels of dtype {labels.dtype}"
                            + (f" (label 0 is {flat[0]!r})" if flat.size else ""))
    outside = (flat < 0) | (flat >= num_classes)
    if outside.any():
        index = int(np.argmax(outside))
        raise DataFileError(f"{where}: {expected}; label {index} is {flat[index].item()!r}")


def _check_path(path, name):
    """A str or os.PathLike path -> str; else TypeError naming ``name``."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike path; received "
                        f"{type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"{name} must be a text path (str); received {type(path).__name__}")
    return path


def _find_file(directory, what, names):
    """The first of ``names`` that exists in ``directory``; FileNotFoundError naming all of them."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"data directory {directory!r} does not exist (looking for {what})")
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{what} not found in {directory!r}; expected one of "
                            f"{', '.join(names)}")


def _standardise(train, test, max_value, dtype):
    """Scale to [0, 1] by ``max_value``, then standardise per channel with training statistics."""
    dtype = check_float_dtype(dtype)
    train = train.astype(np.float64) / max_value
    test = test.astype(np.float64) / max_value
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = np.maximum(train.std(axis=(0, 2, 3), keepdims=True), 1e-12)
    return ((train - mean) / std).astype(dtype), ((test - mean) / std).astype(dtype)
