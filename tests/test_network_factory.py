"""formulac.formula.NetworkFactory: the model factory of `train`/`compare` survives pickling
(compare --jobs) with the very source it compiles, and records that source's hash."""

import hashlib
import pickle

from fixtures_path import REPO

from formulac.cli.common import load_bound
from formulac.codegen import compile_source
from formulac.formula import network_factory
from formulac.parse import parse

MLP = dict(backbone="mlp", depth=2, transition="reset", num_classes=None, in_channels=None)


def test_pickled_factory_compiles_the_same_source():
    rec = load_bound(str(REPO / "examples" / "two_step_free.rec"), ["a=-1/4"])
    build, describe = network_factory(rec, MLP)
    assert "source_sha256" not in describe  # known only once the data set fixes the sizes
    net = build(1, 4, 8)
    want = compile_source(rec, **dict(MLP, in_channels=1, num_classes=4, input_size=8))
    assert describe["source_sha256"] == hashlib.sha256(want.encode()).hexdigest()
    again = pickle.loads(pickle.dumps(build))
    other = again(1, 4, 8)
    # the user's term order survives (pickling SymPy alone would reorder the sum)
    assert again.describe["source_sha256"] == describe["source_sha256"]
    assert sum(p.numel() for p in other.parameters()) == sum(p.numel() for p in net.parameters())
    assert describe["formula"].startswith("a = -1/4") and describe["file"] == "two_step_free.rec"


def test_a_formula_without_a_file_still_pickles():
    build, _ = network_factory(parse("x_<n+1> = x_n + F(x_n)\n"), MLP)
    assert type(pickle.loads(pickle.dumps(build))(1, 3, 8)).__name__ == "FormulaNet"
