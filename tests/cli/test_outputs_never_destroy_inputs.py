"""An output path that names an input, or a file where a run directory must go, is one error line
(exit 2) and the file stays as it was.

Before the fixes: ``compile f.rec -o f.rec`` replaced the formula with the generated module;
``learned RUN -o RUN/checkpoint.pt`` replaced the checkpoint with the learned formula (the run
could no longer be read); ``compare f.rec -o FILE --overwrite`` ended in a NotADirectoryError
traceback (``train`` and ``search`` already refused a file as --out).
"""

from __future__ import annotations

import shutil

import pytest
from fixtures_path import REPO

from formulac.cli import main

RESNET = REPO / "examples" / "resnet.rec"
TINY = ["--backbone", "mlp", "--depth", "2", "--data", "synthetic:1x4x4:3", "--epochs", "1"]
TINY += ["--limit-train", "24", "--limit-test", "12", "--batch-size", "12", "--threads", "1", "-q"]


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("formulac: error: ") and "Traceback" not in err
    return err


def test_compile_does_not_write_over_its_formula(tmp_path, capsys):
    formula = tmp_path / "mine.rec"
    shutil.copy(RESNET, formula)
    before = formula.read_bytes()
    assert main(["compile", str(formula), "--backbone", "mlp", "-o", str(formula)]) == 2
    assert "is the formula file" in _error(capsys)
    # the same file by another name
    other = tmp_path / "sub" / ".." / "mine.rec"
    (tmp_path / "sub").mkdir()
    assert main(["compile", str(formula), "--backbone", "mlp", "-o", str(other)]) == 2
    _error(capsys)
    assert formula.read_bytes() == before


def test_learned_does_not_write_over_the_runs_files(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(REPO / "examples" / "lm_resnet.rec"), *TINY, "-o", str(run)]) == 0
    capsys.readouterr()
    for name in ("checkpoint.pt", "config.json", "summary.json", "metrics.jsonl"):
        before = (run / name).read_bytes()
        assert main(["learned", str(run), "-o", str(run / name)]) == 2
        assert "a file of the run" in _error(capsys)
        assert (run / name).read_bytes() == before
    # the default and another .rec file in the run are fine, twice
    for _ in range(2):
        assert main(["learned", str(run)]) == 0
        assert main(["learned", str(run), "-o", str(run / "mine.rec")]) == 0
    assert "param k_n" in (run / "mine.rec").read_text() or "k_n" in (run / "mine.rec").read_text()


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_compare_into_a_file_is_refused(tmp_path, capsys, overwrite):
    blocker = tmp_path / "results"
    blocker.write_text("precious\n")
    assert main(["compare", str(RESNET), *TINY, "--seeds", "1", "-o", str(blocker), *overwrite]) == 2
    assert "not a directory" in _error(capsys)
    assert blocker.read_text() == "precious\n"
