"""The search space: formula files (one categorical choice), free symbols with domains, and
backbone knobs, turned into Optuna distributions and back into bound candidates.

``--space`` items (command line, overriding the files' own ``symbol a in [...]`` domains)::

    NAME=LO:HI          an interval, sampled uniformly
    NAME=LO:HI:log      an interval, sampled on a log scale (LO > 0)
    NAME=V1,V2,...      a finite set of values (a single value fixes NAME)

Numbers are read exactly (``1/3``, ``-0.25``, ``1e-3``). A backbone knob (``depth``,
``widen_factor``, any option of the backbone) takes a finite set only.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sympy

from ..errors import UsageError
from ..floats import NETWORK_DTYPE, OVERFLOW_THRESHOLD
from ..ir import Domain, Recurrence
from ..limits import DEFAULT_BACKBONE
from ..numbers import option_value, parse_number
from ..printing import rec_expr, to_rec

__all__ = [
    "FORMULA_PARAM",
    "GRID_PARAM",
    "Candidate",
    "FormulaChoice",
    "Knob",
    "SearchSpace",
    "SymbolDimension",
    "build_space",
    "parse_space_item",
]

#: The Optuna parameter that picks the formula file when several compete.
FORMULA_PARAM = "formula"
#: The one Optuna parameter of a grid over several files: each grid point is one candidate
#: (``two_step_free: a=-0.6``), so that a file lacking a symbol is not repeated once per value
#: of that symbol, as a product of per-name dimensions would repeat it.
GRID_PARAM = "candidate"
#: Sampled interval values are rounded to this many significant digits, so that ``best.rec``
#: and the leaderboard show ``a = 0.317265`` rather than a 17-digit fraction.
SIGNIFICANT_DIGITS = 6


@dataclass(frozen=True)
class FormulaChoice:
    """One formula file of the search: its label (the file's stem, or its path when stems
    collide), its path, and its representation with ``--set`` values bound."""

    label: str
    path: str
    rec: Recurrence


@dataclass(frozen=True)
class SymbolDimension:
    """A free symbol searched over ``domain``; ``formulas`` are the labels of the files in
    which it is free."""

    name: str
    domain: Domain
    formulas: tuple[str, ...]

    @property
    def choices_text(self) -> list[str]:
        """The finite values as exact text (Optuna's categorical choices)."""
        return [value_text(v) for v in self.domain.choices or ()]

    def describe(self) -> dict:
        d = self.domain
        if d.choices is not None:
            return {"choices": self.choices_text}
        return {"low": value_text(d.low), "high": value_text(d.high), "log": bool(d.log)}


@dataclass(frozen=True)
class Knob:
    """A backbone option searched over a finite set of values."""

    name: str
    values: tuple

    def describe(self) -> dict:
        return {"choices": list(self.values)}


@dataclass(frozen=True)
class Candidate:
    """One member of the family: a formula with its free symbols bound, and backbone knobs."""

    formula: str  # the label of the formula file
    path: str
    rec: Recurrence  # bound
    values: Mapping[str, sympy.Expr] = field(default_factory=dict)
    knobs: Mapping[str, object] = field(default_factory=dict)

    @property
    def params(self) -> dict:
        """The searched values, JSON-ready: symbols as numbers, knobs as given."""
        out: dict = {name: float(v) for name, v in self.values.items()}
        out.update(self.knobs)
        return out

    @property
    def key(self) -> str:
        """Identifies the candidate (same formula, values and knobs: same key)."""
        text = json.dumps(
            [
                self.formula,
                {k: value_text(v) for k, v in sorted(self.values.items())},
                sorted(self.knobs.items()),
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """``two_step_free: a=-0.31, depth=20``."""
        items = [f"{k}={value_text(v)}" for k, v in self.values.items()]
        items += [f"{k}={v}" for k, v in self.knobs.items()]
        return self.formula + (": " + ", ".join(items) if items else "")


def value_text(value) -> str:
    """An exact number as text that reads back exactly: ``0.317265`` (a terminating decimal
    of at most 12 digits), else ``.rec`` syntax (``1/3``)."""
    value = sympy.sympify(value)
    if value.is_Rational and not value.is_Integer:
        q = int(value.q)
        twos, fives = 0, 0
        while q % 2 == 0:
            q //= 2
            twos += 1
        while q % 5 == 0:
            q //= 5
            fives += 1
        digits = max(twos, fives)
        if q == 1 and digits <= 12:
            text = f"{sympy.Float(value, 30):.{digits}f}"
            if sympy.Rational(text) == value:
                return text
    return rec_expr(value)


# --------------------------------------------------------------------------------------------
# parsing


def parse_space_item(item: str) -> tuple[str, Domain | list[str]]:
    """``NAME=LO:HI[:log]`` -> (name, interval Domain); ``NAME=V1,V2`` -> (name, [texts]).

    Finite values stay text here: they are numbers for a symbol, option values for a knob."""
    name, sep, text = item.partition("=")
    name, text = name.strip(), text.strip()
    if not sep or not name or not text:
        raise UsageError(f"--space expects NAME=LO:HI, NAME=LO:HI:log or NAME=V1,V2,..., got {item!r}")
    if not name.isidentifier():
        raise UsageError(f"--space {item}: {name!r} is not a name")
    if ":" in text:
        parts = [p.strip() for p in text.split(":")]
        log = len(parts) == 3 and parts[2].lower() == "log"
        if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise UsageError(f"--space {item}: write an interval as LO:HI or LO:HI:log")
        what = f"--space {item}"
        low, high = (_representable_number(what, p) for p in parts[:2])
        return name, interval_domain(what, low, high, log)
    values = [v.strip() for v in text.split(",")]
    if any(not v for v in values):
        raise UsageError(f"--space {item}: an empty value in the list")
    if len(set(values)) != len(values):
        raise UsageError(f"--space {item}: a value is repeated")
    return name, values


def _representable_number(what: str, text: str):
    """The exact number ``text``, unless the sampler and the network, which compute in double
    precision or less, would see it as 0 though it is not (below about 4.9e-324), or beyond the
    largest float32 (about 3.4e38: a coefficient multiplies float32 tensors)."""
    value = parse_number(what, text)
    if value != 0 and float(value) == 0.0:
        raise UsageError(
            f"{what}: {text.strip()} underflows to 0 in double precision (the smallest positive "
            "double is about 4.9e-324); write 0 if 0 is meant"
        )
    if abs(value) >= OVERFLOW_THRESHOLD[NETWORK_DTYPE]:
        raise UsageError(
            f"{what}: {text.strip()} exceeds the largest {NETWORK_DTYPE} (about 3.4e38), the precision "
            "the networks compute in"
        )
    return value


def interval_domain(what: str, low, high, log: bool) -> Domain:
    """A checked interval: non-empty, not reversed, positive on a log scale."""
    if high < low:
        raise UsageError(f"{what}: the interval is reversed ({value_text(low)} > {value_text(high)})")
    if high == low:
        raise UsageError(
            f"{what}: the interval is empty ({value_text(low)} to itself); to fix a value use --set"
        )
    if log and low <= 0:
        raise UsageError(f"{what}: a log-scale interval needs LO > 0")
    if not math.isfinite(float(high) - float(low)):  # the sampler draws in double precision
        raise UsageError(f"{what}: the interval is too wide for a sampler of floating-point numbers")
    return Domain(low=low, high=high, log=log)


def _symbol_choices(item: str, texts: Sequence[str]) -> Domain:
    values = [_representable_number(f"--space {item}", t) for t in texts]
    if len(set(values)) != len(values):
        raise UsageError(f"--space {item}: two values are equal")
    if len({float(v) for v in values}) != len(values):
        raise UsageError(
            f"--space {item}: two values are equal in double precision (the network computes in floats)"
        )
    return Domain(choices=tuple(values))


# --------------------------------------------------------------------------------------------
# the space


@dataclass(frozen=True)
class SearchSpace:
    formulas: tuple[FormulaChoice, ...]
    symbols: tuple[SymbolDimension, ...]
    knobs: tuple[Knob, ...]
    backbone: str

    @property
    def is_finite(self) -> bool:
        return all(d.domain.is_finite for d in self.symbols)

    def points(self) -> list[Candidate]:
        """Every member of a finite space once: per file, the product of its own symbols'
        values and the knobs (files in the order given, names in alphabetical order)."""
        return list(self._points)

    @functools.cached_property
    def _points(self) -> tuple[Candidate, ...]:
        points = []
        for choice in self.formulas:
            dims = [d for d in self.symbols if choice.label in d.formulas]
            symbol_values = itertools.product(*(d.domain.choices for d in dims))
            for values in symbol_values:
                bound = dict(zip((d.name for d in dims), values))
                rec = choice.rec.bind(**bound) if bound else choice.rec
                for knob_values in itertools.product(*(k.values for k in self.knobs)):
                    knobs = dict(zip((k.name for k in self.knobs), knob_values))
                    points.append(Candidate(choice.label, choice.path, rec, bound, knobs))
        return tuple(points)

    def grid(self) -> dict[str, list]:
        """The search space of Optuna's GridSampler (finite spaces only): one dimension per
        name for one file; for several files the single dimension :data:`GRID_PARAM` whose
        values are the points (each file's own space, once)."""
        if len(self.formulas) > 1:
            return {GRID_PARAM: [p.describe() for p in self.points()]}
        grid: dict[str, list] = {}
        for d in self.symbols:
            grid[d.name] = d.choices_text
        for k in self.knobs:
            grid[k.name] = list(k.values)
        return grid

    @property
    def grid_size(self) -> int | None:
        """The number of points of a finite space (None for an interval)."""
        if not self.is_finite:
            return None
        size = 0
        for choice in self.formulas:
            n = 1
            for d in self.symbols:
                if choice.label in d.formulas:
                    n *= len(d.domain.choices)
            size += n
        for k in self.knobs:
            size *= len(k.values)
        return size

    def signature(self) -> dict:
        """What makes two searches the same search (stored with the study, compared on resume)."""
        return {
            "formulas": [{"label": f.label, "formula": to_rec(f.rec)} for f in self.formulas],
            "symbols": {d.name: d.describe() for d in self.symbols},
            "knobs": {k.name: k.describe()["choices"] for k in self.knobs},
            "backbone": self.backbone,
        }

    def names(self) -> list[str]:
        return [d.name for d in self.symbols] + [k.name for k in self.knobs]

    def suggest(self, trial, grid: bool = False) -> Candidate:
        """Draw a candidate through an Optuna trial: the formula file (when several compete),
        then that file's symbols and the knobs. ``grid``: the sampler is the GridSampler of
        :meth:`grid` (several files: one choice among the points)."""
        if grid and len(self.formulas) > 1:
            points = {p.describe(): p for p in self._points}
            return points[trial.suggest_categorical(GRID_PARAM, list(points))]
        if len(self.formulas) > 1:
            label = trial.suggest_categorical(FORMULA_PARAM, [f.label for f in self.formulas])
            choice = next(f for f in self.formulas if f.label == label)
        else:
            choice = self.formulas[0]
        values: dict[str, sympy.Expr] = {}
        for d in self.symbols:
            if choice.label in d.formulas:
                values[d.name] = _suggest_symbol(trial, d)
        knobs = {k.name: trial.suggest_categorical(k.name, list(k.values)) for k in self.knobs}
        rec = choice.rec.bind(**values) if values else choice.rec
        return Candidate(choice.label, choice.path, rec, values, knobs)


def _suggest_symbol(trial, d: SymbolDimension) -> sympy.Expr:
    dom = d.domain
    if dom.choices is not None:
        text = trial.suggest_categorical(d.name, d.choices_text)
        return dom.choices[d.choices_text.index(text)]
    raw = trial.suggest_float(d.name, float(dom.low), float(dom.high), log=dom.log)
    value = sympy.Rational(f"{raw:.{SIGNIFICANT_DIGITS}g}")
    return min(max(value, dom.low), dom.high)


def _labels(paths: Sequence[str]) -> list[str]:
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    if len(set(paths)) != len(paths):
        raise UsageError("the same formula file is given twice")
    return [str(p) for p in paths]


def build_space(
    recs: Sequence[Recurrence],
    paths: Sequence[str],
    items: Iterable[str] | Mapping[str, object],
    backbone: str = DEFAULT_BACKBONE,
    backbone_options: Mapping[str, object] | None = None,
) -> SearchSpace:
    """The space of ``recs`` (parsed, ``--set`` bound) under ``--space`` items (or a mapping
    name -> Domain / item text / list of values). Every mistake is a :class:`UsageError`."""
    from ..codegen import get_backbone_info

    info = get_backbone_info(backbone)
    knob_names = ["depth", *info.defaults]
    labels = _labels(paths)
    formulas = tuple(FormulaChoice(label, str(p), rec) for label, p, rec in zip(labels, paths, recs))
    parsed = _parsed_items(items)

    free: dict[str, list[str]] = {}
    for f in formulas:
        for s in f.rec.free_symbols:
            free.setdefault(s, []).append(f.label)

    symbols: list[SymbolDimension] = []
    knobs: list[Knob] = []
    for name, (item, spec) in parsed.items():
        if name in free:
            if isinstance(spec, Domain):
                domain = spec
            else:
                domain = _symbol_choices(item, spec)
            symbols.append(SymbolDimension(name, domain, tuple(free[name])))
        elif name in knob_names:
            if isinstance(spec, Domain):
                raise UsageError(
                    f"--space {item}: the backbone option {name} takes a list of values (e.g. {name}=20,32,44)"
                )
            values = tuple(option_value(v) for v in spec)
            for v in values:
                options = dict(backbone_options or {})
                options[name] = v
                depth = options.pop("depth", None)
                try:
                    info.validate(depth=depth, **options)
                except (ValueError, TypeError, UsageError) as exc:  # codegen's BackboneError is a UsageError
                    raise UsageError(f"--space {item}: {exc}") from None
            knobs.append(Knob(name, values))
        else:
            raise UsageError(_not_searchable(name, item, formulas, knob_names, backbone))

    given = {d.name for d in symbols}
    for name, owners in free.items():
        if name in given:
            continue
        domains = {f.label: f.rec.domains[name] for f in formulas if name in f.rec.domains}
        if not domains:
            raise UsageError(
                f"the free symbol {name} of {', '.join(owners)} has no domain: search it with "
                f"--space {name}=LO:HI (or declare `symbol {name} in [LO, HI]`), or fix it with --set {name}=VALUE"
            )
        if len(set(domains.values())) > 1 or len(domains) < len(owners):
            raise UsageError(
                f"the symbol {name} has different domains in {', '.join(owners)}; give one with --space {name}=..."
            )
        symbols.append(SymbolDimension(name, next(iter(domains.values())), tuple(owners)))
    if len(formulas) > 1 and FORMULA_PARAM in {d.name for d in symbols} | {k.name for k in knobs}:
        raise UsageError(
            f"a searched name may not be {FORMULA_PARAM!r} when several files compete (it names the file choice)"
        )
    symbols.sort(key=lambda d: d.name)
    return SearchSpace(formulas, tuple(symbols), tuple(knobs), backbone)


def _parsed_items(items) -> dict[str, tuple[str, Domain | list[str]]]:
    parsed: dict[str, tuple[str, Domain | list[str]]] = {}
    if isinstance(items, Mapping):
        pairs = []
        for name, spec in items.items():
            if isinstance(spec, Domain):
                if spec.choices is None:
                    spec = interval_domain(f"--space {name}", spec.low, spec.high, spec.log)
                pairs.append((name, f"{name}=...", spec))
            elif isinstance(spec, str):
                pairs.append((name, f"{name}={spec}", parse_space_item(f"{name}={spec}")[1]))
            else:
                values = [str(v) for v in spec]
                pairs.append((name, f"{name}={','.join(values)}", values))
    else:
        pairs = []
        for item in items:
            name, spec = parse_space_item(item)
            pairs.append((name, item, spec))
    for name, item, spec in pairs:
        if name in parsed:
            raise UsageError(f"--space {name} is given twice")
        parsed[name] = (item, spec)
    return parsed


def _not_searchable(name, item, formulas, knob_names, backbone) -> str:
    for f in formulas:
        rec = f.rec
        if name in rec.constants:
            return f"--space {item}: {name} is a constant in {f.label} ({name} = {value_text(rec.constants[name])}), not a free symbol; declare it `symbol {name}` to search it"
        if name in rec.bindings:
            return f"--space {item}: {name} is bound by --set in {f.label}, not a free symbol"
        param = name[:-2] if name.endswith("_n") and name[:-2] in rec.params else name
        if param in rec.params:
            return f"--space {item}: {param} is a trained parameter in {f.label} (param), not a free symbol; training sets it"
    free = sorted({s for f in formulas for s in f.rec.free_symbols})
    return (
        f"--space {item}: unknown name {name!r}; the free symbols are {', '.join(free) or '(none)'} "
        f"and the {backbone} options {', '.join(knob_names)}"
    )
