"""Running the ``formulac`` command line in-process from a test."""

from formulac.cli import main

# the options that keep a training command quiet, on the CPU, in one thread
QUIET_CPU = ["--device", "cpu", "--threads", "1", "--no-progress", "--quiet"]


def run_cli(capsys, *argv):
    """``formulac ARGV`` (each argument through ``str``): (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err
