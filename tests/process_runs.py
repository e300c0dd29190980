"""Helpers for tests that train in separate processes: loading a run script as a module, the
environment a child runs in, the torchrun command, and killing a run mid-training."""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

# set by torchrun in its children; a test's child must not inherit them from an outer run
DISTRIBUTED_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def load_script(path: Path, module_name: str) -> ModuleType:
    """The script at ``path`` imported as ``module_name`` (scripts are not on the import path)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def single_thread_env() -> dict:
    """The environment for a child process: one OpenMP/MKL thread, no torchrun variables."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for key in DISTRIBUTED_VARIABLES:
        env.pop(key, None)
    return env


def torchrun_command(script: Path, processes: int = 2) -> list[str]:
    """``python -m torch.distributed.run`` starting ``processes`` ranks of ``script`` on this
    machine; the script's arguments follow."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        str(script),
    ]


def kill_after_first_checkpoint(command: list[str], run_dir: Path, wait_s: float, settle_s: float) -> None:
    """Start ``command`` (a run writing to ``run_dir`` that sleeps after each epoch), SIGKILL it
    ``settle_s`` after its first checkpoint appears (within ``wait_s``), and check that it was
    killed mid-run."""
    proc = subprocess.Popen(command, env=single_thread_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + wait_s
        while not (run_dir / "checkpoint.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        time.sleep(settle_s)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


def backward_in_fresh_python(source: str, folder: Path, report: str) -> str:
    """Write ``source`` to ``folder/model.py``, run its ``FormulaNet`` forward and backward in
    float64 on a (3, 1, 4, 4) input in a fresh isolated interpreter, and return what
    ``print(report)`` printed there (``report``: an expression over ``net`` and ``sys``)."""
    (folder / "model.py").write_text(source)
    script = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); import model\n"
        "net = model.FormulaNet().double(); x = torch.randn(3, 1, 4, 4, dtype=torch.float64)\n"
        f"net(x).sum().backward(); print({report})\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", script, str(folder)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
