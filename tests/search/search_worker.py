"""A worker process of the multi-process tests: joins the study in argv[1] with a fake trainer.

argv: OUT TRIALS TRAINER [STORAGE|-] [SPACE] [SAMPLER SEED]"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fake_trainers

import formulac.search

out, trials, trainer = sys.argv[1], int(sys.argv[2]), sys.argv[3]
storage = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] != "-" else None
space = sys.argv[5] if len(sys.argv) > 5 else "a=-0.9:0.9"
sampler, seed = (sys.argv[6], int(sys.argv[7])) if len(sys.argv) > 7 else ("auto", None)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
formulac.search(
    [str(EXAMPLES / "two_step_free.rec")],
    space=[space],
    require=["stable"],
    trials=trials,
    out=out,
    storage=storage,
    study="shared" if storage else None,
    trainer=getattr(fake_trainers, trainer),
    epochs=fake_trainers.EPOCHS,
    pruner="none",
    sampler=sampler,
    seed=seed,
    heartbeat=1,
    grace=3,
)
