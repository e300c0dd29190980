"""Write the Python source of a network that follows a formula.

Two products share one step class:

* :func:`wire_source` — a ``Recurrence`` module mapping ``x_0`` to ``x_N`` through the user's
  blocks (``formulac.wire``);
* :func:`network_source` — a whole network on a backbone: the backbone's torch-only file
  copied verbatim, then a step class and a network class (``formulac.compile``).

The output is deterministic: the same formula and options give byte-identical text. No user
text reaches it except identifiers the parser validated and numbers.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from dataclasses import dataclass

import sympy

from ..errors import UsageError
from ..ir import BlockCall, Concat, Recurrence, StateRef, block_calls, n, rebuild, state
from ..printing import rec_expr
from . import dynamic, streams
from .backbones import BackboneInfo, Stage
from .memory_mode import MemoryMode
from .memory_modes import DEFAULT_MEMORY_MODE, get_memory_mode
from .plan import (
    PlanError,
    StepPlan,
    formula_text,
    located,
    number_literal,
    plan_step,
    unprojected_name,
    var_name,
)
from .source_format import INDENT, alike_runs, docstring, fitted, indented, literal, run_as_list

__all__ = [
    "GENERATED_MARK",
    "is_generated_module",
    "wire_source",
    "network_source",
    "NetworkLayout",
    "network_layout",
    "network_parameter_attributes",
    "network_dynamic_attributes",
]


# -- the step class ----------------------------------------------------------------------------


def _step_arguments(plan: StepPlan, unprojected: str | None = None) -> list[str]:
    """What a step reads, in the order the caller passes it (shared parameters come after);
    ``unprojected`` is what the caller passes for the unprojected output state."""
    args = [var_name(s, o) for s, o in plan.reads]
    args += [f"{s}_0" for s in plan.starts]
    args += [f"{h}_history" for h in plan.history]
    if plan.raw_blocks:
        args.append(unprojected or unprojected_name(plan.output))
    return args


def _step_signature(plan: StepPlan) -> list[str]:
    keyword_only = [plan.shared_params[p][0] for p in plan.shared_params]
    return _step_arguments(plan) + (["*", *keyword_only] if keyword_only else [])


def _forward_docstring(plan: StepPlan) -> str:
    """What the step computes from what, in the formula's notation."""
    returned = ", ".join(rec_expr(state(s, n + 1)) for s in _returned(plan))
    read = [rec_expr(state(s, n + o)) for s, o in plan.reads]
    read += [rec_expr(state(s, 0)) for s in plan.starts]
    read += [f"{h}_history = [{rec_expr(state(h, first))}, ..., {h}_n]" for h, first in plan.history.items()]
    lines = [f"{returned} from {', '.join(read)}." if read else f"{returned}."]
    if plan.raw_blocks:
        blocks = " and ".join(sorted(plan.raw_blocks))
        lines.append(
            f"{blocks} read{'s' if len(plan.raw_blocks) == 1 else ''} {unprojected_name(plan.output)}: "
            f"{plan.output}_n, or at a stage's first step the stage input before its projection."
        )
    return "\n".join(lines)


