"""Running a stage's steps with less activation memory: rebuilt backward, or checkpointed.

This file depends on torch alone: the code generator copies its definitions verbatim into the
modules it writes for ``memory="reversible"`` and ``memory="checkpoint"``. Each step module has
two generated methods, on the states it keeps (``x_n, x_nm1, ...``):

* ``advance(call, *states)``: the step, every block call made as ``call(index, block, argument)``
  (``index`` numbers the step's distinct block calls in the forward's order);
* ``retreat(call, *states_after)``: the formula's inverse, solved symbolically: the states
  before the step from those after it, calling the same blocks on arguments already known.

``run_reversible`` keeps only the last states of the stage (plus anchor states every
``anchor_steps[dtype]`` steps, an interval chosen from the formula's error growth). Backward, it
rebuilds each step's input with ``retreat``; the block outputs computed on the way are the
forward's own (same arguments), so each step's blocks are evaluated once more, not twice, before
their gradients are taken. Batch-norm running statistics (every buffer of a step) are restored
after the recomputation, and when the step holds dropout in training mode (or
``preserve_rng_state`` is True) each block call replays the random state it had in the forward.
"""

import math

import torch
import torch.nn as nn

_RANDOM_MODULES = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def uses_randomness(steps, preserve_rng_state=None):
    """Whether block calls must replay the forward's random state: ``preserve_rng_state`` when
    given, else whether a step holds a dropout module with p > 0 in training mode."""
    if preserve_rng_state is not None:
        return bool(preserve_rng_state)
    return any(
        isinstance(m, _RANDOM_MODULES) and m.p > 0 and m.training for step in steps for m in step.modules()
    )


def _plain_call(index, block, argument):
    return block(argument)


def advance_steps(steps, states, shared):
    """The steps one after another, as the standard forward runs them."""
    for step in steps:
        states = step.advance(_plain_call, *states, **shared)
    return tuple(states)


def _rng_state(device):
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    return torch.get_rng_state()


def _set_rng_state(device, state):
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def _recording(plan, rng, i):
    """Step ``i``'s block caller in a forward: the random state before each call kept in
    ``rng[(i, index)]`` when the plan replays them."""

    def call(index, block, argument):
        if plan.random:
            rng[(i, index)] = _rng_state(argument.device)
        return block(argument)

    return call


def _replay_rng(ctx, i, index):
    """Back to the random state the forward recorded before block call ``index`` of step ``i``
    (none recorded: the state is left as it is)."""
    if (i, index) in ctx.rng:
        _set_rng_state(ctx.device, ctx.rng[(i, index)])


def _replaying(ctx, i):
    """Step ``i``'s block caller in a backward: each call replays the forward's random state."""

    def call(index, block, argument):
        _replay_rng(ctx, i, index)
        return block(argument)

    return call


def _autocast_state(device_type):
    try:
        return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)
    except TypeError:  # torch < 2.4 has one function per device
        if device_type == "cuda":
            return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
        return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()


def _stage_inputs(plan, tensors):
    """The stage's first states and its shared parameters by name, from a Function's inputs."""
    return tensors[: plan.count], dict(zip(plan.names, tensors[plan.count : plan.count + len(plan.names)]))


def _remember(ctx, plan, rng, positions, device, saved):
    """What a backward needs: the plan, the random states recorded (``_recording``), the
    anchors' step positions, the device and its autocast state, the tensors ``saved``."""
    ctx.save_for_backward(*saved)
    ctx.plan, ctx.rng, ctx.positions = plan, rng, positions
    ctx.device = device
    ctx.autocast = _autocast_state(device.type)


def _backward_start(ctx):
    """The shared parameters' values (in ``plan.names`` order, then by name), each parameter's
    gradient total so far (None) and the random state to restore after the backward (None
    when the plan replays none)."""
    plan = ctx.plan
    shared_values = list(plan.params[: len(plan.names)])
    total = {id(p): None for p in plan.params}
    outer_rng = _rng_state(ctx.device) if plan.random else None
    return shared_values, dict(zip(plan.names, shared_values)), total, outer_rng


