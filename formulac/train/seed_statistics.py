"""What every comparison of models over seeds shares, whatever it measures (accuracy, loss).

The fewest seeds that can tell a difference from noise (:data:`MIN_SEEDS`), a mean ± sd and a
duration as the tables write them. The per-seed values of each model are paired by seed with the first model's (the baseline):
the paired t-test, the Wilcoxon signed-rank test, Holm-adjusted p-values and, with three or
more models, the Friedman test; the table cells and the verdicts in words; the text and
Markdown tables; the refusal to pair runs trained under different recipes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..files import atomic_write, make_directory
from . import stats
from .errors import TrainError
from .rundir import RESUME_FREE, write_json

__all__ = [
    "MIN_SEEDS",
    "Measure",
    "SeedComparison",
    "check_same_recipe",
    "format_seconds",
    "markdown_table",
    "mean",
    "mean_sd_text",
    "pairwise_cells",
    "pairwise_statistics",
    "pairwise_verdicts",
    "recipe_record",
    "sample_sd",
    "text_table",
    "too_few_seeds",
]

# fewer seeds than this and the comparison says the evidence is too thin
MIN_SEEDS = 3


def mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def sample_sd(xs: Sequence[float]) -> float | None:
    """The sample standard deviation (n - 1); None for fewer than two values."""
    if len(xs) < 2:
        return None
    m = mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def mean_sd_text(xs: Sequence[float], digits: int) -> str:
    """``mean ± sd`` with ``digits`` after the point (the mean alone for one value)."""
    sd = sample_sd(xs)
    return f"{mean(xs):.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


def format_seconds(s: float | None) -> str:
    """A duration as ``12.3s``, ``4m05s`` or ``2h07m`` (``n/a`` when unknown or not finite)."""
    if s is None or not math.isfinite(s):
        return "n/a"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def too_few_seeds(n_models: int, n_seeds: int, why: str = "") -> list[str]:
    """The verdict that ``n_seeds`` per model are fewer than :data:`MIN_SEEDS` (none for one
    model or enough seeds); ``why`` follows "per model" in it."""
    if n_models < 2 or n_seeds >= MIN_SEEDS:
        return []
    seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    return [f"Too little evidence: {seeds} per model{why}; run --seeds {MIN_SEEDS} or more."]


def recipe_record(config) -> dict:
    """A comparison's ``config``: its runs' :class:`~formulac.train.recipes.TrainConfig` less
    the seed, which each run replaces."""
    record = config.to_dict()
    record.pop("seed", None)
    return record


@dataclass(frozen=True)
class Measure:
    """How a compared quantity is named and printed: ``unit`` of the differences ("points",
    "nats"), ``digits`` after the point, the words for a model ``better``/``worse`` than the
    baseline (``lower_is_better`` says which sign is better), and ``no_difference``, what a
    confidence interval spanning zero shows."""

    unit: str
    digits: int
    lower_is_better: bool
    no_difference: str
    better: str = "better"
    worse: str = "worse"

    def signed(self, x: float) -> str:
        return f"{x:+.{self.digits}f}"


def pairwise_statistics(
    labels: Sequence[str],
    values: Sequence[Sequence[float]],
    difference_key: str,
    what: str,
) -> tuple[stats.TestResult | None, list[dict]]:
    """The main test and each model against the first, from ``values[i]`` (model i's value per
    seed): the paired t-test for two models, Friedman for more, None for one.  Each pairwise
    entry holds the mean difference under ``difference_key``; ``what`` names the quantity in
    the main test's note."""
    if len(labels) < 2:
        return None, []
    base_label, base = labels[0], values[0]
    pairwise = []
    for label, vs in zip(labels[1:], values[1:]):
        pairwise.append(
            {
                "model": label,
                "baseline": base_label,
                difference_key: mean(vs) - mean(base),
                "t_test": stats.paired_t_test(vs, base).to_dict(),
                "wilcoxon": stats.wilcoxon_signed_rank(vs, base).to_dict(),
            }
        )
    for pw, adjusted in zip(pairwise, stats.holm([pw["t_test"]["p_value"] for pw in pairwise])):
        pw["p_holm"] = adjusted
    if len(labels) == 2:
        main = stats.paired_t_test(values[1], base)
        main.note = (main.note + "; " if main.note else "") + (
            f"{labels[1]} - {base_label} {what}, paired by seed"
        )
        return main, pairwise
    main = stats.friedman_test([[vs[i] for vs in values] for i in range(len(base))])
    main.note = (main.note + "; " if main.note else "") + f"{len(labels)} models, seeds as blocks"
    return main, pairwise


