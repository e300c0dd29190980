"""Data sets read from their standard formats, written here in small files."""

import gzip
import pickle
import tarfile

import numpy as np
import pytest
import torch

from formulac.train import data as D
from formulac.train.data import DatasetNotFound, TrainError, load_dataset, read_idx, write_idx


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No real data set, cache or download is ever reached from these tests."""
    monkeypatch.delenv("FORMULAC_DATA", raising=False)
    monkeypatch.setenv("FORMULAC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(D, "SYSTEM_DIRS", {"fashion-mnist": [tmp_path / "system"]})
    monkeypatch.setattr(D, "DOWNLOAD_URLS", {k: "file:///nonexistent/" + k for k in D.DOWNLOAD_URLS})


def _idx_set(rng, n_train=12, n_test=5, h=28, w=28):
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, h, w), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, (n_train,), dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, h, w), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, (n_test,), dtype=np.uint8),
    }


def _write_idx_set(d, arrays, gz=(True, False, True, False)):
    d.mkdir(parents=True, exist_ok=True)
    for (name, arr), z in zip(arrays.items(), gz):
        write_idx(d / (name + (".gz" if z else "")), arr)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, dtype, gz):
    a = (np.arange(2 * 3 * 4) - 7).reshape(2, 3, 4)
    a = (a % 256).astype(dtype) if dtype == np.uint8 else a.astype(dtype)
    p = write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), a)
    raw = p.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == gz
    back = read_idx(p)
    assert back.dtype == a.dtype and back.shape == a.shape
    np.testing.assert_array_equal(back, a)


def test_idx_header_by_hand(tmp_path):
    # magic 0x00000801 (uint8, 1 dimension), length 3, data: the standard label file layout
    p = tmp_path / "labels"
    p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 1, 9]))
    np.testing.assert_array_equal(read_idx(p), [7, 1, 9])
    # gzip recognised by content, whatever the name
    q = tmp_path / "labels-no-suffix"
    q.write_bytes(gzip.compress(p.read_bytes()))
    np.testing.assert_array_equal(read_idx(q), [7, 1, 9])


def test_idx_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(TrainError, match="bad magic"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))
    with pytest.raises(TrainError, match="expected 5"):
        read_idx(short)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 1, 4]))[:-6])
    with pytest.raises(TrainError):
        read_idx(broken)


@pytest.mark.parametrize("name", ["mnist", "kmnist", "fashion-mnist"])
def test_idx_dataset_from_data_dir(tmp_path, name):
    arrays = _idx_set(np.random.default_rng(1))
    _write_idx_set(tmp_path / "d", arrays)
    ds = load_dataset(name, tmp_path / "d")
    assert ds.train_images.dtype == torch.uint8 and ds.train_images.shape == (12, 1, 28, 28)
    assert ds.test_labels.dtype == torch.int64 and ds.test_labels.shape == (5,)
    assert ds.num_classes == 10 and ds.in_channels == 1 and ds.input_size == 28
    assert len(ds.mean) == len(ds.std) == 1
    np.testing.assert_array_equal(ds.train_images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test_labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.source == str(tmp_path / "d")


def test_idx_layouts_and_lookup_order(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    # $FORMULAC_DATA/<name>
    _write_idx_set(tmp_path / "env" / "mnist", _idx_set(rng, n_train=3))
    monkeypatch.setenv("FORMULAC_DATA", str(tmp_path / "env"))
    assert load_dataset("mnist").train_images.shape[0] == 3
    # --data-dir wins over $FORMULAC_DATA; torchvision's layout DIR/MNIST/raw is understood
    _write_idx_set(tmp_path / "tv" / "MNIST" / "raw", _idx_set(rng, n_train=4), gz=(False,) * 4)
    assert load_dataset("mnist", tmp_path / "tv").train_images.shape[0] == 4
    # DIR/<name> under --data-dir, and the original dotted names (train-images.idx3-ubyte)
    d = tmp_path / "parent" / "kmnist"
    d.mkdir(parents=True)
    for name, arr in _idx_set(rng, n_train=6).items():
        write_idx(d / name.replace("-idx", ".idx"), arr)
    assert load_dataset("kmnist", tmp_path / "parent").train_images.shape[0] == 6


def test_fashion_mnist_system_dir(tmp_path):
    # the Debian package's directory (dataset-fashion-mnist: the four .gz files)
    _write_idx_set(tmp_path / "system", _idx_set(np.random.default_rng(3), n_train=7), gz=(True,) * 4)
    ds = load_dataset()  # fashion-mnist is the default
    assert ds.name == "fashion-mnist" and ds.train_images.shape[0] == 7
    assert ds.classes[0] == "T-shirt/top"
    assert ds.source == str(tmp_path / "system")


def test_not_found_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("FORMULAC_DATA", str(tmp_path / "env"))
    (tmp_path / "mine").mkdir()  # a --data-dir that exists but holds no data set
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetNotFound) as e:
        load_dataset("fashion-mnist", tmp_path / "mine")
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    for place in (
        tmp_path / "mine",
        tmp_path / "env" / "fashion-mnist",
        tmp_path / "system",
        tmp_path / "cache",
    ):
        assert str(place) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg
    with pytest.raises(DatasetNotFound, match="cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path / "nothing")
    # only three of the four files: still not found
    arrays = _idx_set(np.random.default_rng(4))
    arrays.pop("t10k-labels-idx1-ubyte")
    _write_idx_set(tmp_path / "partial", arrays)
    with pytest.raises(DatasetNotFound):
        load_dataset("mnist", tmp_path / "partial")


def test_unknown_dataset():
    with pytest.raises(TrainError, match="unknown data set"):
        load_dataset("svhn")


def test_download_into_cache(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    arrays = _idx_set(np.random.default_rng(5), n_train=9)
    _write_idx_set(src, arrays, gz=(True,) * 4)
    monkeypatch.setitem(D.DOWNLOAD_URLS, "mnist", src.as_uri() + "/")
    with pytest.raises(DatasetNotFound, match="--download"):
        load_dataset("mnist")  # no download unless asked
    ds = load_dataset("mnist", download=True)
    assert ds.train_images.shape[0] == 9
    assert (tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    assert not list((tmp_path / "cache" / "mnist").glob("*.part*"))
    # the cache is looked in afterwards, without downloading
    monkeypatch.setitem(D.DOWNLOAD_URLS, "mnist", "file:///nonexistent/")
    assert load_dataset("mnist").train_images.shape[0] == 9


def test_failed_download_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetNotFound) as e:
        load_dataset("kmnist", download=True)
    msg = str(e.value)
    assert "download failed" in msg and "file:///nonexistent/kmnist" in msg
    assert "--data-dir" in msg
    assert not list((tmp_path / "cache").rglob("*.part*"))


# ---------------------------------------------------------------------------------------------
# CIFAR


def _cifar_batch(rng, n, key=b"labels", classes=10):
    return {
        b"batch_label": b"x",
        key: [int(v) for v in rng.integers(0, classes, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"f%d.png" % i for i in range(n)],
    }


def _write_cifar10(d, rng, n=4):
    d.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i}": _cifar_batch(rng, n) for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(rng, 3)
    for name, b in batches.items():
        (d / name).write_bytes(pickle.dumps(b, protocol=2))
    meta = {
        b"label_names": [
            b"airplane",
            b"automobile",
            b"bird",
            b"cat",
            b"deer",
            b"dog",
            b"frog",
            b"horse",
            b"ship",
            b"truck",
        ],
        b"num_vis": 3072,
    }
    (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return batches


def test_cifar10_batches(tmp_path):
    batches = _write_cifar10(tmp_path / "cifar-10-batches-py", np.random.default_rng(6))
    ds = load_dataset("cifar10", tmp_path)  # DIR holding cifar-10-batches-py/
    assert ds.train_images.shape == (20, 3, 32, 32) and ds.test_images.shape == (3, 3, 32, 32)
    assert ds.num_classes == 10 and ds.classes[0] == "airplane" and ds.in_channels == 3
    first = batches["data_batch_1"][b"data"][0].reshape(3, 32, 32)
    np.testing.assert_array_equal(ds.train_images[0].numpy(), first)
    # row-major planes: the first 1024 bytes are the red channel
    np.testing.assert_array_equal(
        ds.train_images[0, 0].numpy().reshape(-1), batches["data_batch_1"][b"data"][0][:1024]
    )
    assert ds.train_labels[:4].tolist() == batches["data_batch_1"][b"labels"]
    assert ds.mean == D._STATS["cifar10"][0]


def test_cifar10_from_archive(tmp_path):
    rng = np.random.default_rng(7)
    src = tmp_path / "src" / "cifar-10-batches-py"
    _write_cifar10(src, rng)
    archive = tmp_path / "dl" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    ds = load_dataset("cifar10", tmp_path / "dl")
    assert ds.train_images.shape[0] == 20 and ds.source == str(archive)


def test_cifar10_download(tmp_path, monkeypatch):
    src = tmp_path / "src" / "cifar-10-batches-py"
    _write_cifar10(src, np.random.default_rng(11))
    archive = tmp_path / "mirror.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    monkeypatch.setitem(D.DOWNLOAD_URLS, "cifar10", archive.as_uri())
    ds = load_dataset("cifar10", download=True)
    assert ds.train_images.shape[0] == 20
    assert (tmp_path / "cache" / "cifar10" / "cifar-10-python.tar.gz").is_file()


def test_cifar100(tmp_path):
    rng = np.random.default_rng(8)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    train = _cifar_batch(rng, 6, key=b"fine_labels", classes=100)
    train[b"coarse_labels"] = [0] * 6
    test = _cifar_batch(rng, 2, key=b"fine_labels", classes=100)
    (d / "train").write_bytes(pickle.dumps(train, protocol=2))
    (d / "test").write_bytes(pickle.dumps(test, protocol=2))
    ds = load_dataset("cifar100", tmp_path)
    assert ds.num_classes == 100 and ds.train_labels.tolist() == train[b"fine_labels"]


def test_cifar_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    with pytest.raises(TrainError, match="refusing|not a CIFAR"):
        D.read_cifar_batch(pickle.dumps({"data": Evil()}))


def test_cifar_bad_shape(tmp_path):
    b = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    with pytest.raises(TrainError, match="3072"):
        D.read_cifar_batch(pickle.dumps(b, protocol=2))


# ---------------------------------------------------------------------------------------------
# image folders, synthetic, limits


def test_imagefolder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(9)
    for split, n in (("train", 3), ("val", 1)):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = load_dataset("imagefolder", tmp_path, image_size=16)
    assert ds.train_images.shape == (6, 3, 16, 16) and ds.test_images.shape == (2, 3, 16, 16)
    assert ds.classes == ("cat", "dog") and ds.train_labels.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(DatasetNotFound, match="--data-dir"):
        load_dataset("imagefolder")


def test_synthetic_is_fixed_by_seed():
    assert D.parse_synthetic("synthetic") == ((3, 32, 32), 10)  # CIFAR-shaped
    b = D.synthetic_dataset(train=100, test=20)
    assert b.train_images.shape == (100, 3, 32, 32) and b.num_classes == 10
    assert b.test_images.shape == (20, 3, 32, 32) and b.in_channels == 3
    assert torch.equal(D.synthetic_dataset(train=100, test=20).test_labels, b.test_labels)
    c = D.synthetic_dataset(train=100, test=20, seed=1)
    assert not torch.equal(b.train_images, c.train_images)
    assert set(b.train_labels.tolist()) == set(range(10))
    small = load_dataset("synthetic:1x12x10:3", limit_train=40, limit_test=7)
    assert small.train_images.shape == (40, 1, 12, 10) and small.num_classes == 3
    assert small.test_images.shape[0] == 7
    assert set(small.train_labels.tolist()) <= {0, 1, 2}
    with pytest.raises(TrainError, match="synthetic:CxHxW"):
        load_dataset("synthetic:3x32")


def test_limit_and_validation():
    ds = D.synthetic_dataset((1, 8, 8), 4, train=30, test=10)
    assert ds.limit(5, 3).train_images.shape[0] == 5
    assert ds.limit(None, None) is ds
    with pytest.raises(TrainError):
        ds.limit(0)
    with pytest.raises(TrainError, match="uint8"):
        D.Dataset(
            "x", ds.train_images.float(), ds.train_labels, ds.test_images, ds.test_labels, 4, (0.5,), (0.5,)
        )
    d = ds.describe()
    assert d["train"] == 30 and d["image_shape"] == [1, 8, 8]


def test_image_stats():
    x = torch.full((4, 2, 3, 3), 51, dtype=torch.uint8)
    x[:, 1] = torch.tensor([0, 255] * 18, dtype=torch.uint8).view(4, 3, 3)
    mean, std = D.image_stats(x, chunk=3)
    assert mean[0] == pytest.approx(0.2) and std[0] == pytest.approx(1e-3)
    assert mean[1] == pytest.approx(0.5) and std[1] == pytest.approx(0.5)


def test_stored_file_is_read_with_gzip_and_plain_mixed(tmp_path):
    # what a user gets after gunzipping only some of the files
    arrays = _idx_set(np.random.default_rng(10))
    _write_idx_set(tmp_path, arrays, gz=(False, True, True, False))
    assert load_dataset("mnist", tmp_path).train_images.shape[0] == 12


def test_imagefolder_without_pillow_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now fails
    with pytest.raises(TrainError, match="pip install pillow"):
        load_dataset("imagefolder", tmp_path)


def test_validation_split_is_stratified_fixed_and_disjoint():
    from formulac.train.data import synthetic_dataset

    ds = synthetic_dataset((1, 6, 6), 5, train=503, test=50)
    counts = torch.bincount(ds.train_labels, minlength=5)
    a = ds.split_validation(0.2, seed=3)
    b = ds.split_validation(0.2, seed=3)
    c = ds.split_validation(0.2, seed=4)
    assert torch.equal(a.test_images, b.test_images) and torch.equal(a.train_labels, b.train_labels)
    assert not torch.equal(a.test_images, c.test_images)
    # per class round(0.2 * n_class) held out
    held = torch.bincount(a.test_labels, minlength=5)
    assert held.tolist() == [int(0.2 * n + 0.5) for n in counts.tolist()]
    assert a.train_images.shape[0] + a.test_images.shape[0] == 503

    # the two parts together are exactly the training set (no test example enters)
    def rows(x):
        return sorted(map(bytes, x.reshape(x.shape[0], -1).numpy()))

    assert rows(torch.cat([a.train_images, a.test_images])) == rows(ds.train_images)
    assert a.extra["validation"] == {"fraction": 0.2, "split_seed": 3, "examples": int(held.sum())}
    assert a.describe()["validation"]["examples"] == a.test_images.shape[0]
    tiny = synthetic_dataset((1, 4, 4), 2, train=4, test=2)
    with pytest.raises(TrainError, match="no validation examples"):
        tiny.split_validation(0.1, seed=0)
    with pytest.raises(TrainError, match="no training examples"):
        tiny.split_validation(0.9, seed=0)


@pytest.mark.parametrize("name", ["fashion-mnist", "synthetic"])
def test_a_data_dir_that_does_not_exist_is_an_error(tmp_path, name):
    # the data set is found elsewhere (the system dir): a typo must not fall back to it silently
    system = tmp_path / "system"
    system.mkdir()
    for part, arr in _idx_set(np.random.default_rng(0)).items():
        write_idx(system / part, arr)
    assert load_dataset("fashion-mnist").train_images.shape[0] == 12
    with pytest.raises(DatasetNotFound, match="--data-dir .*typo does not exist"):
        load_dataset(name, tmp_path / "typo")
    (tmp_path / "file").write_text("")
    with pytest.raises(DatasetNotFound, match="is not a directory"):
        load_dataset(name, tmp_path / "file")
