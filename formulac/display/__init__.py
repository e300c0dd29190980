"""Showing formulas and their analyses: LaTeX, tables, plots, Markdown reports.

- :func:`formula_latex` — a formula as a LaTeX ``aligned`` block (``Formula._repr_latex_``).
- :func:`weights_table` — block weights of several formulas side by side (HTML in notebooks,
  Markdown, text).
- :mod:`formulac.display.plot` — ``plot_block_weights``, ``plot_roots``, ``plot_graph``
  (matplotlib, the optional extra ``formulac[plot]``, imported only when drawing).
- :func:`write_report` — ``report.md`` with LaTeX, tables and PNG figures
  (``formulac report FILE... -o DIR``).

Nothing here imports matplotlib or torch at import time.
"""

from . import plot
from .latex import formula_latex
from .plot import plot_block_weights, plot_graph, plot_roots
from .report import write_report
from .tables import WeightTable, weights_table

__all__ = [
    "formula_latex",
    "weights_table",
    "WeightTable",
    "plot",
    "plot_block_weights",
    "plot_roots",
    "plot_graph",
    "write_report",
]
