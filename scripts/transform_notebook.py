"""Write docs/notebooks/transform.ipynb from the cells below, run it top to bottom in this
environment and store its outputs.

    .venv/bin/python scripts/transform_notebook.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import refresh_notebook as r

ROOT = Path(__file__).resolve().parents[1]

cells = [
    nbformat.v4.new_markdown_cell("""# A Hugging Face model transformed by a formula

`formulac.transform` (docs/transform.md) runs a formula over the residual stack of a model you already have. Here: a small GPT-2 with random weights (no download), its own connection checked, then made a reversible Momentum network, analysed with `info()` and fine-tuned for a few steps."""),
    nbformat.v4.new_code_cell("""import warnings

warnings.filterwarnings("ignore", message="IProgress not found")

import torch
import transformers

import formulac

transformers.logging.set_verbosity_error()
torch.manual_seed(0)
config = transformers.GPT2Config(
    vocab_size=101, n_positions=64, n_embd=64, n_layer=6, n_head=4, bos_token_id=0, eos_token_id=0, use_cache=False
)
model = transformers.GPT2LMHeadModel(config)
ids = torch.randint(0, 101, (8, 32), generator=torch.Generator().manual_seed(0))"""),
    nbformat.v4.new_markdown_cell(
        "With the formula of GPT-2's own connection, each block as the branch `block(x) - x` or as its two sublayers `A` (attention) and `M` (MLP), the transformed model computes what the original does:"
    ),
    nbformat.v4.new_code_cell("""own = formulac.transform(model, "x_<n+1> = x_n + F(x_n)", "transformer.h")
sublayers = formulac.transform(model, "x_<n+1> = x_n + A(x_n) + M(x_n + A(x_n))", "transformer.h", blocks="gpt2")
model.eval(), own.eval(), sublayers.eval()
with torch.no_grad():
    reference = model(ids).logits
    for name, m in [("own connection", own), ("A and M", sublayers)]:
        print(f"{name}: relative difference {float((m(ids).logits - reference).norm() / reference.norm()):.1e}")"""),
    nbformat.v4.new_markdown_cell(
        "Momentum over the whole layer's update, rebuilt backward instead of stored (`memory=\"reversible\"`). `info()` with an example call shows what was added and the predicted activation memory of each mode:"
    ),
    nbformat.v4.new_code_cell("""momentum = \"\"\"
gamma = 0.9
v_<n+1> = gamma*v_n + (1 - gamma)*(A(x_n) + M(x_n + A(x_n)))
x_<n+1> = x_n + v_<n+1>
\"\"\"
new = formulac.transform(model, momentum, "transformer.h", blocks="gpt2", memory="reversible")
print(new.info(ids, labels=ids))"""),
    nbformat.v4.new_markdown_cell(
        "A few steps of fine-tuning (the same batch: the loss must fall). The user's `model` is untouched: the weights were copied."
    ),
    nbformat.v4.new_code_cell("""optimizer = torch.optim.AdamW(new.parameters(), lr=3e-3)
new.train()
for step in range(6):
    optimizer.zero_grad()
    loss = new(ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss {loss.item():.3f}")
print("largest relative error of a rebuilt state:", {k: f"{v:.1e}" for k, v in new.transformer.h.rebuild_errors.items()})"""),
]


def main() -> None:
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with tempfile.TemporaryDirectory() as tmp:
        r.kernel_environment(Path(tmp))
        r.execute(nb)
    nb.metadata.pop("widgets", None)
    out = ROOT / "docs" / "notebooks" / "transform.ipynb"
    nbformat.write(nb, out)
    print(f"{out.relative_to(ROOT)}: {len(nb.cells)} cells, outputs stored")


if __name__ == "__main__":
    main()
