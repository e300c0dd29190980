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
import inspect
import textwrap
from dataclasses import dataclass

import sympy

from ..errors import UsageError
from ..ir import BlockCall, Concat, Recurrence, n, rebuild, state
from ..printing import rec_expr
from . import reversible
from .backbones import BackboneInfo, Stage
from .plan import StepPlan, number_literal, plan_step, var_name

__all__ = ["wire_source", "network_source", "NetworkLayout", "network_layout"]

_INDENT = "    "


def _docstring(text: str, indent: str) -> str:
    safe = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    body = "\n".join((indent + line) if line else "" for line in safe.splitlines())
    return f'{indent}"""\n{body}\n{indent}"""'


# -- the step class ----------------------------------------------------------------------------


def _step_signature(plan: StepPlan) -> list[str]:
    args = [var_name(s, o) for s, o in plan.reads]
    if plan.reads_input:
        args.append("x_0")
    args += [f"{h}_history" for h in plan.history]
    if plan.raw_blocks:
        args.append("x_in")
    keyword_only = [plan.shared_params[p][0] for p in plan.shared_params]
    return args + (["*"] + keyword_only if keyword_only else [])


def _step_class(plan: StepPlan, base: str | None) -> list[str]:
    """The step module. With ``base`` (a backbone branch class) the step IS the branch, so
    that its layers sit where the reference layout has them; otherwise blocks are children."""
    out = [f"class FormulaStep({base or 'nn.Module'}):"]
    out.append(_docstring("One step of the formula:\n\n" + _indented(plan.formula), _INDENT))
    out.append("")
    params = [f"{attr}={number_literal(init)}" for attr, init in plan.per_step_params.values()]
    if base:
        sig = ["self", "in_width", "width", "stride=1", "n=0", "downsample=None", *params, "**branch_options"]
        out.append(f"{_INDENT}def __init__({', '.join(sig)}):")
        out.append(f"{_INDENT * 2}super().__init__(in_width, width, stride, **branch_options)")
        out.append(f"{_INDENT * 2}self.downsample = downsample")
    else:
        sig = ["self", *plan.blocks, "n=0", "downsample=None", *params]
        out.append(f"{_INDENT}def __init__({', '.join(sig)}):")
        out.append(f"{_INDENT * 2}super().__init__()")
        for block in plan.blocks:
            out.append(f"{_INDENT * 2}self.{block} = {block}")
        out.append(f"{_INDENT * 2}self.downsample = downsample")
    out.append(f"{_INDENT * 2}self.n = n  # the step's index in its stage")
    for attr, _ in plan.per_step_params.values():
        out.append(f"{_INDENT * 2}self.{attr} = nn.Parameter(torch.tensor(float({attr})))")
    out.append("")
    if base:
        (block,) = plan.blocks
        out.append(f"{_INDENT}def {block}(self, x):")
        out.append(f"{_INDENT * 2}return {base}.forward(self, x)")
        out.append("")
    out.append(f"{_INDENT}def forward({', '.join(['self', *_step_signature(plan)])}):")
    for line in plan.body:
        out.append(f"{_INDENT * 2}{line}")
    carried = _returned(plan)
    out.append(f"{_INDENT * 2}return {', '.join(var_name(s, 1) for s in carried)}")
    return out


