"""Datasets: the embedded digits and its split; MNIST IDX and CIFAR-10 loaders on small files
written here in the real formats; errors that name the file and the expectation."""
import gzip
import os
import pickle

import numpy as np
import pytest

from dynconv_np.train.data import (DATA_DIR, DIGITS_FILE, DataFileError, load_cifar10,
                                   load_dataset, load_digits, load_mnist, read_idx)


# -- embedded digits ----------------------------------------------------------------------------

def test_digits_shapes_split_and_standardisation():
    data = load_digits()
    assert data.x_train.shape == (1347, 1, 8, 8) and data.x_test.shape == (450, 1, 8, 8)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.num_classes == 10 and data.image_shape == (1, 8, 8)
    # Stratified: every class has 25 % +- one image of its members in the test set.
    total = np.bincount(data.y_train, minlength=10) + np.bincount(data.y_test, minlength=10)
    assert total.sum() == 1797
    assert np.all(np.abs(np.bincount(data.y_test, minlength=10) - 0.25 * total) <= 0.5)
    assert abs(float(data.x_train.mean())) < 1e-6 and float(data.x_train.std()) == pytest.approx(1, abs=1e-5)


def test_digits_split_is_fixed_and_float64_works():
    a, b = load_digits(), load_digits(dtype=np.float64)
    assert b.x_train.dtype == np.float64
    np.testing.assert_array_equal(a.y_test, b.y_test)
    np.testing.assert_allclose(a.x_test, b.x_test, rtol=1e-6, atol=1e-6)
    assert not np.array_equal(load_digits(seed=1).y_test, a.y_test)


def test_digits_split_partitions_the_rows(tmp_path):
    # A 40-row file whose pixel 0 holds the row number: train and test rows must partition it.
    rows = np.zeros((40, 65), dtype=int)
    rows[:, 0] = np.arange(40) % 17
    rows[:, 1] = np.arange(40) // 17
    rows[:, 64] = np.arange(40) % 10
    path = tmp_path / "digits.csv.gz"
    with gzip.open(path, "wt") as handle:
        np.savetxt(handle, rows, fmt="%d", delimiter=",")
    data = load_digits(path=str(path), dtype=np.float64)
    pixels = np.concatenate([data.x_train, data.x_test]).reshape(-1, 64)
    ids = np.round(pixels[:, 0] * 1e6).astype(np.int64), np.round(pixels[:, 1] * 1e6)
    assert len(set(zip(*ids))) == 40 and len(data.y_train) == 30 and len(data.y_test) == 10


def test_digits_licence_ships_with_the_data():
    text = open(os.path.join(DATA_DIR, "DIGITS_LICENSE.txt"), encoding="utf-8").read()
    assert "CC BY 4.0" in text and "Alpaydin" in text and "Kaynak" in text
    assert os.path.basename(DIGITS_FILE) == "digits.csv.gz"


def test_digits_malformed_file_is_named(tmp_path):
    path = tmp_path / "digits.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("1,2,3\n4,5,6\n")
    with pytest.raises(DataFileError, match=r"digits.csv.gz: expected 65 columns"):
        load_digits(path=str(path))
    path.write_bytes(b"not gzip")
    with pytest.raises(DataFileError, match=r"digits.csv.gz: expected a gzipped CSV"):
        load_digits(path=str(path))


# -- MNIST / Fashion-MNIST IDX files -----------------------------------------------------------

def _idx_bytes(array):
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(directory, gz, n_train=6, n_test=4, rows=5, cols=7):
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, rows, cols)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, rows, cols)),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) + 3) % 10}
    for name, array in arrays.items():
        data = _idx_bytes(array)
        if gz:
            with gzip.open(directory / (name + ".gz"), "wb") as handle:
                handle.write(data)
        else:
            (directory / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("fashion", [False, True])
def test_mnist_idx_round_trip(tmp_path, gz, fashion):
    arrays = _write_mnist(tmp_path, gz)
    data = load_dataset("fashion-mnist" if fashion else "mnist", str(tmp_path))
    assert data.name == ("fashion-mnist" if fashion else "mnist")
    assert data.x_train.shape == (6, 1, 5, 7) and data.x_test.shape == (4, 1, 5, 7)
    np.testing.assert_array_equal(data.y_test, arrays["t10k-labels-idx1-ubyte"])
    # Standardisation is monotone per channel: the pixel order is preserved.
    train = arrays["train-images-idx3-ubyte"].reshape(-1)
    assert np.array_equal(np.argsort(data.x_train.reshape(-1), kind="stable"),
                          np.argsort(train, kind="stable"))
    assert (data.classes[0] == "T-shirt/top") == fashion


def test_read_idx_exact_values(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(array))
    np.testing.assert_array_equal(read_idx(str(tmp_path / "a")), array)


def test_mnist_missing_file_is_named(tmp_path):
    _write_mnist(tmp_path, gz=False)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte not found in .*"
                                                r"expected one of t10k-labels-idx1-ubyte, "
                                                r"t10k-labels-idx1-ubyte.gz"):
        load_mnist(str(tmp_path))


