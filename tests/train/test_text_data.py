"""Text corpora: tokens against the file read independently, contiguous splits, windows,
the fixed evaluation windows, and one clear error per kind of bad input."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from formulac.train import text
from formulac.train.errors import DatasetNotFound, TrainError
from formulac.train.text import SPLIT_FRACTIONS, evaluation_starts, load_corpus, windows


def _write(tmp_path, content, name="corpus.txt"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_bytes_are_the_file_memory_mapped_and_split_contiguously(tmp_path):
    content = "Über die Brücke, 1 2 3.\n" * 300
    path = _write(tmp_path, content)
    corpus = load_corpus(f"text:{path}", "bytes", cache_dir=tmp_path / "cache")
    raw = content.encode("utf-8")
    assert isinstance(corpus.tokens, np.memmap)
    assert corpus.vocab_size == 256
    assert bytes(corpus.tokens) == raw
    parts = [corpus.splits[k] for k in ("train", "val", "test")]
    assert parts[0][0] == 0 and parts[-1][1] == len(raw)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    for key, (start, stop) in corpus.splits.items():
        assert abs((stop - start) - SPLIT_FRACTIONS[key] * len(raw)) <= 2
    assert corpus.decode(corpus.encode("Brücke")) == "Brücke"
    assert corpus.describe()["splits"]["val"] == list(corpus.splits["val"])


@settings(max_examples=25, deadline=None)
@given(st.text(min_size=1, max_size=300).filter(lambda s: "\0" not in s), st.integers(1, 7))
def test_character_ids_match_python_across_chunk_boundaries(tmp_path_factory, content, chunk):
    tmp = tmp_path_factory.mktemp("chars")
    path = _write(tmp, content)
    old = text._CHUNK
    text._CHUNK = chunk  # tiny reads split multi-byte characters between chunks
    try:
        corpus = load_corpus(f"text:{path}", "chars", cache_dir=tmp / "cache")
    except TrainError as error:  # one distinct character: refused, and said so
        assert len(set(content)) == 1 and "single distinct character" in str(error)
        return
    finally:
        text._CHUNK = old
    vocab = sorted(set(content))
    assert list(corpus.vocabulary) == vocab
    assert corpus.tokens.tolist() == [vocab.index(c) for c in content]
    assert corpus.decode(corpus.tokens) == content
    # the second load reads the cache and gives the same ids
    again = load_corpus(f"text:{path}", "chars", cache_dir=tmp / "cache")
    assert again.tokens.tolist() == corpus.tokens.tolist()


def test_bits_per_byte_counts_utf8_lengths(tmp_path):
    corpus = load_corpus(f"text:{_write(tmp_path, 'aé€𝄞' * 50)}", "chars", cache_dir=tmp_path)
    lengths = dict(zip(corpus.vocabulary, corpus.byte_lengths().tolist()))
    assert lengths == {"a": 1, "é": 2, "€": 3, "𝄞": 4}


def test_windows_are_inputs_and_next_tokens():
    part = np.arange(100, dtype=np.uint8)
    starts = np.array([0, 5, 83])
    x, y = windows(part, starts, 16)
    assert x.dtype == torch.int64 and x.shape == (3, 16)
    assert torch.equal(y, x + 1)
    assert x[2, 0].item() == 83 and y[2, -1].item() == 99


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 5000), st.integers(1, 64), st.integers(0, 40))
def test_evaluation_windows_fit_and_do_not_overlap(length, context, limit):
    if length < context + 1:
        with pytest.raises(TrainError):
            evaluation_starts(length, context, limit)
        return
    starts = evaluation_starts(length, context, limit)
    available = (length - 1) // context
    assert len(starts) == (min(limit, available) if limit else available)
    assert (starts + context + 1 <= length).all()
    assert (np.diff(starts) >= context).all()


def test_empty_file_is_refused(tmp_path):
    with pytest.raises(TrainError, match="empty file"):
        load_corpus(f"text:{_write(tmp_path, b'')}")


def test_binary_file_with_chars_is_refused_but_fine_as_bytes(tmp_path):
    path = _write(tmp_path, bytes(range(256)) * 20)
    with pytest.raises(TrainError, match="not UTF-8 text.*--tokens bytes"):
        load_corpus(f"text:{path}", "chars", cache_dir=tmp_path)
    assert load_corpus(f"text:{path}", "bytes").vocab_size == 256
    nul = _write(tmp_path, b"ab\0cd" * 10, "nul.txt")
    with pytest.raises(TrainError, match="NUL"):
        load_corpus(f"text:{nul}", "chars", cache_dir=tmp_path)


def test_file_shorter_than_the_windows_is_refused(tmp_path):
    corpus = load_corpus(f"text:{_write(tmp_path, 'x y z ' * 40)}")
    corpus.check_context(8)  # 240 tokens: the 5% parts hold 12 >= 9
    with pytest.raises(TrainError, match="too short for windows of context 64"):
        corpus.check_context(64)


def test_missing_file_and_named_corpus(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFound, match="not found"):
        load_corpus(f"text:{tmp_path / 'nothing.txt'}")
    monkeypatch.setitem(text.CORPORA, "fortunes", (tmp_path / "absent", "fortunes"))
    with pytest.raises(DatasetNotFound, match="apt-get install fortunes"):
        load_corpus("text:fortunes", cache_dir=tmp_path / "cache")
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "b").write_text("second file\n%\n")
    (shipped / "a").write_text("first file\n%\n")
    (shipped / "a.dat").write_bytes(b"\0\1index")
    monkeypatch.setitem(text.CORPORA, "fortunes", (shipped, "fortunes"))
    corpus = load_corpus("text:fortunes", cache_dir=tmp_path / "cache")
    assert bytes(corpus.tokens) == b"first file\n%\nsecond file\n%\n"
