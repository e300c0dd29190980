#!/usr/bin/env bash
# Create .venv with the CPU build of torch and formulac installed in editable mode.
# Idempotent: a second run only checks what is there.
#   bash scripts/setup.sh        everything the tests need: the dev extra (transformers,
#                                hyper-connections, ruff, pytest, ...), PostgreSQL 15 for the
#                                search-worker tests, Debian's fortunes for text:fortunes
#   bash scripts/setup.sh demo   what the main job (scripts/demo.sh) needs and nothing more:
#                                the demo extra (Optuna, matplotlib), no system packages
set -euo pipefail
cd "$(dirname "$0")/.."
PURPOSE=${1:-dev}
case "$PURPOSE" in
  dev | demo) ;;
  *) echo "scripts/setup.sh: give 'dev' (the tests, the default) or 'demo' (the main job), not '$PURPOSE'" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# pip byte-compiles every file it installs on one core (34 of the demo set-up's 67 CPU s, 8,400
# files); --no-compile and compileall on every core do the same work in about half the time.
SITE=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
byte_compile() {  # exit status 1 only says a file for a newer Python did not (torch's py312_intrinsics.py)
  .venv/bin/python -m compileall -q -j 0 "$@" >/dev/null 2>&1 || true
}
# The CPU build first: a bare `torch` requirement would pull a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q --no-compile torch==2.13.0
fi
# torch and its dependencies, on the other core while pip installs the rest: in a session of
# its own, so that a failing pip (set -e) takes compileall and its worker processes down with
# the script (the trap) instead of leaving them running; the script keeps pip's exit status
setsid .venv/bin/python -m compileall -q -j 0 "$SITE" >/dev/null 2>&1 &
COMPILING=$!
trap 'kill -- -"$COMPILING" 2>/dev/null || true' EXIT
.venv/bin/pip install -q --no-compile -e ".[$PURPOSE]"
wait "$COMPILING" || true  # see byte_compile for why its status is not an error
trap - EXIT
byte_compile "$SITE"  # what the second install added (compileall skips what is up to date)
[ "$PURPOSE" = demo ] && exit 0
# The search tests start their own PostgreSQL 15 server (tests/search/test_search_workers.py).
if [ ! -x /usr/lib/postgresql/15/bin/initdb ] && command -v apt-get >/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql-15 >/dev/null
fi
# The English corpus of the language-model demo and benchmarks (--data text:fortunes): Debian's
# fortunes package (BSD licence, about 2.4 MB of quotations and short prose). Optional: without
# it, text:fortunes says how to get it and any text:PATH still works.
if [ ! -d /usr/share/games/fortunes ] && command -v apt-get >/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  ($SUDO apt-get install -y -qq fortunes >/dev/null 2>&1 \
    || ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq fortunes >/dev/null 2>&1)) \
    || echo "could not install Debian's fortunes package: text:fortunes will not be available"
fi
