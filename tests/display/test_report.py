"""`formulac report` over the zoo: the files, the Markdown's formulas, tables and figures."""

import re
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from formulac.cli import main
from formulac.display.latex import formula_latex
from formulac.display.report import write_report
from formulac.display.tables import weights_table
from formulac.parse import load, parse

ROOT = Path(__file__).resolve().parents[2]
ZOO = sorted((ROOT / "examples").glob("*.rec"))
DEPTH = 6


@pytest.fixture(scope="module")
def zoo_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "zoo"
    assert main(["report", *map(str, ZOO), "-o", str(out), "--depth", str(DEPTH), "--set", "a=-1/4"]) == 0
    return out, (out / "report.md").read_text(encoding="utf-8")


def sections(markdown: str) -> dict[str, str]:
    parts = re.split(r"^## ", markdown, flags=re.M)
    return {p.split("\n", 1)[0].strip(): p for p in parts[1:]}


def test_report_has_a_section_per_formula_with_its_latex(zoo_report):
    _out, md = zoo_report
    found = sections(md)
    assert md.startswith("# formulac report\n")
    assert "Block weights compared" in found
    for path in ZOO:
        assert path.stem in found, path.stem
        text = found[path.stem]
        rec = load(path)
        if "a" in rec.free_symbols:
            rec = rec.bind(a=-0.25)  # --set a=-1/4
        assert "$$\n" + formula_latex(rec) + "\n$$" in text
        assert f"`{path}`" in text
        assert re.search(r"\*\*Unrolled to \$x_\{\d\}\$:\*\*\n\n\$\$\nx_\{\d\} = ", text), path.stem


def test_weight_tables(zoo_report):
    _, md = zoo_report
    found = sections(md)
    resnet = found["resnet"]
    assert f"| step $i$ | weight of $F_{{i}}$ in $x_{{{DEPTH}}}$ |" in resnet
    for i in range(DEPTH):
        assert f"\n| {i} | 1 |" in resnet
    two_step = found["two_step"]
    assert "| 0 | 3/16 ≈ 0.1875 |" in two_step and "| 3 | 3/4 ≈ 0.75 |" in two_step
    # the free symbol was bound by --set a=-1/4: same numbers as two_step
    assert "| 0 | 3/16 ≈ 0.1875 |" in found["two_step_free"]
    assert "| $x_{0}$ |" in two_step  # initial-state weights
    # the summary table links every formula
    for path in ZOO:
        assert f"| [{path.stem}](#{path.stem}) |" in md


def test_roots_stability_and_consistency(zoo_report):
    _, md = zoo_report
    two_step = sections(md)["two_step"]
    assert "| root | multiplicity | modulus |" in two_step
    assert re.search(r"\| \$\\frac\{1\}\{2\}\$ \| 2 \|", two_step)
    assert "- stability: " in two_step and "- consistent as a discretisation" in two_step


def test_nonlinear_formulas_say_why_there_are_no_weights(zoo_report):
    _, md = zoo_report
    post = sections(md)["resnet_post"]
    assert "linear in the states: no" in post
    assert "_None: the formula has no block weights" in post
    assert "resnet_post_weights.png" not in post


def test_every_referenced_figure_exists_and_is_drawn(zoo_report):
    out, md = zoo_report
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert "weights_comparison.png" in images
    assert {f"{p.stem}_graph.png" for p in ZOO} <= set(images)
    assert "resnet_weights.png" in images and "two_step_roots.png" in images
    for name in images:
        path = out / name
        assert path.is_file(), name
        pixels = mpimg.imread(str(path))
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300
        assert (pixels[..., :3] < 0.95).any(axis=-1).mean() > 0.005, name
    assert sorted(p.name for p in out.glob("*.png")) == sorted(set(images))


def test_comparison_figure_has_every_linear_formula(tmp_path):
    recs = [
        load(ROOT / "examples" / f"{name}.rec") for name in ("resnet", "two_step", "momentum", "resnet_post")
    ]
    write_report(recs, tmp_path, depth=5)
    md = (tmp_path / "report.md").read_text()
    assert "![block weights of all formulas](weights_comparison.png)" in md
    assert (tmp_path / "weights_comparison.png").stat().st_size > 5000


def test_long_expansions_are_cut_to_fewer_steps(tmp_path):
    rec = parse("x_<n+1> = x_n + 1/2*F(x_n) + 1/2*F(x_n + F(x_n))", "heun.rec")
    write_report([rec], tmp_path, depth=4, unroll_steps=4)
    md = (tmp_path / "report.md").read_text()
    expansion = md.split("**Unrolled to", 1)[1].split("$$")[1]
    assert len(expansion) < 2000


def test_weights_table_api():
    recs = [
        load(ROOT / "examples" / "resnet.rec"),
        load(ROOT / "examples" / "two_step.rec"),
        load(ROOT / "examples" / "resnet_post.rec"),
    ]
    table = weights_table(recs, depth=4)
    assert list(table.columns) == ["resnet", "two_step", "resnet_post"]
    md = table.to_markdown()
    assert md.splitlines()[0] == "| step $i$ | resnet | two_step | resnet_post |"
    assert "| 0 | 1 | 1/2 ≈ 0.5 | — |" in md
    assert "resnet_post: not linear" in md
    assert "<table>" in table._repr_html_() and "3/4 ≈ 0.75" in table._repr_html_()
    assert "3/4 ≈ 0.75" in str(table)
    free = weights_table(load(ROOT / "examples" / "two_step_free.rec"), depth=4)
    assert "| 0 | `2*a + 1` |" in free.to_markdown()
