"""``formulac check | unroll | analyze | diff``: the analysis commands (never import torch)."""

from __future__ import annotations

import json
import sys

from ..errors import FormulacError, UsageError
from .common import add_set_argument, formula_command, load_all_bound, nonnegative_int

__all__ = ["register"]


def register(subparsers) -> None:
    formula_command(
        subparsers,
        "check",
        _check,
        help="parse formula files and report errors",
        description="Parse every FILE; print one line per file (order, blocks, linearity) or its "
        "errors as FILE:LINE:COL: error: ...; exit status 2 if any file failed.",
        several=True,
    )

    p = formula_command(
        subparsers,
        "unroll",
        _unroll,
        help="write x_N in terms of x_0 and the block outputs",
        description="Unroll the formula N steps: the output state x_N in terms of the input x_0 "
        "and the block outputs F_i(...), whose arguments keep the named states x_i.",
    )
    p.add_argument("--steps", type=nonnegative_int, required=True, metavar="N", help="number of steps")
    p.add_argument("--latex", action="store_true", help="print LaTeX instead of .rec syntax")
    p.add_argument("--state", metavar="NAME", help="unroll this state instead of the output")
    _add_values(p)

    p = formula_command(
        subparsers,
        "analyze",
        _analyze,
        help="block weights, characteristic roots, stability and consistency",
        description="Analyse the formula at depth N: the weight of every block output and of x_0 "
        "in x_N, the characteristic polynomial of the linear part, its roots, the stability "
        "class, the rate, consistency and the path-length distribution of the unrolled network.",
    )
    p.add_argument(
        "--depth", type=nonnegative_int, default=None, metavar="N", help="analyse x_N (default: 10)"
    )
    p.add_argument("--json", action="store_true", help="print the JSON contract (docs/cli.md)")
    p.add_argument(
        "--exact", action="store_true", help="with --json: add exact values as strings under \"exact\""
    )
    _add_values(p)

    p = subparsers.add_parser(
        "diff",
        help="compare two formulas' unrolled forms and weights",
        description="Compare two formulas at depth N: whether x_N unrolls to the same form, the "
        "block and initial weights that differ (by step), and other properties that differ. "
        "Exit status 0 when the unrolled forms are the same, 1 when they differ, 2 on errors.",
    )
    p.add_argument("a", metavar="A", help="first .rec formula file")
    p.add_argument("b", metavar="B", help="second .rec formula file")
    p.add_argument(
        "--depth", type=nonnegative_int, default=None, metavar="N", help="compare x_N (default: 10)"
    )
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    _add_values(p)
    p.set_defaults(handler=_diff)


def _add_values(p) -> None:
    """--params and --set: the values the analysis gives parameters and free symbols."""
    p.add_argument(
        "--params",
        choices=("symbolic", "init"),
        default="symbolic",
        help="learnable parameters as symbols (default) or at their initial values",
    )
    add_set_argument(p)


# -- helpers ----------------------------------------------------------------------------------


def _prepare_output() -> None:
    # exact integers of deep formulas can have thousands of digits
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    if encoding != "utf8" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")


def _dump(data) -> None:
    print(json.dumps(data, indent=2))


# -- handlers ---------------------------------------------------------------------------------


def _check(args) -> int:
    from ..analysis.linear import structure
    from ..codegen import PlanError, check_buildable
    from ..parse import load

    _prepare_output()
    failed = 0
    for path in args.files:
        try:
            rec = load(path)
            st = structure(rec)
            try:
                check_buildable(rec)  # what compile would refuse, check refuses
            except PlanError as exc:
                raise exc.in_file(path) from None
        except FormulacError as exc:
            print(exc.format(), file=sys.stderr)
            failed += 1
            continue
        parts = ["history" if rec.order is None else f"order {rec.order}"]
        if len(rec.states) > 1:
            parts.append(f"{len(rec.states)} states")
        nb = len(rec.blocks)
        parts.append(f"{nb} block{'s' if nb != 1 else ''}")
        parts.append("linear" if st.linear else "non-linear")
        free = rec.free_symbols
        if free:  # a coefficient nothing declares is one: shown, so that a typo is seen
            parts.append(f"free symbol{'s' if len(free) > 1 else ''} {', '.join(free)}")
        print(f"{path}: ok ({', '.join(parts)})")
    return 2 if failed else 0


def _unroll(args) -> int:
    from ..analysis import unroll
    from ..printing import latex_expr

    _prepare_output()
    (rec,) = load_all_bound([args.file], args.bindings)
    u = unroll(rec, args.steps, args.state, params=args.params)
    if args.latex:
        print(f"{latex_expr(u.lhs)} = {u.latex}")
    else:
        print(u)
    return 0


def _analyze(args) -> int:
    from ..analysis import DEFAULT_DEPTH, analyze

    _prepare_output()
    if args.exact and not args.json:
        raise UsageError("--exact goes with --json")
    (rec,) = load_all_bound([args.file], args.bindings)
    result = analyze(rec, DEFAULT_DEPTH if args.depth is None else args.depth, params=args.params)
    if args.json:
        _dump(result.to_json(exact=args.exact))
    else:
        sys.stdout.write(result.to_text())
    return 0


def _diff(args) -> int:
    from ..analysis import DEFAULT_DEPTH, diff

    _prepare_output()
    a, b = load_all_bound([args.a, args.b], args.bindings)
    result = diff(a, b, DEFAULT_DEPTH if args.depth is None else args.depth, params=args.params)
    if args.json:
        _dump(result.to_json())
    else:
        sys.stdout.write(result.to_text())
    return 0 if result.same else 1
