"""Input-dependent coefficients: ``param pre_n[4] = onehot(0) + dynamic(h_n)``.

A per-step parameter may add to its static initial value the part ``dynamic(s_n)``: a learned
map of the state ``s`` at the parameter's step, computed per token (hyper-connections' dynamic
H_pre, H_res and H_post; a highway gate). On a stream state ``h[k]`` the parameter is a
vector ``[k]`` (entry i from stream i) or a matrix ``[k,k]`` (column i from stream i); on a
plain state it is one number per token. ``dynamic(s_n, linear)`` leaves out the tanh (mHC's
dynamic part). The map starts at zero, so the formula's analyses,
which read the static part, hold at the start; this module splits the declaration and checks
that the part fits the parameter.
"""

from __future__ import annotations

import lark
import sympy

from ..ir import DEFAULT_DYNAMIC_MAP, Dynamic, StateRef, rec_expr
from .declarations import Declarations
from .syntax import Source

__all__ = ["split_dynamic"]


def split_dynamic(
    name: str, init: sympy.Expr, per_step: bool, names: Declarations, source: Source, node: lark.Tree
) -> tuple[sympy.Expr, sympy.Expr | None, str]:
    """``STATIC + dynamic(s_n, MAP)`` -> ``(STATIC, s[n], MAP)`` (MAP: the default without a
    second argument); ``(init, None, default)`` without a dynamic part. A
    :class:`~formulac.errors.SourceError` at ``node`` when the part is misplaced or does not
    fit the parameter's shape."""
    parts = init.atoms(Dynamic)
    if not parts:
        return init, None, DEFAULT_DYNAMIC_MAP
    (part, *more) = sorted(parts, key=str)
    static = sympy.Add(init, -part)  # the static part: what is left after the one dynamic term
    if more or static.has(Dynamic) or not isinstance(init, (sympy.Add, Dynamic)):
        raise source.error(
            f"the initial value of {name} is a static value plus one dynamic part: "
            f"param {name}_n = 0 + dynamic(x_n), not {rec_expr(init)}",
            node,
        )
    if not per_step:
        raise source.error(
            f"a dynamic part is computed at each step: declare {name}_n = ... + {rec_expr(part)}", node
        )
    (reference, *named_map) = part.args
    read = StateRef.of(reference).name
    shape = names.shapes.get(name, (None,))[0]
    streams = names.streams.get(read, (None,))[0]
    if streams is None and shape is not None:
        raise source.error(
            f"{name}_n[{','.join(map(str, shape))}] holds one number per stream, but {read} is one tensor: "
            f"its dynamic part reads a stream state (dynamic(h_n)), or declare {name}_n without a shape",
            node,
        )
    if streams is not None and (shape is None or shape[0] != streams):
        declared = f"{name}_n" if shape is None else f"{name}_n[{','.join(map(str, shape))}]"
        raise source.error(
            f"dynamic({rec_expr(reference)}) gives one number per stream of {read} ({streams} streams), "
            f"so {name} is a vector [{streams}] or a matrix [{streams},{streams}], not {declared}",
            node,
        )
    return static, reference, str(named_map[0]) if named_map else DEFAULT_DYNAMIC_MAP
