"""A run directory: its files, reading them back, and deciding what a new call may do with it
(start, resume, return a finished run, or refuse because that would lose or mix up work)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from ..files import atomic_write
from ..limits import DEFAULT_MEMORY_MODE
from .errors import TrainError
from .recipes import TrainConfig

__all__ = [
    "CHECKPOINT",
    "CHECKPOINT_FORMAT",
    "CONFIG",
    "CURVES",
    "METRICS",
    "RESUME_FREE",
    "SUMMARY",
    "append_metrics",
    "jsonable",
    "load_checkpoint",
    "prepare_out_dir",
    "read_metrics",
    "rewrite_metrics",
    "write_json",
]

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
CURVES = "curves.png"
_OUR_FILES = (CONFIG, METRICS, CHECKPOINT, SUMMARY, CURVES)

# knobs that may change between a run and its resumption without changing what it computes
RESUME_FREE = frozenset(
    {"device", "data_dir", "download", "compile", "workers", "threads", "eval_batch_size", "data_on_device"}
)
# entries of the model's description that do not decide which network is trained
_DESCRIBE_FREE = frozenset({"file", "source_sha256"})

CHECKPOINT_FORMAT = 1


def write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def jsonable(x):
    """``x`` with every value JSON can hold kept, paths as strings, anything else as its repr."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, Path):
        return str(x)
    return repr(x)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by :func:`~formulac.train.train` (a directory means its checkpoint.pt).

    It loads with ``weights_only=True``: the file holds tensors and plain data only."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainError(f"no checkpoint at {p}") from None
    except Exception as e:
        raise TrainError(f"{p}: cannot read checkpoint ({e})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{p}: not a formulac checkpoint")
    return ck


def read_metrics(out_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch records of a run's metrics.jsonl."""
    p = Path(out_dir) / METRICS
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def rewrite_metrics(out: Path, history: list[dict]) -> None:
    """metrics.jsonl rewritten from ``history`` (a resumed run drops any line written after its
    checkpoint)."""
    atomic_write(out / METRICS, "".join(json.dumps(r) + "\n" for r in history))


def append_metrics(out: Path, record: dict) -> None:
    """Append one epoch's line to metrics.jsonl, on disk before the checkpoint is written."""
    with open(out / METRICS, "ab") as f:
        f.write((json.dumps(record) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def _config_diff(saved: dict, config: TrainConfig) -> list[str]:
    now = config.to_dict()
    defaults = TrainConfig().to_dict()
    out = []
    for k in sorted(set(saved) | set(now)):
        if k in RESUME_FREE:
            continue
        # a knob the saved run predates had its default value then
        a, b = saved.get(k, defaults.get(k)), now.get(k)
        if (
            isinstance(a, (list, tuple))
            and isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(math.isclose(float(x), float(y), rel_tol=1e-12) for x, y in zip(a, b))
        ):
            continue
        if a != b:
            out.append(f"{k}: {a!r} (saved) vs {b!r} (now)")
    return out


def _describe_diff(saved: dict | None, describe: dict | None) -> list[str]:
    if not saved or not describe:
        return []
    out = []
    for k in sorted((set(saved) | set(describe)) - _DESCRIBE_FREE):
        # a run built without a memory mode kept activations as usual
        a, b = (d.get(k, DEFAULT_MEMORY_MODE if k == "memory" else None) for d in (saved, describe))
        if a != b:
            out.append(f"{k}: {a!r} (saved) vs {b!r} (now)")
    return out


def clear_run_files(out: Path) -> None:
    """Remove the files of an earlier run (``--overwrite``), nothing else of the directory."""
    for name in _OUR_FILES:
        (out / name).unlink(missing_ok=True)


def _refuse_other_run(out: Path, what: str, diff: list[str], advice: str) -> None:
    if diff:
        raise TrainError(f"{out} holds {what}:\n  " + "\n  ".join(diff) + f"\n{advice}")


def prepare_out_dir(out: Path, config: TrainConfig, resume: bool, overwrite: bool, describe: dict | None):
    """Decide what to do with ``out``: ('fresh', None), ('overwrite', None), ('resume',
    checkpoint) or ('finished', summary); raise TrainError when that would lose or mix up work.
    Nothing is removed here: ``overwrite`` leaves the old files until the new run can start."""
    summary_p, ckpt_p = out / SUMMARY, out / CHECKPOINT
    if out.exists() and not out.is_dir():
        raise TrainError(f"{out} exists and is not a directory")
    # compare's and search's runs go below --out: a file there would end --overwrite in a traceback
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise TrainError(f"cannot create the run directory {out}: {blocking} exists and is not a directory")
    if overwrite and not resume:
        return "overwrite", None  # cleared by clear_run_files once the data and model are ready
    start_over = "pass --overwrite to train again from scratch, or choose another output directory"
    if summary_p.is_file():
        try:
            summary = json.loads(summary_p.read_text())
        except ValueError:
            raise TrainError(f"{summary_p}: broken summary; pass --overwrite to train again") from None
        _refuse_other_run(
            out, "a run of another model", _describe_diff(summary.get("model"), describe), start_over
        )
        if not resume:
            acc = summary.get("final_test_acc")
            acc_s = f" (final test accuracy {100 * acc:.2f}%)" if isinstance(acc, float) else ""
            raise TrainError(f"{out} holds a finished run{acc_s}; {start_over}")
        saved = summary.get("config")
        if saved is None and (out / CONFIG).is_file():
            saved = json.loads((out / CONFIG).read_text()).get("config")
        _refuse_other_run(
            out, "a finished run with other settings", _config_diff(saved or {}, config), start_over
        )
        return "finished", summary
    if ckpt_p.is_file():
        ck = load_checkpoint(ckpt_p)
        saved_model = ck.get("describe")
        if saved_model is None and (out / CONFIG).is_file():
            saved_model = json.loads((out / CONFIG).read_text()).get("model")
        _refuse_other_run(
            out,
            "an unfinished run of another model",
            _describe_diff(saved_model, describe),
            "pass --overwrite to start over, or choose another output directory",
        )
        if not resume:
            raise TrainError(
                f"{out} holds an unfinished run (epoch {ck['epoch']} of "
                f"{ck['config'].get('epochs')}); pass --resume to continue it, or "
                "--overwrite to start over"
            )
        diff = _config_diff(ck["config"], config)
        if diff:
            raise TrainError(
                f"cannot resume {out} with other settings:\n  "
                + "\n  ".join(diff)
                + "\nresume with the same options, or pass --overwrite"
            )
        return "resume", ck
    if resume:
        raise TrainError(
            f"nothing to resume: no {CHECKPOINT} in {out}"
            + ("" if out.is_dir() else " (the directory does not exist)")
        )
    return "fresh", None