class _KeptBuffers:
    """Restores a module's buffers (batch-norm running statistics) after a recomputation, so
    that they are updated once per forward."""

    def __init__(self, module):
        self.saved = [(b, b.clone()) for b in module.buffers()] if module.training else []

    def restore(self):
        with torch.no_grad():
            for buffer, value in self.saved:
                buffer.copy_(value)


class _Rebuild:
    """What a reversible run needs: the steps, how many states they keep, the shared parameters'
    names, the anchor interval, whether randomness is replayed, the parameters in the order of
    the inputs, ``report(error, steps)`` (records a segment's check; True when it passed) and
    ``replan(drift)`` (a new interval from a drifted segment's measured errors)."""

    def __init__(self, steps, count, names, interval, random, params, report, replan):
        self.steps, self.count, self.names, self.interval = steps, count, names, interval
        self.random, self.params, self.report, self.replan = random, params, report, replan


class ReversibleSteps(torch.autograd.Function):
    """Steps whose inputs are rebuilt from their outputs during backward (see run_reversible)."""

    @staticmethod
    def forward(ctx, plan, *tensors):
        states, shared = _stage_inputs(plan, tensors)
        rng = {}

        positions, kept = [], []
        for i, step in enumerate(plan.steps):
            if i % plan.interval == 0:  # an anchor: the states before step i, kept exactly
                positions.append(i)
                kept.extend(states)
            states = tuple(step.advance(_recording(plan, rng, i), *states, **shared))
        _remember(ctx, plan, rng, positions, states[0].device, (*states, *kept))
        return states

    @staticmethod
    def backward(ctx, *grads):
        plan = ctx.plan
        count = plan.count
        saved = ctx.saved_tensors
        anchors = {pos: saved[count * (j + 1) : count * (j + 2)] for j, pos in enumerate(ctx.positions)}
        ends = ctx.positions[1:] + [len(plan.steps)]
        shared_values, shared, total, outer_rng = _backward_start(ctx)
        grads = list(grads)
        enabled, dtype = ctx.autocast
        try:
            with torch.autocast(ctx.device.type, dtype=dtype, enabled=enabled):
                # one segment at a time, from the last: rebuilt from its exact last states (the
                # stage's outputs or the next anchor) down to its anchor, where the rebuilt states
                # are checked; its gradients count only when they pass, else it is recomputed
                for start, end in reversed(list(zip(ctx.positions, ends))):
                    states = saved[:count] if end == len(plan.steps) else anchors[end]
                    segment = {id(p): None for p in plan.params}
                    rebuilt_grads, error = grads, None
                    for i in reversed(range(start, end)):
                        step = plan.steps[i]
                        kept = _KeptBuffers(step)
                        step_params = shared_values + [p for p in step.parameters() if p.requires_grad]
                        anchor = anchors[start] if i == start else None
                        states, rebuilt_grads, error = _step_backward(
                            ctx, i, step, states, rebuilt_grads, anchor, shared, step_params, segment
                        )
                        kept.restore()
                    if plan.report(error, end - start):
                        for p in plan.params:
                            _accumulate(total, [p], [segment[id(p)]])
                        grads = rebuilt_grads
                    else:  # drifted: the exact gradient from the anchor, as checkpointing computes it
                        last = saved[:count] if end == len(plan.steps) else anchors[end]
                        grads, drift = _recompute_segment(
                            ctx, start, end, anchors[start], last, grads, shared, total
                        )
                        plan.replan(drift)
        finally:
            if plan.random:
                _set_rng_state(ctx.device, outer_rng)
        # the stage's first states were passed in; parameters follow them
        return (None, *grads, *[total[id(p)] for p in plan.params])