def pairwise_cells(pw: dict | None, several: bool, difference_key: str, measure: Measure) -> list[str]:
    """The table cells "vs first", "95% CI", "p (t-test)", "d_z", "p (Wilcoxon)" of one
    pairwise entry (blank for the baseline); ``several``: p is Holm-adjusted."""
    if pw is None:
        return ["", "", "", "", ""]
    t = pw["t_test"]
    lo, hi = t["extra"].get("ci_low"), t["extra"].get("ci_high")
    p = pw.get("p_holm") if several else t.get("p_value")
    dz = t["extra"].get("effect_size_dz")
    return [
        measure.signed(pw[difference_key]),
        f"[{measure.signed(lo)}, {measure.signed(hi)}]" if lo is not None and math.isfinite(lo) else "n/a",
        stats.format_p(p) + (" (Holm)" if several and p is not None else ""),
        "n/a" if dz is None else f"{dz:+.2f}" if math.isfinite(dz) else f"{dz:+}",
        stats.format_p((pw.get("wilcoxon") or {}).get("p_value")),
    ]


def pairwise_verdicts(
    test: stats.TestResult | None,
    pairwise: list[dict],
    n_models: int,
    difference_key: str,
    measure: Measure,
) -> list[str]:
    """In words: whether the Friedman test finds a difference, and per model against the
    baseline whether its confidence interval spans zero, its p-value is significant, and
    whether it is better or worse."""
    out = []
    several = n_models > 2
    if several and test is not None and test.p_value is not None and test.p_value >= 0.05:
        out.append(
            f"The Friedman test finds no difference among the {n_models} models "
            f"(p = {stats.format_p(test.p_value)})."
        )
    unit = measure.unit
    for pw in pairwise:
        t = pw["t_test"]
        ex = t.get("extra") or {}
        lo, hi = ex.get("ci_low"), ex.get("ci_high")
        who, diff = f"{pw['model']} vs {pw['baseline']}", pw[difference_key]
        if lo is None or hi is None or not math.isfinite(lo):
            out.append(f"{who}: {measure.signed(diff)} {unit}; no confidence interval ({t.get('note')}).")
            continue
        p = pw.get("p_holm") if several else t.get("p_value")
        p_text = f"p = {stats.format_p(p)}" + (", Holm-adjusted" if several else "")
        span = f"95% CI [{measure.signed(lo)}, {measure.signed(hi)}] {unit}"
        if lo <= 0 <= hi:
            out.append(
                f"{who}: {measure.signed(diff)} {unit}, {span} spans zero ({p_text}): {measure.no_difference}"
            )
        elif p is not None and p >= 0.05:
            out.append(
                f"{who}: {measure.signed(diff)} {unit} ({span}), but {p_text}: not significant after correction."
            )
        else:
            is_better = diff < 0 if measure.lower_is_better else diff > 0
            better = measure.better if is_better else measure.worse
            out.append(f"{who}: {better} by {abs(diff):.{measure.digits}f} {unit} ({span}, {p_text}).")
    return out