def _indented(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _returned(plan: StepPlan) -> list[str]:
    """States a step hands to the next: those read at a later step (and the output)."""
    read = {s for s, _ in plan.reads} | set(plan.history)
    return [s for s in plan.returns if s in read or s == plan.output]


# -- running the steps ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Carry:
    """The variables that live across steps: lagged states, the input, histories."""

    lags: dict[str, int]  # state -> how many past values are kept (x_n, x_nm1, ...)
    reads_input: bool
    history: list[str]
    output: str

    def names(self) -> list[str]:
        names = [var_name(s, -k) for s, depth in self.lags.items() for k in range(depth)]
        if self.reads_input:
            names.append(f"{self.output}_0")
        return names + [f"{h}_history" for h in self.history]


def _carry(plan: StepPlan) -> _Carry:
    lags: dict[str, int] = {}
    for s in plan.returns:
        offsets = [o for st, o in plan.reads if st == s]
        depth = 1 - min(offsets) if offsets else 0
        if s == plan.output or s in plan.history:
            depth = max(depth, 1)
        if depth:
            lags[s] = depth
    return _Carry(lags, plan.reads_input, plan.history, plan.output)


def _initial_lines(rec: Recurrence, carry: _Carry, indent: str, entry: str) -> list[str]:
    """Assign every carried variable its value before the first step from ``entry`` (x_0)."""
    lines = [f"{indent}{rec.output}_0 = {entry}"] if entry != f"{rec.output}_0" else []
    for s, depth in carry.lags.items():
        for k in range(depth):
            value = rec.initial_value(s, -k)
            lines.append(f"{indent}{var_name(s, -k)} = {_initial_code(value, rec.output)}")
    for h in carry.history:
        lines.append(f"{indent}{h}_history = [{var_name(h, 0)}]")
    return lines


def _initial_code(value: sympy.Expr, output: str) -> str:
    x0 = state(output, 0)
    if value == x0:
        return f"{output}_0"
    if not value.has(x0):
        if value == 0:
            return f"torch.zeros_like({output}_0)"
        return f"torch.full_like({output}_0, {number_literal(value)})"
    coefficient = sympy.simplify(value / x0)
    if coefficient.free_symbols or not coefficient.is_number:
        raise UsageError(f"compile: initial value {rec_expr(value)} must be a number times {output}_0")
    return f"{number_literal(coefficient)} * {output}_0"


def _loop_lines(
    plan: StepPlan, carry: _Carry, indent: str, steps: str, shared: str, stage_input: bool
) -> list[str]:
    args = [var_name(s, o) for s, o in plan.reads]
    if plan.reads_input:
        args.append(f"{plan.output}_0")
    args += [f"{h}_history" for h in plan.history]
    if plan.raw_blocks:
        args.append(
            "x_in if i == 0 else " + var_name(plan.output, 0) if stage_input else var_name(plan.output, 0)
        )
    args += [f"{attr}={shared}{attr}" for attr, _ in plan.shared_params.values()]
    returned = _returned(plan)
    loop_var = "i, step" if (plan.raw_blocks and stage_input) else "step"
    iterator = f"enumerate({steps})" if (plan.raw_blocks and stage_input) else steps
    lines = [f"{indent}for {loop_var} in {iterator}:"]
    lines.append(f"{indent}{_INDENT}{', '.join(var_name(s, 1) for s in returned)} = step({', '.join(args)})")
    for s, depth in carry.lags.items():
        chain = [var_name(s, -k) for k in range(depth)]
        if depth == 1:
            lines.append(f"{indent}{_INDENT}{chain[0]} = {var_name(s, 1)}")
        else:
            lines.append(
                f"{indent}{_INDENT}{', '.join(reversed(chain))} = {', '.join(reversed([var_name(s, 1)] + chain[:-1]))}"
            )
    for h in carry.history:
        lines.append(f"{indent}{_INDENT}{h}_history.append({var_name(h, 0)})")
    return lines


# -- wire ----------------------------------------------------------------------------------------


def wire_source(rec: Recurrence) -> str:
    """Source of ``FormulaStep`` and ``Recurrence(blocks)`` for user-supplied blocks."""
    plan = plan_step(rec, stages=False)
    carry = _carry(plan)
    lines = _header(rec, "Wires user blocks by the formula.")
    lines += _step_class(plan, base=None) + ["", ""]
    lines.append("class Recurrence(nn.Module):")
    lines.append(
        _docstring(
            f"Maps {rec.output}_0 to {rec.output}_N by the formula; blocks[name][i] is the block at step i.\n\n"
            + _indented(plan.formula),
            _INDENT,
        )
    )
    lines.append("")
    lines.append(f"{_INDENT}def __init__(self, blocks):")
    lines.append(f"{_INDENT * 2}super().__init__()")
    lines += _shared_param_lines(plan, _INDENT * 2)
    if plan.blocks:
        first = plan.blocks[0]
        lines.append(f"{_INDENT * 2}depth = len(blocks[{first!r}])")
        kwargs = ", ".join(f"{b}=blocks[{b!r}][i]" for b in plan.blocks)
        lines.append(
            f"{_INDENT * 2}self.steps = nn.ModuleList(FormulaStep({kwargs}, n=i) for i in range(depth))"
        )
    lines.append("")
    lines.append(f"{_INDENT}def forward(self, {rec.output}_0):")
    lines += _initial_lines(rec, carry, _INDENT * 2, f"{rec.output}_0")
    lines += _loop_lines(plan, carry, _INDENT * 2, "self.steps", "self.", stage_input=False)
    lines.append(f"{_INDENT * 2}return {var_name(rec.output, 0)}")
    return "\n".join(lines) + "\n"


def _shared_param_lines(plan: StepPlan, indent: str) -> list[str]:
    return [
        f"{indent}self.{attr} = nn.Parameter(torch.tensor(float({number_literal(init)})))"
        for attr, init in plan.shared_params.values()
    ]


def _header(rec: Recurrence, purpose: str) -> list[str]:
    text = "Generated by formulac. " + purpose + "\n\nThe formula:\n\n" + _indented(_plan_text(rec))
    return [
        _docstring(text, "").strip("\n"),
        "",
        "import math",
        "",
        "import torch",
        "from torch import nn",
        "",
        "",
    ]


def _plan_text(rec: Recurrence) -> str:
    from .plan import _formula_text

    return _formula_text(rec)


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
    carry = _carry(plan)
    all_steps: list[list[StepShape]] = []
    for stage in stages:
        widths: dict[str, int] = {}
        projected = width_in != stage.width or stage.stride != 1
        downsample = (width_in, stage.width, stage.stride) if projected else None
        for s, depth in carry.lags.items():
            for k in range(depth):
                widths[var_name(s, -k)] = stage.width
        widths[f"{rec.output}_0"] = stage.width
        history_width = stage.width
        shapes: list[StepShape] = []
        for i in range(stage.steps):
            blocks: dict[str, tuple[int, int]] = {}
            env = dict(widths)
            new: dict[str, int] = {}
            for eq in rec.equations:
                w = _width(
                    eq.display_rhs,
                    env,
                    stage.width,
                    blocks,
                    plan,
                    rec,
                    history_width,
                    raw_width=width_in if i == 0 else None,
                    stride=stage.stride if i == 0 else 1,
                )
                env[var_name(eq.state, 1)] = w
                new[eq.state] = w
            for b in plan.blocks:
                blocks.setdefault(b, (stage.width, 1))
            shapes.append(StepShape(blocks, downsample if i == 0 else None))
            for s, depth in carry.lags.items():
                for k in reversed(range(1, depth)):
                    widths[var_name(s, -k)] = widths[var_name(s, -k + 1)]
                widths[var_name(s, 0)] = new[s]
            if carry.history and new.get(rec.output) != history_width:
                raise UsageError("compile: a sum over the history needs states of one width")
        all_steps.append(shapes)
        carried = {name: w for name, w in widths.items() if name in carry.names()}
        if transition == "project" and len(set(carried.values())) > 1:
            raise UsageError(
                "compile: transition=project needs every state entering a stage to have one width"
            )
        width_in = widths[var_name(rec.output, 0)]
    return NetworkLayout(stages, all_steps, width_in, backbone.stem_width(**options))


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
        name = expr.base.label.name
        if name not in rec.states:
            return None
        index = expr.indices[0]
        if index.is_Integer:
            return env[f"{name}_0"]
        if (index - n).is_Integer:
            return env[var_name(name, int(index - n))]
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
    memory: str = "standard",
) -> str:
    """Source of a standalone module defining ``FormulaNet`` (buildable with no arguments).
    ``memory``: "standard", "reversible" or "checkpoint" (:mod:`.reversible`)."""
    if transition not in ("reset", "project"):
        raise UsageError(f"unknown transition {transition!r} (choose reset or project)")
    reserved = _backbone_names(backbone, options)
    if memory != "standard":  # memory modes (issue 10)
        reserved |= reversible.RESERVED_NAMES
    plan = plan_step(rec, reserved=reserved)
    mplan = reversible.memory_plan(rec, memory)
    if not plan.blocks:
        raise UsageError("compile: the formula has no block, so the network would have nothing to learn")
    layout = network_layout(rec, plan, backbone, options, transition)
    carry = _carry(plan)
    inline = len(plan.blocks) == 1 and not (rec.shared_blocks)
    branch = backbone.branch_class
    net_options = backbone.net_kwargs(**{k: v for k, v in options.items() if k != "depth"})
    lines = _header(rec, f"A {backbone.name} network whose steps follow the formula.")
    lines += _backbone_source(backbone)
    lines += reversible.runtime_lines(memory)
    lines += _step_class(plan, base=branch if inline else None)
    if memory != "standard":
        lines += [""] + reversible.step_methods(rec, plan, carry.lags, memory)
    lines += ["", ""]
    lines.append(f"class FormulaNet({backbone.net_class}):")
    summary = (
        f"The formula on the {backbone.name} backbone ({_options_text(options)}; transition {transition}).\n"
        f"Stages: "
        + ", ".join(f"{st.name} {st.steps} steps of width {st.width}" for st in layout.stages)
        + "\n\n"
        + _indented(plan.formula)
    )
    lines.append(_docstring(summary, _INDENT))
    lines.append("")
    lines += reversible.network_attribute_lines(mplan, _INDENT)
    lines.append(
        f"{_INDENT}def __init__(self, num_classes={int(num_classes)}, in_channels={int(in_channels)}):"
    )
    kw = "".join(f", {k}={_literal(v)}" for k, v in net_options.items())
    lines.append(f"{_INDENT * 2}super().__init__(num_classes=num_classes, in_channels=in_channels{kw})")
    lines += reversible.init_lines(mplan, _INDENT * 2)
    lines += _shared_param_lines(plan, _INDENT * 2)
    for stage, shapes in zip(layout.stages, layout.steps):
        lines += _stage_lines(stage, shapes, plan, backbone, inline, _INDENT * 2)
    lines.append(f"{_INDENT * 2}self.build_head({layout.final_width})")
    lines.append("")
    lines += _forward_lines(rec, plan, carry, layout, transition, memory)
    return "\n".join(lines) + "\n"


