"""MkDocs hooks for the documentation site (loaded by ``mkdocs.yml``).

The site's front page is the repository's README.md, read at build time (``docs/index.md`` is a
placeholder), so the two can never disagree. The README's links are written for a reader of the
repository: ``docs/guide/record.md`` becomes ``guide/record.md`` on the site, and a link to a
file outside ``docs/`` (an example script, ``data/README.md``) becomes its path in code, since
the site does not hold it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def readme_for_site(text: str) -> str:
    """The README's Markdown with its links rewritten for the site (see the module docstring)."""

    def repl(match: re.Match[str]) -> str:
        bang, title, target = match.groups()
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        if target.startswith("docs/"):
            return f"{bang}[{title}]({target[len('docs/') :]})"
        path = target.split("#", 1)[0]
        return title if title.startswith("`") or path in title else f"{title} (`{path}`)"

    return _LINK.sub(repl, text)


def on_page_read_source(page: Any, config: Any, **kwargs: Any) -> str | None:
    """Serve README.md (links rewritten) as the site's index page."""
    if page.file.src_uri != "index.md":
        return None
    readme = Path(config["config_file_path"]).parent / "README.md"
    return readme_for_site(readme.read_text(encoding="utf-8"))
