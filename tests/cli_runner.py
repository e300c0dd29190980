"""Running the ``formulac`` command line in-process from a test."""

from formulac.cli import main

# the options that keep a training command quiet, on the CPU, in one thread
QUIET_CPU = ["--device", "cpu", "--threads", "1", "--no-progress", "--quiet"]


def run_cli(capsys, *argv):
    """``formulac ARGV`` (each argument through ``str``): (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def expect_check_error(capsys, path, text, first_line):
    """``formulac check PATH`` of ``text`` gives one located error starting ``first_line`` (after
    ``PATH:``), a caret under the place, no traceback, and exit status 2."""
    path.write_text(text)
    status, _out, err = run_cli(capsys, "check", path)
    assert status == 2
    assert err.startswith(f"{path}:{first_line}"), err
    assert "^" in err and "Traceback" not in err
