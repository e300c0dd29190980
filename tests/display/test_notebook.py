"""docs/notebooks/tour.ipynb runs top to bottom in a fresh kernel of this environment."""

import json
import os
import shutil
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "docs" / "notebooks" / "tour.ipynb"

_CHECK_KERNEL = "import sys; print(sys.executable)"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.slow
def test_tour_notebook_runs(tmp_path, monkeypatch):
    # A kernel spec named python3 that starts *this* interpreter, found before any user-wide
    # spec of the same name (JUPYTER_PATH comes first in the search path).
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (formulac test)",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")

    copy = tmp_path / "tour.ipynb"
    shutil.copy(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_CHECK_KERNEL))

    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=180,
        resources={"metadata": {"path": str(ROOT)}},
    )
    try:
        client.execute()
    finally:
        nbformat.write(nb, tmp_path / "tour.executed.ipynb")

    executable = "".join(o.get("text", "") for o in nb.cells[-1].outputs).strip()
    assert os.path.realpath(executable) == os.path.realpath(sys.executable)

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    kinds = {k for o in outputs for k in o.get("data", {})}
    assert {"text/latex", "text/html", "image/png"} <= kinds
