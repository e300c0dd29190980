"""The records of the analyses and their four faces: JSON, terminal text, HTML, LaTeX.

:class:`Analysis` and :class:`Diff` are plain records of what was computed; the values are
formatted by :mod:`.formatting` (the rules of the JSON contract, documented in docs/cli.md).
``to_json(exact=True)`` adds the exact values as strings under ``"exact"``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import sympy

from ..ir import n, state
from ..printing import latex_expr, rec_expr
from .expand import Unrolled, linear_expansion, unroll
from .formatting import (
    LAMBDA,
    descending,
    json_value,
    name_ranges,
    polynomial_show,
    polynomial_text,
    show,
    sympy_text,
    table,
)
from .graph import dependency_graph
from .invertibility import invertibility_json, invertibility_lines
from .linear import Structure
from .weights import Weights

__all__ = ["Analysis", "Diff", "json_value", "sympy_text", "JSON_SCHEMA_VERSION"]

#: Version of the ``analyze --json`` contract; bumped on any incompatible change.
JSON_SCHEMA_VERSION = 1


@dataclass
class Analysis:
    """Everything ``formulac analyze`` reports about one formula at one depth."""

    formula: str
    name: str
    output: str
    order: int | None
    linear: bool
    depth: int
    params_mode: str
    characteristic_polynomial: sympy.Expr | None
    roots: list | None
    stability: str | None
    rate: sympy.Expr | None
    rate_multiplicity: int | None
    consistent: bool | None
    free_symbols: list
    params: dict
    path_lengths: list | None
    notes: list = field(default_factory=list)
    # a stream formula's vector and matrix parameters as declared (``res_n[4,4] = identity``);
    # ``params`` holds their entries, one scalar each, as the tables name them
    stream_parameters: str | None = field(default=None, repr=False)
    structure: Structure | None = field(default=None, repr=False, compare=False)
    weights: Weights | None = field(default=None, repr=False, compare=False)
    invertibility: object = field(default=None, repr=False, compare=False)  # invertibility.Invertibility
    reconstruction: object = field(default=None, repr=False, compare=False)  # invertibility.Reconstruction

    @property
    def invertible(self) -> bool | None:
        """Can a step run backward (the older states solved from the newer ones)?"""
        return None if self.invertibility is None else self.invertibility.invertible

    # -- derived ----------------------------------------------------------------------------
    @property
    def block_weights(self) -> dict | None:
        """Block key -> [weight at step 0, ..., depth-1] (SymPy), or None (not linear)."""
        return None if self.weights is None else self.weights.block

    @property
    def initial_weights(self) -> dict | None:
        """Initial input (``"x_0"``) -> weight, or None (not linear)."""
        return None if self.weights is None else self.weights.initial

    @property
    def offset(self) -> sympy.Expr | None:
        """The constant part of the output state (0 unless the formula adds constants)."""
        return None if self.weights is None else self.weights.offset

    @property
    def paths(self) -> int | None:
        """Number of input-to-output paths of the unrolled network."""
        return None if self.path_lengths is None else sum(self.path_lengths)

    @property
    def characteristic_coefficients(self) -> list | None:
        if self.characteristic_polynomial is None:
            return None
        return sympy.Poly(self.characteristic_polynomial, LAMBDA).all_coeffs()

    def unrolled(self):
        """The expansion of the output state at this depth (:class:`Unrolled`)."""
        if self.weights is not None:
            return Unrolled(
                state(self.output, self.depth),
                linear_expansion(self.structure, self.weights, self.depth),
                self.depth,
            )
        return unroll(self.structure, self.depth)

    def graph(self):
        """The dependency graph of the unrolled network (``networkx.DiGraph``)."""
        return dependency_graph(self.structure, self.depth)

    # -- JSON -------------------------------------------------------------------------------
    def to_json(self, exact: bool = False) -> dict:
        """The ``analyze --json`` contract (docs/cli.md)."""
        W = self.weights
        bw = None if W is None else {k: [W.json(w) for w in ws] for k, ws in W.block_elems.items()}
        iw = None if W is None else {k: W.json(w) for k, w in W.initial_elems.items()}
        coeffs = self.characteristic_coefficients
        data = {
            "schema": JSON_SCHEMA_VERSION,
            "name": self.name,
            "formula": self.formula,
            "output": self.output,
            "order": self.order,
            "linear": self.linear,
            "depth": self.depth,
            "params_mode": self.params_mode,
            "free_symbols": list(self.free_symbols),
            "params": {p.name: _param_json(p) for p in self.params.values()},
            "block_weights": bw,
            "initial_weights": iw,
            "offset": None if W is None else W.json(W.offset_elem),
            "characteristic_polynomial": None
            if self.characteristic_polynomial is None
            else polynomial_text(self.characteristic_polynomial),
            "characteristic_coefficients": None if coeffs is None else [json_value(c) for c in coeffs],
            "roots": None if self.roots is None else [r.to_json(json_value) for r in self.roots],
            "stability": self.stability,
            "rate": json_value(self.rate),
            "rate_multiplicity": self.rate_multiplicity,
            "consistent": self.consistent,
            "paths": json_value(self.paths),
            "path_lengths": None if self.path_lengths is None else [json_value(c) for c in self.path_lengths],
            **_memory_json(self),
            "notes": list(self.notes),
            "exact": None,
        }
        if exact:
            data["exact"] = {
                "block_weights": None
                if W is None
                else {k: [W.text(w) for w in ws] for k, ws in W.block_elems.items()},
                "initial_weights": None if W is None else {k: W.text(w) for k, w in W.initial_elems.items()},
                "offset": None if W is None else W.text(W.offset_elem),
                "rate": None if self.rate is None else sympy_text(self.rate),
                "roots": None
                if self.roots is None
                else [
                    {
                        "value": sympy_text(r.value),
                        "modulus": None if r.modulus is None else sympy_text(r.modulus),
                    }
                    for r in self.roots
                ],
            }
        return data

    # -- terminal text ----------------------------------------------------------------------
    def to_text(self) -> str:
        lines: list[str] = []
        formula_lines = self.formula.rstrip("\n").splitlines()
        lines.append(f"formula      {self.name}")
        lines.extend(f"               {line}" for line in formula_lines)
        lines.append(
            f"order        {'history (reads every past state)' if self.order is None else self.order}"
        )
        lines.append(f"linear       {'yes' if self.linear else 'no'}")
        out_n = f"{self.output}_{self.depth}"
        blocks = f"blocks at steps 0..{self.depth - 1}" if self.depth else "no blocks"
        lines.append(f"depth        {self.depth} ({out_n}; {blocks})")
        if self.free_symbols:
            lines.append(f"free symbols {', '.join(self.free_symbols)}")
        if self.params:
            mode = "symbolic" if self.params_mode == "symbolic" else "at initial values"
            if self.stream_parameters:
                shown = self.stream_parameters
                mode += _entry_naming(self.params.values())
            else:
                shown = ", ".join(p.declaration for p in self.params.values())
            lines.append(f"parameters   {shown} ({mode})")
        lines.append("")
        W = self.weights
        if W is not None:
            keys = list(W.block_elems)
            lines.append(f"block weights in {out_n} (coefficient of each block output, by step)")
            rows = [
                [str(t)] + [self._show_weight(W.block_elems[k][t]) for k in keys] for t in range(self.depth)
            ]
            lines.extend(table(["step"] + keys, rows))
            lines.append("")
        if W is not None:
            lines.append(f"initial weights in {out_n}")
            lines.extend(
                table(["input", "weight"], [[k, self._show_weight(v)] for k, v in W.initial_elems.items()])
            )
            if W.offset_elem != W.K.zero:
                lines.append(f"  constant offset: {self._show_weight(W.offset_elem)}")
            lines.append("")
        lines.append(
            f"characteristic polynomial  {polynomial_show(self.characteristic_polynomial) if self.characteristic_polynomial is not None else '-'}"
        )
        if self.roots is not None:
            lines.append("roots")
            rows = [
                [show(r.value), str(r.multiplicity), show(r.modulus), "exact" if r.exact else "numeric"]
                for r in self.roots
            ]
            lines.extend(table(["value", "multiplicity", "modulus", ""], rows))
        lines.append(f"stability    {self.stability or '-'}")
        if self.rate is not None:
            r = show(self.rate)
            r = f"({r})" if not r.isalnum() else r
            m = self.rate_multiplicity or 1
            poly = "" if m <= 1 else (" * (N-i)" if m == 2 else f" * (N-i)^{m - 1}")
            if self.stability == "neutral":
                how = "early blocks' weights neither decay nor grow geometrically"
            else:
                verb = "decays" if self.stability == "contracting" else "grows"
                how = f"the weight of the block at step i in x_N {verb} like {r}^(N-i){poly}"
            lines.append(f"rate         {show(self.rate)} (spectral radius: {how})")
        lines.append(f"consistent   {show(self.consistent)}")
        if self.path_lengths is not None:
            lines.append(
                f"paths        {show(self.paths)} from {self.output}_0 to {out_n}; by number of blocks on the path:"
            )
            lines.extend(
                table(["blocks", "paths"], [[str(k), show(c)] for k, c in enumerate(self.path_lengths) if c])
            )
        lines.extend(_memory_lines(self))
        if self.notes:
            lines.append("")
            lines.append("notes")
            lines.extend(f"  - {note}" for note in self.notes)
        if any("≈" in line for line in lines):
            lines.append("  (≈: rounded for display; --json --exact gives exact values)")
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_text()

    def _show_weight(self, x) -> str:
        W = self.weights
        terms = W.terms(x)
        if terms > 8:
            names = name_ranges(str(g) for g in W.K.gens if x.degree(g) > 0) if W.K.is_PolynomialRing else ""
            return f"<{terms} terms{' in ' + names if names else ''}>"
        return show(W.expr(x))

    # -- Jupyter ----------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        e = html.escape
        parts = [
            f"<div><p><b>{e(self.name)}</b> &mdash; order {e(str(self.order))}, "
            f"{'linear' if self.linear else 'non-linear'}, depth {self.depth}</p>"
        ]
        parts.append("<pre>" + e(self.formula) + "</pre>")
        W = self.weights
        if W is not None:
            keys = list(W.block_elems)
            parts.append(
                "<table><caption>block weights in " + e(f"{self.output}_{self.depth}") + "</caption>"
            )
            parts.append("<tr><th>step</th>" + "".join(f"<th>{e(k)}</th>" for k in keys) + "</tr>")
            for t in range(self.depth):
                cells = "".join(f"<td>{e(self._show_weight(W.block_elems[k][t]))}</td>" for k in keys)
                parts.append(f"<tr><td>{t}</td>{cells}</tr>")
            parts.append("</table>")
            parts.append("<table><caption>initial weights</caption><tr><th>input</th><th>weight</th></tr>")
            parts.extend(
                f"<tr><td>{e(k)}</td><td>{e(self._show_weight(v))}</td></tr>"
                for k, v in W.initial_elems.items()
            )
            parts.append("</table>")
        if self.roots is not None:
            parts.append(
                "<table><caption>roots of "
                + e(polynomial_show(self.characteristic_polynomial))
                + "</caption>"
            )
            parts.append("<tr><th>value</th><th>multiplicity</th><th>modulus</th></tr>")
            parts.extend(
                f"<tr><td>{e(show(r.value))}</td><td>{r.multiplicity}</td><td>{e(show(r.modulus))}</td></tr>"
                for r in self.roots
            )
            parts.append("</table>")
        parts.append(
            f"<p>stability: <b>{e(self.stability or '-')}</b>; rate: {e(show(self.rate))}; "
            f"consistent: {e(show(self.consistent))}</p>"
        )
        if self.notes:
            parts.append("<ul>" + "".join(f"<li>{e(note)}</li>" for note in self.notes) + "</ul>")
        parts.append("</div>")
        return "".join(parts)

    def _repr_latex_(self) -> str:
        rows = []
        rec = getattr(self.structure, "rec", None)
        if rec is not None:
            for eq in rec.equations:
                rows.append(f"{latex_expr(state(eq.state, n + 1))} &= {latex_expr(eq.display_rhs)}")
        if self.weights is not None:
            body = latex_expr(self.unrolled().expr)
            if len(body) <= 4000:
                rows.append(f"{latex_expr(state(self.output, self.depth))} &= {body}")
        if self.characteristic_polynomial is not None:
            rows.append(
                f"p({latex_expr(LAMBDA)}) &= {latex_expr(descending(self.characteristic_polynomial))}"
            )
        return "$$\\begin{aligned}" + " \\\\ ".join(rows) + "\\end{aligned}$$"


def _memory_json(a: Analysis) -> dict:
    return invertibility_json(a.invertibility, a.reconstruction, json_value)


def _memory_lines(a: Analysis) -> list[str]:
    return invertibility_lines(a.invertibility, a.reconstruction, show)


@dataclass
class Diff:
    """How two formulas differ at one depth."""

    a: Analysis
    b: Analysis
    depth: int
    same: bool | None
    block_weights: dict | None  # key -> [(step, weight in a, weight in b)] where they differ
    initial_weights: dict | None  # input -> (weight in a, weight in b) where they differ
    properties: dict  # name -> (value in a, value in b) where they differ
    notes: list = field(default_factory=list)

    def __bool__(self) -> bool:  # truthy when the formulas differ, like a non-empty diff
        return not self.same

    def to_json(self) -> dict:
        def prop(name, v):
            if name == "roots":
                return None if v is None else [r.to_json(json_value) for r in v]
            if name == "characteristic_polynomial":
                return None if v is None else polynomial_text(v)
            return json_value(v) if not isinstance(v, (str, bool, type(None), list)) else v

        return {
            "schema": JSON_SCHEMA_VERSION,
            "a": {"name": self.a.name, "formula": self.a.formula},
            "b": {"name": self.b.name, "formula": self.b.formula},
            "depth": self.depth,
            "same": self.same,
            "block_weights": None
            if self.block_weights is None
            else {
                k: [{"step": t, "a": json_value(wa), "b": json_value(wb)} for t, wa, wb in rows]
                for k, rows in self.block_weights.items()
            },
            "initial_weights": None
            if self.initial_weights is None
            else {
                k: {"a": json_value(wa), "b": json_value(wb)} for k, (wa, wb) in self.initial_weights.items()
            },
            "properties": {
                k: {"a": prop(k, va), "b": prop(k, vb)} for k, (va, vb) in self.properties.items()
            },
            "notes": list(self.notes),
        }

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(self.to_text()) + "</pre>"

    def to_text(self) -> str:
        lines = [f"A  {self.a.name}"]
        lines.extend(f"     {line}" for line in self.a.formula.rstrip().splitlines())
        lines.append(f"B  {self.b.name}")
        lines.extend(f"     {line}" for line in self.b.formula.rstrip().splitlines())
        out = f"{self.a.output}_{self.depth}"
        verdict = {True: "the same", False: "different", None: "not compared"}[self.same]
        lines.append("")
        lines.append(f"depth {self.depth}: the unrolled forms of {out} are {verdict}")
        if self.block_weights:
            lines.append("")
            lines.append("block weights that differ")
            rows = [
                [k, str(t), show(wa), show(wb)] for k, rs in self.block_weights.items() for t, wa, wb in rs
            ]
            lines.extend(table(["block", "step", "A", "B"], rows))
        if self.initial_weights:
            lines.append("")
            lines.append("initial weights that differ")
            lines.extend(
                table(
                    ["input", "A", "B"], [[k, show(a), show(b)] for k, (a, b) in self.initial_weights.items()]
                )
            )
        if self.properties:
            lines.append("")
            lines.append("properties that differ")
            rows = []
            for k, (va, vb) in self.properties.items():
                rows.append([k.replace("_", " "), _show_prop(va, k), _show_prop(vb, k)])
            lines.extend(table(["property", "A", "B"], rows))
        if self.notes:
            lines.append("")
            lines.append("notes")
            lines.extend(f"  - {note}" for note in self.notes)
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_text()


def _show_prop(v, name: str = "") -> str:
    if name == "characteristic_polynomial" and v is not None:
        return polynomial_show(v)
    if isinstance(v, list):
        return ", ".join(
            f"{show(r.value)}" + (f" (x{r.multiplicity})" if r.multiplicity > 1 else "") for r in v
        )
    if isinstance(v, str):
        return v
    if v is None:
        return "-"
    return show(v)


def _param_json(p) -> dict:
    """A parameter in JSON; a pair parameter's initial value is its ``.rec`` text (``[i == n]``)."""
    if p.pair is None:
        return {"init": json_value(p.init), "per_step": p.per_step}
    return {"init": rec_expr(p.init), "per_step": True, "pair": p.pair}


def _entry_naming(params) -> str:
    """How the tables name the entries of vector and matrix parameters, by the first one:
    ``; res00_n below is entry [0,0] of res_n``."""
    for p in params:
        if p.entry is not None:
            base, constraint, index = p.entry
            of = f"{constraint}({base}_n)" if constraint else f"{base}_n"
            return f"; {p.name}_n below is entry [{','.join(map(str, index))}] of {of}"
    return ""
