"""Language-model training: the metrics against closed forms, learning, resuming after SIGKILL
bit-exactly, sampling, and the comparison by validation loss (lower is better)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from process_runs import kill_after_first_checkpoint, load_script, single_thread_env, torchrun_command

from formulac.train import load_checkpoint, read_metrics
from formulac.train.compare_language import compare_language
from formulac.train.errors import TrainError
from formulac.train.language import evaluate_language, generate, train_language
from formulac.train.objectives import objective_for
from formulac.train.text import load_corpus

SCRIPT = Path(__file__).with_name("language_run_script.py")
script = load_script(SCRIPT, "formulac_language_run_script")


def _corpus_file(tmp_path, n=6000, seed=0):
    """A learnable text: words of a small vocabulary drawn from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
    picks = torch.randint(0, len(words), (n // 3,), generator=g).tolist()
    path = tmp_path / "corpus.txt"
    path.write_text(" ".join(words[i] for i in picks) + "\n", encoding="utf-8")
    return path


class Uniform(nn.Module):
    """Zero logits everywhere: every token has probability 1 / vocab."""

    def __init__(self, vocab, context=8):
        super().__init__()
        self.context = context
        self.vocab = vocab
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.zeros(*x.shape, self.vocab) + 0 * self.unused


class Unigram(nn.Module):
    """One learned logit per token, whatever came before: a weak language model."""

    def __init__(self, vocab, context=16):
        super().__init__()
        self.context = context
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, x):
        return self.bias.expand(*x.shape, -1)


@pytest.mark.parametrize("tokens", ["bytes", "chars"])
def test_metrics_of_the_uniform_model_are_closed_forms(tmp_path, tokens):
    path = tmp_path / "mixed.txt"
    path.write_text("naïve café, 7 €\n" * 80, encoding="utf-8")
    corpus = load_corpus(f"text:{path}", tokens, cache_dir=tmp_path / "cache")
    config = script.config(path, tokens=tokens, eval_windows=0)
    result = evaluate_language(
        Uniform(corpus.vocab_size), corpus, "val", 8, config=config, device=torch.device("cpu")
    )
    v = corpus.vocab_size
    assert result["loss"] == pytest.approx(math.log(v), rel=1e-6)  # float32 logits
    assert result["perplexity"] == pytest.approx(v, rel=1e-5)
    # bits per byte: (tokens x log2 V) / the UTF-8 bytes of the predicted tokens
    part = corpus.part("val")
    n_windows = (len(part) - 1) // 8
    targets = [int(t) for w in range(n_windows) for t in part[w * 8 + 1 : w * 8 + 9]]
    nbytes = len(targets) if tokens == "bytes" else sum(len(corpus.vocabulary[t].encode()) for t in targets)
    assert result["tokens"] == len(targets)
    assert result["bits_per_byte"] == pytest.approx(len(targets) * math.log2(v) / nbytes, rel=1e-6)


def test_a_run_learns_writes_its_files_and_refuses_too_short_text(tmp_path):
    path = _corpus_file(tmp_path)
    config = script.config(path, epochs=3)
    assert objective_for(config.data).name == "language" and config.recipe == "text"
    summary = train_language(script.build_tiny_lm, config, tmp_path / "run", progress=False, quiet=True)
    distinct = len(set(path.read_bytes()))
    # below the loss of guessing uniformly among the characters the text uses
    assert summary["final_val_loss"] < math.log(distinct) - 0.5
    assert summary["direction"] == "minimize" and summary["metric"] == "val_loss"
    assert summary["final_val_bits_per_byte"] == pytest.approx(summary["final_val_loss"] / math.log(2))
    records = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[0]["val_loss"] > records[-1]["val_loss"]
    assert json.loads((tmp_path / "run" / "vocabulary.json").read_text())["tokens"] == "bytes"
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["dataset"]["split_fractions"] == {"train": 0.9, "val": 0.05, "test": 0.05}

    short = tmp_path / "short.txt"
    short.write_text("tiny text " * 10)
    with pytest.raises(TrainError, match="too short for windows of context 16"):
        train_language(
            script.build_tiny_lm, script.config(short), tmp_path / "short", progress=False, quiet=True
        )


@pytest.mark.slow  # end to end in other processes: about 20-45 s on a loaded 2-core machine
def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    """The compiled GPT with dropout (attention and residual), killed mid-run."""
    epochs = 5
    path = _corpus_file(tmp_path)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    command = [sys.executable, str(SCRIPT), str(cut), str(path), "--epochs", str(epochs), "--model", "gpt"]
    kill_after_first_checkpoint(command + ["--sleep", "0.5"], cut, wait_s=120, settle_s=0.1)
    done = load_checkpoint(cut)["epoch"]
    assert 1 <= done < epochs and not (cut / "summary.json").exists()
    resumed = subprocess.run(
        command + ["--resume"], env=single_thread_env(), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    torch.set_num_threads(1)
    train_language(
        script.build_gpt,
        script.config(path, epochs),
        whole,
        progress=False,
        quiet=True,
        describe={"name": "tiny-lm"},
    )
    a, b = load_checkpoint(whole), load_checkpoint(cut)
    assert a["epoch"] == b["epoch"] == epochs
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    drop = ("seconds", "train_seconds", "train_cpu_seconds", "tokens_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in read_metrics(whole)] == [
        {k: v for k, v in r.items() if k not in drop} for r in read_metrics(cut)
    ]


def test_generation_greedy_and_top_k():
    torch.manual_seed(0)
    model = script.TinyLM(11, context=6)
    prompt = [1, 2, 3]
    greedy = generate(model, prompt, 8, context=6, temperature=0)
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(8):  # the same loop, written out: argmax of the last position
            ids.append(int(model.eval()(torch.tensor([ids[-6:]]))[0, -1].argmax()))
    assert greedy == ids[3:]
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        assert generate(model, prompt, 8, context=6, temperature=1.3, top_k=1, generator=g) == greedy
    drawn = generate(
        model, prompt, 50, context=6, temperature=1.0, generator=torch.Generator().manual_seed(1)
    )
    assert len(drawn) == 50 and all(0 <= t < 11 for t in drawn)
    with pytest.raises(TrainError, match="prompt is empty"):
        generate(model, [], 3, context=6)


def test_compare_ranks_by_validation_loss_lower_first(tmp_path):
    path = _corpus_file(tmp_path, n=4000)
    config = script.config(path, epochs=2)
    models = [("unigram", lambda c, v, s: Unigram(v), None), ("tiny", script.build_tiny_lm, None)]
    result = compare_language(models, config, [0, 1], tmp_path / "cmp", progress=False, quiet=True)
    data = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert data["objective"] == "val_loss" and data["direction"] == "minimize"
    unigram, tiny = result.models
    assert sum(tiny.val_loss) < sum(unigram.val_loss)
    assert data["ranking"] == ["tiny", "unigram"]
    # the difference is paired by seed and read from the runs' own summaries
    finals = {
        (name, seed): json.loads((tmp_path / "cmp" / name / f"seed{seed}" / "summary.json").read_text())[
            "final_val_loss"
        ]
        for name in ("unigram", "tiny")
        for seed in (0, 1)
    }
    expected = sum(finals["tiny", s] - finals["unigram", s] for s in (0, 1)) / 2
    assert result.pairwise[0]["mean_difference"] == pytest.approx(expected)
    assert "lower is better" in result.to_text()
    assert any("Too little evidence" in v for v in result.verdicts)


@pytest.mark.slow  # end to end in other processes: about 20-45 s on a loaded 2-core machine
def test_two_ranks_match_one_process(tmp_path):
    """Data-parallel training under torchrun (2 gloo processes) ends with the weights of a
    single process with the same global batch of windows."""
    path = _corpus_file(tmp_path)
    ddp = subprocess.run(
        [
            *torchrun_command(SCRIPT),
            str(tmp_path / "ddp"),
            str(path),
            "--epochs",
            "2",
            "--model",
            "tiny-no-dropout",
        ],
        env=single_thread_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    torch.set_num_threads(1)
    train_language(
        script.build_tiny_lm_without_dropout,
        script.config(path, 2),
        tmp_path / "one",
        progress=False,
        quiet=True,
        describe={"name": "tiny-lm"},
    )
    a, b = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "ddp")
    assert b["world_size"] == 2
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-5)
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "ddp")
    for r1, r2 in zip(one, two):
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-4)
        assert r1["val_loss"] == pytest.approx(r2["val_loss"], rel=1e-4)