def _step_class(plan: StepPlan, base: str | None) -> list[str]:
    """The step module. With ``base`` (a backbone branch class) the step IS the branch, so
    that its layers sit where the reference layout has them; otherwise blocks are children."""
    out = [f"class FormulaStep({base or 'nn.Module'}):"]
    out.append(docstring("One step of the formula:\n\n" + indented(plan.formula), INDENT))
    out.append("")
    params = [f"{attr}={number_literal(init)}" for attr, init in plan.per_step_params.values()]
    if plan.dynamic and not base:  # the projections of input-dependent coefficients need the width
        params.insert(0, "width=None")
    if base:
        sig = ["self", "in_width", "width", "stride=1", "n=0", "downsample=None", *params, "**branch_options"]
        out += fitted(INDENT, "def ", f"__init__({', '.join(sig)})", ":")
        out.append(f"{INDENT * 2}super().__init__(in_width, width, stride, **branch_options)")
        out.append(f"{INDENT * 2}self.downsample = downsample")
    else:
        sig = ["self", *plan.blocks, "n=0", "downsample=None", *params]
        out += fitted(INDENT, "def ", f"__init__({', '.join(sig)})", ":")
        out.append(f"{INDENT * 2}super().__init__()")
        for block in plan.blocks:
            out.append(f"{INDENT * 2}self.{block} = {block}")
        out.append(f"{INDENT * 2}self.downsample = downsample")
    out.append(f"{INDENT * 2}self.n = n  # the step index n of the formula")
    for attr, _ in plan.per_step_params.values():
        out.append(f"{INDENT * 2}self.{attr} = nn.Parameter(torch.tensor(float({attr})))")
    for name, reads in plan.pair_reads.items():  # the earlier steps a sum with conditions reads
        out += fitted(INDENT * 2, f"self.{plan.pair_params[name][0]}_reads = ", reads, "")
    for name, (attr, initial) in plan.pair_params.items():  # one weight per earlier step the sum reads
        if name in plan.pair_reads:  # none at a step whose conditions select nothing
            out += fitted(INDENT * 2, f"{attr}_initial = ", initial, "")
            out += fitted(
                INDENT * 2,
                f'self.register_parameter("{attr}", ',
                f"nn.Parameter(torch.tensor({attr}_initial)) if {attr}_initial else None",
                ")",
            )
            continue
        out += fitted(INDENT * 2, f"self.{attr} = ", f"nn.Parameter(torch.tensor({initial}))", "")
    out += dynamic.init_lines(plan.dynamic, "width", INDENT * 2) if plan.dynamic else []
    out.append("")
    if base:
        (block,) = plan.blocks
        out.append(f"{INDENT}def {block}(self, x):")
        out.append(f"{INDENT * 2}return {base}.forward(self, x)")
        out.append("")
    out += fitted(INDENT, "def ", f"forward({', '.join(['self', *_step_signature(plan)])})", ":")
    out.append(docstring(_forward_docstring(plan), INDENT * 2, one_line=True))
    for h, first in plan.history.items():
        if first < 0:
            out.append(
                f"{INDENT * 2}# {h}_history starts at {rec_expr(state(h, first))}: "
                f"{h}_history[k] is {rec_expr(state(h, sympy.Symbol('k') + first))}"
            )
    for line in plan.body:
        target, _, code = line.partition(" = ")
        out += fitted(INDENT * 2, f"{target} = ", code, "")
    out.append(f"{INDENT * 2}return {', '.join(var_name(s, 1) for s in _returned(plan))}")
    return out


def _returned(plan: StepPlan) -> list[str]:
    """States a step hands to the next: those read at a later step (and the output)."""
    return [s for s in plan.returns if s in plan.lags]


# -- running the steps ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Carry:
    """The variables that live across steps: lagged states, starts (s_0), histories."""

    lags: dict[str, int]  # state -> how many past values are kept (x_n, x_nm1, ...)
    starts: list[str]
    history: list[str]
    output: str

    def names(self) -> list[str]:
        names = [var_name(s, -k) for s, depth in self.lags.items() for k in range(depth)]
        names += [f"{s}_0" for s in self.starts]
        return names + [f"{h}_history" for h in self.history]


def carried(plan: StepPlan) -> Carry:
    """The variables of ``plan`` that live across steps."""
    return Carry(dict(plan.lags), list(plan.starts), list(plan.history), plan.output)


def _initial_lines(plan: StepPlan, indent: str, entry: str) -> list[str]:
    """Give every carried variable its value before the first step, from ``entry`` (x_0)."""
    output = plan.output
    lines = [f"{indent}{output}_0 = {entry}"] if entry != f"{output}_0" else []
    for s in plan.starts:
        if s != output:
            lines.append(f"{indent}{s}_0 = {plan.initial[(s, 0)]}")
    for s, depth in plan.lags.items():
        for k in range(depth):
            value = f"{output}_0" if (s, -k) == (output, 0) else plan.initial[(s, -k)]
            if (s, -k) != (output, 0) and k == 0 and s in plan.starts:
                value = f"{s}_0"
            lines.append(f"{indent}{var_name(s, -k)} = {value}")
    for h, first in plan.history.items():
        depth = plan.lags[h]
        # the states before the start that are also lags already hold their values
        head = [var_name(h, k) if -k < depth else plan.initial[(h, k)] for k in range(first, 0)]
        lines.append(f"{indent}{h}_history = [{', '.join([*head, var_name(h, 0)])}]")
    return lines


