"""formulac.display.plot and `formulac plot`: figures read back from PNG, contents, errors."""

import math
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from formulac.cli import main
from formulac.display import plot
from formulac.errors import UsageError
from formulac.parse import load, parse

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "examples"


def ex(name: str) -> str:
    return str(EX / f"{name}.rec")


def read_png(path: Path) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 5_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(str(path))


def assert_not_blank(pixels: np.ndarray, min_fraction: float = 0.01) -> None:
    rgb = pixels[..., :3]
    non_white = (rgb < 0.95).any(axis=-1).mean()
    assert non_white > min_fraction, f"only {non_white:.3%} of the pixels are drawn"
    colours = {tuple(c) for c in (rgb[::4, ::4].reshape(-1, 3) * 255).astype(int)}
    assert len(colours) > 20  # lines, text, markers in several colours


# -- the library ----------------------------------------------------------------------------


def test_block_weights_one_line_per_formula_with_the_weights():
    recs = [load(ex("resnet")), load(ex("two_step"))]
    fig = plot.plot_block_weights(recs, depth=6)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["resnet", "two_step"]
    assert list(lines[0].get_xdata()) == list(range(6))
    assert list(lines[0].get_ydata()) == [1.0] * 6
    # x_<n+1> = x_n - 1/4 x_<n-1> + F(x_n): weights 3/16, 5/16, 1/2, 3/4, 1, 1 in x_6
    assert np.allclose(lines[1].get_ydata(), [3 / 16, 5 / 16, 1 / 2, 3 / 4, 1, 1])
    assert "x_{6}" in ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["resnet", "two_step"]


def test_block_weights_accepts_formulas_paths_text_and_analyses():
    import formulac
    from formulac.analysis import analyze

    items = [
        formulac.load(ex("resnet")),
        Path(ex("two_step")),  # a path is a Path: a str is formula text
        "x_<n+1> = x_n + F(x_n)",
        analyze(load(ex("momentum")), depth=5, params="init"),
    ]
    fig = plot.plot_block_weights(items, depth=5, labels=["A", "B", "C", "D"])
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["A", "B", "C", "D"]
    assert all(len(line.get_xdata()) == 5 for line in fig.axes[0].get_lines())
    # the text is resnet's formula: the same weights
    assert list(fig.axes[0].get_lines()[2].get_ydata()) == list(fig.axes[0].get_lines()[0].get_ydata())
    with pytest.raises(TypeError, match="pathlib.Path"):
        plot.plot_block_weights([3.5], depth=5)


def test_several_blocks_give_several_lines_and_block_selects_one():
    rec = load(ex("revnet"))
    fig = plot.plot_block_weights(rec, depth=4)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["revnet: F", "revnet: G"]
    fig = plot.plot_block_weights(rec, depth=4, block="G")
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["revnet"]
    with pytest.raises(UsageError, match="no block H"):
        plot.plot_block_weights(rec, depth=4, block="H")


def test_log_scale_plots_absolute_values():
    fig = plot.plot_block_weights([load(ex("two_step"))], depth=30, log=True)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    y = ax.get_lines()[0].get_ydata()
    assert y[0] < 1e-6 and y[-1] == 1


def test_nonlinear_formulas_are_listed_not_drawn():
    fig = plot.plot_block_weights([load(ex("resnet")), load(ex("resnet_post"))], depth=4)
    assert len(fig.axes[0].get_lines()) == 1
    assert any("resnet_post" in t.get_text() for t in fig.texts)
    with pytest.raises(UsageError, match="no block weights to plot"):
        plot.plot_block_weights(load(ex("resnet_post")), depth=4)


def test_free_symbols_must_be_bound():
    rec = load(ex("two_step_free"))
    with pytest.raises(UsageError, match="depend on a.*--set a="):
        plot.plot_block_weights(rec, depth=4)
    fig = plot.plot_block_weights(rec.bind(a=-0.25), depth=4)
    assert np.allclose(fig.axes[0].get_lines()[0].get_ydata(), [1 / 2, 3 / 4, 1, 1])


def test_draws_into_a_given_axes():
    from matplotlib.figure import Figure

    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    assert plot.plot_block_weights(load(ex("resnet")), depth=3, ax=ax2) is fig
    assert len(ax2.get_lines()) == 1 and not ax1.get_lines()


def test_roots_one_marker_set_per_formula_and_the_unit_circle():
    recs = [load(ex("resnet")), load(ex("two_step")), load(ex("midpoint"))]
    fig = plot.plot_roots(recs)
    ax = fig.axes[0]
    offsets = [c.get_offsets() for c in ax.collections]
    assert len(offsets) == 3
    assert sorted(map(tuple, np.round(offsets[0], 9))) == [(1.0, 0.0)]
    assert sorted(map(tuple, np.round(offsets[1], 9))) == [(0.5, 0.0)]  # a double root, drawn once
    assert sorted(map(tuple, np.round(offsets[2], 9))) == [(-1.0, 0.0), (1.0, 0.0)]
    circle = ax.get_lines()[0]
    r = np.hypot(circle.get_xdata(), circle.get_ydata())
    assert np.allclose(r, 1.0)
    assert any("2" in t.get_text() for t in ax.texts)  # the multiplicity mark
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["resnet", "two_step", "midpoint"]


