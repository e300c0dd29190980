"""What one step of a formula computes, in terms code generation can print (no torch here).

A :class:`StepPlan` lists the states a step reads (only the lags the formula uses), the
values it returns, the learned parameters, and the body of its ``forward`` as Python source
lines. Block calls are computed once per distinct call (common subexpressions), in order, each
into a local named after its block.
"""

from __future__ import annotations

import keyword
import math
from dataclasses import dataclass, field

import sympy

from ..errors import UsageError
from ..ir import BlockCall, Concat, Recurrence, n, rebuild
from ..printing import rec_expr

__all__ = ["StepPlan", "plan_step", "var_name", "number_literal"]

# Attribute names a formula cannot take on a generated module (nn.Module's own, and the
# names the generator itself uses); a clashing parameter is renamed with a suffix.
_TAKEN_ATTRIBUTES = frozenset(
    {
        "training",
        "forward",
        "train",
        "eval",
        "to",
        "cuda",
        "cpu",
        "half",
        "float",
        "double",
        "type",
        "apply",
        "parameters",
        "buffers",
        "children",
        "modules",
        "state_dict",
        "load_state_dict",
        "zero_grad",
        "register_buffer",
        "register_parameter",
        "add_module",
        "named_parameters",
        "named_modules",
        "named_children",
        "named_buffers",
        "requires_grad_",
        "extra_repr",
        "share_memory",
        "dump_patches",
        "call_super_init",
        "compile",
        "get_submodule",
        "get_parameter",
        "get_buffer",
        "set_extra_state",
        "get_extra_state",
        "bfloat16",
        "ipu",
        "xpu",
        "mtia",
        "bias",
        "weight",
        "downsample",
        "stem",
        "head",
        "build_head",
        "init_weights",
        "run_stage",
        "n",
        "num_classes",
        "stem_width",
        "relu",
        "linear",
        "fc",
        "bn",
        "conv",
        "avgpool",
        "maxpool",
        "blocks",
        "steps",
    }
)

# Bare names the generated code uses where a parameter's name also appears (module globals,
# constructor arguments, loop variables): a parameter is renamed rather than shadow them.
_GENERATED_NAMES = frozenset(
    {
        "torch",
        "nn",
        "math",
        "self",
        "x",
        "i",
        "step",
        "project",
        "depth",
        "width",
        "stride",
        "in_width",
        "branch_options",
    }
)


def var_name(state: str, offset: int) -> str:
    """Local variable for ``state_<n+offset>``: x_n, x_nm1 (n-1), x_next (n+1)."""
    if offset == 0:
        return f"{state}_n"
    if offset == 1:
        return f"{state}_next"
    return f"{state}_nm{-offset}"


def number_literal(value: sympy.Expr) -> str:
    """A Python literal for an exact number: 1.05 for 21/20, (1 / 3) for 1/3."""
    try:
        finite = math.isfinite(float(value))
    except (OverflowError, TypeError, ValueError):
        finite = False
    if not finite:
        raise UsageError("compile: a number of the formula is not a finite float (too large, or not real)")
    value = sympy.nsimplify(value) if value.is_Float else value
    if value.is_Integer:
        return str(int(value))
    if value.is_Rational:
        q = int(value.q)
        while q % 2 == 0:
            q //= 2
        while q % 5 == 0:
            q //= 5
        if q == 1:
            return repr(float(value))
        return f"({int(value.p)} / {int(value.q)})"
    return repr(float(value))


@dataclass
class StepPlan:
    """One step of a formula as printable code."""

    formula: str
    reads: list[tuple[str, int]]  # (state, offset<=0) in argument order; offset 0 is s_n
    returns: list[str]  # states computed, in evaluation order
    per_step_params: dict[str, tuple[str, sympy.Expr]]  # formula name -> (attribute, init)
    shared_params: dict[str, tuple[str, sympy.Expr]]
    blocks: list[str]
    raw_blocks: set[str]  # blocks that read the stage input (x_in) where it changes resolution
    reads_input: bool  # the formula refers to x_0
    history: list[str]  # states whose whole history a sum reads
    output: str = "x"
    body: list[str] = field(default_factory=list)


def _attribute(name: str, taken: set[str], reserved: frozenset = frozenset()) -> str:
    attr = name
    while (
        attr in _TAKEN_ATTRIBUTES
        or attr in _GENERATED_NAMES
        or attr in reserved
        or attr in taken
        or keyword.iskeyword(attr)
    ):
        attr += "_param"
    taken.add(attr)
    return attr


