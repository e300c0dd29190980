"""The dependency graph of the unrolled network and its path-length distribution.

Nodes are the state values ``x_i`` (``x_0`` is the input) and the block outputs ``F_i(...)``
of every step; an edge ``u -> v`` means that ``v`` reads ``u`` (for a linear formula: with a
non-zero coefficient). The distribution counts input-to-output paths by the number of blocks on
them, by dynamic programming over the DAG (never by enumerating paths): ResNet with ``N`` blocks
has ``2^N`` paths, ``C(N, k)`` of them through ``k`` blocks.

networkx is imported only when a graph is asked for; the distribution runs on plain Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from ..ir import Recurrence, StateRef, block_calls, n, rec_expr, references, state, top_level_calls
from .linear import Structure, check_steps, structure

__all__ = ["Dag", "build_dag", "dependency_graph", "path_length_distribution"]


@dataclass
class Dag:
    """Nodes in topological order: id -> (kind, step, predecessor ids, attributes).

    Ids are tuples: ``("s", state, index)`` for state values (``("s", "x", 0)`` is the input)
    and ``("b", call, step)`` for block outputs (``call`` the step-generic block call).
    """

    input: tuple
    output: tuple
    structure: Structure
    nodes: dict = field(default_factory=dict)

    def add(self, node, kind: str, step: int | None, preds, **attrs) -> None:
        if node in self.nodes:
            return
        self.nodes[node] = (kind, step, list(dict.fromkeys(preds)), attrs)

    @property
    def edge_count(self) -> int:
        return sum(len(p) for _, _, p, _ in self.nodes.values())

    def label(self, node) -> str:
        """Readable node name: ``x_3``, ``F_2(x_2)``."""
        if node[0] == "s":
            return rec_expr(state(node[1], node[2]))
        call = node[1].xreplace({n: sympy.Integer(node[2])}) if node[0] == "b" else node[1]
        return rec_expr(self.structure.name_initial_states(call))


def build_dag(rec: Recurrence | Structure, depth: int, params: str = "symbolic") -> Dag:
    """The unrolled network to ``depth`` steps as a :class:`Dag`."""
    st = rec if isinstance(rec, Structure) else structure(rec, params)
    depth = check_steps(depth)
    states = frozenset(st.states)
    inp = ("s", st.output, 0)
    dag = Dag(inp, ("s", st.output, depth), st)
    dag.add(inp, "input", 0, [], state=st.output)
    input_ref = state(st.output, 0)
    depends_on_input: dict = {}

    def ref_node(name: str, j: int):
        if j >= 1:
            return ("s", name, j)
        if name == st.output and j == 0:
            return inp
        key = (name, j)
        if key not in depends_on_input:
            depends_on_input[key] = sympy.sympify(st.initial_value(name, j)).has(input_ref)
        return inp if depends_on_input[key] else None

    if st.has_sums or st.reads_start:
        _concrete_steps(st, dag, depth, states, ref_node)
        return dag

    # step-generic templates: integer offsets, generic block calls
    def offsets(expr):
        return [(r.name, r.offset) for r in references(expr, states, into_blocks=False)]

    templates = []
    for s in st.states:
        e = st.rhs[s]
        calls = list(dict.fromkeys(block_calls(e)))
        blocks = [(c, offsets(c.argument), list(top_level_calls(c.argument))) for c in reversed(calls)]
        if st.forms is not None:
            f = st.forms[s]
            refs = [(r.name, r.offset, c) for r, c in ((StateRef.of(node), c) for node, c in f.refs.items())]
            tops = [(call, c) for call, c in f.blocks.items()]
        else:
            refs = [(nm, off, None) for nm, off in offsets(e)]
            tops = [(call, None) for call in top_level_calls(e)]
        templates.append((s, blocks, refs, tops))

    def live(c, t) -> bool:
        if c is None or not isinstance(c, sympy.Basic) or not c.has(n):
            return True
        return c.xreplace({n: sympy.Integer(t)}) != 0

    for t in range(depth):
        for s, blocks, refs, tops in templates:
            for call, arg_refs, nested in blocks:
                preds = [ref_node(nm, t + off) for nm, off in arg_refs]
                preds = [p for p in preds if p is not None] + [("b", d, t) for d in nested]
                dag.add(("b", call, t), "block", t, preds, block=call.block)
            preds = [ref_node(nm, t + off) for nm, off, c in refs if live(c, t)]
            preds = [p for p in preds if p is not None] + [("b", call, t) for call, c in tops if live(c, t)]
            dag.add(("s", s, t + 1), "state", t + 1, preds, state=s)
    return dag


def _concrete_steps(st: Structure, dag: Dag, depth: int, states, ref_node) -> None:
    """History sums: the references of every step, expanded."""
    generic_of = {k: c for c, k in st.block_keys.items()}
    for t in range(depth):
        sub = {n: sympy.Integer(t)}
        for s in st.states:
            e = st.rhs[s].xreplace(sub)
            if st.forms is None and e.has(sympy.Sum):  # linear forms keep blocks out of sums
                e = e.doit()
            calls = list(dict.fromkeys(block_calls(e)))
            for c in reversed(calls):
                preds = [ref_node(r.name, r.step) for r in references(c.argument, states, into_blocks=False)]
                preds = [p for p in preds if p is not None] + [
                    ("c", d, t) for d in top_level_calls(c.argument)
                ]
                dag.add(("c", c, t), "block", t, preds, block=c.block)
            if st.forms is not None:
                cf = st.concrete(s, t)
                preds = [ref_node(nm, j) for (nm, j) in cf.refs]
                preds = [p for p in preds if p is not None]
                preds += [("c", generic_of[k].xreplace(sub), t) for k, c in cf.blocks.items() if c != 0]
            else:
                preds = [ref_node(r.name, r.step) for r in references(e, states, into_blocks=False)]
                preds = [p for p in preds if p is not None] + [("c", c, t) for c in top_level_calls(e)]
            dag.add(("s", s, t + 1), "state", t + 1, preds, state=s)


def dependency_graph(rec: Recurrence | Structure, depth: int, params: str = "symbolic"):
    """The unrolled network as a ``networkx.DiGraph``.

    Node attributes: ``kind`` (``"input"``, ``"state"`` or ``"block"``), ``step``, and ``state``
    or ``block`` (the name). Graph attributes: ``input`` and ``output`` (node ids).
    """
    import networkx as nx

    dag = build_dag(rec, depth, params)
    labels = {node: dag.label(node) for node in dag.nodes}
    g = nx.DiGraph(input=labels[dag.input], output=labels[dag.output])
    for node, (kind, step, preds, attrs) in dag.nodes.items():
        g.add_node(labels[node], kind=kind, step=step, **attrs)
        for p in preds:
            g.add_edge(labels[p], labels[node])
    return g


def path_length_distribution(rec, depth: int | None = None, params: str = "symbolic") -> list[int]:
    """Number of input-to-output paths by number of blocks on the path (index = blocks).

    ``rec`` is a recurrence (with ``depth``) or a graph from :func:`dependency_graph`.
    """
    if isinstance(rec, (Recurrence, Structure)):
        if depth is None:
            raise TypeError("path_length_distribution(rec, depth) needs a depth")
        dag = build_dag(rec, depth, params)
        order = [(node, kind, preds) for node, (kind, _, preds, _) in dag.nodes.items()]
        source, target = dag.input, dag.output
    else:  # a networkx graph
        import networkx as nx

        g = rec
        order = [(v, g.nodes[v].get("kind"), list(g.predecessors(v))) for v in nx.topological_sort(g)]
        source, target = g.graph["input"], g.graph["output"]
    return block_count_distribution(order, source, target)


def block_count_distribution(order, source, target, max_cost: float | None = None) -> list[int] | None:
    """Paths from ``source`` to ``target`` by number of blocks; None if the estimated cost (in
    machine-word additions) exceeds ``max_cost``."""
    # total counts and the most blocks on a path first, to size the packed representation
    total: dict = {}
    longest: dict = {}
    edges = 0
    for node, kind, preds in order:
        edges += len(preds)
        if node == source:
            total[node], longest[node] = 1, 0
            continue
        total[node] = sum(total.get(p, 0) for p in preds)
        longest[node] = max((longest[p] for p in preds if total.get(p)), default=0) + (kind == "block")
    if total.get(target, 0) == 0:
        return []
    width = max(total.values()).bit_length() + 1
    width = (width + 7) // 8 * 8
    if max_cost is not None and edges * (max(longest.values()) + 1) * width / 64 > max_cost:
        return None
    # counts by number of blocks, packed into one integer: slot k holds paths through k blocks
    packed: dict = {}
    for node, kind, preds in order:
        if node == source:
            v = 1
        else:
            v = 0
            for p in preds:
                v += packed.get(p, 0)
            if kind == "block":
                v <<= width
        packed[node] = v
    v = packed[target]
    nbytes = width // 8
    raw = v.to_bytes((v.bit_length() + 7) // 8 or 1, "little")
    counts = [int.from_bytes(raw[i : i + nbytes], "little") for i in range(0, len(raw), nbytes)]
    while counts and counts[-1] == 0:
        counts.pop()
    return counts