def test_complex_roots():
    rec = parse("x_<n+1> = x_n - 1/2*x_<n-1> + F(x_n)")  # l^2 - l + 1/2: (1 +- i)/2
    ax = plot.plot_roots(rec).axes[0]
    pts = sorted(map(tuple, np.round(ax.collections[0].get_offsets(), 9)))
    assert pts == [(0.5, -0.5), (0.5, 0.5)]


def test_graph_draws_every_node_and_edge():
    from formulac.analysis import dependency_graph

    rec = load(ex("two_step"))
    graph = dependency_graph(rec, 4)
    fig = plot.plot_graph(rec, 4)
    ax = fig.axes[0]
    drawn_nodes = sum(
        len(c.get_offsets())
        for c in ax.collections
        if hasattr(c, "get_offsets")
        and c.get_offsets().ndim == 2
        and len(c.get_offsets())
        and type(c).__name__ == "PathCollection"
    )
    assert drawn_nodes == graph.number_of_nodes()
    arrows = [p for p in ax.patches if type(p).__name__ == "FancyArrowPatch"]
    assert len(arrows) == graph.number_of_edges()
    texts = {t.get_text() for t in ax.texts}
    assert {"$x_{0}$", "$x_{4}$", "$F_{0}$", "$F_{3}$"} <= texts
    pos, _ = plot.graph_layout(graph)
    assert len(set(pos.values())) == len(pos)  # no two nodes on one spot


@pytest.mark.parametrize("name", ["polynet", "heun", "momentum", "revnet", "densenet", "highway"])
def test_graph_layout_separates_nodes(name):
    from formulac.analysis import dependency_graph

    graph = dependency_graph(load(ex(name)), 3)
    pos, labels = plot.graph_layout(graph)
    assert set(pos) == set(graph.nodes) == set(labels)
    assert len(set(pos.values())) == len(pos)


def test_graph_depth_is_checked():
    with pytest.raises(UsageError, match="at least 1"):
        plot.plot_graph(load(ex("resnet")), 0)
    with pytest.raises(UsageError, match="too large"):
        plot.plot_graph(load(ex("resnet")), plot.MAX_GRAPH_DEPTH + 1)


def test_missing_matplotlib_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(UsageError, match=r"plotting needs matplotlib: pip install 'formulac\[plot\]'"):
        plot.plot_block_weights(load(ex("resnet")), depth=3)


# -- the command line ------------------------------------------------------------------------


def test_cli_weights_png(tmp_path, capsys):
    out = tmp_path / "w.png"
    assert main(["plot", ex("resnet"), ex("two_step"), ex("momentum"), "--depth", "10", "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    pixels = read_png(out)
    assert pixels.shape[0] >= 400 and pixels.shape[1] >= 700
    assert_not_blank(pixels)


def test_cli_roots_and_graph_png(tmp_path):
    roots = tmp_path / "r.png"
    assert main(["plot", ex("resnet"), ex("two_step"), "--kind", "roots", "-o", str(roots)]) == 0
    assert_not_blank(read_png(roots))
    graph = tmp_path / "g.png"
    assert (
        main(["plot", ex("two_step"), ex("resnet"), "--kind", "graph", "--depth", "3", "-o", str(graph)]) == 0
    )
    pixels = read_png(graph)
    assert pixels.shape[0] > pixels.shape[1] * 0.8  # two panels stacked
    assert_not_blank(pixels)


def test_cli_set_binds_free_symbols(tmp_path, capsys):
    out = tmp_path / "w.png"
    assert main(["plot", ex("two_step_free"), "--depth", "5", "-o", str(out)]) == 2
    assert "formulac: error: the block weights of two_step_free depend on a" in capsys.readouterr().err
    assert main(["plot", ex("two_step_free"), "--depth", "5", "--set", "a=-1/4", "-o", str(out)]) == 0
    assert_not_blank(read_png(out))


def test_cli_notes_formulas_it_cannot_draw(tmp_path, capsys):
    out = tmp_path / "w.png"
    assert main(["plot", ex("resnet"), ex("resnet_post"), "-o", str(out)]) == 0
    assert "resnet_post not drawn" in capsys.readouterr().err


def test_cli_missing_file_and_bad_formula_exit_2(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "none.rec"), "-o", str(tmp_path / "w.png")]) == 2
    assert "formulac: error: cannot read" in capsys.readouterr().err
    bad = tmp_path / "bad.rec"
    bad.write_text("x_<n+1> = x_n + \n")
    assert main(["plot", str(bad), "-o", str(tmp_path / "w.png")]) == 2
    assert "bad.rec:1:" in capsys.readouterr().err


def test_cli_missing_matplotlib_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["plot", ex("resnet"), "-o", str(tmp_path / "w.png")]) == 2
    assert (
        "formulac: error: plotting needs matplotlib: pip install 'formulac[plot]'" in capsys.readouterr().err
    )
    assert main(["report", ex("resnet"), "-o", str(tmp_path / "rep")]) == 2
    assert "plotting needs matplotlib" in capsys.readouterr().err


def test_plot_module_does_not_import_matplotlib_on_import():
    import subprocess

    code = "import formulac.display, formulac.display.plot, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_weights_are_finite_for_a_deep_expanding_formula():
    rec = parse("x_<n+1> = 2*x_n + F(x_n)")
    y = plot.plot_block_weights(rec, depth=60, log=True).axes[0].get_lines()[0].get_ydata()
    assert math.isclose(y[0], 2.0**59) and y[-1] == 1