@pytest.mark.parametrize("damage, match", [
    (lambda b: b"\x00\x00\x0d\x03" + b[4:], r"train-images-idx3-ubyte: expected an IDX file of unsigned bytes"),
    (lambda b: b[:-5], r"train-images-idx3-ubyte: IDX header declares shape \(6, 5, 7\).*truncated"),
    (lambda b: b[:2], r"train-images-idx3-ubyte: expected an IDX file"),
])
def test_mnist_malformed_file_is_named(tmp_path, damage, match):
    _write_mnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataFileError, match=match):
        load_mnist(str(tmp_path))


def test_mnist_label_count_mismatch_is_named(tmp_path):
    _write_mnist(tmp_path, gz=True)
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(_idx_bytes(np.arange(5)))
    with pytest.raises(DataFileError, match=r"train-labels-idx1-ubyte.gz: expected one label per image \(6,\)"):
        load_mnist(str(tmp_path))


def test_mnist_bad_gzip_is_named(tmp_path):
    _write_mnist(tmp_path, gz=True)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(DataFileError, match=r"t10k-images-idx3-ubyte.gz: could not read it as gzip"):
        load_mnist(str(tmp_path))


# -- CIFAR-10 python batches -------------------------------------------------------------------

def _write_cifar(directory, n=3):
    rng = np.random.default_rng(1)
    batches = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        batch = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
                 b"labels": [(i + j) % 10 for j in range(n)], b"batch_label": b"x"}
        with open(directory / name, "wb") as handle:
            pickle.dump(batch, handle)
        batches[name] = batch
    return batches


@pytest.mark.parametrize("nested", [False, True])
def test_cifar10_batches(tmp_path, nested):
    root = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    root.mkdir(exist_ok=True)
    batches = _write_cifar(root)
    data = load_cifar10(str(tmp_path))
    assert data.x_train.shape == (15, 3, 32, 32) and data.x_test.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(data.y_test, batches["test_batch"][b"labels"])
    assert data.classes[0] == "airplane"
    # Channel 0 of test image 0 is the first 1024 bytes of its row (rows are R, G, B planes).
    raw = batches["test_batch"][b"data"][0, :1024].reshape(32, 32)
    assert np.array_equal(np.argsort(data.x_test[0, 0].reshape(-1), kind="stable"),
                          np.argsort(raw.reshape(-1), kind="stable"))


def test_cifar10_missing_batch_is_named(tmp_path):
    _write_cifar(tmp_path)
    os.remove(tmp_path / "data_batch_4")
    with pytest.raises(FileNotFoundError, match="data_batch_4 not found"):
        load_cifar10(str(tmp_path))


