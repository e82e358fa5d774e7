"""Lazy re-exports for package ``__init__`` modules (PEP 562), in one place.

A package lists ``public name -> defining module``; a name is imported on first access, so
that importing the package stays cheap (``import stgmtl`` imports neither torch nor faiss).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` re-exporting ``exports`` lazily.

    Parameters
    ----------
    package : str
        The package's ``__name__`` (for error messages).
    exports : mapping
        Public name -> module that defines it.
    namespace : dict
        The package's ``globals()``; a resolved name is cached there.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(namespace.get("__all__", exports))

    return __getattr__, __dir__