def _recompute_segment(ctx, start, end, first, last, grads, shared, total):
    """For a segment whose rebuilt states drifted: the gradients of the states before step
    ``start`` and of the parameters (added to ``total``), exactly, from the states ``first``
    before it and the gradients ``grads`` of those after step ``end - 1``. The steps run forward
    again in chunks of about the square root of their number, each chunk's first states kept;
    the drift is measured there, rebuilding from ``last`` (the exact states after the segment);
    then each chunk is recomputed with autograd and differentiated, the last first. Returns the
    gradients and the drift: (steps rebuilt, relative error) at each chunk's start."""
    plan = ctx.plan
    size = max(1, round(math.sqrt(end - start)))

    def run(i, states, kept):
        step = plan.steps[i]
        kept.append(_KeptBuffers(step))
        return tuple(step.advance(_replaying(ctx, i), *states, **shared))

    starts = {}
    states = tuple(first)
    with torch.no_grad():
        for i in range(start, end):
            if (i - start) % size == 0:
                starts[i] = states
            kept = []
            states = run(i, states, kept)
            kept[0].restore()
        drift = []
        rebuilt = tuple(last)
        for i in reversed(range(start, end)):
            step = plan.steps[i]
            kept = _KeptBuffers(step)
            rebuilt = tuple(step.retreat(_replaying(ctx, i), *rebuilt, **shared))
            kept.restore()
            if i in starts:
                drift.append((end - i, _relative_error(rebuilt, starts[i])))
    for chunk in sorted(starts, reverse=True):
        leaves = [t.detach().requires_grad_() for t in starts[chunk]]
        kept = []
        with torch.enable_grad():
            states = tuple(leaves)
            for i in range(chunk, min(chunk + size, end)):
                states = run(i, states, kept)
            back = _grad(states, grads, leaves + list(plan.params))
        for k in kept:  # after the backward: batch norm saved its running statistics for it
            k.restore()
        _accumulate(total, plan.params, back[len(leaves) :])
        grads = [g if g is not None else torch.zeros_like(t) for g, t in zip(back[: len(leaves)], leaves)]
    return grads, drift


def _accumulate(total, params, grads):
    for p, g in zip(params, grads):
        if g is not None:
            total[id(p)] = g if total[id(p)] is None else total[id(p)] + g


def _relative_error(rebuilt, exact):
    worst = 0.0
    for r, e in zip(rebuilt, exact):
        wide = torch.promote_types(e.dtype, torch.float32)  # half precisions measured in float32
        r, e = r.detach().to(wide), e.detach().to(wide)
        if not torch.isfinite(r).all():  # a rebuild that divided by 0: max(0.0, nan) would hide it
            return math.inf
        scale = float(e.norm())
        if scale > 0:
            worst = max(worst, float((r - e).norm()) / scale)
    return worst


