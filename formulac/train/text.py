"""Text corpora for language models: a UTF-8 file read as one sequence of tokens.

``--data text:PATH`` reads the file PATH; ``text:fortunes`` is the English corpus of Debian's
``fortunes`` package (BSD licence: about 2.4 MB of quotations, definitions and short prose in
``/usr/share/games/fortunes``), concatenated once into the cache. Tokens are

``bytes`` (default)
    the file's bytes, a vocabulary of 256; the file itself is memory-mapped (no copy).
``chars``
    the file's characters; the vocabulary is the distinct characters in code-point order. The
    ids are written once into a cache file (read in chunks: a file of 1 GB never needs 1 GB of
    memory) and memory-mapped.

The tokens split into contiguous parts: the first 90% train, the next 5% validate, the last 5%
test (:data:`SPLIT_FRACTIONS`). Training draws random windows of ``context + 1`` tokens from the
training part; evaluation reads a fixed set of windows (:func:`evaluation_starts`).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_write
from .errors import DatasetNotFound, TrainError

__all__ = [
    "CORPORA",
    "SPLIT_FRACTIONS",
    "TEXT_PREFIX",
    "TOKENIZATIONS",
    "TextCorpus",
    "evaluation_starts",
    "is_text_data",
    "load_corpus",
    "windows",
]

TEXT_PREFIX = "text:"
TOKENIZATIONS = ("bytes", "chars")
#: train, validation, test: contiguous parts of the token sequence, in this order
SPLIT_FRACTIONS = {"train": 0.9, "val": 0.05, "test": 0.05}

#: named corpora installed by the system: name -> (directory, Debian package)
CORPORA = {"fortunes": (Path("/usr/share/games/fortunes"), "fortunes")}

_CHUNK = 1 << 24  # bytes read at a time when encoding characters


def is_text_data(data: str) -> bool:
    """True for ``text:...`` data names."""
    return data.strip().lower().startswith(TEXT_PREFIX)


@dataclass
class TextCorpus:
    """A token sequence (``tokens``: a read-only numpy memmap) with its vocabulary.

    ``vocabulary`` is None for bytes, else the characters in id order. ``splits`` maps train,
    val and test to their ``(start, stop)`` token offsets."""

    name: str
    path: str
    tokenization: str
    tokens: np.ndarray
    vocabulary: tuple[str, ...] | None
    splits: dict[str, tuple[int, int]]

    @property
    def vocab_size(self) -> int:
        return 256 if self.vocabulary is None else len(self.vocabulary)

    def part(self, split: str) -> np.ndarray:
        start, stop = self.splits[split]
        return self.tokens[start:stop]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; a character outside the vocabulary is a :class:`TrainError`."""
        if self.vocabulary is None:
            return list(text.encode("utf-8"))
        index = {c: i for i, c in enumerate(self.vocabulary)}
        missing = sorted({c for c in text if c not in index})
        if missing:
            raise TrainError(f"the prompt holds characters the corpus never uses: {''.join(missing)!r}")
        return [index[c] for c in text]

    def decode(self, ids) -> str:
        if self.vocabulary is None:
            return bytes(int(i) for i in ids).decode("utf-8", errors="replace")
        return "".join(self.vocabulary[int(i)] for i in ids)

    def byte_lengths(self) -> torch.Tensor:
        """The UTF-8 length of every token (1 for bytes): bits per byte divide by their sum."""
        if self.vocabulary is None:
            return torch.ones(256, dtype=torch.float64)
        return torch.tensor([len(c.encode("utf-8")) for c in self.vocabulary], dtype=torch.float64)

    def check_context(self, context: int) -> None:
        """Every part must hold at least one window of ``context + 1`` tokens."""
        need = context + 1
        short = {k: b - a for k, (a, b) in self.splits.items() if b - a < need}
        if short:
            least = math.ceil(need / min(SPLIT_FRACTIONS.values())) + len(SPLIT_FRACTIONS)
            parts = ", ".join(f"{k} {n}" for k, n in short.items())
            raise TrainError(
                f"{self.path}: {len(self.tokens)} tokens are too short for windows of context "
                f"{context} + 1: the parts hold {parts} tokens, fewer than {need}; give a file "
                f"of at least {least} tokens or a smaller context"
            )

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.path,
            "tokens": self.tokenization,
            "vocab_size": self.vocab_size,
            "length": len(self.tokens),
            "splits": {k: list(v) for k, v in self.splits.items()},
            "split_fractions": dict(SPLIT_FRACTIONS),
        }