def plan_step(rec: Recurrence, stages: bool = True, reserved=frozenset()) -> StepPlan:
    """Plan the forward of one step; with ``stages``, blocks that read exactly the output
    state read the unprojected stage input at a stage's first step. Parameters named like
    an attribute or argument of the generated classes (``reserved``: the backbone's names)
    are renamed with a ``_param`` suffix."""
    rec.require_bound()
    taken: set[str] = set()
    reserved = frozenset(reserved)
    per_step = {
        p.name: (_attribute(p.name, taken, reserved), p.init) for p in rec.params.values() if p.per_step
    }
    shared = {
        p.name: (_attribute(p.name, taken, reserved), p.init) for p in rec.params.values() if not p.per_step
    }
    subs = rec.substitutions()
    reads: set[tuple[str, int]] = set()
    history: list[str] = []
    reads_input = False
    # the code prints display_rhs (the user's terms), so what it reads is read from there
    for eq in rec.equations:
        for ref in _state_refs_outside_sums(eq.display_rhs):
            name = ref.base.label.name
            if name in rec.params:
                continue
            offset = ref.indices[0] - n
            if ref.indices[0].is_Integer:
                reads_input = True
                if name != rec.output or ref.indices[0] != 0:
                    raise UsageError(f"compile: only {rec.output}_0 can be read by absolute index")
            elif int(offset) <= 0:
                reads.add((name, int(offset)))
        for s in eq.display_rhs.atoms(sympy.Sum):
            for ref in s.function.atoms(sympy.Indexed):
                if ref.base.label.name in rec.states and ref.base.label.name not in history:
                    history.append(ref.base.label.name)
    # every state is carried from step to step even when only its equation reads it
    ordered_reads = sorted(reads, key=lambda r: (rec.states.index(r[0]), -r[1]))
    calls = _ordered_block_calls(rec)
    raw_blocks = _raw_blocks(rec, calls) if stages else set()
    plan = StepPlan(
        formula=_formula_text(rec),
        reads=ordered_reads,
        returns=list(rec.states),
        per_step_params=per_step,
        shared_params=shared,
        blocks=list(rec.blocks),
        raw_blocks=raw_blocks,
        reads_input=reads_input,
        history=history,
        output=rec.output,
    )
    printer = _TorchPrinter(rec, plan, subs)
    for eq in rec.equations:
        for call in calls.get(eq.state, []):
            printer.define_block(call)
        code = printer.emit(eq.display_rhs)
        plan.body.append(f"{var_name(eq.state, 1)} = {code}")
    return plan


def _formula_text(rec: Recurrence) -> str:
    lines = []
    for p in rec.params.values():
        lines.append(f"param {p.name}{'_n' if p.per_step else ''} = {rec_expr(p.init)}")
    for name, value in list(rec.constants.items()) + list(rec.bindings.items()):
        lines.append(f"{name} = {rec_expr(value)}")
    for (state_name, index), value in rec.initial.items():
        lines.append(f"{state_name}_{index if index == 0 else f'<{index}>'} = {rec_expr(value)}")
    for eq in rec.equations:
        lines.append(f"{eq.state}_<n+1> = {rec_expr(eq.display_rhs)}")
    return "\n".join(lines)


def _state_refs_outside_sums(expr):
    if isinstance(expr, sympy.Sum):
        return
    if isinstance(expr, sympy.Indexed):
        yield expr
        return
    for arg in expr.args:
        yield from _state_refs_outside_sums(arg)


def _ordered_block_calls(rec: Recurrence) -> dict[str, list[BlockCall]]:
    """Distinct block calls of each equation, innermost first (each computed once per step)."""
    seen: set = set()
    result: dict[str, list[BlockCall]] = {}
    for eq in rec.equations:
        ordered: list[BlockCall] = []

        def visit(expr, ordered=ordered):
            for arg in expr.args:
                visit(arg)
            if isinstance(expr, BlockCall):
                key = rebuild(expr)
                if key not in seen:
                    seen.add(key)
                    ordered.append(expr)

        visit(eq.display_rhs)
        result[eq.state] = ordered
    return result


