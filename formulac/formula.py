"""The public face of a parsed formula: one object that parses, analyses, shows and compiles.

``Formula`` wraps the representation (:class:`~formulac.ir.Recurrence`) and hands each request
to the stage of the pipeline that owns it; torch is imported only by :meth:`compile` and
:meth:`wire`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import UsageError
from .floats import coefficient_problem
from .ir import Recurrence, n
from .limits import CHECKED_STEPS, DEFAULT_BACKBONE, DEFAULT_DEPTH
from .parse import as_recurrence
from .parse import load as _load_rec
from .parse import parse as _parse_rec
from .printing import latex_expr, rec_expr, to_rec

__all__ = ["Formula", "NetworkFactory", "parse", "load", "load_bound_recurrences", "network_factory"]


class Formula:
    """A formula file, parsed. ``Formula.rec`` is the underlying representation."""

    def __init__(self, rec: Recurrence):
        self.rec = rec

    # -- text ---------------------------------------------------------------------------
    def to_rec(self) -> str:
        """Canonical ``.rec`` text that parses back to the same formula."""
        return to_rec(self.rec)

    def __str__(self) -> str:
        return self.to_rec().strip()

    def __repr__(self) -> str:
        return f"<Formula {self.rec.name}: " + "; ".join(self.to_rec().strip().splitlines()) + ">"

    def __eq__(self, other) -> bool:
        return isinstance(other, Formula) and self.to_rec() == other.to_rec()

    def __hash__(self) -> int:
        return hash(self.to_rec())

    def _repr_latex_(self) -> str:
        from .display.latex import formula_latex

        return "$$" + formula_latex(self.rec) + "$$"

    def latex(self) -> str:
        """The equations in LaTeX, in the user's term order."""
        return ", \\quad ".join(
            f"{eq.state}_{{n+1}} = {latex_expr(eq.display_rhs)}" for eq in self.rec.equations
        )

    # -- facts ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.rec.name

    @property
    def order(self) -> int | None:
        return self.rec.order

    @property
    def states(self) -> tuple[str, ...]:
        return self.rec.states

    @property
    def blocks(self) -> tuple[str, ...]:
        return self.rec.blocks

    @property
    def free_symbols(self) -> tuple[str, ...]:
        return self.rec.free_symbols

    def bind(self, **values) -> Formula:
        """A copy with symbols (or constants) given values: ``f.bind(a=0.5)``."""
        return Formula(self.rec.bind(**values))

    # -- analysis -------------------------------------------------------------------------
    def analyze(self, depth: int = DEFAULT_DEPTH, params: str = "symbolic"):
        """Order, linearity, block weights in x_depth, roots, stability, consistency."""
        from .analysis import analyze

        return analyze(self.rec, depth=depth, params=params)

    def unroll(self, steps: int):
        """x_steps in terms of x_0 and the block outputs F_i(...)."""
        from .analysis import unroll

        return unroll(self.rec, steps)

    def diff(self, other: Formula, depth: int = DEFAULT_DEPTH):
        """How two formulas differ once unrolled."""
        from .analysis import diff

        return diff(self.rec, as_recurrence(other), depth=depth)

    def graph(self, depth: int):
        """The dependency graph of the unrolled network (networkx)."""
        from .analysis import dependency_graph

        return dependency_graph(self.rec, depth)

    # -- code generation ----------------------------------------------------------------------
    def compile(self, backbone: str = DEFAULT_BACKBONE, depth: int | None = None, **options):
        """The network for this formula on a backbone, as an ``nn.Module`` (see ``compile``)."""
        return compile(self, backbone=backbone, depth=depth, **options)

    def source(self, backbone: str = DEFAULT_BACKBONE, depth: int | None = None, **options) -> str:
        """The standalone Python source that ``formulac compile -o`` writes."""
        from .codegen import compile_source

        return compile_source(self.rec, backbone=backbone, depth=depth, **options)

    def wire(self, blocks: Mapping[str, Sequence], width: int | None = None):
        """Apply the formula to the user's modules: ``blocks={"F": [m_0, ..., m_{N-1}]}``;
        ``width``: the states' features, for input-dependent coefficients (``dynamic(...)``)."""
        from .codegen import wire

        return wire(self.rec, dict(blocks), width)


def parse(text: str | bytes, name: str = "<string>") -> Formula:
    """Parse formula text; errors are :class:`~formulac.errors.SourceError` (FILE:LINE:COL)."""
    return Formula(_parse_rec(text, name))


def load(path: str | Path) -> Formula:
    """Read and parse a ``.rec`` file."""
    return Formula(_load_rec(path))


def compile(
    formula,
    backbone: str = DEFAULT_BACKBONE,
    depth: int | None = None,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    transition: str = "reset",
    memory: str = "standard",
    **options,
):
    """The network for a formula on a backbone, built in memory.

    The module is the one ``formulac compile -o model.py`` writes, executed: ``FormulaNet``.
    ``options`` are the backbone's (``shortcut="A"|"B"``, ``widen_factor``, ...) and values for
    free symbols of the formula (``a=0.5``). ``memory``: "standard" (autograd keeps every
    activation), "reversible" (states rebuilt backward from the formula's inverse; invertible
    formulas only) or "checkpoint" (``torch.utils.checkpoint`` over segments of each stage).
    """
    from .codegen import compile_network

    rec = as_recurrence(formula)
    symbol_values = {k: options.pop(k) for k in list(options) if k in rec.symbols or k in rec.constants}
    if symbol_values:
        rec = rec.bind(**symbol_values)
    rec.require_bound()
    return compile_network(
        rec,
        backbone=backbone,
        depth=depth,
        num_classes=num_classes,
        in_channels=in_channels,
        transition=transition,
        memory=memory,
        **options,
    )


