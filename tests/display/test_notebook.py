"""docs/notebooks/tour.ipynb: committed with its outputs, and they are what the code gives today.

The notebook runs top to bottom in a fresh kernel of this environment; its text outputs
(printed text and the plain-text form of every value) must equal the stored ones, so that a
reader of the committed notebook sees what the code does. Refresh them with
``.venv/bin/python scripts/refresh_notebook.py``.
"""

import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "docs" / "notebooks" / "tour.ipynb"
_spec = importlib.util.spec_from_file_location("refresh_notebook", ROOT / "scripts" / "refresh_notebook.py")
refresh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(refresh)

_CHECK_KERNEL = "import sys; print(sys.executable)"
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def _texts(notebook) -> list[list[str]]:
    """Per code cell, its text outputs (streams and plain-text values), addresses removed."""
    cells = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        texts: list[str] = []
        streaming = False  # a kernel may send one print in several stream messages: join them
        for output in cell.outputs:
            stream = output.output_type == "stream"
            text = output.get("text") if stream else output.get("data", {}).get("text/plain")
            if text is None:
                continue
            text = _ADDRESS.sub("", "".join(text))
            if stream and streaming:
                texts[-1] += text
            else:
                texts.append(text)
            streaming = stream
        cells.append(texts)
    return cells


def test_notebook_is_stored_with_its_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    assert sum(bool(cell.outputs) for cell in code) >= len(code) - 3  # set-up cells show nothing
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), "run top to bottom"
    kinds = {k for cell in code for o in cell.outputs for k in o.get("data", {})}
    assert {"text/latex", "text/html", "image/png"} <= kinds
    assert not any(o.output_type == "error" for cell in code for o in cell.outputs)
    assert str(ROOT) not in NOTEBOOK.read_text(encoding="utf-8"), "no paths of this machine"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.slow
def test_tour_notebook_runs_and_gives_the_stored_outputs(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the kernel set-up edits the environment
    refresh.kernel_environment(tmp_path)
    copy = tmp_path / "tour.ipynb"
    shutil.copy(NOTEBOOK, copy)
    stored = nbformat.read(copy, as_version=4)
    nb = nbformat.read(copy, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_CHECK_KERNEL))
    try:
        refresh.execute(nb)
    finally:
        nbformat.write(nb, tmp_path / "tour.executed.ipynb")

    executable = "".join(o.get("text", "") for o in nb.cells[-1].outputs).strip()
    assert os.path.realpath(executable) == os.path.realpath(sys.executable)
    nb.cells.pop()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert _texts(nb) == _texts(stored), "stored outputs are stale: run scripts/refresh_notebook.py"