def _loop_lines(
    plan: StepPlan, carry: Carry, indent: str, steps: str, shared: str, stage_input: bool
) -> list[str]:
    current = var_name(plan.output, 0)
    args = _step_arguments(plan, f"x_in if i == 0 else {current}" if stage_input else current)
    args += [f"{attr}={shared}{attr}" for attr, _ in plan.shared_params.values()]
    returned = _returned(plan)
    loop_var = "i, step" if (plan.raw_blocks and stage_input) else "step"
    iterator = f"enumerate({steps})" if (plan.raw_blocks and stage_input) else steps
    lines = [f"{indent}for {loop_var} in {iterator}:"]
    targets = ", ".join(var_name(s, 1) for s in returned)
    lines += fitted(indent + INDENT, f"{targets} = ", f"step({', '.join(args)})", "")
    for s, depth in carry.lags.items():
        chain = [var_name(s, -k) for k in range(depth)]
        if depth == 1:
            lines.append(f"{indent}{INDENT}{chain[0]} = {var_name(s, 1)}")
        else:
            lines.append(
                f"{indent}{INDENT}{', '.join(reversed(chain))} = {', '.join(reversed([var_name(s, 1)] + chain[:-1]))}"
            )
    for h in carry.history:
        pairs = plan.pruned_history.get(h)
        if pairs:  # only the entries that some step's conditions select are kept
            first = plan.history[h]
            position = f"len({h}_history)" + (f" + {first}" if first else "")
            reads = " + ".join(f"s.{plan.pair_params[p][0]}_reads" for p in pairs)
            lines.insert(0, f"{indent}{h}_kept = {{j_ for s in {steps} for j_ in {reads}}}")
            lines.append(
                f"{indent}{INDENT}{h}_history.append({var_name(h, 0)} if {position} in {h}_kept else None)"
            )
        else:
            lines.append(f"{indent}{INDENT}{h}_history.append({var_name(h, 0)})")
    return lines


# -- wire ----------------------------------------------------------------------------------------


def wire_source(rec: Recurrence) -> str:
    """Source of ``FormulaStep`` and ``Recurrence(blocks)`` for user-supplied blocks."""
    rec = streams.compact_form(rec)
    plan = plan_step(rec, stages=False)
    carry = carried(plan)
    lines = streams.runtime_lines(rec) + dynamic.runtime_lines(rec) + _step_class(plan, base=None) + ["", ""]
    lines.append("class Recurrence(nn.Module):")
    lines.append(
        docstring(
            f"Maps {rec.output}_0 to {rec.output}_N by the formula; blocks[name][i] is the block at step i.\n\n"
            + indented(plan.formula),
            INDENT,
        )
    )
    lines.append("")
    # input-dependent coefficients: their maps are as wide as the states (wire(..., width=...))
    width, step_width = (", width", ", width=width") if plan.dynamic else ("", "")
    lines.append(f"{INDENT}def __init__(self, blocks{width}):")
    lines.append(f"{INDENT * 2}super().__init__()")
    lines += _shared_param_lines(plan, INDENT * 2)
    if plan.blocks:
        first = plan.blocks[0]
        lines.append(f"{INDENT * 2}depth = len(blocks[{literal(first)}])")
        kwargs = ", ".join(f"{b}=blocks[{literal(b)}][i]" for b in plan.blocks)
        lines += fitted(
            INDENT * 2,
            "self.steps = ",
            f"nn.ModuleList(FormulaStep({kwargs}, n=i{step_width}) for i in range(depth))",
            "",
        )
    lines.append("")
    lines.append(f"{INDENT}def forward(self, {rec.output}_0):")
    lines += _initial_lines(plan, INDENT * 2, f"{rec.output}_0")
    lines += _loop_lines(plan, carry, INDENT * 2, "self.steps", "self.", stage_input=False)
    lines.append(f"{INDENT * 2}return {var_name(rec.output, 0)}")
    return _module(rec, "Wires user blocks by the formula.", lines)


def _shared_param_lines(plan: StepPlan, indent: str) -> list[str]:
    return [
        f"{indent}self.{attr} = nn.Parameter(torch.tensor(float({number_literal(init)})))"
        for attr, init in plan.shared_params.values()
    ]