def _raw_blocks(rec: Recurrence, calls: dict[str, list[BlockCall]]) -> set[str]:
    """Blocks whose every call reads exactly the output state at step n: at a stage boundary
    they take the unprojected stage input, and stride (the torchvision layout)."""
    raw: set[str] = set()
    bare = sympy.IndexedBase(rec.output)[n]
    by_block: dict[str, list] = {}
    for group in calls.values():
        for call in group:
            by_block.setdefault(call.block, []).append(rebuild(call.argument))
    for block, args in by_block.items():
        if all(a == bare for a in args):
            raw.add(block)
    return raw


class _TorchPrinter:
    """SymPy (as the user wrote it) -> a Python expression over torch tensors."""

    _TORCH_FUNCTIONS = {
        "relu": "torch.relu",
        "sigmoid": "torch.sigmoid",
        "tanh": "torch.tanh",
        "softplus": "torch.nn.functional.softplus",
        "gelu": "torch.nn.functional.gelu",
        "silu": "torch.nn.functional.silu",
        "elu": "torch.nn.functional.elu",
        "exp": "torch.exp",
        "log": "torch.log",
        "sqrt": "torch.sqrt",
        "Abs": "torch.abs",
        "sin": "torch.sin",
        "cos": "torch.cos",
    }
    _MATH_FUNCTIONS = {
        "exp": "math.exp",
        "log": "math.log",
        "sqrt": "math.sqrt",
        "Abs": "abs",
        "sin": "math.sin",
        "cos": "math.cos",
        "tanh": "math.tanh",
    }

    def __init__(self, rec: Recurrence, plan: StepPlan, subs: dict):
        self.rec = rec
        self.plan = plan
        self.subs = subs
        self.block_vars: dict[sympy.Expr, str] = {}
        self.counts: dict[str, int] = {}
        self.bound: dict[sympy.Symbol, str] = {}

    def define_block(self, call: BlockCall) -> None:
        name = call.block
        self.counts[name] = self.counts.get(name, 0) + 1
        local = f"out_{name}" if self.counts[name] == 1 else f"out_{name}_{self.counts[name]}"
        self.plan.body.append(f"{local} = self.{name}({self._arg(call)})")
        self.block_vars[rebuild(call)] = local

    def _arg(self, call: BlockCall) -> str:
        if call.block in self.plan.raw_blocks:
            return "x_in"
        return self.emit(call.argument)

    # precedence: 0 sum, 1 product, 2 unary minus, 3 power, 4 atom
    def emit(self, expr) -> str:
        return self._emit(expr)[0]

    def _emit(self, expr) -> tuple[str, int]:
        if isinstance(expr, BlockCall):
            return self.block_vars[rebuild(expr)], 4
        if isinstance(expr, sympy.Indexed):
            return self._indexed(expr), 4
        if isinstance(expr, sympy.Symbol):
            return self._symbol(expr)
        if expr.is_Number:
            text = number_literal(expr)
            return text, (2 if text.startswith("-") else 4)
        if not self._is_tensor(expr) and not expr.has(n) and not self._has_param(expr):
            value = rebuild(expr).xreplace(self.subs)
            if value.is_number:
                value = sympy.nsimplify(value) if value.is_Rational else value
                text = number_literal(value)
                return text, (2 if text.startswith("-") else 4)
        if isinstance(expr, sympy.Add):
            return self._add(expr)
        if isinstance(expr, sympy.Mul):
            return self._mul(expr)
        if isinstance(expr, sympy.Pow):
            return self._pow(expr)
        if isinstance(expr, Concat):
            return "torch.cat((%s), dim=1)" % ", ".join(self.emit(a) for a in expr.args), 4
        if isinstance(expr, sympy.Sum):
            return self._sum(expr), 4
        if isinstance(expr, sympy.Function):
            name = type(expr).__name__
            table = (
                self._TORCH_FUNCTIONS
                if self._is_tensor(expr) or self._has_param(expr)
                else self._MATH_FUNCTIONS
            )
            if name not in table:
                raise UsageError(f"compile: function {name} is not supported on this argument")
            return f"{table[name]}({self.emit(expr.args[0])})", 4
        raise UsageError(f"compile: cannot generate code for {rec_expr(expr)}")

    def _indexed(self, expr) -> str:
        name = expr.base.label.name
        if name in self.plan.per_step_params:
            return "self." + self.plan.per_step_params[name][0]
        index = expr.indices[0]
        if index.is_Integer:
            return f"{name}_0"
        var = next(iter(index.free_symbols - {n}), None)
        if var is not None:  # inside a sum: the history list
            offset = index - var
            return f"{name}_history[{self.bound[var]}{'' if offset == 0 else f' {int(offset):+d}'.replace('+', '+ ').replace('-', '- ')}]"
        return var_name(name, int(index - n))

    def _symbol(self, expr) -> tuple[str, int]:
        if expr == n:
            return "self.n", 4
        if expr in self.bound:
            return self.bound[expr], 4
        if expr.name in self.plan.shared_params:
            return self.plan.shared_params[expr.name][0], 4
        value = expr.xreplace(self.subs)
        if value.free_symbols:
            raise UsageError(f"compile: symbol {expr.name} has no value")
        return self._emit(value)

    def _add(self, expr) -> tuple[str, int]:
        parts: list[str] = []
        for i, term in enumerate(expr.args):
            if any(isinstance(s, sympy.Symbol) and s in self.subs for s in term.free_symbols):
                term = term.xreplace(self.subs)  # constants: print their sign as a minus
            negative, magnitude = _split_sign(term)
            text, prec = self._emit(magnitude) if negative else self._emit(term)
            if negative:
                if prec <= 0:
                    text = f"({text})"
                parts.append(("- " if i else "-") + text)
            else:
                if prec < 0:
                    text = f"({text})"
                parts.append(("+ " if i else "") + text)
        return " ".join(parts), 0

    def _mul(self, expr) -> tuple[str, int]:
        numerator, denominator = [], []
        for factor in expr.args:
            if isinstance(factor, sympy.Pow) and factor.exp.is_Number and factor.exp.is_negative:
                exp = -factor.exp
                denominator.append(factor.base if exp == 1 else sympy.Pow(factor.base, exp, evaluate=False))
            elif factor == -1:
                numerator.insert(0, factor)
            else:
                numerator.append(factor)
        if numerator and numerator[0] == -1:
            rest = numerator[1:] or [sympy.Integer(1)]
            inner = (
                sympy.Mul(*rest, *[sympy.Pow(d, -1, evaluate=False) for d in denominator], evaluate=False)
                if len(rest) + len(denominator) > 1
                else rest[0]
            )
            text, prec = self._emit(inner)
            return "-" + (f"({text})" if prec < 2 else text), 2
        num = " * ".join(self._wrap(f, 1) for f in numerator) or "1"
        if not denominator:
            return num, 1
        den = " / ".join(self._wrap(d, 2) for d in denominator)
        return f"{num} / {den}", 1

    def _pow(self, expr) -> tuple[str, int]:
        base, exp = expr.args
        if exp.is_Number and exp.is_negative:
            return f"1 / {self._wrap(sympy.Pow(base, -exp, evaluate=False) if exp != -1 else base, 2)}", 1
        return f"{self._wrap(base, 4)} ** {self._wrap(exp, 4)}", 3

    def _wrap(self, expr, min_prec: int) -> str:
        text, prec = self._emit(expr)
        return f"({text})" if prec < min_prec else text

    def _sum(self, expr) -> str:
        ((var, low, high),) = expr.limits
        local = f"{var.name}_"
        self.bound[var] = local
        body = self.emit(expr.function)
        del self.bound[var]
        lo = self.emit(low)
        hi = self.emit(high + 1)
        return f"sum({body} for {local} in range({lo}, {hi}))"

    def _is_tensor(self, expr) -> bool:
        for node in sympy.preorder_traversal(expr):
            if isinstance(node, (BlockCall, Concat)):
                return True
            if isinstance(node, sympy.Indexed) and node.base.label.name in self.rec.states:
                return True
        return False

    def _has_param(self, expr) -> bool:
        names = set(self.rec.params)
        for node in sympy.preorder_traversal(expr):
            if isinstance(node, sympy.Indexed) and node.base.label.name in names:
                return True
            if isinstance(node, sympy.Symbol) and node.name in names:
                return True
        return False


def _split_sign(term) -> tuple[bool, sympy.Expr]:
    """(True, -term) when a term is written with a leading minus."""
    if term.is_Number and term.is_negative:
        return True, -term
    if isinstance(term, sympy.Mul) and term.args and term.args[0].is_Number and term.args[0].is_negative:
        coefficient = -term.args[0]
        rest = term.args[1:]
        if coefficient == 1:
            return True, rest[0] if len(rest) == 1 else sympy.Mul(*rest, evaluate=False)
        return True, sympy.Mul(coefficient, *rest, evaluate=False)
    return False, term
