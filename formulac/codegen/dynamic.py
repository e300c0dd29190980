"""Code of input-dependent coefficients (``param pre_n[4] = onehot(0) + dynamic(h_n)``).

A dynamic parameter ``P`` reading state ``s`` holds, in its step module, its static part (the
parameter as without ``dynamic``), a projection ``P_map`` (features x k for a matrix [k,k],
features for a vector or a number) that starts at 0, and a scale ``P_map_scale`` (0.01, the
`hyper-connections` package's start); the state's RMS norm has one learned gain a step,
``s_norm_gain``, shared by every parameter reading ``s``. At the start of the step's
``forward`` each becomes a local, one value per token (one einsum-able tensor whose feature
dimension has size 1)::

    h_normed = normalized_features(h_n, self.h_norm_gain, 2)
    pre_tokens = dynamic_coefficient(self.pre, h_normed, self.pre_map, self.pre_map_scale, 2)

that the step's code reads instead of the parameter. Entry i of a vector, and column i of a
matrix, come from stream i (the package's ``alpha[s, :]`` from stream s). This module is pure
Python; the two functions it names are written into the emitted file (:func:`runtime_lines`).
"""

from __future__ import annotations

from ..errors import UsageError
from ..ir import Param, Recurrence, StateRef
from ..limits import DYNAMIC_SCALE_START

__all__ = [
    "dynamic_params",
    "dynamic_attributes",
    "dynamic_locals",
    "prologue_lines",
    "init_lines",
    "runtime_lines",
    "refuse_dynamic",
    "dynamic_refusal",
    "require_width",
]


# map of dynamic(s_n, MAP) (formulac.ir.DYNAMIC_MAPS) -> the extra argument of the emitted
# dynamic_coefficient call: its squashing function (none: the default, tanh)
_SQUASH_ARGUMENT = {"tanh": "", "linear": ", squash=None"}


def dynamic_params(rec: Recurrence) -> list[Param]:
    """The parameters of ``rec`` with an input-dependent part, in declaration order."""
    return [p for p in rec.params.values() if p.dynamic is not None]


def refuse_dynamic(rec: Recurrence, what: str) -> None:
    """A :class:`UsageError` for the code paths that cannot build input-dependent coefficients."""
    if dynamic_params(rec):
        raise UsageError(f"{what} does not support input-dependent coefficients (dynamic(...)) yet")


def dynamic_refusal(rec: Recurrence, mode: str) -> str | None:
    """Why memory mode ``mode``, which rebuilds states from the formula's inverse, cannot run a
    formula with input-dependent coefficients (None without any). ``rec``: lowered or compact."""
    held = rec.compact if rec.compact is not None else rec
    if not dynamic_params(held):
        return None
    return (
        f"memory={mode!r} rebuilds states from the formula's inverse, which reads the coefficients as "
        "numbers; input-dependent ones (dynamic(...)) are computed from the states being rebuilt: "
        "use memory='checkpoint'"
    )


def require_width(rec: Recurrence, width: int | None, what: str) -> dict:
    """The keyword arguments that give the steps of ``what`` the width of the states: none
    without input-dependent coefficients, a :class:`UsageError` when they need one and it is missing."""
    if not dynamic_params(rec):
        return {}
    if width is None or isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise UsageError(
            f"{what}: the formula's input-dependent coefficients (dynamic(...)) map the states' "
            f"features: give their number, width=D (a positive whole number, not {width!r})"
        )
    return {"width": width}


def dynamic_attributes(
    rec: Recurrence, attributes: dict[str, str], taken: set[str]
) -> dict[str, dict[str, str]]:
    """Parameter -> its generated names: ``static`` (the parameter's attribute, from
    ``attributes``), ``map``, ``scale``, ``gain`` (of the state it reads), ``normed`` and
    ``local``, and ``read`` (the state) and ``columns``. New names avoid ``taken`` (and are added to it)."""

    def fresh(name: str) -> str:
        while name in taken:
            name += "_param"
        taken.add(name)
        return name

    gains: dict[str, tuple[str, str]] = {}
    names = {}
    for p in dynamic_params(rec):
        read = StateRef.of(p.dynamic).name
        if read not in gains:
            gains[read] = (fresh(f"{read}_norm_gain"), fresh(f"{read}_normed"))
        attr = attributes[p.name]
        names[p.name] = {
            "static": attr,
            "map": fresh(f"{attr}_map"),
            "scale": fresh(f"{attr}_map_scale"),
            "gain": gains[read][0],
            "normed": gains[read][1],
            "local": fresh(f"{attr}_tokens"),
            "read": read,
            # a matrix [k,k]'s projection has k columns (row j of the coefficient), others one
            "columns": str(p.shape[0]) if p.shape is not None and len(p.shape) == 2 else "",
            "map_kind": p.dynamic_map,  # a key of DYNAMIC_MAPS: tanh or linear
        }
    return names


