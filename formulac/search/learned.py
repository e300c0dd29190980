"""``formulac learned RUN_DIR``: the formula with the values that training gave its parameters.

A shared ``param g`` has one trained value: it becomes the constant ``g = value`` of the
written formula. A per-step ``param k_n`` has one value per step of every stage: the written
formula takes each parameter's mean over the network (the per-step values are listed in its
comments), and the analysis is done per stage with the exact per-step values: block weights of
the stage's last state, and the spectral radius of each step's recurrence with its own value.
A stream formula's vector and matrix parameters (``param res_n[4,4]``) cannot be written as one
number: the written formula keeps their initial values and its header lists every step's trained
entries; their analysis per step is the mixing report's.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

import sympy

from ..errors import UsageError
from ..ir import Recurrence, n
from .learned_dynamic import dynamic_report, dynamic_text
from .learned_mixing import mixing_report, mixing_text

__all__ = ["LearnedFormula", "learned", "with_values"]


def with_values(rec: Recurrence, values: dict[str, float]) -> Recurrence:
    """``rec`` with the named parameters turned into constants of the given values."""
    exact = {k: sympy.Rational(f"{float(v):.6g}") for k, v in values.items()}  # 6 digits: readable
    mapping = {}
    for name in exact:
        p = rec.params[name]
        if p.per_step:
            mapping[sympy.IndexedBase(name)[n]] = sympy.Symbol(name)
    equations = tuple(
        replace(eq, rhs=eq.rhs.xreplace(mapping), display_rhs=eq.display_rhs.xreplace(mapping))
        for eq in rec.equations
    )
    params = {k: p for k, p in rec.params.items() if k not in exact}
    constants = {**rec.constants, **exact}
    # resolved=None: the parser's cached substitutions do not know the new constants
    return replace(rec, equations=equations, params=params, constants=constants, resolved=None)


@dataclass
class LearnedFormula:
    run_dir: str
    formula: str  # the .rec text written
    shared: dict[str, float]
    per_step: dict[str, dict[str, list[float]]]  # param -> stage -> values by step
    stages: list[dict] = field(default_factory=list)
    path: str = ""
    mixing: dict[str, dict] = field(default_factory=dict)  # stage -> learned_mixing.mixing_report
    shaped: dict[str, dict[str, list]] = field(default_factory=dict)  # param -> stage -> entries by step
    #: input-dependent parameter -> stage -> the size of its dynamic part by step (learned_dynamic)
    dynamic: dict[str, dict[str, list[dict]]] = field(default_factory=dict)
    dynamic_declared: dict[str, str] = field(default_factory=dict)  # parameter -> its declaration

    def to_json(self) -> dict:
        return {
            "run_dir": self.run_dir,
            "file": self.path,
            "formula": self.formula,
            "shared": self.shared,
            "per_step": self.per_step,
            "stages": self.stages,
            "mixing": self.mixing,
            "shaped": self.shaped,
            "dynamic": self.dynamic,
        }

    def to_text(self) -> str:
        lines = [f"learned coefficients of {self.run_dir} (written to {self.path})", ""]
        lines += ["  " + line for line in self.formula.strip().splitlines()]
        for stage in self.stages:
            lines.append("")
            if stage["steps"]:
                lines.append(f"stage {stage['stage']} ({stage['steps']} steps)")
            else:  # no per-step parameter: one analysis of the formula with its shared values
                lines.append("whole network (no per-step parameters)")
            for name, values in stage["values"].items():
                lines.append(f"  {name}: " + ", ".join(f"{v:.4g}" for v in values))
            weights = stage.get("block_weights")
            if weights:
                for key, ws in weights.items():
                    lines.append(
                        f"  block weights of {key} in the stage's last state: "
                        + ", ".join(f"{w:.4g}" for w in ws)
                    )
            if stage.get("spectral_radius"):
                lines.append(
                    "  spectral radius per step: "
                    + ", ".join("-" if r is None else f"{r:.4g}" for r in stage["spectral_radius"])
                )
            if stage.get("stability"):
                lines.append("  stability per step: " + ", ".join(stage["stability"]))
        if self.mixing:
            lines.append("")
            lines += mixing_text(self.mixing)
        if self.dynamic:
            lines.append("")
            lines += dynamic_text(self.dynamic, self.dynamic_declared)
        return "\n".join(lines) + "\n"


def _mixing_figures(mixing: dict, directory: Path) -> list[str]:
    """The effective-weight matrix plots beside the written formula (none without matplotlib)."""
    from ..display.mixing_plot import save_effective_weights

    try:
        return save_effective_weights(mixing, directory)
    except UsageError:  # matplotlib is an optional extra: the numbers are printed anyway
        return []


#: What a run's ``config.json`` model record holds besides the backbone's options.
_NOT_BACKBONE_OPTIONS = ("formula", "file", "source_sha256", "transition", "num_classes", "in_channels")


def _parameter_attributes(rec: Recurrence, describe: dict) -> dict[str, str]:
    """Formula parameter -> its attribute in the run's network (the run's backbone and memory
    mode may rename it, e.g. ``call`` -> ``call_param`` under ``--memory reversible``)."""
    from ..codegen import parameter_attributes

    options = {k: v for k, v in describe.items() if k not in _NOT_BACKBONE_OPTIONS and v is not None}
    try:
        return parameter_attributes(rec, **options)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"the run's network cannot be planned again: {exc}") from None


def learned(
    run_dir: str | Path, output: str | Path | None = None, depth: int | None = None
) -> LearnedFormula:
    """Read a training run's formula and trained parameters; write the formula with them."""
    from ..files import atomic_write
    from ..train import load_checkpoint

    run = Path(run_dir)
    rec, describe = _run_formula(run)
    path = Path(output) if output else run / "learned.rec"
    if path.exists() and path.suffix != ".rec" and path.resolve().parent == run.resolve():
        raise UsageError(f"-o {output} is a file of the run {run}: write the formula to a .rec file")
    state = load_checkpoint(run)["model"]
    attributes = _parameter_attributes(rec, describe)
    shared, per_step = _trained_values(run, rec, attributes, state)
    shaped = _shaped_values(rec, attributes, state)
    bound, formula = _learned_text(run, rec, shared, per_step, shaped)
    atomic_write(path, formula)

    mixing = mixing_report(rec, attributes, state, shared)
    dynamic = _dynamic_values(rec, describe, state)
    if any("effective_weights" in report for report in mixing.values()):
        figures = _mixing_figures(mixing, path.parent)
        for stage, report in mixing.items():
            report["figures"] = [f for f in figures if f"_{stage}_" in Path(f).name]
    # pair weights and a stream formula's matrices: the mixing report has them (an analysis of
    # the bound formula would read their initial values as if trained)
    if rec.compact is not None or any(p.pair is not None for p in rec.params.values()):
        return LearnedFormula(str(run), formula, shared, per_step, [], str(path), mixing, shaped, *dynamic)
    stage_names = sorted({s for st in per_step.values() for s in st}) or ["network"]
    stage_reports = [_stage_report(rec, shared, bound, stage, per_step, depth) for stage in stage_names]
    return LearnedFormula(
        str(run), formula, shared, per_step, stage_reports, str(path), mixing, shaped, *dynamic
    )


