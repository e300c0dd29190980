"""What one step of a formula computes, in terms code generation can print (no torch here).

A :class:`StepPlan` lists the states a step reads (only the lags the formula uses), the
values it returns, the learned parameters, and the body of its ``forward`` as Python source
lines. Block calls are computed once per distinct call (common subexpressions), in order, each
into a local named after its block.
"""

from __future__ import annotations

import keyword
import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import sympy

from ..errors import FormulacError, SourceError, UsageError
from ..ir import (
    BlockCall,
    Concat,
    Recurrence,
    StateRef,
    block_calls,
    n,
    pair_indices,
    pair_range,
    pair_selection,
    rebuild,
    references,
    state,
    walk,
    written_out,
)
from ..limits import MAX_FILE_BYTES
from ..printing import rec_expr
from .dynamic import dynamic_attributes, dynamic_params, prologue_lines
from .streams import shaped_initial_code, stream_code

__all__ = [
    "StepPlan",
    "PlanError",
    "plan_step",
    "formula_text",
    "var_name",
    "number_literal",
    "unprojected_name",
    "pair_range",
]

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


def unprojected_name(output: str) -> str:
    """The step argument that a block reading exactly ``output_n`` takes: ``output_n`` itself,
    except at a stage's first step, where it is the stage input before the projection."""
    return f"{output}_n_unprojected"


#: The largest integer written as an integer literal (every one up to it is exact as a double).
_EXACT_INTEGER = 2**53


def number_literal(value: sympy.Expr) -> str:
    """A Python literal for an exact number: 1.05 for 21/20, (1 / 3) for 1/3."""
    try:
        finite = math.isfinite(float(value))
    except (OverflowError, TypeError, ValueError):
        finite = False
    if not finite:
        raise UsageError("compile: a number of the formula is not a finite float (too large, or not real)")
    if value != 0 and float(value) == 0:  # the parser refuses these; never a silent 0.0
        raise UsageError("compile: a number of the formula is not 0 but rounds to 0 as a float")
    if value.is_Float:
        return repr(float(value))
    if value.is_Integer and abs(int(value)) <= _EXACT_INTEGER:
        return str(int(value))
    if value.is_Integer:  # torch refuses Python ints past int64 (OverflowError at the forward)
        return repr(float(value))
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
    """One step of a formula as printable code.

    A step reads ``reads`` (``s_<n+offset>``, offset <= 0), ``starts`` (``s_0``: the input for
    the output state, a fixed initial value for the others) and, for a sum over the history,
    the list of every ``s_k`` from ``k = history[s]`` (0, or earlier when the sum reaches before
    the start) up to ``s_n``. ``lags[s]`` is how many past values of ``s`` live across steps.
    ``initial`` holds the code of every value that exists before the first step (lagged states,
    starts, the head of each history list): an expression in ``OUTPUT_0``, computed from
    :meth:`~formulac.ir.Recurrence.initial_value`, the one definition of a state before step 0.
    """

    formula: str
    reads: list[tuple[str, int]]  # (state, offset<=0) in argument order; offset 0 is s_n
    starts: list[str]  # states read at index 0, output first
    returns: list[str]  # states computed, in evaluation order
    per_step_params: dict[str, tuple[str, sympy.Expr]]  # formula name -> (attribute, init)
    shared_params: dict[str, tuple[str, sympy.Expr]]
    blocks: list[str]
    raw_blocks: set[str]  # blocks that read the unprojected stage input at a stage's first step
    history: dict[str, int]  # state -> index of the first entry of its history list
    lags: dict[str, int]  # state -> how many past values (s_n, s_nm1, ...) are carried
    output: str = "x"
    equations: list[tuple[str, sympy.Expr]] = field(default_factory=list)  # what the code computes
    initial: dict[tuple[str, int], str] = field(default_factory=dict)  # (state, index <= 0) -> code
    shaped_like: dict[str, str] = field(default_factory=dict)  # state whose value is a number -> tensor
    body: list[str] = field(default_factory=list)
    #: pair parameter -> (attribute, code of its initial vector at step ``self.n``): one weight per
    #: earlier step its sum reads, entry 0 for the sum's lower limit
    pair_params: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: pair parameter -> code of the earlier steps that hold its weights at ``self.n``, for a sum
    #: with conditions (``[i % 4 == (n+1) % 4]``): the step keeps them as ``self.<attr>_reads``
    pair_reads: dict[str, str] = field(default_factory=dict)
    #: state -> the pair parameters whose selected sums are its only history reads: its history
    #: keeps the entries they read, None elsewhere
    pruned_history: dict[str, list[str]] = field(default_factory=dict)
    feature_dim: int = 1  # the tensor dimension of the features (cat, norm): the backbone's
    #: input-dependent parameter -> its generated names (:func:`.dynamic.dynamic_attributes`)
    dynamic: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the lines that compute them, first in every method that runs the step (forward, advance)
    prologue: list[str] = field(default_factory=list)

    @property
    def reads_input(self) -> bool:
        """Does the formula read the input ``OUTPUT_0`` at every step?"""
        return self.output in self.starts


