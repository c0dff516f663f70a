"""MkDocs hook: the picture of the main example's dependency graph, made by the docs build.

A page that holds the line ``<!-- pipeline-graph -->`` gets, in its place, the graph of
``examples/pipeline.py`` run just now on the embedded local scheduler in a temporary root,
drawn by ``slurmscope graph`` with Graphviz (inline SVG, so that hovering an edge shows
its provenance), or as a Mermaid block where Graphviz's ``dot`` is not installed.

Run as a program, it writes the picture of the same pipeline with its second stage failing
on one item (``docs/graph-example-failed.svg``)::

    .venv/bin/python docs/_hooks/pipeline_graph.py --failed docs/graph-example-failed.svg
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from slurmscope.graph import render_dot

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = "<!-- pipeline-graph -->"
#: The pipeline with ``square`` failing on one item: everything after it is cancelled.
_FAILING = """
import sys
sys.path.insert(0, {examples!r})
import pipeline, slurmscope

@slurmscope.task(time="00:05:00", mem="200M")
def square(x: int) -> int:
    if x == 5:
        raise ValueError("item 5 is corrupt")
    return x * x

pipeline.square = square
try:
    pipeline.main()
except slurmscope.SlurmscopeError as exc:
    print("failed as intended:", type(exc).__name__)
"""
_cache: dict[tuple[bool, str], str] = {}


def pipeline_graph(fmt: str, failed: bool = False) -> str:
    """The graph of the example pipeline (``failed``: with a stage failing) in ``fmt``."""
    if (failed, fmt) in _cache:
        return _cache[(failed, fmt)]
    with tempfile.TemporaryDirectory(prefix="slurmscope-docs-") as tmp:
        env = dict(os.environ, SLURMSCOPE_BACKEND="local", SLURMSCOPE_ROOT=tmp)
        script = (
            ["-c", _FAILING.format(examples=str(ROOT / "examples"))]
            if failed
            else [str(ROOT / "examples" / "pipeline.py")]
        )
        run = [sys.executable, *script]
        subprocess.run(run, cwd=ROOT, env=env, capture_output=True, check=True, timeout=300)
        jobs = sorted(str(p.parent) for p in Path(tmp).glob("*/manifest.json"))
        text_format = "mermaid" if fmt == "mermaid" else "dot"
        proc = subprocess.run(
            [sys.executable, "-m", "slurmscope.cli", "--root", tmp, "graph", *jobs, "-f", text_format],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=300,
        )  # fmt: skip
    # The temporary root is gone, the checkout's place is nobody's business: keep them out.
    text = proc.stdout.replace(tmp, "$SLURMSCOPE_ROOT").replace(f"{ROOT}{os.sep}", "")
    if fmt == "svg":
        text = render_dot(text, "svg").decode()
    _cache[(failed, fmt)] = text
    return text


def _inline_svg(svg: str) -> str:
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<!--.*?-->\n?", "", svg, flags=re.DOTALL)  # no comments inside markdown HTML
    return f'<div class="slurmscope-graph" markdown="0">\n{svg.strip()}\n</div>'


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if PLACEHOLDER not in markdown:
        return markdown
    if shutil.which("dot"):
        picture = _inline_svg(pipeline_graph("svg"))
    else:
        picture = f"```mermaid\n{pipeline_graph('mermaid')}```"
    return markdown.replace(PLACEHOLDER, picture)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--failed":
        sys.exit("usage: pipeline_graph.py --failed OUTPUT.svg")
    Path(sys.argv[2]).write_text(pipeline_graph("svg", failed=True))