def _backbone_names(backbone: BackboneInfo, options: dict) -> frozenset:
    """Names a parameter must not take on this backbone: the stage attributes, and every
    method, method argument, ``self.NAME`` and class attribute of the net and branch classes
    (the step subclasses the branch, the network the net class)."""
    names = {stage.name for stage in backbone.layout(**options)}
    for class_name in (backbone.net_class, backbone.branch_class):
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


def _literal(value) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and value.replace("-", "").replace("_", "").isalnum():
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    raise UsageError(f"compile: option value {value!r} cannot be written into the module")


def _backbone_source(backbone: BackboneInfo) -> list[str]:
    module = backbone.module
    names = [backbone.net_class, backbone.branch_class, backbone.projection_function]
    lines = ["# --- the backbone (copied from formulac.codegen.backbones) ---", ""]
    for name in names:
        lines += inspect.getsource(getattr(module, name)).rstrip("\n").splitlines() + ["", ""]
    imports = [
        line for line in inspect.getsource(module).splitlines() if line.startswith(("import ", "from "))
    ]
    extra = [i for i in imports if i not in ("import torch", "import math", "from torch import nn")]
    return extra + ([""] if extra else []) + lines


def _stage_lines(
    stage: Stage, shapes: list[StepShape], plan: StepPlan, backbone: BackboneInfo, inline: bool, indent: str
) -> list[str]:
    options = "".join(f", {k}={_literal(v)}" for k, v in sorted(stage.branch_options.items()))
    proj_options = "".join(f", {k}={_literal(v)}" for k, v in sorted(stage.projection_options.items()))

    def step_code(i: int, shape: StepShape) -> str:
        down = "None"
        if shape.downsample is not None:
            w_in, w, s = shape.downsample
            down = f"{backbone.projection_function}({w_in}, {w}, {s}{proj_options})"
        if inline:
            (block,) = plan.blocks
            w_in, s = shape.blocks[block]
            return f"FormulaStep({w_in}, {stage.width}, {s}, n={i}, downsample={down}{options})"
        blocks = ", ".join(
            f"{b}={backbone.branch_class}({shape.blocks[b][0]}, {stage.width}, {shape.blocks[b][1]}{options})"
            for b in plan.blocks
        )
        return f"FormulaStep({blocks}, n={i}, downsample={down})"

    codes = [step_code(i, s) for i, s in enumerate(shapes)]
    lines = [f"{indent}self.{stage.name} = nn.ModuleList(["]
    lines += [f"{indent}{_INDENT}{c}," for c in codes]
    lines.append(f"{indent}])")
    return lines