class PlanError(UsageError):
    """A formula that parses but cannot be built; ``line`` and ``column`` locate its statement."""

    def __init__(self, message: str, line: int = 0, column: int = 0):
        super().__init__(message)
        self.line, self.column = line, column

    def in_file(self, path: str) -> FormulacError:
        """The same error at its place in the formula file ``path`` (``FILE:LINE:COL: error:``
        with the source line and a caret)."""
        if not self.line:
            return self
        try:
            with open(path, "rb") as handle:  # the file was read once; it may have grown since
                text = handle.read(MAX_FILE_BYTES + 1).decode("utf-8-sig", errors="replace")
        except OSError:
            text = None
        return SourceError(self.message, str(path), text, self.line, self.column)


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


def plan_step(
    rec: Recurrence,
    stages: bool = True,
    reserved=frozenset(),
    free_symbols: bool = False,
    feature_dim: int = 1,
) -> StepPlan:
    """Plan the forward of one step; with ``stages``, blocks that read exactly the output
    state read the unprojected stage input at a stage's first step. Parameters named like
    an attribute or argument of the generated classes (``reserved``: the backbone's names)
    are renamed with a ``_param`` suffix. With ``free_symbols`` (``formulac check``), unbound
    symbols are printed as names instead of refused. ``cat`` joins dimension ``feature_dim``
    (the backbone's features). Errors are :class:`PlanError`."""
    if not free_symbols:
        rec.require_bound()
    taken: set[str] = set()
    reserved = frozenset(reserved)
    per_step = {
        p.name: (_attribute(p.name, taken, reserved), p.init)
        for p in rec.params.values()
        if p.per_step and p.pair is None and p.shape is None
    }
    pairs = {p.name: _attribute(p.name, taken, reserved) for p in rec.params.values() if p.pair is not None}
    shaped = {p.name: _attribute(p.name, taken, reserved) for p in rec.params.values() if p.shape is not None}
    shared = {
        p.name: (_attribute(p.name, taken, reserved), p.init) for p in rec.params.values() if not p.per_step
    }
    # the code prints display_rhs (the user's terms), windows written out as lags
    equations = list(rec.step_equations)
    reads: set[tuple[str, int]] = set()
    starts: set[str] = set()
    history: dict[str, int] = {}
    for _, expr in equations:
        _collect_reads(rec, expr, reads, starts, history)
    ordered_reads = sorted(reads, key=lambda r: (rec.states.index(r[0]), -r[1]))
    calls = ordered_block_calls(equations)
    plan = StepPlan(
        formula=formula_text(rec),
        reads=ordered_reads,
        starts=sorted(starts, key=lambda s: (s != rec.output, rec.states.index(s))),
        returns=list(rec.states),
        per_step_params=per_step,
        shared_params=shared,
        blocks=list(rec.blocks),
        raw_blocks=_raw_blocks(rec, equations) if stages else set(),
        history={s: history[s] for s in rec.states if s in history},
        lags=dict(rec.carried_lags),
        output=rec.output,
        equations=equations,
    )
    first = rec.equations[0]
    for p in rec.params.values():
        if p.pair is None and p.shape is None:
            with located(first.line, first.column, f"the initial value of parameter {p.name}: "):
                number_literal(p.init)
    plan.feature_dim = feature_dim
    printer = TorchPrinter(rec, plan, rec.substitutions())
    plan.pair_reads = {
        name: printer.pair_reads(*pair_selection(rec, name))
        for name in pairs
        if pair_selection(rec, name)[3] != 1
    }
    plan.pair_params = {
        name: (
            attr,
            printer.pair_initial(
                rec.params[name], *pair_range(rec, name), attr if name in plan.pair_reads else None
            ),
        )
        for name, attr in pairs.items()
    }
    plan.pruned_history = _pruned_history(rec, equations, plan)
    # a stream formula's vector and matrix parameters: one tensor a step, held like a pair's vector
    plan.pair_params.update(
        {name: (attr, shaped_initial_code(rec.params[name], number_literal)) for name, attr in shaped.items()}
    )
    if dynamic_params(rec):  # coefficients computed from the states, first thing in the step
        attributes = {**{k: v[0] for k, v in per_step.items()}, **shaped}
        plan.dynamic = dynamic_attributes(rec, attributes, taken | set(reserved) | _GENERATED_NAMES)
        read_names = {state_name: var_name(state_name, 0) for state_name, offset in plan.reads if offset == 0}
        with located(first.line, first.column):
            plan.prologue = prologue_lines(rec, plan.dynamic, read_names, feature_dim)
        plan.body += plan.prologue
    for s, expr in equations:
        eq = rec.equation(s)
        with located(eq.line, eq.column):
            for call in calls.get(s, []):
                printer.define_block(call)
            plan.body.append(f"{var_name(s, 1)} = {printer.state_value(s, expr)}")
    for key in _initial_keys(plan):
        eq = rec.equation(key[0])
        with located(eq.line, eq.column, f"the value of {rec_expr(state(*key))} before the first step: "):
            plan.initial[key] = printer.initial(rec.initial_value(*key))
    return plan