def windows(part: np.ndarray, starts: np.ndarray, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets, both ``(len(starts), context)`` int64, from the windows of
    ``context + 1`` tokens at ``starts`` (only those tokens are read from the memmap)."""
    rows = np.asarray(part[starts[:, None] + np.arange(context + 1)], dtype=np.int64)
    block = torch.from_numpy(rows)
    return block[:, :-1], block[:, 1:]


def random_starts(part: np.ndarray, count: int, context: int, generator: torch.Generator) -> np.ndarray:
    """``count`` window starts drawn uniformly from ``part`` with ``generator``."""
    high = len(part) - context  # starts 0 .. len - context - 1 leave room for context + 1
    return torch.randint(0, high, (count,), generator=generator).numpy()


def evaluation_starts(length: int, context: int, max_windows: int) -> np.ndarray:
    """The fixed evaluation windows of a part of ``length`` tokens: non-overlapping windows from
    its start, or, when there are more than ``max_windows`` (0: no limit), ``max_windows`` of
    them spread evenly over the part."""
    available = (length - 1) // context
    if available < 1:
        raise TrainError(f"a part of {length} tokens holds no window of {context + 1}")
    if 0 < max_windows < available:
        chosen = np.floor(np.linspace(0, available - 1, max_windows)).astype(np.int64)
    else:
        chosen = np.arange(available, dtype=np.int64)
    return chosen * context


# --------------------------------------------------------------------------------------------
# loading


def _default_cache() -> Path:
    from .data import default_cache_dir

    return default_cache_dir() / "text"


def _corpus_file(name: str, cache: Path) -> Path:
    """The named corpus as one file in the cache, made from the system's files on first use."""
    directory, package = CORPORA[name]
    target = cache / f"{name}.txt"
    if target.is_file():
        return target
    files = (
        sorted(p for p in directory.iterdir() if p.is_file() and not p.is_symlink() and p.suffix != ".dat")
        if directory.is_dir()
        else []
    )
    if not files:
        raise DatasetNotFound(
            f"text corpus '{name}' not found in {directory}; install Debian's package "
            f"(apt-get install {package}) or pass --data text:PATH with a text file of your own"
        )
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write(target, b"".join(p.read_bytes() for p in files))
    return target


def _split(length: int) -> dict[str, tuple[int, int]]:
    train_end = int(length * SPLIT_FRACTIONS["train"])
    val_end = train_end + int(length * SPLIT_FRACTIONS["val"])
    return {"train": (0, train_end), "val": (train_end, val_end), "test": (val_end, length)}


def _char_ids(path: Path, size: int, cache: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """The character ids of ``path`` (cached per path, size and modification time)."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}\0{size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    ids_path, vocab_path = cache / f"{key}.ids", cache / f"{key}.vocab.json"
    if ids_path.is_file() and vocab_path.is_file():
        meta = json.loads(vocab_path.read_text(encoding="utf-8"))
        vocab = tuple(meta["vocabulary"])
        return np.memmap(ids_path, dtype=np.dtype(meta["dtype"]), mode="r"), vocab

    def chunks():
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        offset = 0
        with open(path, "rb") as f:
            while True:
                raw = f.read(_CHUNK)
                try:
                    text = decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as e:
                    raise TrainError(
                        f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                        f"{offset + e.start}); a binary file needs --tokens bytes"
                    ) from None
                if "\0" in text:
                    raise TrainError(f"{path}: holds NUL characters, a binary file; use --tokens bytes")
                offset += len(raw)
                yield np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
                if not raw:
                    return

    seen = np.zeros(0, dtype=np.uint32)
    count = 0
    for cps in chunks():
        seen = np.union1d(seen, np.unique(cps))
        count += len(cps)
    vocab = tuple(chr(c) for c in seen.tolist())
    dtype = np.dtype(np.uint16 if len(vocab) <= 1 << 16 else np.uint32)
    cache.mkdir(parents=True, exist_ok=True)

    def write(f) -> None:
        for cps in chunks():
            f.write(np.searchsorted(seen, cps).astype(dtype).tobytes())

    atomic_write(ids_path, write)
    atomic_write(vocab_path, json.dumps({"dtype": dtype.name, "vocabulary": list(vocab)}))
    return np.memmap(ids_path, dtype=dtype, mode="r", shape=(count,)), vocab


def load_corpus(data: str, tokens: str = "bytes", cache_dir: str | os.PathLike | None = None) -> TextCorpus:
    """The corpus of ``data`` (``text:PATH`` or ``text:fortunes``) tokenised as ``tokens``.

    Raises :class:`TrainError` for a missing or empty file, and for a file that is not UTF-8
    text (or holds NUL characters) with ``tokens="chars"``; :class:`DatasetNotFound` when a named
    corpus is not installed."""
    if not is_text_data(data):
        raise TrainError(f"not a text data set: {data!r} (use text:PATH)")
    if tokens not in TOKENIZATIONS:
        raise TrainError(f"unknown --tokens '{tokens}'; choose {' or '.join(TOKENIZATIONS)}")
    spec = data.strip()[len(TEXT_PREFIX) :]
    if not spec:
        raise TrainError("--data text: needs a file: text:PATH")
    cache = Path(cache_dir) if cache_dir is not None else _default_cache()
    path = (
        _corpus_file(spec, cache) if spec in CORPORA and not Path(spec).exists() else Path(spec).expanduser()
    )
    if not path.is_file():
        raise DatasetNotFound(
            f"text file not found: {path}"
            + (f" (named corpora: {', '.join(CORPORA)})" if not path.exists() else " (not a file)")
        )
    size = path.stat().st_size
    if size == 0:
        raise TrainError(f"{path}: empty file; a language model needs text to learn from")
    if tokens == "bytes":
        ids, vocab = np.memmap(path, dtype=np.uint8, mode="r"), None
    else:
        ids, vocab = _char_ids(path, size, cache)
        if len(vocab) < 2:
            raise TrainError(f"{path}: a single distinct character; nothing to predict")
    return TextCorpus(spec, str(path), tokens, ids, vocab, _split(len(ids)))
