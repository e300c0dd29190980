"""A package that is also its main function: ``formulac.search(...)`` and ``formulac.transform(...)``.

Importing a submodule sets the parent package's attribute of that name to the module, so a plain
function named like its package would be replaced by the module; the module is made callable
instead.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable

__all__ = ["make_callable"]


def make_callable(package: str, function: Callable) -> None:
    """Make the imported module ``package`` (its ``__name__``) call ``function`` when called."""

    class CallablePackage(types.ModuleType):
        __doc__ = f"``{package}`` is this package and :func:`{function.__name__}` at once."

        def __call__(self, *args, **kwargs):
            return function(*args, **kwargs)

    sys.modules[package].__class__ = CallablePackage