def _stage_loop(plan: StepPlan, carry: _Carry, memory: str) -> list[str]:
    """The steps of ``run_stage``: one loop, or (memory modes) the first step and a runtime call."""

    def loop(steps: str) -> list[str]:
        return _loop_lines(plan, carry, _INDENT * 2, steps, "self.", stage_input=True)

    if memory == "standard":
        return loop("steps")
    return reversible.stage_lines(plan, carry.lags, _INDENT * 2, loop, memory)


def _forward_lines(
    rec: Recurrence, plan: StepPlan, carry: _Carry, layout: NetworkLayout, transition: str, memory: str
) -> list[str]:
    out = f"{rec.output}"
    names = carry.names()
    lines = [f"{_INDENT}def forward(self, x):"]
    lines.append(f"{_INDENT * 2}{out}_0 = self.stem(x)")
    if transition == "reset":
        lines.append(f"{_INDENT * 2}{var_name(out, 0)} = {out}_0")
        for stage in layout.stages:
            lines.append(
                f"{_INDENT * 2}{var_name(out, 0)} = self.run_stage(self.{stage.name}, {var_name(out, 0)})"
            )
        lines.append(f"{_INDENT * 2}return self.head({var_name(out, 0)})")
        lines.append("")
        lines.append(f"{_INDENT}def run_stage(self, steps, x_in):")
        lines.append(
            f'{_INDENT * 2}"""One stage; its history restarts at the stage input, projected where it changes shape."""'
        )
        lines.append(
            f"{_INDENT * 2}{out}_0 = x_in if steps[0].downsample is None else steps[0].downsample(x_in)"
        )
        lines += _initial_lines(rec, carry, _INDENT * 2, f"{out}_0")
        lines += _stage_loop(plan, carry, memory)
        lines.append(f"{_INDENT * 2}return {var_name(out, 0)}")
        return lines
    lines += _initial_lines(rec, carry, _INDENT * 2, f"{out}_0")
    state_tuple = ", ".join(names)
    for stage in layout.stages:
        lines.append(f"{_INDENT * 2}{state_tuple} = self.run_stage(self.{stage.name}, {state_tuple})")
    lines.append(f"{_INDENT * 2}return self.head({var_name(out, 0)})")
    lines.append("")
    lines.append(f"{_INDENT}def run_stage(self, steps, {state_tuple}):")
    lines.append(
        f'{_INDENT * 2}"""One stage; every state entering it goes through the stage\'s projection."""'
    )
    lines.append(f"{_INDENT * 2}x_in = {var_name(out, 0)}")
    lines.append(f"{_INDENT * 2}project = steps[0].downsample")
    lines.append(f"{_INDENT * 2}if project is not None:")
    for name in names:
        if name.endswith("_history"):
            lines.append(f"{_INDENT * 3}{name} = [project(h) for h in {name}]")
        else:
            lines.append(f"{_INDENT * 3}{name} = project({name})")
    lines += _stage_loop(plan, carry, memory)
    lines.append(f"{_INDENT * 2}return {state_tuple}")
    return lines