@contextmanager
def located(line: int, column: int, prefix: str = ""):
    """Turn a UsageError raised while building a statement into a :class:`PlanError` there."""
    try:
        yield
    except PlanError:
        raise
    except UsageError as exc:
        message = exc.message.removeprefix("compile: ")
        raise PlanError(f"compile: {prefix}{message}", line, column) from None


def _collect_reads(rec: Recurrence, expr, reads: set, starts: set, history: dict) -> None:
    """Add what ``expr`` reads: lags (state, offset), starts (s_0) and history reaches."""
    for ref in references(expr, rec.states):
        if ref.step is not None:
            starts.add(ref.name)
        elif ref.offset is not None and ref.offset <= 0:
            reads.add((ref.name, ref.offset))
    for total in expr.atoms(sympy.Sum):  # a sum over the history reaches back to low + offset
        ((var, low, _),) = total.limits
        for ref in references(total.function, rec.states):
            if ref.variable == var:
                history[ref.name] = min(history.get(ref.name, 0), int(low) + ref.shift)


def _pruned_history(rec: Recurrence, equations, plan: StepPlan) -> dict[str, list[str]]:
    """States read through their history only as ``sum(i=..., [conditions]*w_<n,i>*s_i)`` with
    selected entries: the stage keeps the entries some step reads, not the whole history."""
    readers: dict[str, list[str]] = {}
    for _, expr in equations:
        for total in expr.atoms(sympy.Sum):
            ((var, _, _),) = total.limits
            factors = sympy.Mul.make_args(total.function)
            pairs = [f for f in factors if isinstance(f, sympy.Indexed) and pair_indices(f) is not None]
            rest = [f for f in factors if not isinstance(f, sympy.KroneckerDelta) and f not in pairs]
            pair = StateRef.of(pairs[0]).name if len(pairs) == 1 else None
            simple = (
                pair in plan.pair_reads
                and len(rest) == 1
                and isinstance(rest[0], sympy.Indexed)
                and StateRef.of(rest[0]).variable == var
                and StateRef.of(rest[0]).shift == 0
            )
            for ref in references(total.function, rec.states):
                if ref.variable == var:
                    readers.setdefault(ref.name, []).append(pair if simple else None)
    return {
        name: list(dict.fromkeys(pairs))
        for name, pairs in readers.items()
        if name in plan.history and None not in pairs
    }


def _initial_keys(plan: StepPlan) -> list[tuple[str, int]]:
    """Every (state, index <= 0) whose value must exist before the first step."""
    keys = [(s, -k) for s, depth in plan.lags.items() for k in range(depth)]
    keys += [(s, 0) for s in plan.starts]
    keys += [(s, k) for s, first in plan.history.items() for k in range(first, 0)]
    return [k for k in dict.fromkeys(keys) if k != (plan.output, 0)]


