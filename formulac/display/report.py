"""A Markdown report over several formulas, with its figures as PNG files next to it.

``write_report(formulas, out_dir, depth=10)`` writes ``out_dir/report.md`` and, beside it,
``weights_comparison.png`` (the block weights of every formula in one figure) and per formula
``<name>_weights.png``, ``<name>_roots.png`` and ``<name>_graph.png``. For every formula the
report gives the formula in LaTeX (``$$...$$``), its unrolled expansion at a small depth, the
block-weight table at the report's depth, the initial-state weights, the characteristic roots,
stability and consistency, and the analyzer's notes. Learnable parameters are taken at their
initial values; free symbols stay symbolic (their figures are left out, with a note saying why).

The Markdown uses ``$...$``/``$$...$$`` math as GitHub, GitLab, Jupyter and pandoc render it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sympy

from ..errors import FormulacError, UsageError
from ..ir import Recurrence, state
from ..limits import DEFAULT_DEPTH, MAX_REPORT_DEPTH
from ..printing import latex_expr
from .latex import formula_latex
from .tables import format_value

__all__ = ["write_report", "render_report", "weight_table", "DEFAULT_DEPTH", "UNROLL_STEPS", "GRAPH_DEPTH"]

UNROLL_STEPS = 3
GRAPH_DEPTH = 4
MAX_EXPANSION_CHARS = 1500
REPORT_NAME = "report.md"
COMPARISON_NAME = "weights_comparison.png"


@dataclass
class _Entry:
    label: str
    rec: Recurrence
    source: str | None = None
    header: str = ""
    analysis: Any = None
    analysis_error: str | None = None
    unrolled: str | None = None
    unrolled_steps: int = 0
    unrolled_error: str | None = None
    figures: dict[str, str] = field(default_factory=dict)
    figure_notes: dict[str, str] = field(default_factory=dict)


# -- inputs ----------------------------------------------------------------------------------


def _header_comment(path: Path) -> str:
    """The comment block at the top of a ``.rec`` file, as one paragraph per blank-line group."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    out: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        out.append(stripped.lstrip("#").strip())
    return "\n".join(out).strip()


def _entries(formulas: Iterable, labels: list[str] | None) -> list[_Entry]:
    from ..parse import as_recurrence
    from ._common import label_of

    entries: list[_Entry] = []
    for item in formulas:
        rec = as_recurrence(item)
        source = None
        header = ""
        if isinstance(item, (str, Path)):
            source = str(item)
            header = _header_comment(Path(item))
        elif rec.name and not rec.name.startswith("<") and Path(rec.name).is_file():
            source = rec.name
            header = _header_comment(Path(rec.name))
        entries.append(_Entry(label=label_of(item), rec=rec, source=source, header=header))
    if labels is not None:
        if len(labels) != len(entries):
            raise UsageError(f"{len(labels)} labels for {len(entries)} formulas")
        for entry, label in zip(entries, labels):
            entry.label = str(label)
    # unique, file-name-safe labels
    seen: dict[str, int] = {}
    for entry in entries:
        base = entry.label
        count = seen.get(base, 0)
        seen[base] = count + 1
        if count:
            entry.label = f"{base}_{count + 1}"
    return entries


def _file_stem(label: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._") or "formula"
    return stem


# -- formatting ---------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _block_text(key: str, step: str) -> str:
    """A block-weight key in Markdown: ``$F_{i}$`` for a block name, code for an output template
    such as ``F(x_n + F(x_n))`` (a block applied twice in one step)."""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key):
        return f"${key}_{{{step}}}$"
    return f"`{_md_escape(key)}` at step {step}"


def _poly_latex(poly: Any) -> str:
    """The characteristic polynomial by descending powers of lambda: ``\\lambda^{2} - \\lambda - a``."""
    if not isinstance(poly, sympy.Basic):
        return str(poly)
    from ..analysis import LAMBDA

    try:
        coeffs = sympy.Poly(poly, LAMBDA).all_coeffs()
    except sympy.PolynomialError:
        return sympy.latex(poly)
    degree = len(coeffs) - 1
    terms = [c * LAMBDA ** (degree - k) for k, c in enumerate(coeffs) if c != 0]
    if not terms:
        return "0"
    return latex_expr(sympy.Add(*terms, evaluate=False))


def _latex_of(value: Any) -> str:
    """LaTeX of a polynomial or root: descending powers (SymPy's lexicographic order)."""
    if isinstance(value, sympy.Basic):
        return sympy.latex(value)
    return str(value)


