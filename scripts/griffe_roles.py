"""Griffe extension for the documentation site: read stgmtl's reStructuredText roles as links.

stgmtl's numpy-style docstrings cross-reference with Sphinx roles (``:class:`~stgmtl.DataMaps```,
``:func:`group```). mkdocstrings renders Markdown, where a role would show as raw text. This
extension (loaded by ``mkdocs.yml``) rewrites each role into an optional cross-reference: a link
where the target is documented on the site, plain code where it is not (an optional reference
never fails the ``--strict`` build). A bare or partial target is resolved against the
docstring's module, as Sphinx does. A paragraph ending in ``::`` (reST's literal-block marker)
ends in ``:``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(class|func|meth|attr|data|mod|obj|exc|const):`(~?)([^`<>]+)`")
_LITERAL = re.compile(r"(\S)::\n")


def _module_path(obj: Any) -> str:
    while obj is not None and not getattr(obj, "is_module", False):
        obj = obj.parent
    return "" if obj is None else obj.path


def _resolve(pkg: Any, target: str) -> str:
    """The canonical path of ``target`` (an alias such as ``stgmtl.DataMaps`` -> its definition)."""
    try:
        obj = pkg.modules_collection.get_member(target)
        return str(obj.final_target.path if obj.is_alias else obj.path)
    except Exception:  # not found or not resolvable: keep the target as written
        return target


def _rewrite(text: str, module: str, pkg: Any) -> str:
    def repl(match: re.Match[str]) -> str:
        short, target = match.group(2) == "~", match.group(3).strip()
        title = target.rsplit(".", 1)[-1] if short else target
        if target.startswith("."):
            target = module.rsplit(".", 1)[0] + target
        elif not target.startswith("stgmtl") and module:
            target = f"{module}.{target}"
        target = _resolve(pkg, target)
        return f'<autoref identifier="{target}" optional><code>{title}</code></autoref>'

    return _LITERAL.sub(r"\1:\n", _ROLE.sub(repl, text))


def _walk(obj: Any, seen: set[str]) -> Any:
    if obj.is_alias or obj.path in seen:
        return
    seen.add(obj.path)
    yield obj
    for member in obj.members.values():
        yield from _walk(member, seen)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the package into optional autorefs."""

    def on_package(self, *, pkg: Any, **kwargs: Any) -> None:
        for obj in _walk(pkg, set()):
            doc = obj.docstring
            if doc is not None and doc.value:
                doc.value = _rewrite(doc.value, _module_path(obj), pkg)
