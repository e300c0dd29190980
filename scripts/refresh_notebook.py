"""Run a notebook of docs/notebooks/ (tour.ipynb unless named) top to bottom in this
environment and store its outputs.

    .venv/bin/python scripts/refresh_notebook.py [docs/notebooks/transformers.ipynb]

The notebook is committed with its outputs, so that a reader sees the formulas, tables and
plots without running it; tests/display/test_notebook.py runs it again and checks that the
stored text outputs are what the code gives today.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "notebooks" / "tour.ipynb"


def kernel_environment(directory: Path) -> None:
    """A kernel spec named python3 that starts this interpreter, found before any other."""
    spec = directory / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"})
    )
    os.environ["JUPYTER_PATH"] = str(directory / "jupyter")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"


def execute(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    return notebook


def main() -> None:
    path = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else NOTEBOOK
    with tempfile.TemporaryDirectory() as tmp:
        kernel_environment(Path(tmp))
        notebook = execute(nbformat.read(path, as_version=4))
    notebook.metadata.pop("widgets", None)
    nbformat.write(notebook, path)
    print(f"{path.relative_to(ROOT)}: {len(notebook.cells)} cells, outputs stored")


if __name__ == "__main__":
    main()
