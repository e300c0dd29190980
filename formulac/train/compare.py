"""Compare several models over several seeds under one recipe.

Every (model, seed) is a :func:`~formulac.train.loop.train` run in ``out_dir/<label>/seed<k>/``;
finished runs are skipped and unfinished ones resumed, so calling :func:`compare` again after an
interruption continues where it stopped.  The result is a table of mean ± std test error (%)
over the seeds, parameters and time per run, with a significance test across seeds: a paired
t-test for two models (and the exact Wilcoxon signed-rank test beside it), a Friedman test for
three or more (and paired t-tests of each model against the first, Holm-adjusted).  The table is
printed and written to ``comparison.md`` and ``comparison.json``.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..files import atomic_write
from . import distributed as D
from . import stats
from .data import Dataset
from .errors import TrainError
from .loop import CHECKPOINT, SUMMARY, BuildModel, _atomic_json, _load_data, train
from .recipes import TrainConfig

__all__ = ["ComparisonResult", "ModelResult", "compare", "format_seconds", "safe_label"]


def safe_label(label: str) -> str:
    """A directory name for ``label``: letters, digits, ``. _ + -``; others become ``_``."""
    s = re.sub(r"[^A-Za-z0-9._+-]", "_", label.strip())
    s = s.lstrip(".") or "model"
    return s


def format_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "n/a"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


@dataclass
class ModelResult:
    """One model's runs: test accuracy (fraction) and error (%) per seed."""

    label: str
    seeds: list[int]
    test_acc: list[float]
    parameters: int
    times: list[float]
    run_dirs: list[str]
    describe: dict | None = None
    best_test_acc: list[float] = field(default_factory=list)

    @property
    def errors(self) -> list[float]:
        return [100.0 * (1.0 - a) for a in self.test_acc]

    @property
    def mean_error(self) -> float:
        e = self.errors
        return math.fsum(e) / len(e)

    @property
    def std_error(self) -> float | None:
        e = self.errors
        if len(e) < 2:
            return None
        m = self.mean_error
        return math.sqrt(math.fsum((x - m) ** 2 for x in e) / (len(e) - 1))

    @property
    def mean_time(self) -> float:
        return math.fsum(self.times) / len(self.times)

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "seeds": self.seeds,
            "test_acc": self.test_acc,
            "test_error_pct": self.errors,
            "mean_test_error_pct": self.mean_error,
            "std_test_error_pct": self.std_error,
            "best_test_acc": self.best_test_acc,
            "parameters": self.parameters,
            "time_per_run_s": self.mean_time,
            "times_s": self.times,
            "run_dirs": self.run_dirs,
            "model": self.describe,
        }


