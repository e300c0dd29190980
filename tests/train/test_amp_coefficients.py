"""A mixed-precision run refuses a coefficient its precision cannot hold, before any data is
loaded (issue 22): under bf16/fp16 autocast the block outputs, and what the step adds to them,
are computed in that precision, where ``1e5*F(x_n)`` is infinite in float16 (largest 65504).
Float32 runs need nothing more: the parser refuses coefficients beyond float32."""

from __future__ import annotations

import pytest

from formulac.errors import UsageError
from formulac.formula import network_factory
from formulac.parse import parse
from formulac.train import make_config, train


def _run(coefficient: str, amp: str, tmp_path):
    build, _ = network_factory(
        parse(f"x_<n+1> = x_n + {coefficient}*F(x_n)\n"), {"backbone": "mlp", "depth": 2}
    )
    config = make_config(
        None,
        backbone="mlp",
        data="synthetic:1x4x4:2",
        device="cpu",
        threads=1,
        amp=amp,
        epochs=1,
        limit_train=8,
        limit_test=8,
        batch_size=8,
    )
    return train(build, config, tmp_path / "run", progress=False, quiet=True)


@pytest.mark.parametrize(("coefficient", "amp"), [("1e5", "fp16"), ("-7e4", "fp16"), ("3.4e38", "bf16")])
def test_a_coefficient_beyond_the_run_precision_is_refused(coefficient, amp, tmp_path):
    with pytest.raises(UsageError, match=r"exceeds the largest (float16|bfloat16) .*--amp none"):
        _run(coefficient, amp, tmp_path)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize(
    ("coefficient", "dtype"), [("6e4", "float16"), ("-65504", "float16"), ("3.3e38", "bfloat16")]
)
def test_a_coefficient_within_the_run_precision_passes(coefficient, dtype):
    build, _ = network_factory(
        parse(f"x_<n+1> = x_n + {coefficient}*F(x_n)\n"), {"backbone": "mlp", "depth": 2}
    )
    build.check_precision(dtype)  # no error: the step argument n of F (up to 99,999) is no factor


def test_a_language_run_refuses_it_too(tmp_path):
    """The text path sets up its own run: the same refusal before the corpus is read."""
    from formulac.train.language import train_language

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a small corpus of text. " * 200)
    build, _ = network_factory(
        parse("x_<n+1> = x_n + 1e5*F(x_n)\n"), {"backbone": "gpt", "depth": 1, "dim": 16, "heads": 2}
    )
    config = make_config(None, data=f"text:{corpus}", device="cpu", threads=1, amp="fp16", epochs=1)
    with pytest.raises(UsageError, match=r"exceeds the largest float16 .*--amp none"):
        train_language(build, config, tmp_path / "run", progress=False, quiet=True)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