def dynamic_locals(names: dict[str, dict[str, str]]) -> dict[str, str]:
    """Parameter -> the local variable the step's code reads it from."""
    return {name: entry["local"] for name, entry in names.items()}


def _state_feature_dim(rec: Recurrence, state: str, feature_dim: int) -> int:
    """The features' dimension in the tensor that holds ``state`` (stacked streams: one more)."""
    return feature_dim + 1 if state in rec.streams and feature_dim >= 0 else feature_dim


def prologue_lines(
    rec: Recurrence, names: dict[str, dict[str, str]], read_names: dict[str, str], feature_dim: int
) -> list[str]:
    """``forward``'s first lines: each read state normalised once, each coefficient per token.
    ``read_names``: state -> the step's variable holding it at n."""
    lines, normalised = [], set()
    for name, entry in names.items():
        read = entry["read"]
        if read not in read_names:
            raise UsageError(
                f"compile: {name}'s dynamic part reads {read}_n, which the step does not read; "
                f"use {read}_n in an equation or map a state the step reads"
            )
        dim = _state_feature_dim(rec, read, feature_dim)
        if read not in normalised:
            normalised.add(read)
            lines.append(
                f"{entry['normed']} = normalized_features({read_names[read]}, self.{entry['gain']}, {dim})"
            )
        squash = _SQUASH_ARGUMENT[entry["map_kind"]]
        lines.append(
            f"{entry['local']} = dynamic_coefficient(self.{entry['static']}, {entry['normed']}, "
            f"self.{entry['map']}, self.{entry['scale']}, {dim}{squash})"
        )
    return lines


def init_lines(names: dict[str, dict[str, str]], width: str, indent: str) -> list[str]:
    """The step's ``__init__`` lines creating the gains, projections and scales; ``width``: the
    code of the features' size."""
    lines, gains = [], set()
    for entry in names.values():
        if entry["gain"] not in gains:
            gains.add(entry["gain"])
            lines.append(f"{indent}self.{entry['gain']} = nn.Parameter(torch.zeros({width}))")
        columns = f", {entry['columns']}" if entry["columns"] else ""
        lines.append(f"{indent}self.{entry['map']} = nn.Parameter(torch.zeros({width}{columns}))")
        lines.append(f"{indent}self.{entry['scale']} = nn.Parameter(torch.tensor({DYNAMIC_SCALE_START!r}))")
    return lines


def runtime_lines(rec: Recurrence) -> list[str]:
    """The module-level functions a formula with dynamic coefficients calls (torch only)."""
    if not dynamic_params(rec):
        return []
    return [
        "def normalized_features(state, gain, feature_dim):",
        '    """The state RMS-normalised over its features, times 1 + gain, the features moved last',
        "    (the hyper-connections package's RMSNorm: normalize * sqrt(features) * (gain + 1)).\"\"\"",
        "    features = torch.movedim(state, feature_dim, -1)",
        "    return torch.nn.functional.normalize(features, dim=-1) * features.shape[-1] ** 0.5 * (gain + 1)",
        "",
        "",
        "def dynamic_coefficient(static, normed, projection, scale, feature_dim, squash=torch.tanh):",
        '    """static + scale*squash(normed @ projection) for every token (squash None: linear, mHC\'s),',
        "    shaped to broadcast over the state (its feature dimension of size 1). A matrix's projection",
        '    (features x k) makes entry (j, i) from stream i: the rows come first."""',
        "    dynamic = normed @ projection",
        "    dynamic = (dynamic if squash is None else squash(dynamic)) * scale",
        "    if projection.dim() == 2:",
        "        dynamic = torch.movedim(dynamic, -1, 0)",
        "    dynamic = dynamic.unsqueeze(feature_dim + projection.dim() - 1 if feature_dim >= 0 else -1)",
        "    return static.reshape(static.shape + (1,) * (dynamic.dim() - static.dim())) + dynamic",
        "",
        "",
    ]
