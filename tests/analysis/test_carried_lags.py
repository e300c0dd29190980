"""Recurrence.carried_lags, the one home of "the states a step keeps" (issue 21): checked on
generated formulas against the lags they were written with, and read by the generated step,
its memory modes and the stream step of transform alike (the backward step: test_invertibility)."""

from __future__ import annotations

import pytest
from fixtures_path import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from formulac.analysis.linear import structure
from formulac.analysis.mixing import carried_states
from formulac.analysis.roots import spectrum
from formulac.codegen.memory_mode import kept_names
from formulac.codegen.plan import plan_step
from formulac.codegen.stream import stream_code
from formulac.errors import UsageError
from formulac.ir import UNBOUNDED
from formulac.parse import load, parse

ZOO = sorted((REPO / "examples").rglob("*.rec"))


def _term(state: str, lag: int, in_block: bool) -> str:
    ref = f"{state}_n" if lag == 1 else f"{state}_<n-{lag - 1}>"
    return f"F({ref})" if in_block else f"1/4*{ref}"


@settings(max_examples=40, deadline=None)
@given(
    x_reads=st.lists(st.tuples(st.integers(1, 4), st.booleans()), min_size=1, max_size=3),
    v_reads=st.lists(st.tuples(st.integers(1, 4), st.booleans()), max_size=3),
    window=st.integers(0, 3),
)
def test_generated_formulas_keep_the_lags_they_read(x_reads, v_reads, window):
    """x_<n+1> reads x and v at the lags drawn (plain or inside a block), plus a window of the
    last ``window`` + 1 values of v when ``window`` > 0; v_<n+1> reads x_n only."""
    terms = [_term("x", lag, block) for lag, block in x_reads]
    terms += [_term("v", lag, block) for lag, block in v_reads]
    if window:
        terms.append(f"1/8*sum(i=n-{window}..n, v_i)")
    text = f"v_0 = x_0\nv_<n+1> = x_n + G(x_n)\nx_<n+1> = {' + '.join(terms)}\n"
    rec = parse(text)
    v_lag = max([lag for lag, _ in v_reads] + ([window + 1] if window else []), default=0)
    expected = {"x": max(lag for lag, _ in x_reads)}
    if v_lag:
        expected["v"] = v_lag
    assert rec.carried_lags == {s: expected[s] for s in rec.states if s in expected}


def test_a_history_sum_keeps_its_state_once_beside_the_history():
    rec = load(REPO / "examples" / "history_sum.rec")
    assert rec.carried_lags == {"x": 1} and plan_step(rec).history == {"x": 0}


def test_a_state_read_only_at_the_same_step_is_not_kept():
    rec = parse("y_<n+1> = F(x_n)\nx_<n+1> = x_n + y_<n+1>\n")
    assert rec.carried_lags == {"x": 1}


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_every_reader_takes_the_lags_from_the_recurrence(path):
    rec = load(path)
    if rec.free_symbols:
        rec = rec.bind(**dict.fromkeys(rec.free_symbols, 0.5))
    assert plan_step(rec).lags == rec.carried_lags
    try:
        code = stream_code(rec, "standard")
    except UsageError:  # transform refuses histories and fixed reads; the plan is checked above
        return
    assert code.kept == kept_names(rec.carried_lags)[0]


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_the_streams_of_the_mixing_analysis_are_the_kept_states_a_step_reads(path):
    """carried_states (the streams of the state matrices) is carried_lags less the states not
    handed on one value at a time: the output when only the network reads it, a state read
    through its history or kept further back (a window's b_<n-2>)."""
    rec = load(path)
    streams = carried_states(rec)
    assert streams == [s for s in rec.carried_lags if s in streams]
    assert all(rec.lags[s] == 1 for s in streams)
    for state in rec.carried_lags.keys() - set(streams):
        lag = rec.lags[state]
        assert (state == rec.output and lag == 0) or lag == UNBOUNDED or lag >= 2


def test_hyper_connections_keep_their_sum_but_mix_only_the_streams():
    rec = load(REPO / "examples" / "hyper_connections_k2.rec")
    assert rec.carried_lags == {"h1": 1, "h2": 1, "x": 1} and carried_states(rec) == ["h1", "h2"]


@settings(max_examples=30, deadline=None)
@given(
    x_reads=st.lists(st.tuples(st.integers(1, 3), st.booleans()), min_size=1, max_size=3),
    v_reads=st.lists(st.tuples(st.integers(1, 3), st.booleans()), max_size=3),
)
def test_the_spectrum_holds_the_kept_values_the_linear_part_reads(x_reads, v_reads):
    """roots.spectrum's state vector is carried_lags less the values read only inside blocks."""
    terms = [_term("x", lag, block) for lag, block in x_reads]
    terms += [_term("v", lag, block) for lag, block in v_reads]
    rec = parse(f"v_0 = x_0\nv_<n+1> = x_n + G(x_n)\nx_<n+1> = {' + '.join(terms)}\n")
    plain = {"x": 1}  # the output, and v_<n+1> reads x_n outside its block
    for state, reads in (("x", x_reads), ("v", v_reads)):
        plain[state] = max([plain.get(state, 0)] + [lag for lag, in_block in reads if not in_block])
    dimension = spectrum(structure(rec)).matrix.shape[0]
    assert all(plain[s] <= rec.carried_lags.get(s, 0) for s in plain)
    assert dimension == sum(plain.values())
    only_in_blocks = any(plain[s] < depth for s, depth in rec.carried_lags.items())
    assert (dimension < sum(rec.carried_lags.values())) == only_in_blocks