def _dynamic_values(rec: Recurrence, describe: dict, state: dict) -> tuple[dict, dict]:
    """The sizes of the trained input-dependent parts (learned_dynamic), and each such
    parameter's declaration; empty without any."""
    from ..codegen import dynamic_parameter_attributes

    held = rec.compact if rec.compact is not None else rec
    if not any(p.dynamic is not None for p in held.params.values()):
        return {}, {}
    options = {k: v for k, v in describe.items() if k not in _NOT_BACKBONE_OPTIONS and v is not None}
    try:
        names = dynamic_parameter_attributes(rec, **options)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"the run's network cannot be planned again: {exc}") from None
    declared = {name: held.params[name].declared for name in names}
    return dynamic_report(names, state), declared


def _run_formula(run: Path):
    """The formula a run recorded in its config.json, parsed, and the run's model description."""
    from ..parse import parse

    config_path = run / "config.json"
    if not config_path.is_file():
        raise UsageError(f"{run}: not a training run (no config.json)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise UsageError(f"{run}: cannot read config.json ({exc})") from None
    describe = (config.get("model") if isinstance(config, dict) else None) or {}
    text = describe.get("formula")
    if not isinstance(text, str):
        raise UsageError(f"{run}: the run does not record a formula (not trained by formulac train/search)")
    return parse(text, describe.get("file", "<run>")), describe


def _trained_values(run: Path, rec, attributes: dict, state: dict):
    """The trained shared parameters ({name: value}) and per-step ones ({name: {stage:
    [value per step]}}; pair vectors are the mixing report's) in the checkpoint's ``state``."""
    shared = {}
    for name, param in rec.params.items():
        if param.per_step:
            continue
        attr = attributes[name]
        if attr not in state:
            raise UsageError(f"{run}: no trained value of {name} in the checkpoint (looked for {attr})")
        shared[name] = float(state[attr])
    per_step: dict[str, dict[str, list[float]]] = {}
    for name, param in rec.params.items():
        if not param.per_step or param.pair is not None or param.entry is not None:
            continue  # pair vectors and a stream formula's matrices: the mixing report reads them
        attr = attributes[name]
        stages: dict[str, list[tuple[int, float]]] = {}
        for key, tensor in state.items():
            parts = key.split(".")
            if len(parts) == 3 and parts[2] == attr and parts[1].isdigit():
                stages.setdefault(parts[0], []).append((int(parts[1]), float(tensor)))
        per_step[name] = {s: [v for _, v in sorted(vals)] for s, vals in stages.items()}
    return shared, per_step


def _shaped_values(rec, attributes: dict, state: dict) -> dict[str, dict[str, list]]:
    """A stream formula's trained vector and matrix parameters: {name: {stage: [entries (a
    list, or a list of rows) per step]}}; empty for other formulas."""
    if rec.compact is None:
        return {}
    found: dict[str, dict[str, list]] = {}
    for name, param in rec.compact.params.items():
        if param.shape is None:
            continue
        stages: dict[str, list] = {}
        for key, tensor in state.items():
            parts = key.split(".")
            if len(parts) == 3 and parts[2] == attributes[name] and parts[1].isdigit():
                stages.setdefault(parts[0], []).append((int(parts[1]), tensor.double().tolist()))
        found[name] = {s: [v for _, v in sorted(vals)] for s, vals in stages.items()}
    return found


def _entries_text(entries) -> str:
    if isinstance(entries, list):
        return "[" + ", ".join(_entries_text(e) for e in entries) + "]"
    return f"{entries:.6g}"


def _learned_text(run: Path, rec, shared: dict, per_step: dict, shaped: dict):
    """The formula bound to the trained values (a per-step parameter by its mean), and its
    .rec text with a header listing the per-step values (and a stream formula's trained
    vectors and matrices, which the text keeps at their initial values)."""
    from ..printing import to_rec

    means = {
        name: statistics.fmean(v for vals in st.values() for v in vals) for name, st in per_step.items() if st
    }
    bound = with_values(rec, {**shared, **means})
    header = [f"# learned by training: {run}"]
    for name, st in per_step.items():
        for stage, vals in st.items():
            header.append(f"# {name}_n in {stage}: " + ", ".join(f"{v:.6g}" for v in vals))
    if means:
        header.append("# each per-step parameter is written as its mean over the network")
    for name, st in shaped.items():
        for stage, steps in st.items():
            header += [f"# {name}_n in {stage}, step {t}: {_entries_text(v)}" for t, v in enumerate(steps)]
    if shaped:
        header.append(
            "# vector and matrix parameters are written with their initial values; trained ones are listed above"
        )
    held = rec.compact if rec.compact is not None else rec
    dynamic = [p.declared for p in held.params.values() if p.dynamic is not None]
    if dynamic:
        header.append(
            f"# {', '.join(dynamic)}: the trained static parts; their input-dependent parts are not written "
            "(their sizes are in the report)"
        )
    return bound, "\n".join(header) + "\n" + to_rec(bound)


def _stage_report(rec, shared: dict, bound, stage: str, per_step: dict, depth: int | None) -> dict:
    """One stage's trained values, block weights, and spectral radius and stability per step
    (of the whole bound formula where nothing is per step)."""
    from ..analysis import analyze

    values = {name: st.get(stage, []) for name, st in per_step.items()}
    steps = max((len(v) for v in values.values()), default=0)
    report: dict = {"stage": stage, "steps": steps, "values": values}
    if not steps:
        a = analyze(bound, depth=depth or 10, paths=False)
        report["stability"] = [a.stability or "-"]
        report["spectral_radius"] = [None if a.rate is None else float(a.rate)]
        return report
    base = with_values(rec, shared) if shared else rec
    a = analyze(base, depth=depth or steps, paths=False)
    if a.block_weights is not None:
        subs = {
            sympy.IndexedBase(name)[i]: sympy.Rational(repr(v))
            for name, vs in values.items()
            for i, v in enumerate(vs)
        }
        report["block_weights"] = {
            key: [float(sympy.sympify(w).xreplace(subs)) for w in ws] for key, ws in a.block_weights.items()
        }
    radii, stabilities = [], []
    for i in range(steps):
        frozen = analyze(
            with_values(rec, {**shared, **{k: v[i] for k, v in values.items()}}), depth=1, paths=False
        )
        radii.append(None if frozen.rate is None else float(frozen.rate))
        stabilities.append(frozen.stability or "-")
    if any(r is not None for r in radii):
        report["spectral_radius"] = radii
        report["stability"] = stabilities
    return report