def weight_table(analysis) -> str:
    """The block weights as a Markdown table: one row per step ``i``, one column per block."""
    weights = analysis.block_weights
    if not weights:
        return ""
    names = list(weights)
    depth = int(analysis.depth)
    head = (
        "| step $i$ | "
        + " | ".join(f"weight of {_block_text(name, 'i')} in $x_{{{depth}}}$" for name in names)
        + " |"
    )
    rule = "|---:|" + "---:|" * len(names)
    rows = [head, rule]
    steps = max((len(v) for v in weights.values() if v is not None), default=0)
    for i in range(steps):
        cells = []
        for name in names:
            values = weights[name]
            cells.append(format_value(values[i]) if values is not None and i < len(values) else "—")
        rows.append(f"| {i} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _initial_table(analysis) -> str:
    initial = getattr(analysis, "initial_weights", None)
    if not initial:
        return ""
    rows = ["| initial state | weight |", "|---|---:|"]
    for key, value in initial.items():
        rows.append(f"| ${_state_latex(key)}$ | {format_value(value)} |")
    return "\n".join(rows)


def _state_latex(key: Any) -> str:
    text = str(key)
    m = re.match(r"^([A-Za-z][A-Za-z0-9]*)_<?\{?(-?[0-9]+)\}?>?$", text)
    if m:
        return latex_expr(state(m.group(1), int(m.group(2))))
    return text.replace("_", r"\_")


def _roots_table(analysis) -> str:
    roots = getattr(analysis, "roots", None)
    if not roots:
        return ""
    rows = ["| root | multiplicity | modulus |", "|---|---:|---:|"]
    for r in roots:
        rows.append(f"| ${_latex_of(r.value)}$ | {r.multiplicity} | {format_value(r.modulus)} |")
    return "\n".join(rows)


def _yes_no(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format_value(value)


# -- figures -----------------------------------------------------------------------------------


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=110)


def _figures(entries: list[_Entry], out_dir: Path, depth: int) -> str | None:
    """Write every figure; return the comparison figure's file name (or None with a reason)."""
    from . import plot

    for entry in entries:
        stem = _file_stem(entry.label)
        if entry.analysis is not None:
            for kind, draw in (("weights", plot.draw_block_weights), ("roots", plot.draw_roots)):
                try:
                    fig, _ = draw([entry.analysis], labels=[entry.label])
                    _save(fig, out_dir / f"{stem}_{kind}.png")
                    entry.figures[kind] = f"{stem}_{kind}.png"
                except FormulacError as exc:
                    entry.figure_notes[kind] = _message(exc)
        try:
            fig = plot.plot_graph(entry.rec, min(GRAPH_DEPTH, depth), label=entry.label)
            _save(fig, out_dir / f"{stem}_graph.png")
            entry.figures["graph"] = f"{stem}_graph.png"
        except FormulacError as exc:
            entry.figure_notes["graph"] = _message(exc)
    drawable = []
    for entry in entries:
        if entry.analysis is None or "weights" not in entry.figures:
            continue
        drawable.append(entry)
    if not drawable:
        return None
    fig, _ = plot.draw_block_weights(
        [e.analysis for e in drawable], labels=[e.label for e in drawable], block=plot.MAIN_BLOCK
    )
    _save(fig, out_dir / COMPARISON_NAME)
    return COMPARISON_NAME


def _message(exc: FormulacError) -> str:
    return getattr(exc, "message", None) or str(exc)


# -- the document ------------------------------------------------------------------------------


def _summary_table(entries: list[_Entry], depth: int) -> str:
    rows = [
        f"| formula | order | linear | stability | consistent | weight of $F_{{0}}$ in $x_{{{depth}}}$ |",
        "|---|---:|---|---|---|---:|",
    ]
    for e in entries:
        a = e.analysis
        link = f"[{e.label}](#{_anchor(e.label)})"
        if a is None:
            rows.append(f"| {link} | — | — | — | — | — |")
            continue
        first = "—"
        weights = a.block_weights or {}
        if weights:
            name = "F" if "F" in weights else next(iter(weights))
            values = weights[name]
            if values:
                first = format_value(values[0]) + ("" if name == "F" else f" ({_block_text(name, '0')})")
        order = "unbounded" if a.order is None else str(a.order)
        rows.append(
            f"| {link} | {order} | {_yes_no(a.linear)} | {_md_escape(str(a.stability or '—'))} "
            f"| {_yes_no(a.consistent)} | {first} |"
        )
    return "\n".join(rows)


def _anchor(label: str) -> str:
    """GitHub-style heading anchor of ``## label``."""
    text = label.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _section(e: _Entry, depth: int, steps: int) -> str:
    out: list[str] = [f"## {e.label}", ""]
    if e.source:
        out += [f"Source file: `{e.source}`", ""]
    if e.header:
        out += ["> " + line if line else ">" for line in e.header.splitlines()]
        out.append("")
    out += ["$$", formula_latex(e.rec), "$$", ""]
    shown = e.unrolled_steps or steps
    out += [f"**Unrolled to $x_{{{shown}}}$:**", ""]
    if e.unrolled is not None:
        out += ["$$", e.unrolled, "$$", ""]
        if shown < steps:
            out += [f"_(to $x_{{{shown}}}$ only: deeper expansions of this formula run to pages)_", ""]
    else:
        out += [f"_No expansion: {e.unrolled_error}_", ""]
    a = e.analysis
    if a is None:
        out += [f"_No analysis: {e.analysis_error}_", ""]
        return "\n".join(out)
    poly = getattr(a, "characteristic_polynomial", None)
    rate = getattr(a, "rate", None)
    facts = [
        f"- order: {'unbounded (history sum)' if a.order is None else a.order}",
        f"- linear in the states: {_yes_no(a.linear)}",
        f"- characteristic polynomial: {('$' + _poly_latex(poly) + '$') if poly is not None else '—'}",
        f"- stability: {_md_escape(str(a.stability)) if a.stability is not None else '—'}",
        f"- rate: {format_value(rate) if rate is not None else '—'}",
        f"- consistent as a discretisation of $dx/dt = F(x)$: {_yes_no(a.consistent)}",
    ]
    out += facts + [""]
    notes = [str(note) for note in (getattr(a, "notes", None) or [])]
    if notes:
        out += ["Notes:", ""] + [f"- {_md_escape(note)}" for note in notes] + [""]
    roots = _roots_table(a)
    if roots:
        out += ["**Characteristic roots:**", "", roots, ""]
    table = weight_table(a)
    out += [f"**Block weights in $x_{{{a.depth}}}$** (learnable parameters at their initial values):", ""]
    if table:
        out += [table, ""]
    else:
        out += ["_None: the formula has no block weights (see the notes)._", ""]
    initial = _initial_table(a)
    if initial:
        out += [f"**Initial-state weights in $x_{{{a.depth}}}$:**", "", initial, ""]
    for kind, title in (
        ("weights", "block weights"),
        ("roots", "characteristic roots"),
        ("graph", f"dependency graph, depth {min(GRAPH_DEPTH, depth)}"),
    ):
        if kind in e.figures:
            out += [f"![{e.label}: {title}]({e.figures[kind]})", ""]
        elif kind in e.figure_notes and not (a.linear is False and kind != "graph"):
            out += [f"_No {title} figure: {_md_escape(e.figure_notes[kind])}_", ""]
    return "\n".join(out)


def render_report(entries: list[_Entry], depth: int, steps: int, comparison: str | None) -> str:
    lines = [
        "# formulac report",
        "",
        f"{len(entries)} formula{'s' if len(entries) != 1 else ''}, analysed at depth $N = {depth}$ "
        f"(the state $x_{{{depth}}}$; blocks applied at steps $0, \\dots, {depth - 1}$). "
        "A block weight is the coefficient of the block output $F_i(\\cdot)$ in $x_N$.",
        "",
        _summary_table(entries, depth),
        "",
    ]
    if comparison:
        lines += ["## Block weights compared", "", f"![block weights of all formulas]({comparison})", ""]
    for e in entries:
        lines += [_section(e, depth, steps), ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    formulas,
    out_dir: str | Path,
    depth: int = DEFAULT_DEPTH,
    unroll_steps: int = UNROLL_STEPS,
    labels: list[str] | None = None,
) -> Path:
    """Write the report for ``formulas`` (Recurrences, Formulas or ``.rec`` paths) into ``out_dir``.

    Returns the path of ``report.md``. ``out_dir`` is created if needed.
    """
    from .. import analysis as analysis_mod
    from . import plot

    plot.check_depth(depth, MAX_REPORT_DEPTH)
    plot.check_depth(unroll_steps, 12, "unroll steps")
    if isinstance(formulas, (str, Path, Recurrence)):
        formulas = [formulas]
    entries = _entries(list(formulas), labels)
    if not entries:
        raise UsageError("nothing to report: no formulas given")
    plot.require_matplotlib()
    out = _prepare_dir(out_dir)
    steps = min(unroll_steps, depth)
    for e in entries:
        try:
            e.analysis = analysis_mod.analyze(e.rec, depth=depth, params="init")
        except FormulacError as exc:
            e.analysis_error = _message(exc)
        try:
            e.unrolled_steps, e.unrolled = _short_expansion(analysis_mod.unroll, e.rec, steps)
        except FormulacError as exc:
            e.unrolled_error = _message(exc)
    comparison = _figures(entries, out, depth)
    path = out / REPORT_NAME
    path.write_text(render_report(entries, depth, steps, comparison), encoding="utf-8")
    return path


def _short_expansion(unroll, rec: Recurrence, steps: int) -> tuple[int, str]:
    """The expansion at ``steps``, or at fewer steps where it would be longer than a screen."""
    for k in range(steps, 0, -1):
        text = _unrolled_latex(unroll(rec, k), rec, k)
        if len(text) <= MAX_EXPANSION_CHARS or k == 1:
            return k, text
    raise AssertionError("unreachable")


def _unrolled_latex(unrolled, rec: Recurrence, steps: int) -> str:
    text = getattr(unrolled, "latex", None)
    if callable(text):
        text = text()
    if not text:
        text = latex_expr(unrolled.expr)
    text = text.strip()
    if text.startswith("$$") and text.endswith("$$"):
        text = text[2:-2].strip()
    elif text.startswith("$") and text.endswith("$"):
        text = text[1:-1].strip()
    if "=" not in text:
        text = f"{latex_expr(state(rec.output, steps))} = {text}"
    return text


def _prepare_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"cannot write the report into {out}: it is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror or exc}") from None
    probe = out / ".formulac-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write into {out}: {exc.strerror or exc}") from None
    return out
