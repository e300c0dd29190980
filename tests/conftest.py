"""Test-suite settings: tests/ on the import path (for reference_models and fixtures_path), and
one torch thread per xdist worker (two workers on two cores with two OpenMP threads each run
tiny ops several times slower)."""

import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
