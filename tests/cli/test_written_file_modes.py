"""Files the command line writes get the modes a user expects (issue 11: `compile -o` wrote
mode 600 even over a 644 file)."""

import os
import stat

from fixtures_path import REPO

from formulac.cli import main

RESNET = str(REPO / "examples" / "resnet.rec")


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_compile_output_modes(tmp_path, capsys):
    saved = os.umask(0o022)
    try:
        new = tmp_path / "new.py"
        assert main(["compile", RESNET, "--depth", "8", "-o", str(new)]) == 0
        assert _mode(new) == 0o644
        shared = tmp_path / "shared.py"
        shared.write_text(new.read_text())  # a module formulac wrote, which compile replaces
        os.chmod(shared, 0o664)
        os.umask(0o077)
        assert main(["compile", RESNET, "--depth", "8", "-o", str(shared)]) == 0
        assert _mode(shared) == 0o664 and "class FormulaNet" in shared.read_text()
    finally:
        os.umask(saved)
    capsys.readouterr()
