"""The matrix plot of a trained mixing: the effective weight of every block output (columns:
the block at step k) in the state after every step (rows), as ``formulac learned`` writes it.

matplotlib is imported only when drawing (:func:`~formulac.display.plot.new_figure`).
"""

from __future__ import annotations

from pathlib import Path

from .plot import new_figure

__all__ = ["plot_effective_weights", "save_effective_weights"]


def plot_effective_weights(matrix, block: str = "F", title: str = ""):
    """A figure of ``matrix`` (rows: the state after step t; columns: ``block`` at step k),
    coloured on a scale symmetric about 0 so that signs read at a glance."""
    rows = len(matrix)
    columns = len(matrix[0]) if rows else 0
    size = max(3.0, min(10.0, 0.35 * max(rows, columns) + 2))
    fig = new_figure((size + 1.2, size))
    ax = fig.add_subplot()
    limit = max((abs(v) for row in matrix for v in row), default=1.0) or 1.0
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, origin="upper", aspect="equal")
    ax.set_xlabel(f"{block} at step k")
    ax.set_ylabel("state after step t")
    ax.set_title(title or f"effective weight of {block}")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def save_effective_weights(
    reports: dict[str, dict], directory: str | Path, prefix: str = "mixing"
) -> list[str]:
    """One PNG per stage and block of a ``learned`` mixing report; the paths written."""
    written = []
    for stage, report in reports.items():
        for block, matrix in report.get("effective_weights", {}).items():
            if not matrix:
                continue
            path = Path(directory) / f"{prefix}_{stage}_{block}.png"
            fig = plot_effective_weights(matrix, block, f"{stage}: effective weight of {block}")
            fig.savefig(path, dpi=100)
            written.append(str(path))
    return written
