"""Long systems and big files: time about linear in the number of states, limits refused at once.

A chain of N same-step states (each reads the next at the same step) was quadratic or worse in
``invert``, the spectrum's substitution, ``lags_of`` and the network layout (N = 800 took 11 s,
N = 5,000 ran past 300 s and 4 GB). Times are CPU times of this process, which the load of a
shared machine distorts less than wall time; the bounds are several times what they take.
"""

from __future__ import annotations

import os
import time
import tracemalloc

import pytest

from formulac.analysis import analyze
from formulac.cli import main
from formulac.codegen import check_buildable
from formulac.errors import SourceError
from formulac.limits import MAX_FILE_BYTES, MAX_STATES
from formulac.parse import load, parse


def same_step_chain(count: int) -> str:
    """``x0 = x1_<n+1> + F(x0_n)``, ..., ``x<count> = x<count>_n + G(...)``: count + 1 states."""
    lines = [f"x{i}_<n+1> = x{i + 1}_<n+1> + F(x{i}_n)" for i in range(count)]
    return "output x0\n" + "\n".join(lines) + f"\nx{count}_<n+1> = x{count}_n + G(x{count}_n)\n"


def _cpu(function, *args):
    start = time.process_time()
    result = function(*args)
    return result, time.process_time() - start


def test_a_long_chain_is_analysed_in_about_linear_time():
    rec, _ = _cpu(parse, same_step_chain(800))
    result, analysed = _cpu(analyze, rec, 2)
    _, planned = _cpu(check_buildable, rec)
    assert result.block_weights["G"] == [1, 1]
    assert result.stability == "neutral"  # x0 follows x_800, which advances by 1
    assert analysed + planned < 6.0, f"analysis {analysed:.1f} s, plan {planned:.1f} s of CPU for 801 states"


def test_a_chain_past_the_limit_is_refused_at_once():
    text = same_step_chain(MAX_STATES)  # MAX_STATES + 1 states
    with pytest.raises(SourceError, match=f"too many states \\(the limit is {MAX_STATES}") as info:
        _cpu(parse, text)
    assert info.value.location.line == MAX_STATES + 2  # the first equation past the limit (after `output`)
    start = time.process_time()
    with pytest.raises(SourceError):
        parse(same_step_chain(5 * MAX_STATES))
    assert time.process_time() - start < 1.5
    parse(same_step_chain(MAX_STATES - 1))  # the limit itself is fine


def test_an_endless_file_is_refused_at_once(capsys):
    start = time.process_time()
    assert main(["check", "/dev/zero"]) == 2
    assert "file too large" in capsys.readouterr().err
    assert time.process_time() - start < 1.0


def test_a_huge_file_is_not_read_whole(tmp_path, capsys):
    path = tmp_path / "huge.rec"
    with open(path, "wb") as handle:  # sparse: 1.5 GB that take no disk
        handle.truncate(1_500_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(SourceError, match="file too large"):
            load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_FILE_BYTES, f"peak {peak} bytes"
    assert main(["check", str(path)]) == 2
    assert f"{path}:1:1: error: file too large" in capsys.readouterr().err
    os.unlink(path)


def test_a_file_at_the_limit_is_read(tmp_path):
    text = "x_<n+1> = x_n + F(x_n)\n"
    lines = MAX_FILE_BYTES // 1000 - 1
    padding = ("#" * 999 + "\n") * lines + "#" * (MAX_FILE_BYTES - 1000 * lines - len(text) - 1) + "\n"
    path = tmp_path / "limit.rec"
    path.write_text(padding + text)
    assert path.stat().st_size == MAX_FILE_BYTES
    assert load(path).states == ("x",)
