"""formulac: compile recursion formulas into neural networks, and analyse them.

>>> import formulac
>>> f = formulac.parse("x_<n+1> = x_n + F(x_n)")
>>> f.analyze(depth=4).block_weights["F"]
[1, 1, 1, 1]
"""

from .display import plot  # matplotlib is imported only when something is drawn
from .errors import FormulacError, SourceError, UsageError
from .formula import Formula, compile, load, parse, wire
from .limits import DEFAULT_DEPTH

__all__ = [
    "parse",
    "load",
    "compile",
    "wire",
    "analyze",
    "search",
    "transform",
    "plot",
    "Formula",
    "FormulacError",
    "SourceError",
    "UsageError",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # formulac.search and formulac.transform (packages that are also callable) load Optuna and
    # torch only when first used; formulac.hf loads torch only when first used
    if name in ("search", "transform", "hf"):
        import importlib

        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def analyze(formula, depth: int = DEFAULT_DEPTH, params: str = "symbolic"):
    """The analysis of a formula (text, a Formula, a Recurrence, or a .rec file as a Path) at a depth."""
    from .analysis import analyze as _analyze
    from .parse import as_recurrence

    return _analyze(as_recurrence(formula), depth=depth, params=params)