def wire(formula, blocks: Mapping[str, Sequence], width: int | None = None):
    """``nn.Module`` mapping x_0 to x_N by the formula with the user's blocks; ``width``: the
    states' features, for input-dependent coefficients (``dynamic(...)``)."""
    from .codegen import wire as _wire

    rec = as_recurrence(formula)
    rec.require_bound("wire")
    return _wire(rec, dict(blocks), width)


class NetworkFactory:
    """``build_model(in_channels, num_classes, input_size)`` for :func:`formulac.train.train`:
    compiles a formula on a backbone (``backbone_kwargs``: backbone, depth, transition,
    options), filling in what the data set decides.

    Picklable, so that ``compare --jobs`` can build in worker processes.  ``describe`` is the
    JSON the run directory records; each build records there the SHA-256 of the source it
    compiled (the file ``formulac compile`` writes for the same classes and input channels).
    Bad options fail in the constructor, before any data is loaded."""

    def __init__(self, rec: Recurrence, backbone_kwargs: Mapping):
        from .codegen import compile_source, get_backbone_info

        self.rec = rec
        self.kwargs = dict(backbone_kwargs)
        self._takes_input_size = "input_size" in get_backbone_info(self.kwargs["backbone"]).defaults
        source = compile_source(rec, **self.kwargs)
        self._text = _rebuildable_text(rec, source, self.kwargs)
        self.describe = {
            "formula": to_rec(rec),
            "file": Path(rec.name).name,
            **{k: v for k, v in self.kwargs.items() if v is not None},
        }

    # Pickling SymPy expressions rebuilds them in canonical order, which would change the user's
    # term order in the emitted source; a formula read from a file travels as its text instead.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self._text is not None:
            state["rec"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.rec is None:
            self.rec = _from_text(*self._text)

    def check_precision(self, dtype: str) -> None:
        """Refuse (:class:`UsageError`) a coefficient that is infinite in ``dtype`` at some step
        (``bfloat16``, ``float16``: a mixed-precision run computes the block outputs and what the
        step adds to them in it; float32 the parser checks already)."""
        rec, values = self.rec, self.rec.substitutions()
        computed = [(f"the equation of {eq.state}", eq.rhs) for eq in rec.equations]
        computed += [(f"the equation of {eq.state}", eq.display_rhs) for eq in rec.equations]
        for what, value in computed:
            problem = coefficient_problem(value, n, CHECKED_STEPS, values, dtype)
            if problem is not None:
                raise UsageError(
                    f"{Path(rec.name).name}: in {what} the coefficient {problem.describe(rec_expr)}; "
                    "train without mixed precision (--amp none)"
                )

    def __call__(self, in_channels: int, num_classes: int, input_size: int):
        from .codegen import compile_source, load_source

        options = dict(self.kwargs)
        options["in_channels"] = options.get("in_channels") or in_channels
        options["num_classes"] = options.get("num_classes") or num_classes
        if self._takes_input_size and "input_size" not in options:
            options["input_size"] = input_size
        source = compile_source(self.rec, **options)
        self.describe["source_sha256"] = hashlib.sha256(source.encode()).hexdigest()
        return load_source(source, "net").FormulaNet()


def _from_text(text: str, name: str, bindings: dict) -> Recurrence:
    rec = _parse_rec(text, name)
    return rec.bind(**bindings) if bindings else rec


def _rebuildable_text(rec: Recurrence, source: str, kwargs: dict):
    """(file text, name, bindings) that parse and bind back to ``rec`` (checked: the same
    compiled source), or None."""
    from .codegen import compile_source

    try:
        text = Path(rec.name).read_text(encoding="utf-8")
        spec = (text, rec.name, {str(k): v for k, v in rec.bindings.items()})
        if compile_source(_from_text(*spec), **kwargs) == source:
            return spec
    except (OSError, UnicodeDecodeError, UsageError, ValueError, TypeError):
        pass
    return None


def network_factory(rec: Recurrence, backbone_kwargs: Mapping) -> tuple[NetworkFactory, dict]:
    """``(build_model, describe)`` for training: a :class:`NetworkFactory` and its
    ``describe``."""
    factory = NetworkFactory(rec, backbone_kwargs)
    return factory, factory.describe


def load_bound_recurrences(paths: Sequence[str], values: Mapping) -> list[Recurrence]:
    """Parse formula files and bind ``values`` (``--set``): each name goes to the files that have
    it, and a name that no file has is a :class:`UsageError`."""
    recs = [_load_rec(p) for p in paths]
    if not values:
        return recs
    used: set[str] = set()
    out = []
    for rec in recs:
        names = set(rec.symbols) | set(rec.constants)
        mine = {k: v for k, v in values.items() if k in names}
        used |= set(mine)
        out.append(rec.bind(**mine) if mine else rec)
    unknown = sorted(set(values) - used)
    if unknown:
        known = sorted({s for rec in recs for s in (*rec.symbols, *rec.constants)})
        raise UsageError(
            f"--set {unknown[0]}=...: no symbol or constant {unknown[0]!r} in "
            f"{' or '.join(map(str, paths))} (known: {', '.join(known) or 'none'})"
        )
    return out
