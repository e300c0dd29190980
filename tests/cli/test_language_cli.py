"""`formulac train|compare|sample` on text data with the gpt backbone (tiny runs on a corpus
generated here), and one clear error per kind of bad input."""

from __future__ import annotations

import json

import torch
from cli_runner import QUIET_CPU

from formulac.cli import main

PRE_NORM = "# pre-norm transformer\nh_<n+1> = x_n + A(x_n)\nx_<n+1> = h_<n+1> + M(h_<n+1>)\n"
REZERO = "# ReZero\nparam s_n = 0\nx_<n+1> = x_n + s_n*F(x_n)\n"
GPT = ["--backbone", "gpt", "--depth", "1", "-O", "dim=16", "-O", "heads=2", "-O", "context=16"]
SMALL = [
    "--epochs",
    "2",
    "--epoch-tokens",
    "2048",
    "--batch-size",
    "8",
    "--eval-windows",
    "8",
    "--lr",
    "0.01",
    *QUIET_CPU,
]


def _corpus(tmp_path):
    g = torch.Generator().manual_seed(0)
    words = ["to", "be", "or", "not", "that", "is", "the", "question"]
    picks = torch.randint(0, len(words), (1500,), generator=g).tolist()
    path = tmp_path / "corpus.txt"
    path.write_text(" ".join(words[i] for i in picks), encoding="utf-8")
    return path


def _formula(tmp_path, text, name):
    path = tmp_path / f"{name}.rec"
    path.write_text(text)
    return path


def test_train_then_sample_prints_text(tmp_path, capsys):
    corpus, out = _corpus(tmp_path), tmp_path / "run"
    rec = _formula(tmp_path, PRE_NORM, "prenorm")
    argv = [
        "train",
        str(rec),
        *GPT,
        "--data",
        f"text:{corpus}",
        "--tokens",
        "chars",
        *SMALL,
        "--out",
        str(out),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    vocabulary = sorted(set(corpus.read_text()))
    assert summary["vocab_size"] == len(vocabulary) and summary["context"] == 16
    assert summary["final_val_loss"] < torch.log(torch.tensor(float(len(vocabulary)))).item()
    capsys.readouterr()
    assert main(["sample", str(out), "--prompt", "to be", "--tokens", "40", "--seed", "3"]) == 0
    printed = capsys.readouterr().out.rstrip("\n")
    assert printed.startswith("to be") and len(printed) == len("to be") + 40
    assert set(printed) <= set(vocabulary)
    for temperature in ("nan", "inf", "-1"):
        assert "--temperature must be a finite number" in _error(
            capsys, ["sample", str(out), "--prompt", "to", "--temperature", temperature]
        )


def test_compare_on_text_ranks_by_loss(tmp_path, capsys):
    corpus, out = _corpus(tmp_path), tmp_path / "cmp"
    files = [str(_formula(tmp_path, PRE_NORM, "prenorm")), str(_formula(tmp_path, REZERO, "rezero"))]
    argv = ["compare", *files, *GPT, "--data", f"text:{corpus}", *SMALL, "--seeds", "2", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads((out / "comparison.json").read_text())
    assert result["objective"] == "val_loss" and result["direction"] == "minimize"
    means = {m["label"]: m["mean_val_loss"] for m in result["models"]}
    assert result["ranking"] == sorted(means, key=means.get)


def test_compare_jobs_on_text_trains_in_parallel_what_one_at_a_time_trains(tmp_path, capsys):
    """--jobs 2 runs each (model, seed) in its own process; the losses are those of the same
    runs trained one after the other, bit for bit (one thread each, seeded windows)."""
    corpus = _corpus(tmp_path)
    files = [str(_formula(tmp_path, PRE_NORM, "prenorm")), str(_formula(tmp_path, REZERO, "rezero"))]
    base = ["compare", *files, *GPT, "--data", f"text:{corpus}", *SMALL, "--seeds", "0,1"]
    results = {}
    for jobs in ("2", "1"):
        out = tmp_path / f"jobs{jobs}"
        assert main([*base, "--jobs", jobs, "--out", str(out)]) == 0, capsys.readouterr().err
        results[jobs] = json.loads((out / "comparison.json").read_text())
        for label in ("prenorm", "rezero"):
            for seed in (0, 1):
                assert (out / label / f"seed{seed}" / "summary.json").is_file()
    parallel, in_turn = ({m["label"]: m for m in results[j]["models"]} for j in ("2", "1"))
    for label in ("prenorm", "rezero"):
        assert parallel[label]["val_loss"] == in_turn[label]["val_loss"]
        assert parallel[label]["test_loss"] == in_turn[label]["test_loss"]
    assert results["2"]["ranking"] == results["1"]["ranking"]


def _error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("formulac: error:"), err
    return err[0]


def test_bad_text_input_is_one_error_line(tmp_path, capsys):
    rec = str(_formula(tmp_path, PRE_NORM, "prenorm"))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    binary = tmp_path / "data.bin"
    binary.write_bytes(bytes(range(256)) * 40)
    short = tmp_path / "short.txt"
    short.write_text("a short text " * 10)
    base = ["train", rec, *GPT, *SMALL, "--out", str(tmp_path / "run")]
    assert "empty file" in _error(capsys, [*base, "--data", f"text:{empty}"])
    assert "not UTF-8 text" in _error(capsys, [*base, "--data", f"text:{binary}", "--tokens", "chars"])
    assert "too short for windows of context 16" in _error(capsys, [*base, "--data", f"text:{short}"])
    assert "not found" in _error(capsys, [*base, "--data", f"text:{tmp_path / 'none.txt'}"])
    small_vocab = [*base, "--data", f"text:{_corpus(tmp_path)}", "-O", "vocab_size=2"]
    assert "smaller than the data's 256" in _error(capsys, small_vocab)
    mlp = ["train", rec, "--backbone", "mlp", "--depth", "1", *SMALL, "--out", str(tmp_path / "mlp")]
    assert "needs a language-model backbone" in _error(capsys, [*mlp, "--data", f"text:{_corpus(tmp_path)}"])


def test_sample_and_learned_on_things_that_are_not_runs_are_one_error_line(tmp_path, capsys):
    not_a_dir = tmp_path / "notes.txt"
    not_a_dir.write_text("not a run")
    assert "holds no language-model run" in _error(capsys, ["sample", str(not_a_dir), "--tokens", "3"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "vocabulary.json").write_text("{")
    (broken / "config.json").write_text("{")
    assert "cannot read vocabulary.json" in _error(capsys, ["sample", str(broken), "--tokens", "3"])
    assert "cannot read config.json" in _error(capsys, ["learned", str(broken)])
    (broken / "config.json").write_text("[1, 2]")
    assert "does not record a formula" in _error(capsys, ["learned", str(broken)])