def formula_text(rec: Recurrence) -> str:
    """The formula for a docstring: the representation's canonical text (:attr:`Recurrence.text`)."""
    return rec.text.rstrip("\n")


def _bound_variables(expr: sympy.Expr) -> set:
    return {s.limits[0][0] for s in expr.atoms(sympy.Sum)}


def ordered_block_calls(equations: list[tuple[str, sympy.Expr]]) -> dict[str, list[BlockCall]]:
    """Distinct block calls of each equation, innermost first (each computed once per step);
    calls on a sum's variable are made inside the sum instead."""
    seen: set = set()
    result: dict[str, list[BlockCall]] = {}
    for s, expr in equations:
        ordered: list[BlockCall] = []
        bound = _bound_variables(expr)

        def visit(node, ordered=ordered, bound=bound):
            for arg in node.args:
                visit(arg)
            if isinstance(node, BlockCall) and not (bound and node.has(*bound)):
                key = rebuild(node)
                if key not in seen:
                    seen.add(key)
                    ordered.append(node)

        visit(expr)
        result[s] = ordered
    return result


def _raw_blocks(rec: Recurrence, equations: list[tuple[str, sympy.Expr]]) -> set[str]:
    """Blocks whose every call reads exactly the output state at step n: at a stage boundary
    they take the unprojected stage input, and stride (the torchvision layout)."""
    bare = sympy.IndexedBase(rec.output)[n]
    by_block: dict[str, list] = {b: [] for b in rec.blocks}
    for _, expr in equations:
        for call in block_calls(expr):
            by_block[call.block].append(rebuild(call.argument))
    return {block for block, args in by_block.items() if args and all(a == bare for a in args)}