@dataclass
class ComparisonResult:
    """The table and the tests; ``test`` is the main test (t-test for two models, Friedman for
    more, None for one); ``pairwise`` compares each model with the first (the baseline)."""

    models: list[ModelResult]
    seeds: list[int]
    config: dict
    test: stats.TestResult | None
    pairwise: list[dict]
    out_dir: str

    # -- formatting ---------------------------------------------------------------------------
    def _rows(self) -> list[list[str]]:
        base = self.models[0].mean_error
        rows = []
        for i, m in enumerate(self.models):
            sd = m.std_error
            err = f"{m.mean_error:.2f} ± {sd:.2f}" if sd is not None else f"{m.mean_error:.2f}"
            delta = "" if i == 0 else f"{m.mean_error - base:+.2f}"
            rows.append(
                [
                    m.label,
                    err,
                    delta,
                    f"{min(m.errors):.2f}",
                    f"{m.parameters:,}",
                    format_seconds(m.mean_time),
                    str(len(m.seeds)),
                ]
            )
        return rows

    _HEAD = ["model", "test error (%)", "vs first", "best seed", "params", "time/run", "seeds"]

    def _test_lines(self) -> list[str]:
        lines = []
        if self.test is not None:
            lines.append(self.test.describe())
        for pw in self.pairwise:
            t = pw["t_test"]
            p = stats.format_p(t.get("p_value"))
            adj = pw.get("p_holm")
            extra = (
                f", Holm-adjusted p = {stats.format_p(adj)}"
                if adj is not None and len(self.pairwise) > 1
                else ""
            )
            if t.get("p_value") is None:
                lines.append(
                    f"{pw['model']} vs {pw['baseline']}: paired t-test not computed ({t.get('note')})"
                )
            else:
                w = pw.get("wilcoxon") or {}
                wp = (
                    f"exact Wilcoxon signed-rank p = {stats.format_p(w.get('p_value'))}"
                    if w.get("p_value") is not None
                    else ""
                )
                tp = "" if len(self.models) == 2 else f"paired t-test p = {p}{extra}"
                lines.append(
                    f"{pw['model']} vs {pw['baseline']}: error difference "
                    f"{pw['mean_difference_pct']:+.2f} points" + "".join(f"; {x}" for x in (tp, wp) if x)
                )
        return lines

    def to_text(self) -> str:
        rows = [self._HEAD] + self._rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(self._HEAD))]
        right = {2, 3, 4, 5, 6}
        lines = []
        for j, r in enumerate(rows):
            cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
            lines.append("  ".join(cells).rstrip())
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
        cfg = self.config
        head = (
            f"{cfg.get('data')}, {cfg.get('recipe')} recipe, {cfg.get('epochs')} epochs, "
            f"seeds {', '.join(map(str, self.seeds))}"
        )
        return "\n".join([head, ""] + lines + [""] + self._test_lines()) + "\n"

    def to_markdown(self) -> str:
        cfg = self.config
        out = [
            f"# Comparison: {cfg.get('data')}, {cfg.get('recipe')} recipe, {cfg.get('epochs')} epochs",
            "",
            f"Seeds: {', '.join(map(str, self.seeds))}. Test error is 100 - final test "
            "accuracy (%), mean ± sample std over the seeds.",
            "",
        ]
        out.append("| " + " | ".join(self._HEAD) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(self._HEAD) - 1)) + "|")
        for r in self._rows():
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
        tl = self._test_lines()
        if tl:
            out += [""] + [f"- {line}" for line in tl]
        out += ["", "Per seed (test error %):", ""]
        out.append("| model | " + " | ".join(f"seed {s}" for s in self.seeds) + " |")
        out.append("|---|" + "---:|" * len(self.seeds))
        for m in self.models:
            by_seed = dict(zip(m.seeds, m.errors))
            out.append(
                f"| {m.label} | "
                + " | ".join(f"{by_seed[s]:.2f}" if s in by_seed else "" for s in self.seeds)
                + " |"
            )
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict:
        return {
            "seeds": self.seeds,
            "config": self.config,
            "models": [m.to_dict() for m in self.models],
            "test": self.test.to_dict() if self.test is not None else None,
            "pairwise": self.pairwise,
            "out_dir": self.out_dir,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def __str__(self) -> str:
        return self.to_text()


def _statistics(models: list[ModelResult]) -> tuple[stats.TestResult | None, list[dict]]:
    if len(models) < 2:
        return None, []
    base = models[0]
    pairwise = []
    for m in models[1:]:
        t = stats.paired_t_test(m.errors, base.errors)
        w = stats.wilcoxon_signed_rank(m.errors, base.errors)
        pairwise.append(
            {
                "model": m.label,
                "baseline": base.label,
                "mean_difference_pct": m.mean_error - base.mean_error,
                "t_test": t.to_dict(),
                "wilcoxon": w.to_dict(),
            }
        )
    adj = stats.holm([pw["t_test"]["p_value"] for pw in pairwise])
    for pw, a in zip(pairwise, adj):
        pw["p_holm"] = a
    if len(models) == 2:
        main = stats.paired_t_test(models[1].errors, base.errors)
        main.note = (
            main.note + "; " if main.note else ""
        ) + f"{models[1].label} - {base.label}, paired by seed"
        return main, pairwise
    table = [[m.errors[i] for m in models] for i in range(len(base.seeds))]
    main = stats.friedman_test(table)
    main.note = (main.note + "; " if main.note else "") + f"{len(models)} models, seeds as blocks"
    return main, pairwise


def compare(
    models: Sequence[tuple[str, BuildModel, dict | None]],
    config: TrainConfig,
    seeds: Sequence[int],
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    quiet: bool = False,
    overwrite: bool = False,
    dataset: Dataset | None = None,
    on_run_end: Callable[[str, int, dict], None] | None = None,
) -> ComparisonResult:
    """Train every model with every seed (``config`` with ``seed`` replaced) and compare.

    ``models``: (label, build_model, describe) triples; the first is the baseline of the
    pairwise tests.  Runs go to ``out_dir/<label>/seed<k>/``; finished runs are reused and
    unfinished ones resumed (``overwrite=True`` starts every run afresh).  Returns a
    :class:`ComparisonResult`, also written to ``comparison.md`` / ``comparison.json`` and
    printed (unless ``quiet``)."""
    config = config.validate()
    if not models:
        raise TrainError("nothing to compare: no models")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise TrainError("nothing to compare: no seeds")
    if len(set(seeds)) != len(seeds):
        raise TrainError(f"repeated seeds in {seeds}")
    labels = [m[0] for m in models]
    dirs = [safe_label(lab) for lab in labels]
    if len(set(labels)) != len(labels):
        raise TrainError(f"two models share a label: {labels}")
    if len(set(dirs)) != len(dirs):
        raise TrainError(f"model labels {labels} give the same directory names {dirs}")

    info, _ = D.setup(config.device)
    out = Path(out_dir)
    data = _load_data(config, info, dataset)

    results: dict[str, list[tuple[int, dict, str]]] = {lab: [] for lab in labels}
    total = len(models) * len(seeds)
    k = 0
    for seed in seeds:
        cfg = config.replace(seed=seed)
        for (label, build, describe), d in zip(models, dirs):
            k += 1
            run_dir = out / d / f"seed{seed}"
            exists = (run_dir / CHECKPOINT).is_file() or (run_dir / SUMMARY).is_file()
            exists = D.broadcast_object(exists, info)
            if info.is_main and not quiet:
                print(f"[{k}/{total}] {label}, seed {seed}: {run_dir}", file=sys.stderr)
            summary = train(
                build,
                cfg,
                run_dir,
                resume=exists and not overwrite,
                overwrite=overwrite,
                progress=progress,
                describe=describe,
                quiet=quiet,
                dataset=data,
            )
            results[label].append((seed, summary, str(run_dir)))
            if on_run_end is not None:
                on_run_end(label, seed, summary)

    key = "val" if config.val_fraction > 0 else "test"  # validation accuracy stands in for test
    model_results = []
    for label, _, describe in models:
        rs = results[label]
        model_results.append(
            ModelResult(
                label=label,
                seeds=[s for s, _, _ in rs],
                test_acc=[float(r[f"final_{key}_acc"]) for _, r, _ in rs],
                parameters=int(rs[0][1]["parameters"]),
                times=[float(r["wall_time_s"]) for _, r, _ in rs],
                run_dirs=[d for _, _, d in rs],
                describe=describe,
                best_test_acc=[float(r[f"best_{key}_acc"]) for _, r, _ in rs],
            )
        )
    test, pairwise = _statistics(model_results)
    cfg = config.to_dict()
    cfg.pop("seed", None)
    result = ComparisonResult(model_results, seeds, cfg, test, pairwise, str(out))
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "comparison.md", result.to_markdown())
        _atomic_json(out / "comparison.json", result.to_dict())
        if not quiet:
            print(result.to_text(), end="")
    D.barrier(info)
    return result