# Every name a module may take from an import: the generated code and the backbone files use
# only these (the backbone files' own ``import torch.nn as nn`` is the same ``nn``).
_IMPORTS = {
    "math": "import math",
    "torch": "import torch",
    "F": "import torch.nn.functional as F",
    "nn": "from torch import nn",
}
_IMPORT_ALIASES = {"import torch.nn as nn": "nn"}


#: The first words of every module formulac writes (the docstring's first line).
GENERATED_MARK = "Generated by formulac."


def is_generated_module(text: str) -> bool:
    """Whether ``text`` (a file's beginning is enough) is a module formulac wrote."""
    return text.lstrip("\ufeff").startswith('"""\n' + GENERATED_MARK)


def _module(rec: Recurrence, purpose: str, body: list[str]) -> str:
    """The module text: docstring, the imports its body uses (in isort's order), the body."""
    text = GENERATED_MARK + " " + purpose + "\n\nThe formula:\n\n" + indented(formula_text(rec))
    code = "\n".join(body) + "\n"
    used = {
        node.value.id
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }
    standard = [_IMPORTS["math"]] if "math" in used else []
    third_party = [_IMPORTS[name] for name in ("torch", "F", "nn") if name in used]
    imports = standard + ([""] if standard and third_party else []) + third_party
    # isort's blank lines after the imports: two before a class, one before a comment
    gap = [""] if body[0].startswith("#") else ["", ""]
    return "\n".join([docstring(text, "").strip("\n"), "", *imports, *gap, *body]) + "\n"


# -- networks on a backbone ------------------------------------------------------------------------


@dataclass(frozen=True)
class StepShape:
    """Construction arguments of one step: each block's input width and stride."""

    blocks: dict[str, tuple[int, int]]
    downsample: tuple[int, int, int] | None  # (in_width, width, stride) of the projection


@dataclass(frozen=True)
class NetworkLayout:
    """Widths of every step of every stage, as the formula makes them."""

    stages: list[Stage]
    steps: list[list[StepShape]]
    final_width: int
    stem_width: int


def network_layout(
    rec: Recurrence, plan: StepPlan, backbone: BackboneInfo, options: dict, transition: str
) -> NetworkLayout:
    stages = backbone.layout(**options)
    width_in = backbone.stem_width(**options)
    carry = carried(plan)
    all_steps: list[list[StepShape]] = []
    for stage in stages:
        widths: dict[str, int] = {}
        projected = width_in != stage.width or stage.stride != 1
        downsample = (width_in, stage.width, stage.stride) if projected else None
        for s, depth in carry.lags.items():
            for k in range(depth):
                widths[var_name(s, -k)] = stage.width
        for s in {*plan.starts, rec.output}:
            widths[f"{s}_0"] = stage.width
        history_width = stage.width
        shapes: list[StepShape] = []
        for i in range(stage.steps):
            blocks: dict[str, tuple[int, int]] = {}
            env = dict(widths)
            new: dict[str, int] = {}
            for s, expr in plan.equations:
                eq = rec.equation(s)
                with located(eq.line, eq.column):
                    w = _width(
                        expr,
                        env,
                        stage.width,
                        blocks,
                        plan,
                        rec,
                        history_width,
                        raw_width=width_in if i == 0 else None,
                        stride=stage.stride if i == 0 else 1,
                    )
                if w is None:  # a number, made a tensor like one the step reads
                    w = env.get(plan.shaped_like[s], history_width)
                env[var_name(s, 1)] = w
                new[s] = w
            for b in plan.blocks:
                blocks.setdefault(b, (stage.width, 1))
            shapes.append(StepShape(blocks, downsample if i == 0 else None))
            for s, depth in carry.lags.items():
                for k in reversed(range(1, depth)):
                    widths[var_name(s, -k)] = widths[var_name(s, -k + 1)]
                widths[var_name(s, 0)] = new[s]
            if any(new.get(h) != history_width for h in carry.history):
                eq = rec.equation(next(h for h in carry.history if new.get(h) != history_width))
                raise PlanError(
                    "compile: a sum over the history needs states of one width", eq.line, eq.column
                )
        _check_shared(rec, stage, shapes)
        if backbone.fixed_width:
            _check_fixed_width(rec, backbone, stage, shapes)
        all_steps.append(shapes)
        carried_names = set(carry.names())  # once per stage: a long system carries many
        carried_widths = {name: w for name, w in widths.items() if name in carried_names}
        if transition == "project" and len(set(carried_widths.values())) > 1:
            raise UsageError(
                "compile: transition=project needs every state entering a stage to have one width"
            )
        width_in = widths[var_name(rec.output, 0)]
    return NetworkLayout(stages, all_steps, width_in, backbone.stem_width(**options))


