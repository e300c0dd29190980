"""Every size limit and default of the language, the analyses and the displays, in one place.

Each limit keeps a later stage fast and exact whatever the input: an input beyond one is refused
at once with a message that names the limit (``formulac: error: ...`` or ``FILE:LINE:COL``),
never by a slow run or a traceback. docs/language.md ("What is rejected, and why") and
docs/cli.md describe them for users; this module is the one place that sets them.
"""

from __future__ import annotations

__all__ = [
    "MAX_STREAMS",
    "SINKHORN_ITERATIONS",
    "DYNAMIC_SCALE_START",
    "MAX_FILE_BYTES",
    "MAX_LINE_CHARS",
    "MAX_STATEMENTS",
    "MAX_STATES",
    "MAX_NESTING",
    "MAX_EXPRESSION_DEPTH",
    "MAX_LAG",
    "MAX_NUMBER_BITS",
    "MAX_NAME_CHARS",
    "MAX_EXPONENT",
    "MAX_POWER",
    "MAX_EXP_ARGUMENT",
    "MAX_VALUE_NODES",
    "MAX_JSON_DIGITS",
    "DEFAULT_DEPTH",
    "DEFAULT_DISPLAY_DEPTH",
    "MAX_ANALYSIS_DEPTH",
    "CHECKED_STEPS",
    "MAX_TERMS",
    "MAX_HISTORY_TERMS",
    "MAX_EXPANSION_NODES",
    "MAX_EXPANSION_DEPTH",
    "MAX_DIMENSION",
    "MAX_PATH_EDGES",
    "MAX_PATH_COST",
    "MAX_GRAPH_DEPTH",
    "MAX_REPORT_DEPTH",
    "DEFAULT_BACKBONE",
    "DEFAULT_MEMORY_MODE",
    "MAX_EPOCHS",
    "MAX_EPOCH_TOKENS",
    "MAX_TRIALS",
    "MAX_SEEDS",
    "MAX_SEED",
    "MAX_PROCESSES",
    "MAX_SAMPLE_TOKENS",
    "MAX_WAIT_SECONDS",
]

# -- networks (formulac.codegen) -------------------------------------------------------------------

#: The backbone a formula is compiled on when none is named (a key of the backbone registry).
DEFAULT_BACKBONE = "cifar-resnet"
#: The memory mode of a network that names none (autograd keeps every activation; the
#: modes are registered in formulac.codegen.memory_modes).
DEFAULT_MEMORY_MODE = "standard"

# -- formula files (formulac.parse) -------------------------------------------------------------

#: Bytes (or characters) in one formula file.
MAX_FILE_BYTES = 1_000_000
#: Characters in one line.
MAX_LINE_CHARS = 4_000
#: Statements in one file (equations, constants, declarations; blank ones do not count).
MAX_STATEMENTS = 50_000
#: Equations (states) in one formula. ``check`` and ``analyze`` take time in proportion to the
#: number of states (about 2 ms of CPU each, plus the start-up: 2,000 states in about 5 s), so a
#: longer system is refused as soon as its equations are counted.
MAX_STATES = 2_000
#: Parentheses open at once within one statement.
MAX_NESTING = 64
#: Operators and calls nested in one expression; a flat chain ``a + b + c`` counts once.
MAX_EXPRESSION_DEPTH = 64
#: How far back an index may reach: ``x_<n-64>``, ``x_<-64>``.
MAX_LAG = 64
#: Bits of the numerator or denominator of any number a formula computes.
MAX_NUMBER_BITS = 2_000
#: Characters in a name.
MAX_NAME_CHARS = 64
#: Size of the decimal exponent of a literal (``1e400``); 1e999999 would build a huge integer.
MAX_EXPONENT = 400
#: Size of a power's exponent (``x^64``), also once constants are substituted.
MAX_POWER = 64
#: Size of a number under ``exp`` (beyond it the value leaves double range).
MAX_EXP_ARGUMENT = 700
#: Expression nodes of a value once the constants it uses are substituted (``c0 = c1 + c1``, ...).
MAX_VALUE_NODES = 5_000

# -- analyses (formulac.analysis) -----------------------------------------------------------------