def text_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned columns (the first left, the others right) with a rule under the head."""
    rows = [list(head), *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for j, r in enumerate(rows):
        cells = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table, the first column left-aligned and the others right; ``|`` escaped."""
    out = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def check_same_recipe(runs: list[tuple[str, int, dict]], hint: str = "") -> None:
    """Refuse to pair runs (label, seed, summary) trained under different settings: anything
    but the seed and the knobs that do not change what is computed.  ``hint`` ends the
    message."""
    free = RESUME_FREE | {"seed"}

    def recipe(summary: dict) -> dict:
        return {k: v for k, v in (summary.get("config") or {}).items() if k not in free}

    label0, seed0, first = runs[0]
    want = recipe(first)
    for label, seed, summary in runs[1:]:
        got = recipe(summary)
        if got != want:
            diff = [
                f"{k}: {want.get(k)!r} vs {got.get(k)!r}"
                for k in sorted(set(want) | set(got))
                if want.get(k) != got.get(k)
            ]
            raise TrainError(
                f"cannot pair {label} seed {seed} with {label0} seed {seed0}: their recipes differ\n  "
                + "\n  ".join(diff)
                + hint
            )


def per_seed_lines(
    caption: str, seeds: Sequence[int], rows: Sequence[tuple[str, dict]], fmt: str
) -> list[str]:
    """``Per seed (caption):`` and a table of each model's value per seed (``rows``: label and
    {seed: value}; a seed a model lacks is left empty)."""
    out = ["", f"Per seed ({caption}):", ""]
    out.append("| model | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    out.append("|---|" + "---:|" * len(seeds))
    for label, by_seed in rows:
        out.append(
            f"| {label} | "
            + " | ".join(format(by_seed[s], fmt) if s in by_seed else "" for s in seeds)
            + " |"
        )
    return out


@dataclass
class SeedComparison:
    """What a comparison's result holds and how it prints, whatever it measures: ``models``
    (one result each), the main ``test`` (paired t for two models, Friedman for more),
    ``pairwise`` against the first model, ``verdicts`` in words.  A subclass gives the table's
    ``_HEAD``, ``_rows()``, ``_heading()``, ``_notes()``, the Markdown's ``_explanation()`` of
    the table and its ``_per_seed()`` values."""

    models: list
    seeds: list[int]
    config: dict
    test: stats.TestResult | None
    pairwise: list[dict]
    out_dir: str
    verdicts: list[str] = field(default_factory=list)

    _HEAD: ClassVar[list[str]] = []

    def _rows(self) -> list[list[str]]:
        raise NotImplementedError

    def _heading(self) -> str:
        raise NotImplementedError

    def _notes(self) -> list[str]:
        raise NotImplementedError

    def _explanation(self) -> str:
        raise NotImplementedError

    def _per_seed(self) -> tuple[str, list[tuple[str, dict]], str]:
        """The per-seed table's title, (label, {seed: value}) per model, and the values' format."""
        raise NotImplementedError

    def _outcome(self) -> dict:
        """The models, the tests, the verdicts and the directory, as the JSON ends."""
        return {
            "models": [m.to_dict() for m in self.models],
            "test": self.test.to_dict() if self.test is not None else None,
            "pairwise": self.pairwise,
            "verdicts": self.verdicts,
            "out_dir": self.out_dir,
        }

    def to_dict(self) -> dict:
        raise NotImplementedError

    def to_markdown(self) -> str:
        out = [f"# Comparison: {self._heading()}", "", self._explanation(), ""]
        out += markdown_table(self._HEAD, self._rows())
        out += [""] + [f"- {line}" for line in self._notes()]
        title, values, number_format = self._per_seed()
        out += per_seed_lines(title, self.seeds, values, number_format)
        return "\n".join(out) + "\n"

    def write(self, out: Path, *, quiet: bool) -> None:
        """``comparison.md`` and ``comparison.json`` into ``out``, the table printed unless ``quiet``."""
        make_directory(out, "--out")
        atomic_write(out / "comparison.md", self.to_markdown())
        write_json(out / "comparison.json", self.to_dict())
        if not quiet:
            print(self.to_text(), end="")

    def to_text(self) -> str:
        lines = text_table(self._HEAD, self._rows())
        return "\n".join([self._heading(), ""] + lines + [""] + self._notes()) + "\n"

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def __str__(self) -> str:
        return self.to_text()