def _check_shared(rec: Recurrence, stage: Stage, shapes: list[StepShape]) -> None:
    """A shared block has one set of weights per stage: every step after the first (which may
    change width and stride, and then has its own) gives it inputs of one width."""
    for block in sorted(rec.shared_blocks):
        later = {shape.blocks[block] for shape in shapes[1:]}
        if len(later) > 1:
            eq = next(e for e in rec.equations if block in {c.block for c in block_calls(e.display_rhs)})
            widths = ", ".join(str(w) for w, _ in sorted(later))
            raise PlanError(
                f"compile: shared block {block} gets inputs of widths {widths} in one stage "
                f"({stage.name}), so its weights cannot be shared",
                eq.line,
                eq.column,
            )


def _check_fixed_width(
    rec: Recurrence, backbone: BackboneInfo, stage: Stage, shapes: list[StepShape]
) -> None:
    """A backbone whose blocks keep the stream's width (a transformer's sublayers) refuses a
    block input of another width, such as a ``cat`` of states."""
    for shape in shapes:
        for block, (w_in, _) in shape.blocks.items():
            if w_in != stage.width:
                eq = next(e for e in rec.equations if block in {c.block for c in block_calls(e.display_rhs)})
                raise PlanError(
                    f"compile: on the {backbone.name} backbone block {block} takes inputs of the stream's "
                    f"width {stage.width} only, not {w_in} (cat joins features, which widens the stream)",
                    eq.line,
                    eq.column,
                )


def _width(expr, env, width, blocks, plan, rec, history_width, raw_width, stride) -> int | None:
    """Channel width of an expression (None for a scalar); records block input widths."""
    if isinstance(expr, BlockCall):
        if expr.block in plan.raw_blocks and raw_width is not None:
            blocks[expr.block] = (raw_width, stride)
        else:
            w_in = _width(expr.argument, env, width, blocks, plan, rec, history_width, raw_width, stride)
            previous = blocks.get(expr.block)
            if previous is not None and previous[0] != w_in:
                raise UsageError(
                    f"compile: block {expr.block} is applied to inputs of widths {previous[0]} and {w_in} at one step"
                )
            blocks[expr.block] = (w_in, 1)
        return width
    if isinstance(expr, sympy.Indexed):
        ref = StateRef.of(expr)
        if ref.name not in rec.states:
            return None
        if ref.step is not None:
            return env[f"{ref.name}_0"]
        if ref.offset is not None:
            return env[var_name(ref.name, ref.offset)]
        return history_width
    if isinstance(expr, Concat):
        parts = [
            _width(a, env, width, blocks, plan, rec, history_width, raw_width, stride) for a in expr.args
        ]
        if any(p is None for p in parts):
            raise UsageError("compile: cat concatenates states, not numbers")
        return sum(parts)
    if isinstance(expr, sympy.Sum):
        return _width(expr.function, env, width, blocks, plan, rec, history_width, raw_width, stride)
    widths = [
        w
        for a in expr.args
        if (w := _width(a, env, width, blocks, plan, rec, history_width, raw_width, stride)) is not None
    ]
    if isinstance(expr, sympy.Add) and len(set(widths)) > 1:
        raise UsageError(
            f"compile: cannot add tensors of widths {sorted(set(widths))} in {rec_expr(rebuild(expr))}"
        )
    return widths[0] if widths else None