def _step_backward(ctx, i, step, after, grads, anchor, shared, params, total):
    """Rebuild the states before step ``i`` and turn the gradients of its outputs into those of
    its inputs (returned) and of its parameters (added to ``total``). At an anchor the exact
    states are used, and the error of the rebuilt ones is returned (else None)."""
    records = {}  # block index -> (argument leaf, output with its graph)

    def rebuild_call(index, block, argument):
        leaf = argument.detach().requires_grad_()
        _replay_rng(ctx, i, index)
        with torch.enable_grad():
            output = block(leaf)
        records[index] = (leaf, output)
        return output.detach()

    with torch.no_grad():
        before = tuple(step.retreat(rebuild_call, *after, **shared))
    error = None
    if anchor is not None:  # check the rebuilt states, then go on from the exact ones
        error = _relative_error(before, anchor)
        before = anchor
        records.clear()
    leaves = [t.detach().requires_grad_() for t in before]
    arguments = {}
    outputs = {}

    def glue_call(index, block, argument):
        if index in records:  # the block's output is known: stand it in as a leaf
            arguments[index] = argument
            outputs[index] = records[index][1].detach().requires_grad_()
            return outputs[index]
        _replay_rng(ctx, i, index)
        return block(argument)

    with torch.enable_grad():
        new = step.advance(glue_call, *leaves, **shared)
    indices = sorted(outputs)
    stand_ins = [outputs[k] for k in indices]
    inputs = leaves + stand_ins + params
    grad_inputs = _grad(new, grads, inputs)
    g_leaves = grad_inputs[: len(leaves)]
    g_outputs = dict(zip(indices, grad_inputs[len(leaves) : len(leaves) + len(indices)]))
    _accumulate(total, params, grad_inputs[len(leaves) + len(indices) :])
    # backward through each block (latest first), then through the expression of its argument
    for k in reversed(indices):
        leaf, output = records[k]
        if g_outputs[k] is None:
            continue
        through = torch.autograd.grad(output, [leaf, *params], g_outputs[k], allow_unused=True)
        _accumulate(total, params, through[1:])
        argument = arguments[k]
        if through[0] is None or not argument.requires_grad:
            continue
        back = _grad([argument], [through[0]], inputs)
        g_leaves = [_add(a, b) for a, b in zip(g_leaves, back[: len(leaves)])]
        for j, index in enumerate(indices):
            g_outputs[index] = _add(g_outputs[index], back[len(leaves) + j])
        _accumulate(total, params, back[len(leaves) + len(indices) :])
    grads_before = [g if g is not None else torch.zeros_like(t) for g, t in zip(g_leaves, before)]
    return tuple(t.detach() for t in before), grads_before, error


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _grad(outputs, grads, inputs):
    """``torch.autograd.grad`` over the outputs that carry a gradient (None where unused)."""
    pairs = [(o, g) for o, g in zip(outputs, grads) if g is not None and o.requires_grad]
    if not pairs:
        return [None] * len(inputs)
    return list(
        torch.autograd.grad(
            [o for o, _ in pairs],
            inputs,
            [g for _, g in pairs],
            retain_graph=True,
            allow_unused=True,
        )
    )


# fraction bits of the fixed-point states of an exact rebuild, by dtype of the states: finer than
# the dtype's own resolution for values near 1, with room for values up to 2^(59 - bits)
_EXACT_BITS = {torch.float64: 40, torch.float32: 32, torch.float16: 24, torch.bfloat16: 24}


