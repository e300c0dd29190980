"""formulac.files.atomic_write: all or nothing, and the modes a user expects."""

import os
import stat

import pytest

from formulac.files import atomic_write, current_umask


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture()
def umask():
    """Set the umask for one test and restore it after."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_to(mask):
        os.umask(mask)

    yield set_to
    os.umask(saved)


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "checkpoint.pt"
    p.write_bytes(b"old")

    def broken(f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(p, broken)
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["checkpoint.pt"]
    atomic_write(p, lambda f: f.write(b"new"))
    assert p.read_bytes() == b"new"
    atomic_write(p, "text é")
    assert p.read_text(encoding="utf-8") == "text é"
    atomic_write(p, b"\x00bytes", durable=False)
    assert p.read_bytes() == b"\x00bytes"
    assert [q.name for q in tmp_path.iterdir()] == ["checkpoint.pt"]


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640), (0o002, 0o664)])
def test_a_new_file_follows_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    assert current_umask() == mask
    atomic_write(tmp_path / "new.py", "x = 1\n")
    plain = tmp_path / "plain.py"
    plain.write_text("x = 1\n")  # what open() gives under the same umask
    assert _mode(tmp_path / "new.py") == expected == _mode(plain)


@pytest.mark.parametrize("mode", [0o644, 0o755, 0o600, 0o664])
def test_a_replaced_file_keeps_its_mode(tmp_path, umask, mode):
    umask(0o077)  # a umask that would give 600 to a new file must not change an existing one
    p = tmp_path / "model.py"
    p.write_text("old\n")
    os.chmod(p, mode)
    atomic_write(p, "new\n")
    assert p.read_text() == "new\n" and _mode(p) == mode


def test_a_directory_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path / "d", "x")
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "f", "x")
    assert sorted(q.name for q in tmp_path.iterdir()) == ["d"]