def network_source(
    rec: Recurrence,
    backbone: BackboneInfo,
    options: dict,
    transition: str = "reset",
    num_classes: int = 10,
    in_channels: int = 3,
    memory: str = DEFAULT_MEMORY_MODE,
) -> str:
    """Source of a standalone module defining ``FormulaNet`` (buildable with no arguments).
    ``memory``: the name of a registered memory mode (:mod:`.memory_modes`)."""
    if transition not in ("reset", "project"):
        raise UsageError(f"unknown transition {transition!r} (choose reset or project)")
    mode = get_memory_mode(memory)
    lowered, rec = rec, streams.compact_form(rec)  # a stream formula is built from its compact form
    reserved = _backbone_names(backbone, options) | mode.reserved_names
    plan = plan_step(rec, reserved=reserved, feature_dim=backbone.feature_dim)
    require_blocks(rec, plan)
    require_block_kinds(rec, plan, backbone)
    mplan = mode.plan(lowered)  # the lowered form says why a step cannot run back
    layout = network_layout(rec, plan, backbone, options, transition)
    inline = len(plan.blocks) == 1 and not (rec.shared_blocks)
    branch = backbone.block_class(plan.blocks[0])
    net_options = backbone.net_kwargs(**{k: v for k, v in options.items() if k != "depth"})
    lines = _backbone_source(backbone)
    lines += mode.runtime_lines()
    lines += streams.runtime_lines(rec)
    lines += dynamic.runtime_lines(rec)
    lines += _step_class(plan, base=branch if inline else None)
    lines += mode.step_class_lines(rec, plan, dict(plan.lags), mplan)
    lines += ["", ""]
    lines.append(f"class FormulaNet({backbone.net_class}):")
    summary = (
        f"The formula on the {backbone.name} backbone ({_options_text(options)}; transition {transition}).\n"
        f"Stages: "
        + ", ".join(f"{st.name} {st.steps} steps of width {st.width}" for st in layout.stages)
        + "\n\n"
        + indented(plan.formula)
    )
    lines.append(docstring(summary, INDENT))
    lines.append("")
    lines += mode.network_attribute_lines(mplan, INDENT)
    lines.append(
        f"{INDENT}def __init__(self, num_classes={int(num_classes)}, in_channels={int(in_channels)}):"
    )
    kw = "".join(f", {k}={literal(v)}" for k, v in net_options.items())
    lines += fitted(
        INDENT * 2, "super().__init__", f"(num_classes=num_classes, in_channels=in_channels{kw})", ""
    )
    lines += mode.init_lines(mplan, INDENT * 2)
    lines += _shared_param_lines(plan, INDENT * 2)
    first_n, options_in_scope = 0, None
    for stage, shapes in zip(layout.stages, layout.steps):
        if stage.branch_options and stage.branch_options != options_in_scope:
            options_in_scope = stage.branch_options
            lines.append(f"{INDENT * 2}branch_options = {literal(stage.branch_options)}")
        lines += _stage_lines(stage, shapes, plan, backbone, inline, first_n, INDENT * 2, rec.shared_blocks)
        if transition == "project":  # the history goes on across stages, and so does n
            first_n += stage.steps
    lines.append(f"{INDENT * 2}self.build_head({layout.final_width})")
    lines.append("")
    lines += _forward_lines(rec, plan, carried(plan), layout, transition, mode)
    return _module(rec, f"A network on the {backbone.name} backbone whose steps follow the formula.", lines)


def require_blocks(rec: Recurrence, plan: StepPlan) -> None:
    if not plan.blocks:
        first = rec.equations[0]
        raise PlanError(
            "compile: the formula has no block (a learned layer such as F(x_n)), so the network "
            "would have nothing to learn",
            first.line,
            first.column,
        )


def require_block_kinds(rec: Recurrence, plan: StepPlan, backbone: BackboneInfo) -> None:
    """Every block of the formula is one the backbone has (a transformer's ``A``, ``M``, ...);
    a :class:`PlanError` at the first statement that calls another."""
    for block in plan.blocks:
        try:
            backbone.block_class(block)
        except UsageError as error:
            eq = next(e for e in rec.equations if block in {c.block for c in block_calls(e.display_rhs)})
            raise PlanError(f"compile: {error}", eq.line, eq.column) from None


def _backbone_names(backbone: BackboneInfo, options: dict) -> frozenset:
    """Names a parameter must not take on this backbone: the stage attributes, and every
    method, method argument, ``self.NAME`` and class attribute of the net and branch classes
    (the step subclasses the branch, the network the net class)."""
    names = {stage.name for stage in backbone.layout(**options)}
    for class_name in (backbone.net_class, *backbone.kind_classes):
        tree = ast.parse(textwrap.dedent(inspect.getsource(getattr(backbone.module, class_name))))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    targets = (
                        item.targets if isinstance(item, ast.Assign) else [getattr(item, "target", None)]
                    )
                    names.update(t.id for t in targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.FunctionDef):
                names.add(node.name)
                args = node.args
                names.update(a.arg for a in args.posonlyargs + args.args + args.kwonlyargs)
                names.update(a.arg for a in (args.vararg, args.kwarg) if a is not None)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                names.add(node.attr)
    return frozenset(names)


