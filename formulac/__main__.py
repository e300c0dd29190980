"""``python -m formulac``: the command line (also the entry point for ``torchrun -m formulac``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
