"""Datasets read from their standard files with torch and numpy alone.

Every loader returns a :class:`Dataset`: uint8 images in NCHW layout, int64 labels, the number of
classes and the normalisation statistics.  Supported names (see :data:`DATASETS`):

``fashion-mnist`` (default), ``mnist``, ``kmnist``
    IDX files ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
    ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]`` (gzipped or plain).
``cifar10``, ``cifar100``
    The python pickle batches (``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``;
    ``cifar-100-python/train`` and ``test``), unpacked or still inside the ``.tar.gz``.
``imagefolder``
    ``DIR/train/<class>/*.jpg|png`` and ``DIR/val/<class>/...`` (or ``test``), decoded with PIL,
    resized (shorter side) and centre-cropped to ``image_size`` and held in memory.
``synthetic`` or ``synthetic:CxHxW[:K]``
    A small learnable data set made from the seed (3x32x32 and 10 classes by default).

Files are looked up, in order, in ``data_dir``, ``$FORMULAC_DATA/<name>``, the system directory
(``/usr/share/datasets/fashion-mnist`` from Debian's ``dataset-fashion-mnist``) and the download
cache (``~/.cache/formulac/<name>``).  With ``download=True`` a missing data set is fetched into
the cache.  When nothing is found, :class:`DatasetNotFound` names every place looked in.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import re
import shutil
import tarfile
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_write
from .errors import DatasetNotFound, TrainError

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetNotFound",
    "TrainError",
    "default_cache_dir",
    "load_dataset",
    "read_cifar_batch",
    "read_idx",
    "synthetic_dataset",
    "write_idx",
]


DATASETS = ("fashion-mnist", "mnist", "kmnist", "cifar10", "cifar100", "imagefolder", "synthetic")

SYSTEM_DIRS = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}

# Known normalisation statistics of the training sets (mean, std per channel, in [0, 1] units).
_STATS = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "kmnist": ((0.1918,), (0.3483,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

_CLASSES = {
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "mnist": tuple(str(i) for i in range(10)),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}

# Download sources (base URLs for IDX files; archive URLs for CIFAR).  Tests point these at
# file:// URLs; nothing is downloaded unless ``download=True``.
DOWNLOAD_URLS = {
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "kmnist": "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}

_TORCHVISION_DIRS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST", "kmnist": "KMNIST"}
_CIFAR_SUBDIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_CIFAR_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
_IDX_PARTS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_HOW_TO_GET = {
    "fashion-mnist": "install Debian's package (apt-get install dataset-fashion-mnist), "
    "or pass --data-dir DIR holding the four IDX files, or pass --download",
    "mnist": "pass --data-dir DIR holding the four IDX files (train-images-idx3-ubyte.gz, ...), "
    "or pass --download",
    "kmnist": "pass --data-dir DIR holding the four IDX files (train-images-idx3-ubyte.gz, ...), "
    "or pass --download",
    "cifar10": "pass --data-dir DIR holding cifar-10-batches-py/ (or cifar-10-python.tar.gz), "
    "or pass --download",
    "cifar100": "pass --data-dir DIR holding cifar-100-python/ (or cifar-100-python.tar.gz), "
    "or pass --download",
    "imagefolder": "pass --data-dir DIR with DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg",
}


@dataclass
class Dataset:
    """A classification data set held in memory.

    ``train_images``/``test_images`` are uint8 tensors of shape (N, C, H, W); the labels are
    int64 tensors of shape (N,).  ``mean``/``std`` are per-channel statistics in [0, 1] units.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def input_size(self) -> int:
        return int(self.train_images.shape[2])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.train_images.shape[1:])  # type: ignore[return-value]

    def limit(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first ``train`` training and ``test`` test examples (None keeps all)."""
        out = self
        if train is not None:
            if train < 1:
                raise TrainError(f"--limit-train must be at least 1, not {train}")
            out = replace(out, train_images=out.train_images[:train], train_labels=out.train_labels[:train])
        if test is not None:
            if test < 1:
                raise TrainError(f"--limit-test must be at least 1, not {test}")
            out = replace(out, test_images=out.test_images[:test], test_labels=out.test_labels[:test])
        return out

    def split_validation(self, fraction: float, seed: int) -> Dataset:
        """Hold out ``fraction`` of the TRAINING examples, stratified by class: the result
        trains on the rest and its test part is the held-out validation set.

        The split depends on ``seed`` and the training labels alone: each class's examples
        are put in an order drawn from ``seed`` and the first ``round(fraction * n_class)``
        of them are held out.  ``extra["validation"]`` records the fraction, the seed and the
        size; the real test set is not part of the result."""
        if not 0 < fraction < 1:
            raise TrainError(f"--val-fraction must be in [0, 1), not {fraction}")
        labels = self.train_labels
        n = labels.shape[0]
        g = torch.Generator().manual_seed(int(seed))
        shuffled = torch.randperm(n, generator=g)
        by_class = shuffled[torch.sort(labels[shuffled], stable=True).indices]
        counts = torch.bincount(labels, minlength=1).tolist()
        held: list[torch.Tensor] = []
        start = 0
        for count in counts:
            take = math.floor(fraction * count + 0.5)
            held.append(by_class[start : start + take])
            start += count
        val = torch.sort(torch.cat(held)).values
        if val.numel() == 0 or val.numel() == n:
            raise TrainError(
                f"--val-fraction {fraction} of {n} training examples leaves "
                + ("no validation examples" if val.numel() == 0 else "no training examples")
            )
        keep = torch.ones(n, dtype=torch.bool)
        keep[val] = False
        info = {"fraction": fraction, "split_seed": int(seed), "examples": int(val.numel())}
        return replace(
            self,
            train_images=self.train_images[keep],
            train_labels=labels[keep],
            test_images=self.train_images[val],
            test_labels=labels[val],
            extra={**self.extra, "validation": info},
        )

    def describe(self) -> dict:
        return {
            "name": self.name,
            "train": int(self.train_images.shape[0]),
            "test": int(self.test_images.shape[0]),
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "mean": list(self.mean),
            "std": list(self.std),
            "source": self.source,
            **({"validation": self.extra["validation"]} if "validation" in self.extra else {}),
        }

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            images = getattr(self, f"{part}_images")
            labels = getattr(self, f"{part}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise TrainError(
                    f"{self.name}: {part} images must be uint8 NCHW, got {images.dtype} {tuple(images.shape)}"
                )
            if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
                raise TrainError(
                    f"{self.name}: {part} labels must be int64 of shape "
                    f"({images.shape[0]},), got {labels.dtype} "
                    f"{tuple(labels.shape)}"
                )
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise TrainError(f"{self.name}: train and test images differ in shape")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise TrainError(f"{self.name}: mean/std must have one value per channel")


# --------------------------------------------------------------------------------------------
# places


def default_cache_dir() -> Path:
    """``$FORMULAC_CACHE``, else ``$XDG_CACHE_HOME/formulac``, else ``~/.cache/formulac``."""
    if os.environ.get("FORMULAC_CACHE"):
        return Path(os.environ["FORMULAC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "formulac"


def _search_roots(
    name: str, data_dir: str | os.PathLike | None, cache_dir: str | os.PathLike | None
) -> list[Path]:
    roots: list[Path] = []
    if data_dir is not None:
        roots.append(Path(data_dir).expanduser())
    if os.environ.get("FORMULAC_DATA"):
        roots.append(Path(os.environ["FORMULAC_DATA"]).expanduser() / name)
    roots.extend(SYSTEM_DIRS.get(name, []))
    roots.append(Path(cache_dir) if cache_dir is not None else default_cache_dir() / name)
    return roots


def _not_found(name: str, looked: Sequence[str], extra: str = "") -> DatasetNotFound:
    places = "\n".join(f"  {p}" for p in looked) or "  (nowhere)"
    msg = (
        f"data set '{name}' not found; looked in:\n{places}\n"
        f"to get it: {_HOW_TO_GET.get(name, 'pass --data-dir DIR')}"
    )
    if extra:
        msg += f"\n{extra}"
    return DatasetNotFound(msg)


# --------------------------------------------------------------------------------------------
# IDX

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _open_maybe_gzip(path: Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise TrainError(f"{path}: broken gzip file ({e})") from None
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or plain, recognised by content) into a numpy array."""
    path = Path(path)
    raw = _open_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise TrainError(f"{path}: not an IDX file (bad magic number)")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise TrainError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count = math.prod(dims)
    if len(raw) - header != count * dtype.itemsize:
        raise TrainError(
            f"{path}: IDX file holds {len(raw) - header} data bytes, "
            f"expected {count * dtype.itemsize} for shape {dims}"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``compress`` or the name ends in .gz)."""
    path = Path(path)
    array = np.asarray(array)
    codes = {
        np.dtype(np.uint8): 0x08,
        np.dtype(np.int8): 0x09,
        np.dtype(np.int16): 0x0B,
        np.dtype(np.int32): 0x0C,
        np.dtype(np.float32): 0x0D,
        np.dtype(np.float64): 0x0E,
    }
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise TypeError(f"IDX cannot hold {array.dtype}")
    head = bytes([0, 0, codes[native], array.ndim])
    head += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    body = array.astype(native.newbyteorder(">"), copy=False).tobytes()
    data = head + body
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        data = gzip.compress(data, compresslevel=1)
    path.write_bytes(data)
    return path


def _find_idx(d: Path, part: str) -> Path | None:
    alt = part.replace("-idx", ".idx")
    for stem in (part, alt):
        for suffix in (".gz", ""):
            p = d / (stem + suffix)
            if p.is_file():
                return p
    return None


def _idx_dirs(name: str, root: Path) -> list[Path]:
    dirs = [root, root / name]
    if name in _TORCHVISION_DIRS:
        dirs.append(root / _TORCHVISION_DIRS[name] / "raw")
    return dirs


def _load_idx_dataset(name: str, roots: list[Path]) -> Dataset | None:
    for root in roots:
        for d in _idx_dirs(name, root):
            files = [_find_idx(d, part) for part in _IDX_PARTS]
            if all(files):
                xtr, ytr, xte, yte = (read_idx(f) for f in files)  # type: ignore[arg-type]
                return _from_arrays(name, xtr, ytr, xte, yte, source=str(d))
    return None


def _from_arrays(name, xtr, ytr, xte, yte, source) -> Dataset:
    def images(x, what):
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.dtype != np.uint8:
            raise TrainError(
                f"{name}: {what} images have shape {x.shape} and type {x.dtype}, expected uint8 (N, H, W)"
            )
        return torch.from_numpy(np.ascontiguousarray(x))

    def labels(y, n, what):
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if y.shape[0] != n:
            raise TrainError(f"{name}: {y.shape[0]} {what} labels for {n} images")
        return torch.from_numpy(y)

    train_x, test_x = images(xtr, "training"), images(xte, "test")
    train_y = labels(ytr, train_x.shape[0], "training")
    test_y = labels(yte, test_x.shape[0], "test")
    num_classes = _num_classes(name, train_y, test_y)
    mean, std = _STATS.get(name) or image_stats(train_x)
    return Dataset(
        name,
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes,
        tuple(mean),
        tuple(std),
        classes=_CLASSES.get(name),
        source=source,
    )


def _num_classes(name: str, *labels: torch.Tensor) -> int:
    lo = min(int(y.min()) for y in labels if y.numel())
    hi = max(int(y.max()) for y in labels if y.numel())
    if lo < 0:
        raise TrainError(f"{name}: negative class label {lo}")
    known = {"fashion-mnist": 10, "mnist": 10, "kmnist": 10, "cifar10": 10, "cifar100": 100}
    return max(known.get(name, 0), hi + 1)


def image_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 NCHW images, in [0, 1] units (float64, chunked)."""
    c = images.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    n = 0
    for i in range(0, images.shape[0], chunk):
        x = images[i : i + chunk].to(torch.float64) / 255.0
        s += x.sum(dim=(0, 2, 3))
        s2 += (x * x).sum(dim=(0, 2, 3))
        n += x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / max(n, 1)
    var = (s2 / max(n, 1) - mean * mean).clamp_min(1e-12)
    return (tuple(round(float(v), 6) for v in mean), tuple(round(max(float(v), 1e-3), 6) for v in var.sqrt()))


# --------------------------------------------------------------------------------------------
# CIFAR


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that builds numpy arrays and plain containers, and nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("copy_reg", "_reconstructor"),
        ("copyreg", "_reconstructor"),
        ("__builtin__", "object"),
        ("builtins", "object"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def _unpickle(raw: bytes, what: str) -> dict:
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:
        raise TrainError(f"{what}: not a CIFAR python pickle ({e})") from None
    if not isinstance(obj, dict):
        raise TrainError(f"{what}: not a CIFAR python pickle (no dict inside)")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def read_cifar_batch(
    source: str | os.PathLike | bytes, what: str | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read one CIFAR python batch: (uint8 images N x 3 x 32 x 32, int64 labels, the dict)."""
    if isinstance(source, bytes):
        raw, what = source, what or "CIFAR batch"
    else:
        raw, what = Path(source).read_bytes(), what or str(source)
    d = _unpickle(raw, what)
    if "data" not in d:
        raise TrainError(f"{what}: CIFAR batch without 'data'")
    labels = d.get("labels", d.get("fine_labels"))
    if labels is None:
        raise TrainError(f"{what}: CIFAR batch without 'labels' or 'fine_labels'")
    data = np.asarray(d["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise TrainError(
            f"{what}: CIFAR data of shape {data.shape} and type {data.dtype}, expected uint8 (N, 3072)"
        )
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.shape[0] != data.shape[0]:
        raise TrainError(f"{what}: {labels.shape[0]} labels for {data.shape[0]} images")
    return data.reshape(-1, 3, 32, 32), labels, d


def _cifar_names(name: str) -> tuple[list[str], list[str], str]:
    if name == "cifar10":
        return [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta"
    return ["train"], ["test"], "meta"


def _load_cifar(name: str, roots: list[Path]) -> Dataset | None:
    sub = _CIFAR_SUBDIRS[name]
    train_names, test_names, meta_name = _cifar_names(name)
    for root in roots:
        for d in (root, root / sub, root / name / sub):
            if all((d / n).is_file() for n in train_names + test_names):
                read = {n: (d / n).read_bytes() for n in train_names + test_names}
                meta = (d / meta_name).read_bytes() if (d / meta_name).is_file() else None
                return _cifar_from_bytes(name, read, meta, train_names, test_names, str(d))
        for d in (root, root / name):
            archive = d / _CIFAR_ARCHIVES[name]
            if archive.is_file():
                return _load_cifar_archive(name, archive)
    return None


def _load_cifar_archive(name: str, archive: Path) -> Dataset:
    sub = _CIFAR_SUBDIRS[name]
    train_names, test_names, meta_name = _cifar_names(name)
    read: dict[str, bytes] = {}
    meta = None
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                base = member.name.rsplit("/", 1)[-1]
                if not member.isfile() or not member.name.startswith(sub + "/"):
                    continue
                if base in train_names + test_names or base == meta_name:
                    f = tar.extractfile(member)
                    assert f is not None
                    data = f.read()
                    if base == meta_name:
                        meta = data
                    else:
                        read[base] = data
    except (tarfile.TarError, OSError, EOFError) as e:
        raise TrainError(f"{archive}: broken archive ({e})") from None
    missing = [n for n in train_names + test_names if n not in read]
    if missing:
        raise TrainError(f"{archive}: archive lacks {sub}/{missing[0]}")
    return _cifar_from_bytes(name, read, meta, train_names, test_names, str(archive))


def _cifar_from_bytes(name, read, meta, train_names, test_names, source) -> Dataset:
    def cat(names):
        parts = [read_cifar_batch(read[n], what=f"{source}/{n}")[:2] for n in names]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    xtr, ytr = cat(train_names)
    xte, yte = cat(test_names)
    ds = _from_arrays(name, xtr, ytr, xte, yte, source=source)
    if meta is not None:
        try:
            m = _unpickle(meta, f"{source}/meta")
            names = m.get("label_names", m.get("fine_label_names"))
            if names is not None and len(names) == ds.num_classes:
                ds.classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
        except TrainError:
            pass
    return ds


# --------------------------------------------------------------------------------------------
# image folders

_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif", ".tif", ".tiff"}


def _load_imagefolder(roots: list[Path], image_size: int, workers: int) -> Dataset | None:
    for root in roots:
        test_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
        if (root / "train").is_dir() and test_dir is not None:
            return _read_imagefolder(root, root / "train", test_dir, image_size, workers)
    return None


def _read_imagefolder(root: Path, train_dir: Path, test_dir: Path, image_size: int, workers: int) -> Dataset:
    try:
        from PIL import Image  # noqa: F401
    except ImportError:
        raise TrainError(
            "the imagefolder data set needs Pillow to decode images: pip install pillow"
        ) from None
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise TrainError(f"{train_dir}: no class folders")
    index = {c: i for i, c in enumerate(classes)}

    def listing(d: Path) -> list[tuple[Path, int]]:
        items = []
        for c in sorted(p.name for p in d.iterdir() if p.is_dir()):
            if c not in index:
                raise TrainError(f"{d / c}: class '{c}' has no folder under {train_dir}")
            for f in sorted((d / c).iterdir()):
                if f.suffix.lower() in _IMAGE_EXT and f.is_file():
                    items.append((f, index[c]))
        if not items:
            raise TrainError(f"{d}: no images (.jpg, .png, ...) in its class folders")
        return items

    def decode(items):
        n = len(items)
        out = torch.empty((n, 3, image_size, image_size), dtype=torch.uint8)
        labels = torch.tensor([y for _, y in items], dtype=torch.int64)

        def one(i):
            out[i] = _decode_image(items[i][0], image_size)

        with ThreadPoolExecutor(max_workers=workers or min(32, (os.cpu_count() or 1) + 4)) as ex:
            list(ex.map(one, range(n)))
        return out, labels

    xtr, ytr = decode(listing(train_dir))
    xte, yte = decode(listing(test_dir))
    mean, std = image_stats(xtr)
    return Dataset(
        "imagefolder", xtr, ytr, xte, yte, len(classes), mean, std, classes=tuple(classes), source=str(root)
    )


def _decode_image(path: Path, size: int) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except OSError as e:
        raise TrainError(f"{path}: cannot decode image ({e})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


# --------------------------------------------------------------------------------------------
# synthetic


def parse_synthetic(name: str) -> tuple[tuple[int, int, int], int]:
    """``synthetic`` or ``synthetic:CxHxW[:K]`` -> ((C, H, W), K)."""
    m = re.fullmatch(r"synthetic(?::(\d+)x(\d+)x(\d+)(?::(\d+))?)?", name)
    if not m:
        raise TrainError(
            f"bad synthetic data set '{name}': use synthetic or "
            "synthetic:CxHxW[:CLASSES], e.g. synthetic:1x28x28:10"
        )
    if m.group(1) is None:
        return (3, 32, 32), 10
    shape = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    k = int(m.group(4)) if m.group(4) else 10
    if min(shape) < 1 or k < 2 or shape[1] < 4 or shape[2] < 4:
        raise TrainError(f"bad synthetic data set '{name}': need C >= 1, H, W >= 4, CLASSES >= 2")
    return shape, k


def synthetic_dataset(
    shape: tuple[int, int, int] = (3, 32, 32),
    num_classes: int = 10,
    train: int = 5000,
    test: int = 1000,
    seed: int = 0,
    name: str = "synthetic",
    noise: float = 1.0,
) -> Dataset:
    """A learnable data set fixed by ``seed``.

    Each class is a texture (a plane wave of its own orientation and frequency with its own
    colour weights) on a faint class-dependent tint.  An example is its class's texture at a
    random phase and strength, plus a fainter texture of another class and pixel noise of std
    ``noise`` (in units of the signal).  Position carries no information; the tint alone gives
    a little above chance, the texture much more, so a short training improves accuracy well
    above chance but not to 100%.
    """
    c, h, w = shape
    g = torch.Generator().manual_seed(1_000_003 * seed + 12_345)
    k = num_classes
    angle = (torch.arange(k) + 0.5 * torch.rand(k, generator=g)) * (math.pi / k)
    cycles = 1.5 + 0.25 * min(h, w) / 4 * torch.rand(k, generator=g)  # per image side
    colour = torch.randn(k, c, generator=g)
    colour = colour / colour.norm(dim=1, keepdim=True).clamp_min(1e-6) * math.sqrt(c)
    tint = 0.5 * torch.randn(k, c, generator=g)  # a class-dependent mean colour
    v = torch.arange(h, dtype=torch.float32)[:, None] / h
    u = torch.arange(w, dtype=torch.float32)[None, :] / w
    # spatial phase of every class's wave at every pixel: (K, H, W)
    wave = (
        2
        * math.pi
        * cycles[:, None, None]
        * (torch.cos(angle)[:, None, None] * u + torch.sin(angle)[:, None, None] * v)
    )

    sin_w, cos_w = torch.sin(wave), torch.cos(wave)

    def texture(cls: torch.Tensor, phase: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        # sin(wave + phase) = sin(wave) cos(phase) + cos(wave) sin(phase), times the strength
        a = (scale * torch.cos(phase))[:, None, None]
        b = (scale * torch.sin(phase))[:, None, None]
        s = sin_w[cls] * a
        s.addcmul_(cos_w[cls], b)  # (N, H, W)
        return s[:, None] * colour[cls][:, :, None, None]  # (N, C, H, W)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, k, (n,), generator=g)
        other = (y + torch.randint(1, k, (n,), generator=g)) % k
        amp = 0.6 + 0.8 * torch.rand(n, generator=g)
        mix = 0.6 * torch.rand(n, generator=g)
        x = texture(y, 2 * math.pi * torch.rand(n, generator=g), amp)
        x += texture(other, 2 * math.pi * torch.rand(n, generator=g), mix)
        x += tint[y][:, :, None, None]
        x.add_(torch.randn(x.shape, generator=g), alpha=noise)
        img = x.mul_(40).add_(128).round_().clamp_(0, 255).to(torch.uint8).contiguous()
        return img, y.to(torch.int64)

    xtr, ytr = make(train)
    xte, yte = make(test)
    mean, std = image_stats(xtr)
    return Dataset(
        name,
        xtr,
        ytr,
        xte,
        yte,
        num_classes,
        mean,
        std,
        classes=tuple(f"class{i}" for i in range(num_classes)),
        source=f"synthetic(seed={seed})",
    )


# --------------------------------------------------------------------------------------------
# downloads


def _download(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)

    def copy(f) -> None:
        with urllib.request.urlopen(url, timeout=60) as r:
            shutil.copyfileobj(r, f, 1 << 20)

    try:
        atomic_write(dest, copy)
    except Exception as e:
        raise OSError(f"{url}: {e}") from None


def _fetch(name: str, target: Path) -> None:
    base = DOWNLOAD_URLS[name]
    if name in _CIFAR_ARCHIVES:
        _download(base, target / _CIFAR_ARCHIVES[name])
    else:
        for part in _IDX_PARTS:
            if _find_idx(target, part) is None:
                _download(base.rstrip("/") + "/" + part + ".gz", target / (part + ".gz"))


# --------------------------------------------------------------------------------------------
# entry point


def load_dataset(
    name: str = "fashion-mnist",
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    image_size: int | None = None,
    workers: int = 0,
    seed: int = 0,
) -> Dataset:
    """Load the data set ``name`` (see :data:`DATASETS`) from its standard files.

    Raises :class:`DatasetNotFound` (a ``ValueError``) naming every place looked in, and
    :class:`TrainError` for files in a wrong format.  ``seed`` only matters for ``synthetic``.
    """
    name = name.strip().lower()
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        # a typo must not fall back to the other places silently (and be recorded as given)
        what = "does not exist" if not Path(data_dir).expanduser().exists() else "is not a directory"
        raise DatasetNotFound(f"--data-dir {data_dir} {what}")
    if name.startswith("synthetic"):
        shape, k = parse_synthetic(name)
        ds = synthetic_dataset(shape, k, seed=seed, name=name)
        return ds.limit(limit_train, limit_test)
    aliases = {
        "fashion_mnist": "fashion-mnist",
        "fashionmnist": "fashion-mnist",
        "cifar-10": "cifar10",
        "cifar-100": "cifar100",
        "image-folder": "imagefolder",
    }
    name = aliases.get(name, name)
    if name not in DATASETS:
        raise TrainError(
            f"unknown data set '{name}'; choose one of: {', '.join(DATASETS)}, synthetic:CxHxW[:CLASSES]"
        )
    if name == "imagefolder":
        if data_dir is None and not os.environ.get("FORMULAC_DATA"):
            raise _not_found(name, [], "the imagefolder data set needs --data-dir")
        roots = _search_roots(name, data_dir, None)[:-1]  # no cache for folders
        ds = _load_imagefolder(roots, image_size or 64, workers)
        if ds is None:
            raise _not_found(name, [str(r) for r in roots])
        return ds.limit(limit_train, limit_test)

    roots = _search_roots(name, data_dir, cache_dir)
    loader = _load_cifar if name in _CIFAR_SUBDIRS else _load_idx_dataset
    ds = loader(name, roots)
    if ds is None and download:
        target = roots[-1]
        url = DOWNLOAD_URLS[name]
        try:
            _fetch(name, target)
        except OSError as e:
            raise _not_found(
                name,
                [str(r) for r in roots],
                f"download failed: {e}\n(is this machine online? you can also "
                f"fetch {url} by hand and pass --data-dir)",
            ) from None
        ds = loader(name, [target])
    if ds is None:
        raise _not_found(name, [str(r) for r in roots])
    return ds.limit(limit_train, limit_test)