class TorchPrinter:
    """SymPy (as the user wrote it) -> a Python expression over torch tensors."""

    # element-wise functions of tensors (and of learned parameters, which are tensors too)
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
        "Abs": "torch.abs",
        "sin": "torch.sin",
        "cos": "torch.cos",
    }
    # the same functions of a Python number (a coefficient that follows the step n), in forms
    # that do not overflow: {a} is the argument, {w} the argument in parentheses where it needs them
    _MATH_FUNCTIONS = {
        "relu": "max({a}, 0)",
        "sigmoid": "((1 + math.tanh({w} / 2)) / 2)",
        "tanh": "math.tanh({a})",
        "softplus": "(max({a}, 0) + math.log1p(math.exp(-abs({a}))))",
        "gelu": "({w} * (1 + math.erf({w} / math.sqrt(2))) / 2)",
        "silu": "({w} * (1 + math.tanh({w} / 2)) / 2)",
        "elu": "({w} if {w} > 0 else math.expm1({a}))",
        "exp": "math.exp({a})",
        "log": "math.log({a})",
        "Abs": "abs({a})",
        "sin": "math.sin({a})",
        "cos": "math.cos({a})",
    }

    def __init__(self, rec: Recurrence, plan: StepPlan, subs: dict):
        self.rec = rec
        self.feature_dim = plan.feature_dim
        self.plan = plan
        self.subs = subs
        self.block_vars: dict[sympy.Expr, str] = {}
        self.counts: dict[str, int] = {}
        self.bound: dict[sympy.Symbol, str] = {}
        self.histories: dict[str, str] = {}  # state -> the list a sum reads it from, when not its history

    def define_block(self, call: BlockCall) -> None:
        name = call.block
        self.counts[name] = self.counts.get(name, 0) + 1
        local = f"out_{name}" if self.counts[name] == 1 else f"out_{name}_{self.counts[name]}"
        self.plan.body.append(f"{local} = self.{name}({self._arg(call)})")
        self.block_vars[rebuild(call)] = local

    def _arg(self, call: BlockCall) -> str:
        if call.block in self.plan.raw_blocks:
            return unprojected_name(self.rec.output)
        return self.emit(call.argument)

    def pair_initial(self, param, low: sympy.Expr, high: sympy.Expr, reads: str | None = None) -> str:
        """Code of a pair parameter's initial vector at step ``self.n``: one entry per step
        ``low..high`` of its sum (``[i == n]`` is ``float(j_ == self.n)``), or one per entry of
        ``self.<reads>_reads`` (a sum with conditions)."""
        self.bound[param.pair_symbol] = "j_"
        try:
            value = self.emit(param.init)
        finally:
            del self.bound[param.pair_symbol]
        if reads is not None:
            return f"[float({value}) for j_ in self.{reads}_reads]"
        return f"[float({value}) for j_ in range({self.emit(low)}, {self.emit(high + 1)})]"

    def pair_reads(self, var, low: sympy.Expr, high: sympy.Expr, selector: sympy.Expr) -> str:
        """Code of the earlier steps whose weights a step holds: those of ``low..high`` where
        the sum's conditions hold at ``self.n``."""
        self.bound[var] = "j_"
        try:
            condition = " and ".join(self.emit(c) for c in sympy.Mul.make_args(selector))
        finally:
            del self.bound[var]
        return f"[j_ for j_ in range({self.emit(low)}, {self.emit(high + 1)}) if {condition}]"

    def initial(self, value: sympy.Expr) -> str:
        """Code of a value before the first step: a tensor shaped like the input."""
        output = self.rec.output
        if self._is_tensor(value):
            return self.emit(value)
        number = self._number(value)
        if number is not None and number == 0:
            return f"torch.zeros_like({output}_0)"
        return f"torch.full_like({output}_0, {self.emit(value)})"

    # precedence: 0 sum, 1 product, 2 unary minus, 3 power, 4 atom
    def emit(self, expr) -> str:
        return self._emit(expr)[0]

    def _emit(self, expr) -> tuple[str, int]:
        stream = stream_code(self, expr)  # stacked streams and their parameters (codegen/streams.py)
        if stream is not None:
            return stream, 4
        if isinstance(expr, BlockCall):
            local = self.block_vars.get(rebuild(expr))
            if local is None:  # a call on a sum's variable, made inside the sum
                return f"self.{expr.block}({self.emit(expr.argument)})", 4
            return local, 4
        if isinstance(expr, sympy.Indexed):
            return self._indexed(expr), 4
        if isinstance(expr, sympy.Symbol):
            return self._symbol(expr)
        if expr.is_Number:
            text = number_literal(expr)
            return text, (2 if text.startswith("-") else 4)
        if not self._is_tensor(expr) and not expr.has(n) and not self._has_param(expr):
            value = self._number(expr)
            if value is not None:
                text = number_literal(value)
                return text, (2 if text.startswith("-") else 4)
        if isinstance(expr, sympy.Add):
            return self._add(expr)
        if isinstance(expr, sympy.Mul):
            return self._mul(expr)
        if isinstance(expr, sympy.Pow):
            return self._pow(expr)
        if isinstance(expr, Concat):
            joined = ", ".join(self.emit(a) for a in expr.args)
            return f"torch.cat(({joined}), dim={self.feature_dim})", 4
        if isinstance(expr, sympy.Sum):
            return self._sum(expr), 4
        if isinstance(expr, sympy.KroneckerDelta):  # a pair parameter's start or a condition: a bool
            return f"({self.emit(expr.args[0])} == {self.emit(expr.args[1])})", 4
        if isinstance(expr, sympy.Mod):  # only inside a condition, of a step index
            return f"{self._wrap(expr.args[0], 4)} % {self.emit(expr.args[1])}", 1
        if isinstance(expr, sympy.Function) and type(expr).__name__ == "norm":
            return self._norm(expr.args[0]), 4
        if isinstance(expr, sympy.Function) and type(expr).__name__ in self._TORCH_FUNCTIONS:
            name, (arg,) = type(expr).__name__, expr.args
            if self._is_tensor(expr) or self._has_param(expr):
                return f"{self._TORCH_FUNCTIONS[name]}({self.emit(arg)})", 4
            text = self._MATH_FUNCTIONS[name].format(a=self.emit(arg), w=self._wrap(arg, 4))
            return text, 4
        raise UsageError(f"compile: cannot generate code for {rec_expr(expr)}")

    def _norm(self, argument) -> str:
        """``norm(v)``: v normalised over the features (the backbone's feature dimension and
        every dimension after it), no learned gain or shift."""
        if not self._is_tensor(argument):
            raise UsageError(
                f"compile: norm(...) normalises a state, not the number {rec_expr(rebuild(argument))}"
            )
        value = self.emit(argument)
        if not value.isidentifier():
            value = f"({value})"
        return f"torch.nn.functional.layer_norm({value}, {value}.shape[{self.feature_dim}:])"

    def _number(self, expr) -> sympy.Expr | None:
        """The value of an expression without states, n or parameters (None if it has symbols)."""
        value = rebuild(expr).xreplace(self.subs)
        if value.free_symbols:
            return None
        if value.is_Rational:
            return value
        value = written_out(value).evalf(30)  # ir's activations evaluate by their definitions
        return value if value.is_number else None

    def _indexed(self, expr) -> str:
        ref = StateRef.of(expr)
        if ref.name in self.plan.pair_params or pair_indices(expr) is not None:
            return self._pair_entry(expr)
        if ref.name in self.plan.dynamic:  # computed per token at the start of the step
            return self.plan.dynamic[ref.name]["local"]
        if ref.name in self.plan.per_step_params:
            return "self." + self.plan.per_step_params[ref.name][0]
        if ref.step is not None:
            return f"{ref.name}_0"
        if ref.offset is None:  # inside a sum: the history list, whose entry 0 is name_<first>
            position = ref.shift - self.plan.history[ref.name]
            shift = "" if position == 0 else f" {'+' if position > 0 else '-'} {abs(position)}"
            return f"{self._history(ref.name)}[{self.bound[ref.variable]}{shift}]"
        return var_name(ref.name, ref.offset)

    def _pair_entry(self, expr) -> str:
        """``w_<n,i>`` as an entry of the step's weight vector (entry 0 is the sum's lower limit)."""
        name = StateRef.of(expr).name
        attr = self.plan.pair_params[name][0]
        if name in self.plan.pair_reads:  # its vector holds the selected steps only
            raise UsageError(
                f"compile: {name} is read in a sum with conditions ([a == b]); such a sum is "
                f"computed as one contraction, so its body is {name}_<n,i> times conditions and "
                "one tensor: sum(i=0..n, [i % 2 == n % 2]*w_<n,i>*x_i)"
            )
        low, _ = pair_range(self.rec, name)
        position = pair_indices(expr)[1] - low
        if position.is_Integer:  # a window written out term by term: a fixed entry
            return f"self.{attr}[{int(position)}]"
        variable = next(iter(position.free_symbols - {n}))
        return f"self.{attr}[{self.bound[variable]} - ({self.emit(low)})]"

    def _history(self, name: str) -> str:
        """The list a sum reads ``name`` from: its history, and ``name_next`` too when the sum
        reaches ``n+1`` (a state computed earlier in the step)."""
        return self.histories.get(name, f"{name}_history")

    def _symbol(self, expr) -> tuple[str, int]:
        if expr == n:
            return "self.n", 4
        if expr in self.bound:
            return self.bound[expr], 4
        if expr.name in self.plan.shared_params:
            return self.plan.shared_params[expr.name][0], 4
        value = expr.xreplace(self.subs)
        if value.free_symbols:
            if expr.name in self.rec.free_symbols:  # planned for `check` only, never run
                return expr.name, 4
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
        for ref in references(expr.function, self.rec.states):
            if ref.variable == var and (high + ref.shift - n) == 1 and ref.name not in self.histories:
                self.histories[ref.name] = f"{ref.name}_upto_next"
                self.plan.body.append(
                    f"{ref.name}_upto_next = [*{ref.name}_history, {var_name(ref.name, 1)}]"
                )
        mixed = self._mixing(expr)
        if mixed is not None:
            return mixed
        self.bound[var] = local
        body = self.emit(expr.function)
        del self.bound[var]
        lo = self.emit(low)
        hi = self.emit(high + 1)
        if low > high.xreplace({n: 0}):  # empty at the first steps: a tensor of zeros, not 0
            summed = next(
                (r.name for r in references(expr.function, self.rec.states) if r.variable == var), None
            )
            zeros = f"torch.zeros_like({self.reference(summed)})"
            return f"sum(({body} for {local} in range({lo}, {hi})), {zeros})"
        return f"sum({body} for {local} in range({lo}, {hi}))"

    def _mixing(self, expr) -> str | None:
        """``sum(i=..., w_<n,i>*BODY_i)`` as one contraction of the weight vector with the
        stacked bodies (``torch.tensordot``), not a loop of scalar products; a body that is one
        state read through the sum is a slice of its history list. None for other sums."""
        ((var, low, high),) = expr.limits
        factors = expr.function.args if isinstance(expr.function, sympy.Mul) else (expr.function,)
        pairs = [f for f in factors if isinstance(f, sympy.Indexed) and pair_indices(f) is not None]
        if len(pairs) != 1 or pair_indices(pairs[0])[1] != var:
            return None
        name = StateRef.of(pairs[0]).name
        if low > high.xreplace({n: 0}) and name not in self.plan.pair_reads:
            return None  # (an empty range at the first steps: the loop's zeros instead)
        rest = [f for f in factors if f is not pairs[0]]
        if any(next(references(f, (name,)), None) is not None for f in rest):
            return None
        body = rest[0] if len(rest) == 1 else sympy.Mul(*rest, evaluate=False) if rest else None
        if body is None or not self._is_tensor(body):
            return None
        weights = "self." + self.plan.pair_params[name][0]
        if name in self.plan.pair_reads:  # conditions select the entries: gather them
            body = sympy.Mul(*[f for f in rest if not isinstance(f, sympy.KroneckerDelta)], evaluate=False)
            local = f"{var.name}_"
            self.bound[var] = local
            try:
                if isinstance(body, sympy.Indexed) and StateRef.of(body).variable == var:
                    ref = StateRef.of(body)
                    position = ref.shift - self.plan.history[ref.name]
                    shift = "" if position == 0 else f" {'+' if position > 0 else '-'} {abs(position)}"
                    item = f"{self._history(ref.name)}[{local}{shift}]"
                else:
                    item = self.emit(body)
            finally:
                del self.bound[var]
            read, mixed = f"{name}_read", f"{name}_mixed"
            self.plan.body.append(f"{read} = [{item} for {local} in {weights}_reads]")
            self.plan.body.append(
                f"{mixed} = torch.tensordot({weights}, torch.stack({read}).to({weights}.dtype), dims=1) "
                f"if {read} else 0"
            )
            return mixed
        if isinstance(body, sympy.Indexed) and StateRef.of(body).variable == var:
            ref = StateRef.of(body)
            start = low + ref.shift - self.plan.history[ref.name]
            stacked = f"torch.stack({self._history(ref.name)}[{self.emit(start)}:{self.emit(high + 1 + ref.shift - self.plan.history[ref.name])}])"
        else:
            local = f"{var.name}_"
            self.bound[var] = local
            try:
                item = self.emit(body)
            finally:
                del self.bound[var]
            stacked = f"torch.stack([{item} for {local} in range({self.emit(low)}, {self.emit(high + 1)})])"
        # tensordot has no autocast rule: under bf16 autocast the history is bf16 and the weights
        # float32, so the sum is taken in the weights' precision
        return f"torch.tensordot({weights}, {stacked}.to({weights}.dtype), dims=1)"

    def state_value(self, name: str, expr) -> str:
        """Code of the right side of ``name``'s equation: a tensor at every step, even where the
        formula gives a number (``v_<n+1> = 1/2``)."""
        code = self.emit(expr)
        if self._is_tensor(expr):
            return code
        self.plan.shaped_like[name] = self.reference(name)
        return f"torch.full_like({self.plan.shaped_like[name]}, {code})"

    def reference(self, name: str | None = None) -> str:
        """A tensor the step reads: of state ``name`` if it reads one, else of any state."""
        plan = self.plan
        if name in plan.history:
            return f"{name}_history[0]"
        own = [r for r in plan.reads if r[0] == name]
        if own:
            return var_name(*own[0])
        if plan.reads:
            return var_name(*plan.reads[0])
        if plan.starts:
            return f"{plan.starts[0]}_0"
        if plan.history:
            return f"{next(iter(plan.history))}_history[0]"
        raise UsageError("compile: the formula reads no state")

    def _is_tensor(self, expr) -> bool:
        if any(isinstance(node, (BlockCall, Concat)) for node in walk(expr)):
            return True
        return next(references(expr, self.rec.states), None) is not None

    def _has_param(self, expr) -> bool:
        names = set(self.rec.params)
        if next(references(expr, names), None) is not None:
            return True
        return any(isinstance(node, sympy.Symbol) and node.name in names for node in walk(expr))


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