#: Streams a stream state may hold (``stream h[8]``): the papers use 1 to 8 (hyper-connections'
#: expansion rate); entries of its k x k parameters are named by one digit each (``H01``).
MAX_STREAMS = 8
#: Sinkhorn-Knopp iterations of ``sinkhorn(H_n)`` (mHC; the hyper-connections package's default):
#: rows, then columns, normalised to sum 1, this many times; the columns sum to 1 exactly.
SINKHORN_ITERATIONS = 20
#: The start of the scale of an input-dependent coefficient's map (``+ dynamic(h_n)``): the
#: hyper-connections package's ``dynamic_alpha_scale`` and ``dynamic_beta_scale``.
DYNAMIC_SCALE_START = 0.01
#: Depth ``N`` of ``analyze``, ``diff`` and ``Formula.analyze`` when none is given.
DEFAULT_DEPTH = 10
#: The deepest analysis or unrolling (linear time: about 1 s per 10,000 steps of ResNet).
MAX_ANALYSIS_DEPTH = 100_000
#: Steps at which a coefficient that follows the step (``1/(n - 3)``, ``1.1^n``) is computed in
#: doubles, as a network computes it, when a formula is read or bound: n = 0 .. CHECKED_STEPS-1,
#: every step of the deepest analysis. A value that is not a finite real double there is refused.
CHECKED_STEPS = MAX_ANALYSIS_DEPTH
#: Polynomial terms the symbolic block weights may hold in all (adjoints and results).
MAX_TERMS = 20_000
#: State references a history sum may expand to over all steps (about depth^2 / 2).
MAX_HISTORY_TERMS = 600_000
#: Expression nodes of a non-linear expansion that ``unroll`` builds.
MAX_EXPANSION_NODES = 50_000
#: Nesting of a non-linear expansion (``relu(relu(...))``) that ``unroll`` builds.
MAX_EXPANSION_DEPTH = 300
#: State-vector entries for which a characteristic polynomial is computed.
MAX_DIMENSION = 32
#: Graph edges up to which ``analyze`` computes the path-length distribution.
MAX_PATH_EDGES = 200_000
#: ... and the estimated cost of it in machine-word additions (about 0.1 s per 2e7).
MAX_PATH_COST = 1e8
#: Decimal digits of an integer that ``analyze --json`` writes as a JSON number; longer exact
#: integers are strings (Python's ``json.loads`` refuses integers beyond 4,300 digits).
MAX_JSON_DIGITS = 4_000

# -- displays (formulac.display) ------------------------------------------------------------------

#: Depth of plots and tables of formulas (not analyses) when none is given.
DEFAULT_DISPLAY_DEPTH = 20
#: The deepest dependency graph that is drawn.
MAX_GRAPH_DEPTH = 30
#: The deepest ``formulac report``.
MAX_REPORT_DEPTH = 200

# -- counts on the command line (formulac.numbers) ------------------------------------------------
# Each unit of these costs real time or memory, so a typo such as 10**12 would start a run that
# never ends (or build a list that fills memory); it is refused when the option is read.

#: Epochs of a run (``--epochs``, ``--confirm-epochs``); the longest recipe trains 160.
MAX_EPOCHS = 100_000
#: Training tokens in one epoch of a language model (``--epoch-tokens``); the text recipe's is 2**20.
MAX_EPOCH_TOKENS = 10_000_000_000
#: Trials of a search (``--trials``).
MAX_TRIALS = 100_000
#: Seeds of a comparison or a confirmation (``--seeds``), each one a full training run.
MAX_SEEDS = 1_000
#: The largest random seed (``--seed``, ``--split-seed``, ``--sampler-seed``, each seed of
#: ``--seeds``): NumPy's generators, and so Optuna's samplers, take seeds below 2**32.
MAX_SEED = 2**32 - 1
#: Processes or threads one command starts (``--jobs``, ``--workers``, ``--threads``).
MAX_PROCESSES = 1_024
#: Tokens ``formulac sample`` generates (``--tokens``).
MAX_SAMPLE_TOKENS = 1_000_000
#: Seconds of a search's heartbeat and grace period (``--heartbeat``, ``--grace``): one day.
MAX_WAIT_SECONDS = 86_400