class _FixedStore:
    """Fixed-point arithmetic for an exact rebuild: states as int64 multiples of 2^-bits, and
    per equation (``slot``) a store of the bits that multiplying by a fraction p/q drops
    (Maclaurin, Duvenaud & Adams 2015): ``times`` pushes ``U mod q`` before dividing by q and
    pops the bits it adds after multiplying by |p|; ``divide`` undoes it exactly. A store's
    word is put aside before it could overflow, and taken back at the same operation."""

    def __init__(self, dtype):
        self.dtype, self.bits = dtype, _EXACT_BITS[dtype]
        self.scale = 2.0**self.bits
        self.buffers = {}  # slot -> (int64 word, upper bound of its values)
        self.sealed = []  # (operation, slot, word) put aside, the latest last
        self.operations = 0
        self.largest = None  # the largest magnitude turned into fixed point (a tensor)

    def fixed(self, value):
        value = value.detach()
        top = value.abs().max().to(torch.float64) if value.numel() else None
        if top is not None:
            self.largest = top if self.largest is None else torch.maximum(self.largest, top)
        return torch.round(value * self.scale).to(torch.int64)

    def real(self, fixed):
        return fixed.to(self.dtype) / self.scale

    def fits(self):
        """Whether every value stayed small enough for int64 (checked once, after a run)."""
        return self.largest is None or float(self.largest) < 2.0 ** (59 - self.bits)

    def times(self, u, p, q, slot):
        self.operations += 1
        if q == 1:
            return u * p
        word, bound = self.buffers.get(slot, (None, 0))
        if word is None or (bound + 1) * q >= 2**62:
            if word is not None:
                self.sealed.append((self.operations, slot, word))
            word, bound = torch.zeros_like(u), 0
        word = word * q + torch.remainder(u, q)  # push what dividing by q drops
        u = torch.div(u, q, rounding_mode="floor")
        a = abs(p)
        u = u * a + torch.remainder(word, a)  # pop the bits multiplying by |p| leaves free
        word = torch.div(word, a, rounding_mode="floor")
        self.buffers[slot] = (word, (bound * q + q - 1) // a)
        return u if p > 0 else -u

    def divide(self, s, p, q, slot):
        if p < 0:
            s, p = -s, -p
        if q == 1:
            self.operations -= 1
            return torch.div(s, p, rounding_mode="floor")
        word, bound = self.buffers[slot]
        word = word * p + torch.remainder(s, p)
        s = torch.div(s, p, rounding_mode="floor")
        u = s * q + torch.remainder(word, q)
        word = torch.div(word, q, rounding_mode="floor")
        if self.sealed and self.sealed[-1][:2] == (self.operations, slot):
            word = self.sealed.pop()[2]
        self.buffers[slot] = (word, bound)
        self.operations -= 1
        return u


class ExactSteps(torch.autograd.Function):
    """Steps rebuilt exactly during backward: fixed-point states and a bit store (see
    ``_FixedStore``); the stage's first states are kept to check the rebuild and, should a
    value be too large for int64 or the rebuild not reach them exactly, to recompute the
    stage instead."""

    @staticmethod
    def forward(ctx, plan, *tensors):
        states, shared = _stage_inputs(plan, tensors)
        store = _FixedStore(states[0].dtype)
        rng = {}

        fixed = tuple(store.fixed(t) for t in states)
        for i, step in enumerate(plan.steps):
            fixed = tuple(step.advance_exact(_recording(plan, rng, i), store, *fixed, **shared))
        ctx.exact = store.fits()
        if ctx.exact:
            out = tuple(store.real(t) for t in fixed)
        else:  # the fixed-point values may have wrapped around: the standard forward instead
            out = tuple(states)
            for i, step in enumerate(plan.steps):
                kept = _KeptBuffers(step)  # the running statistics moved in the first pass
                out = tuple(step.advance(_recording(plan, rng, i), *out, **shared))
                kept.restore()
        ctx.store = store
        _remember(ctx, plan, rng, [0], states[0].device, (*fixed, *states))
        return out

    @staticmethod
    def backward(ctx, *grads):
        plan = ctx.plan
        fixed, inputs = ctx.saved_tensors[: plan.count], ctx.saved_tensors[plan.count :]
        shared_values, shared, total, outer_rng = _backward_start(ctx)
        enabled, dtype = ctx.autocast
        try:
            with torch.autocast(ctx.device.type, dtype=dtype, enabled=enabled):
                exact_grads = list(grads)
                if ctx.exact:
                    store = ctx.store
                    for i in reversed(range(len(plan.steps))):
                        step = plan.steps[i]
                        kept = _KeptBuffers(step)
                        with torch.no_grad():
                            fixed = tuple(step.retreat_exact(_replaying(ctx, i), store, *fixed, **shared))
                        leaves = [store.real(t).requires_grad_() for t in fixed]
                        params = shared_values + [p for p in step.parameters() if p.requires_grad]
                        with torch.enable_grad():
                            new = step.advance(_replaying(ctx, i), *leaves, **shared)
                            back = _grad(new, exact_grads, leaves + params)
                        kept.restore()
                        _accumulate(total, params, back[len(leaves) :])
                        exact_grads = [
                            g if g is not None else torch.zeros_like(t)
                            for g, t in zip(back[: len(leaves)], leaves)
                        ]
                    exact = all(torch.equal(a, store.fixed(b)) for a, b in zip(fixed, inputs))
                else:
                    exact = False
                if plan.report(0.0 if exact else math.inf, len(plan.steps)):
                    grads = exact_grads
                else:  # not rebuilt exactly: the exact gradient from the stage's first states
                    total = {id(p): None for p in plan.params}
                    grads, _ = _recompute_segment(
                        ctx, 0, len(plan.steps), inputs, inputs, grads, shared, total
                    )
        finally:
            if plan.random:
                _set_rng_state(ctx.device, outer_rng)
        return (None, *grads, *[total[id(p)] for p in plan.params])


def run_reversible(
    steps, states, shared, anchor_steps, tolerances, errors, preserve_rng_state=None, recomputed=None
):
    """Run ``steps`` on ``states`` keeping only the last states and anchors for backward.

    ``anchor_steps`` maps a dtype name (``"float32"``) to the number of steps between anchor
    states (kept exactly; the first states of the run are one). Backward runs one segment
    (anchor to anchor) at a time and checks the states it rebuilt at the segment's anchor: the
    largest relative error is recorded in ``errors[dtype]``. A segment whose error exceeds
    ``tolerances[dtype]`` (or is not a number) does not use its rebuilt gradients: it is recomputed
    exactly from its anchor (counted in ``recomputed[dtype]``), its drift is measured on the
    way, and ``anchor_steps[dtype]`` is shortened to the longest run measured within half the
    tolerance. ``shared`` holds the formula's shared parameters by name.
    """
    steps = list(steps)
    states = tuple(states)
    params = list(shared.values())
    seen = {id(p) for p in params}
    for step in steps:
        for p in step.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    wants_grad = any(t.requires_grad for t in states) or any(p.requires_grad for p in params)
    # too few steps to hand back new tensors for every kept state (x_n, x_nm1): run them plainly
    if not torch.is_grad_enabled() or not wants_grad or len(steps) < len(states):
        return advance_steps(steps, states, shared)
    key = str(states[0].dtype).replace("torch.", "")
    interval = max(1, int(anchor_steps.get(key, 1)))
    tolerance = tolerances[key] if isinstance(tolerances, dict) else tolerances
    recomputed = {} if recomputed is None else recomputed

    def report(error, rebuilt):
        fine = error <= tolerance  # False for a drift that is not a number
        errors[key] = max(errors.get(key, 0.0), error) if error == error else math.inf
        if not fine:
            recomputed[key] = recomputed.get(key, 0) + 1
        return fine

    def replan(drift):
        # the longest measured run within half the tolerance; below the shortest one measured,
        # the growth per step it shows (geometric: the most a convex drift allows), halved
        allowed = 0
        for run, error in sorted(drift):
            if not error <= tolerance / 2:
                break
            allowed = run
        if not allowed:
            run, error = min(drift)
            unit = torch.finfo(states[0].dtype).eps / 2
            if math.isfinite(error) and error > unit and run > 1:
                growth = (error / unit) ** (1.0 / run)
                allowed = int(0.5 * math.log(tolerance / 2 / unit) / math.log(growth))
            else:
                allowed = run // 2
        anchor_steps[key] = max(1, min(anchor_steps.get(key, interval) - 1, allowed))

    random = uses_randomness(steps, preserve_rng_state)
    plan = _Rebuild(steps, len(states), list(shared), interval, random, params, report, replan)
    if hasattr(steps[0], "advance_exact") and states[0].dtype in _EXACT_BITS:
        return ExactSteps.apply(plan, *states, *params)
    return ReversibleSteps.apply(plan, *states, *params)


def run_checkpointed(steps, states, shared, segment=None):
    """Run ``steps`` with ``torch.utils.checkpoint`` over segments of ``segment`` steps (default:
    about the square root of the number of steps); batch-norm running statistics are restored
    after each recomputation."""
    steps = list(steps)
    states = tuple(states)
    if not torch.is_grad_enabled() or not steps:
        return advance_steps(steps, states, shared)
    size = segment or max(1, round(math.sqrt(len(steps))))
    for start in range(0, len(steps), size):
        chunk = steps[start : start + size]
        calls = [0]

        def run(*inputs, chunk=chunk, calls=calls):
            calls[0] += 1
            if calls[0] == 1:
                return advance_steps(chunk, inputs, shared)
            kept = [_KeptBuffers(step) for step in chunk]
            try:
                return advance_steps(chunk, inputs, shared)
            finally:
                for k in kept:
                    k.restore()

        states = torch.utils.checkpoint.checkpoint(run, *states, use_reentrant=False)
    return tuple(states)