def _options_text(options: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()) if v is not None)


# a backbone file's one import beyond torch: shared layers, copied with it (BackboneInfo.definitions)
_LAYERS_IMPORT = "from .layers import "


def _backbone_source(backbone: BackboneInfo) -> list[str]:
    """The backbone's definitions (the shared layers it uses, its net class, block classes and
    projection function), copied verbatim."""
    module = backbone.module
    for line in inspect.getsource(module).splitlines():
        if (
            line.startswith(("import ", "from "))
            and line not in _IMPORTS.values()
            and line not in _IMPORT_ALIASES
            and not line.startswith(_LAYERS_IMPORT)
        ):
            raise AssertionError(f"backbone file {module.__name__} imports more than torch: {line}")
    lines = ["# --- the backbone (copied from formulac.codegen.backbones) ---", "", ""]
    for name in backbone.definitions:
        lines += inspect.getsource(getattr(module, name)).rstrip("\n").splitlines() + ["", ""]
    return lines


def _stage_lines(
    stage: Stage,
    shapes: list[StepShape],
    plan: StepPlan,
    backbone: BackboneInfo,
    inline: bool,
    first_n: int,
    indent: str,
    shared_blocks: frozenset = frozenset(),
) -> list[str]:
    """``self.NAME = nn.ModuleList(...)``: the stage's steps, runs of alike steps as loops."""
    options = ", **branch_options" if stage.branch_options else ""
    proj_options = "".join(f", {k}={literal(v)}" for k, v in sorted(stage.projection_options.items()))
    lines = [f"{indent}# {stage.name}: {stage.steps} steps of width {stage.width}, stride {stage.stride}"]

    def branch_args(w_in: int, s: int) -> str:
        return f"{w_in}, {stage.width}" + (f", {s}" if s != 1 else "")

    # a shared block: one module for the steps of the stage that give it the same input
    shared = {b: shapes[-1].blocks[b] for b in plan.blocks if b in shared_blocks}
    for b, shape in shared.items():
        lines.append(f"{indent}shared_{b} = {backbone.block_class(b)}({branch_args(*shape)}{options})")

    def block_code(b: str, shape: StepShape) -> str:
        if shared.get(b) == shape.blocks[b]:
            return f"shared_{b}"
        return f"{backbone.block_class(b)}({branch_args(*shape.blocks[b])}{options})"

    def step_code(i: int, shape: StepShape) -> str:
        down = ", downsample=downsample" if shape.downsample is not None else ""
        if inline:
            (block,) = plan.blocks
            return f"FormulaStep({branch_args(*shape.blocks[block])}, n={first_n + i}{down}{options})"
        blocks = ", ".join(f"{b}={block_code(b, shape)}" for b in plan.blocks)
        width = f", width={stage.width}" if plan.dynamic else ""
        return f"FormulaStep({blocks}, n={first_n + i}{down}{width})"

    for shape in shapes:
        if shape.downsample is not None:
            w_in, w, s = shape.downsample
            lines.append(
                f"{indent}downsample = {backbone.projection_function}({w_in}, {w}, {s}{proj_options})"
            )
    runs = alike_runs([step_code(i, s) for i, s in enumerate(shapes)])
    if len(runs) == 1 and len(runs[0]) > 1:
        body = run_as_list(runs[0])[1:-1]  # a generator of the steps
    else:
        body = " + ".join(run_as_list(run) for run in runs)
    return lines + fitted(indent, f"self.{stage.name} = ", f"nn.ModuleList({body})", "")


def _stage_loop(plan: StepPlan, carry: Carry, mode: MemoryMode) -> list[str]:
    """The steps of ``run_stage``: one loop, or (memory modes) the first step and a runtime call."""

    def loop(steps: str) -> list[str]:
        return _loop_lines(plan, carry, INDENT * 2, steps, "self.", stage_input=True)

    return mode.stage_lines(plan, carry.lags, INDENT * 2, loop)