def test_cifar10_malformed_batches_are_named(tmp_path):
    _write_cifar(tmp_path)
    with open(tmp_path / "data_batch_2", "wb") as handle:
        pickle.dump({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, handle)
    with pytest.raises(DataFileError, match=r"data_batch_2: expected a pickled dict .*\(N, 3072\)"):
        load_cifar10(str(tmp_path))
    (tmp_path / "data_batch_2").write_bytes(b"\x80\x04 not a pickle")
    with pytest.raises(DataFileError, match=r"data_batch_2: expected .*could not unpickle"):
        load_cifar10(str(tmp_path))


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_cifar10_refuses_arbitrary_objects(tmp_path):
    _write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as handle:
        pickle.dump({b"data": _Payload(), b"labels": []}, handle)
    with pytest.raises(DataFileError, match=r"test_batch: .*refusing to load"):
        load_cifar10(str(tmp_path))


# -- dispatch ----------------------------------------------------------------------------------

def test_load_dataset_errors(tmp_path):
    with pytest.raises(ValueError, match=r"dataset must be one of .*received 'svhn'"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match="pass data_dir"):
        load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("cifar10", str(tmp_path / "nowhere"))
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        load_digits(dtype=np.int32)


# -- damaged gzip streams, empty splits, bad labels, Python 3 pickles ---------------------------

def _gzip_bytes(data):
    return gzip.compress(data, mtime=0)


GZIP_DAMAGE = {
    "truncated": lambda gz: gz[:len(gz) // 2],
    "garbage": lambda gz: b"\x8b\x1f this is not gzip at all",
    # the first deflate byte made an invalid block type (zlib.error, not an OSError)
    "corrupt deflate body": lambda gz: _gzip_bytes(gzip.decompress(gz))[:10] + b"\xff"
    + _gzip_bytes(gzip.decompress(gz))[11:],
    "bad CRC": lambda gz: gz[:-8] + bytes([gz[-8] ^ 0xff]) + gz[-7:],
    "empty file": lambda gz: b"",
}


@pytest.mark.parametrize("damage", list(GZIP_DAMAGE))
def test_mnist_damaged_gzip_names_the_file(tmp_path, damage):
    _write_mnist(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(GZIP_DAMAGE[damage](path.read_bytes()))
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte\.gz: "):
        load_mnist(str(tmp_path))


@pytest.mark.parametrize("damage", list(GZIP_DAMAGE))
def test_digits_damaged_gzip_names_the_file(tmp_path, damage):
    rows = np.zeros((40, 65), dtype=int)
    rows[:, 64] = np.arange(40) % 10
    text = "\n".join(",".join(map(str, row)) for row in rows).encode("ascii")
    path = tmp_path / "digits.csv.gz"
    path.write_bytes(GZIP_DAMAGE[damage](_gzip_bytes(text)))
    with pytest.raises(DataFileError, match=r"digits\.csv\.gz: "):
        load_digits(path=str(path))


@pytest.mark.parametrize("split", ["train", "t10k"])
@pytest.mark.parametrize("shape", [(0, 5, 7), (3, 0, 7)])
def test_mnist_empty_split_names_the_file(tmp_path, split, shape):
    _write_mnist(tmp_path, gz=False)
    (tmp_path / f"{split}-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros(shape)))
    (tmp_path / f"{split}-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(shape[0])))
    with pytest.raises(DataFileError, match=rf"{split}-images-idx3-ubyte: .*empty"):
        load_mnist(str(tmp_path))


def test_digits_empty_file_and_empty_split_are_named(tmp_path):
    path = tmp_path / "digits.csv.gz"
    path.write_bytes(_gzip_bytes(b""))
    with pytest.raises(DataFileError, match=r"digits\.csv\.gz: .*no images"):
        load_digits(path=str(path))
    rows = np.zeros((10, 65), dtype=int)
    rows[:, 64] = np.arange(10)  # one image per class: 25 % of one image rounds to none
    path.write_bytes(_gzip_bytes("\n".join(",".join(map(str, r)) for r in rows).encode()))
    with pytest.raises(DataFileError, match=r"digits\.csv\.gz: .*test split empty"):
        load_digits(path=str(path))


@pytest.mark.parametrize("label", [10, 255])
def test_mnist_label_out_of_range_is_named(tmp_path, label):
    _write_mnist(tmp_path, gz=False)
    labels = np.arange(4) % 10
    labels[2] = label
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))
    with pytest.raises(DataFileError, match=rf"t10k-labels-idx1-ubyte: labels must be integers "
                                            rf"in 0\.\.9.*label 2 is {label}"):
        load_mnist(str(tmp_path))


@pytest.mark.parametrize("label", ["10", "-1"])
def test_digits_label_out_of_range_is_named(tmp_path, label):
    rows = [",".join(["0"] * 64 + [str(i % 10)]) for i in range(40)]
    rows[7] = ",".join(["0"] * 64 + [label])
    path = tmp_path / "digits.csv.gz"
    path.write_bytes(_gzip_bytes("\n".join(rows).encode()))
    with pytest.raises(DataFileError, match=rf"digits\.csv\.gz: label column: labels must be "
                                            rf"integers in 0\.\.9.*label 7 is {label}"):
        load_digits(path=str(path))


def test_digits_non_integer_label_is_named(tmp_path):
    rows = [",".join(["0"] * 64 + [str(i % 10)]) for i in range(40)]
    rows[3] = ",".join(["0"] * 64 + ["2.5"])
    path = tmp_path / "digits.csv.gz"
    path.write_bytes(_gzip_bytes("\n".join(rows).encode()))
    with pytest.raises(DataFileError, match=r"digits\.csv\.gz: expected a gzipped CSV of 65 "
                                            r"integers"):
        load_digits(path=str(path))


@pytest.mark.parametrize("labels, match", [
    ([0, 1, 10], r"label 2 is 10"),
    ([0, -1, 2], r"label 1 is -1"),
    ([0, 1.5, 2], r"label 1 is 1\.5, not an integer"),
    ([0, float("nan"), 2], r"label 1 is nan, not an integer"),
    (["0", "1", "2"], r"dtype <U1"),
    ([0, None, 2], r"dtype object"),
    ([True, False, True], r"dtype bool"),
    ([0, [1], 2], r"labels must be a list of integers|dtype object"),
    ([0, 1], r"one label per image \(3,\)"),
    (np.array([[0, 1, 2]]), r"one label per image \(3,\)"),
])
def test_cifar10_bad_labels_are_named(tmp_path, labels, match):
    _write_cifar(tmp_path)
    with open(tmp_path / "data_batch_3", "wb") as handle:
        pickle.dump({b"data": np.zeros((3, 3072), np.uint8), b"labels": labels}, handle)
    with pytest.raises(DataFileError, match=r"data_batch_3: .*" + match):
        load_cifar10(str(tmp_path))


def test_cifar10_integral_float_labels_are_integers(tmp_path):
    batches = _write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as handle:
        pickle.dump({b"data": batches["test_batch"][b"data"],
                     b"labels": np.array(batches["test_batch"][b"labels"], np.float32)}, handle)
    data = load_cifar10(str(tmp_path))
    assert data.y_test.dtype == np.int64
    np.testing.assert_array_equal(data.y_test, batches["test_batch"][b"labels"])


def test_cifar10_empty_batch_is_named(tmp_path):
    _write_cifar(tmp_path)
    with open(tmp_path / "data_batch_5", "wb") as handle:
        pickle.dump({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, handle)
    with pytest.raises(DataFileError, match=r"data_batch_5: .*holds no images"):
        load_cifar10(str(tmp_path))


@pytest.mark.parametrize("damage", ["truncated", "empty file", "data a list"])
def test_cifar10_damaged_batch_is_named(tmp_path, damage):
    _write_cifar(tmp_path)
    path = tmp_path / "data_batch_1"
    if damage == "data a list":
        with open(path, "wb") as handle:
            pickle.dump({"data": [[0] * 3072] * 3, "labels": [0, 1, 2]}, handle)
    else:
        raw = path.read_bytes()
        path.write_bytes(raw[:len(raw) // 2] if damage == "truncated" else b"")
    with pytest.raises(DataFileError, match=r"data_batch_1: expected a pickled dict"):
        load_cifar10(str(tmp_path))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("keys", ["str", "bytes"])
@pytest.mark.parametrize("labels_as", ["list", "array"])
def test_cifar10_python3_pickles_any_protocol(tmp_path, protocol, keys, labels_as):
    """Batches pickled by Python 3 (str keys, protocols 2 to 5) load like the originals."""
    reference = _write_cifar(tmp_path)
    expected = load_cifar10(str(tmp_path))
    for name, batch in reference.items():
        labels = batch[b"labels"] if labels_as == "list" else np.array(batch[b"labels"])
        content = {"data": batch[b"data"], "labels": labels, "batch_label": "x"}
        if keys == "bytes":
            content = {k.encode(): v for k, v in content.items()}
        with open(tmp_path / name, "wb") as handle:
            pickle.dump(content, handle, protocol=protocol)
    data = load_cifar10(str(tmp_path))
    np.testing.assert_array_equal(data.x_train, expected.x_train)
    np.testing.assert_array_equal(data.y_test, expected.y_test)
    assert data.y_train.dtype == np.int64


def test_cifar10_missing_labels_key_is_named(tmp_path):
    _write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as handle:
        pickle.dump({"data": np.zeros((3, 3072), np.uint8), "fine_labels": [0, 1, 2]}, handle)
    with pytest.raises(DataFileError, match=r"test_batch: expected .*received \['data', "
                                            r"'fine_labels'\]"):
        load_cifar10(str(tmp_path))


def test_loaders_accept_path_objects_and_name_bad_arguments(tmp_path):
    _write_mnist(tmp_path, gz=True)
    assert load_mnist(tmp_path).x_train.shape == (6, 1, 5, 7)  # a pathlib.Path works
    assert read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz").shape == (4,)
    with pytest.raises(TypeError, match=r"data_dir must be a str or os\.PathLike path; "
                                        r"received int"):
        load_dataset("mnist", 3)
    with pytest.raises(TypeError, match="dtype must be float32 or float64; received None"):
        load_mnist(tmp_path, dtype=None)
    with pytest.raises(ValueError, match=r"test_fraction must be a number in \(0, 1\); "
                                         r"received '0\.25'"):
        load_digits(test_fraction="0.25")
    with pytest.raises(TypeError, match=r"seed must be a non-negative int; received -1"):
        load_digits(seed=-1)
    with pytest.raises(ValueError, match=r"dataset must be one of .*received \['mnist'\]"):
        load_dataset(["mnist"])
