"""MkDocs hook: turn the Sphinx roles of slurmscope's docstrings into links.

The docstrings use reStructuredText roles (``:class:`~slurmscope.Job```), which Markdown
renders as the role's name followed by inline code. This hook rewrites them, after each
page is rendered, into mkdocs-autorefs references: a link to the object where the API
reference documents it, plain code otherwise. A leading ``~`` shows the last name only,
as in Sphinx.
"""

from __future__ import annotations

import html
import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|exc|mod|data|obj):<code>(~?)([\w.]+)</code>")


def _reference(match: re.Match[str]) -> str:
    short, identifier = match.group(1), match.group(2)
    title = identifier.rsplit(".", 1)[-1] if short else identifier
    return (
        f'<autoref identifier="{html.escape(identifier)}" optional>'
        f"<code>{html.escape(title)}</code></autoref>"
    )


def on_page_content(html_text: str, **kwargs: Any) -> str:
    return _ROLE.sub(_reference, html_text)