def _forward_lines(
    rec: Recurrence, plan: StepPlan, carry: Carry, layout: NetworkLayout, transition: str, mode: MemoryMode
) -> list[str]:
    out = f"{rec.output}"
    names = carry.names()
    lines = [f"{INDENT}def forward(self, x):"]
    lines.append(f"{INDENT * 2}{out}_0 = self.stem(x)")
    if transition == "reset":
        lines.append(f"{INDENT * 2}{var_name(out, 0)} = {out}_0")
        for stage in layout.stages:
            lines.append(
                f"{INDENT * 2}{var_name(out, 0)} = self.run_stage(self.{stage.name}, {var_name(out, 0)})"
            )
        lines.append(f"{INDENT * 2}return self.head({var_name(out, 0)})")
        lines.append("")
        lines.append(f"{INDENT}def run_stage(self, steps, x_in):")
        lines.append(
            f'{INDENT * 2}"""One stage; its history restarts at the stage input, projected where it changes shape."""'
        )
        lines.append(
            f"{INDENT * 2}{out}_0 = x_in if steps[0].downsample is None else steps[0].downsample(x_in)"
        )
        lines += _initial_lines(plan, INDENT * 2, f"{out}_0")
        lines += _stage_loop(plan, carry, mode)
        lines.append(f"{INDENT * 2}return {var_name(out, 0)}")
        return lines
    lines += _initial_lines(plan, INDENT * 2, f"{out}_0")
    state_tuple = ", ".join(names)
    for stage in layout.stages:
        lines += fitted(
            INDENT * 2, f"{state_tuple} = ", f"self.run_stage(self.{stage.name}, {state_tuple})", ""
        )
    lines.append(f"{INDENT * 2}return self.head({var_name(out, 0)})")
    lines.append("")
    lines += fitted(INDENT, "def ", f"run_stage(self, steps, {state_tuple})", ":")
    lines.append(
        f'{INDENT * 2}"""One stage; every state entering it goes through the stage\'s projection."""'
    )
    if plan.raw_blocks:
        lines.append(f"{INDENT * 2}x_in = {var_name(out, 0)}")
    lines.append(f"{INDENT * 2}project = steps[0].downsample")
    lines.append(f"{INDENT * 2}if project is not None:")
    for name in names:
        if name.endswith("_history"):
            lines.append(f"{INDENT * 3}{name} = [project(h) for h in {name}]")
        elif name.rpartition("_")[0] in rec.streams:  # stacked streams: each projected
            lines.append(f"{INDENT * 3}{name} = torch.stack([project(s) for s in {name}])")
        else:
            lines.append(f"{INDENT * 3}{name} = project({name})")
    # the history goes on into later stages, whose steps read it: every entry is kept
    lines += _stage_loop(dataclasses.replace(plan, pruned_history={}), carry, mode)
    lines.append(f"{INDENT * 2}return {state_tuple}")
    return lines


def network_parameter_attributes(
    rec: Recurrence, backbone: BackboneInfo, options: dict, memory: str = DEFAULT_MEMORY_MODE
) -> dict[str, str]:
    """Formula parameter name -> the attribute that holds it in :func:`network_source`'s
    network (a name the backbone or the memory mode uses takes a ``_param`` suffix)."""
    rec = streams.compact_form(rec)
    # the same names as network_source reserves
    reserved = _backbone_names(backbone, options) | get_memory_mode(memory).reserved_names
    plan = plan_step(rec, reserved=reserved)
    held = {**plan.shared_params, **plan.per_step_params, **plan.pair_params}
    return {name: attr for name, (attr, _) in held.items()}


def network_dynamic_attributes(
    rec: Recurrence, backbone: BackboneInfo, options: dict, memory: str = DEFAULT_MEMORY_MODE
) -> dict[str, dict[str, str]]:
    """Input-dependent parameter -> the attributes of its parts in :func:`network_source`'s
    steps (``static``, ``map``, ``scale``, ``gain``: :func:`.dynamic.dynamic_attributes`)."""
    rec = streams.compact_form(rec)
    reserved = _backbone_names(backbone, options) | get_memory_mode(memory).reserved_names
    return plan_step(rec, reserved=reserved, feature_dim=backbone.feature_dim).dynamic
