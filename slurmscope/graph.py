"""A picture of the dependency graph: one node per submission, one edge per dependency.

Built from the trees of :mod:`slurmscope.tree` (what ``slurmscope explain`` prints), so it
works from any process, on any backend. A node is one submission (a map split over several
arrays stays one node), coloured by its overall state; an edge goes from the job waited for
to the job waiting, labelled with its kind and provenance. The edges of one ``with`` block
share a colour (one per block call site); explicit dependencies are dashed, data dependencies
(a job passed as an argument) dotted. The failed job that a chain of cancelled dependents
goes back to is marked as the root cause.

Output: Graphviz DOT text (:meth:`Graph.to_dot`), Mermaid (:meth:`Graph.to_mermaid`), SVG or
PNG rendered by Graphviz's ``dot`` program, plain data (:meth:`Graph.to_json`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .dependency import (
    VIA_AFTER_ARGUMENT,
    VIA_AFTER_METHOD,
    VIA_DATA_ARGUMENT,
    VIA_SCOPE,
    Provenance,
)
from .errors import GraphvizNotFoundError, InvalidInputError, SlurmscopeError
from .states import TaskState
from .tree import key

FORMATS = ("dot", "mermaid", "svg", "png")

#: Fill colour of a node, by its overall state.
STATE_COLOURS = {
    "pending": "#fde68a",
    "running": "#93c5fd",
    "done": "#86efac",
    "failed": "#fca5a5",
    "upstream_failed": "#fdba74",
    "cancelled": "#d1d5db",
    "unknown": "#ffffff",
}
STATE_WORDS = {"upstream_failed": "cancelled: upstream failed"}
ROOT_CAUSE_COLOUR = "#b91c1c"
#: One colour per ``with`` block (by its call site), in the order the blocks are met.
BLOCK_COLOURS = ("#1f77b4", "#9333ea", "#0d9488", "#c2410c", "#be185d", "#4d7c0f", "#0369a1")
OTHER_EDGE_COLOUR = "#4b5563"
_VIA = {
    VIA_AFTER_METHOD: "explicit .after()",
    VIA_AFTER_ARGUMENT: "after= argument",
    VIA_DATA_ARGUMENT: "argument",
}
_STYLE = {
    VIA_SCOPE: "solid",
    VIA_AFTER_METHOD: "dashed",
    VIA_AFTER_ARGUMENT: "dashed",
    VIA_DATA_ARGUMENT: "dotted",
}


@dataclass(frozen=True)
class Node:
    """One submission: ``id`` in the graph (``n0``...), its task ``name``, scheduler
    ``job_ids`` (one per part of a split map), job ``directory`` (``None`` for a job known
    only by its id), ``size`` and ``array``, tasks per state (``counts``), the overall
    ``state`` (a key of :data:`STATE_COLOURS`) and whether it is a ``root_cause``."""

    id: str
    name: str
    job_ids: tuple[str, ...]
    directory: str | None
    size: int
    array: bool
    counts: dict[str, int]
    summary: str
    state: str
    root_cause: bool = False

    def lines(self) -> list[str]:
        ids = "+".join(self.job_ids)
        if len(self.job_ids) > 3:
            ids = f"{self.job_ids[0]}..{self.job_ids[-1]}"
        if self.directory is None:
            return [self.name, f"job {ids}", self.summary]
        if not self.array:
            what = f"job {ids}"
        elif len(self.job_ids) > 1:
            what = f"arrays {ids}: {self.size} tasks ({len(self.job_ids)} parts)"
        else:
            what = f"array {ids}: {self.size} task{'s' if self.size != 1 else ''}"
        counts = " · ".join(f"{s} {n}" for s, n in sorted(self.counts.items())) or self.summary
        lines = [self.name, what, counts, STATE_WORDS.get(self.state, self.state)]
        return lines + (["✗ root cause"] if self.root_cause else [])


@dataclass(frozen=True)
class Edge:
    """One dependency, from ``source`` (the job waited for) to ``target`` (the job waiting),
    with its ``kind``, the ``target_id`` Slurm sees, its ``provenance`` (as in the manifest),
    its ``with`` block's index (``None`` when not given by a scope) and why it can never be
    satisfied (``None`` while it can)."""

    source: str  # the node waited for
    target: str  # the node waiting
    kind: str
    target_id: str | None
    provenance: dict[str, Any]
    block: int | None  # the index of its ``with`` block (by call site); None when not a scope
    never_satisfied: str | None

    def lines(self) -> list[str]:
        p = self.provenance
        how = (
            f"scope depth {p.get('depth')}"
            if p["via"] == VIA_SCOPE
            else _VIA.get(p["via"], p["via"])
        )
        if p.get("detail"):
            how += f" {p['detail']}"
        where = f"{os.path.basename(p['file'])}:{p['line']}"
        if p.get("thread") not in (None, "MainThread"):
            where += f" [{p['thread']}]"
        lines = [self.kind, how, where]
        return lines + (["✗ never satisfied"] if self.never_satisfied else [])

    @property
    def colour(self) -> str:
        if self.block is None:
            return OTHER_EDGE_COLOUR
        return BLOCK_COLOURS[self.block % len(BLOCK_COLOURS)]


def _state(tree: dict[str, Any]) -> str:
    """The overall state of a job, which gives its colour."""
    states = set(tree["counts"])
    if not states:
        return "unknown"
    if states == {"COMPLETED"}:
        return "done"
    if states & {"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED"}:
        return "running"
    if "UNKNOWN" in states:  # e.g. run by another process's embedded scheduler
        return "unknown"
    if not all(TaskState(s).terminal for s in states):
        return "pending"
    if states <= {"CANCELLED", "COMPLETED"}:
        cause = any(e["never_satisfied"] for e in tree["dependencies"])
        return "upstream_failed" if cause else "cancelled"
    return "failed"


class Graph:
    """The dependency graph of some jobs: :attr:`nodes` and :attr:`edges`.

    ``str(graph)`` is its DOT text; :meth:`svg` and :meth:`png` render it with Graphviz;
    in Jupyter it shows as a picture (a Mermaid block where Graphviz is missing).
    """

    def __init__(self, nodes: list[Node], edges: list[Edge]) -> None:
        self.nodes = tuple(nodes)
        self.edges = tuple(edges)

    @classmethod
    def from_trees(cls, trees: list[dict[str, Any]]) -> Graph:
        """The graph of trees made by :func:`slurmscope.tree.trees`."""
        nodes: dict[str, Node] = {}
        edges: list[Edge] = []
        blocks: dict[tuple[Any, ...], int] = {}

        def visit(tree: dict[str, Any]) -> str:
            me = key(tree["directory"])
            if me not in nodes:
                nodes[me] = Node(
                    f"n{len(nodes)}", tree["name"], tuple(tree["job_ids"]), me,
                    tree["size"], tree["array"], dict(tree["counts"]), tree["summary"], _state(tree),
                )  # fmt: skip
            for edge in tree["dependencies"]:
                if "upstream" in edge:
                    source = visit(edge["upstream"])
                elif edge["target_dir"] and key(edge["target_dir"]) in nodes:
                    source = key(edge["target_dir"])
                elif edge["target"] is None:
                    continue  # singleton: no job to draw an edge from
                else:  # removed, or not a slurmscope job: a placeholder
                    source = f"id:{edge['target']}"
                    why = "(job directory removed)" if edge.get("removed") else "(no job directory)"
                    nodes.setdefault(source, Node(
                        f"n{len(nodes)}", "?", (edge["target"],), None, 0, False, {}, why, "unknown"
                    ))  # fmt: skip
                p = edge["provenance"]
                block = None
                if p["via"] == VIA_SCOPE:
                    block = blocks.setdefault((p["file"], p["line"], p["thread"]), len(blocks))
                edges.append(Edge(
                    nodes[source].id, nodes[me].id, edge["kind"], edge["target"], p, block,
                    edge["never_satisfied"],
                ))  # fmt: skip
            return me

        for tree in trees:
            visit(tree)
        return cls(_mark_root_causes(list(nodes.values()), edges), edges)

    # -- output ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """``{"nodes": [...], "edges": [...]}`` as plain data."""
        return {
            "nodes": [asdict(n) | {"label": n.lines()} for n in self.nodes],
            "edges": [asdict(e) | {"label": e.lines(), "colour": e.colour} for e in self.edges],
        }

    def to_dot(self) -> str:
        """The graph in Graphviz's DOT language."""
        out = [
            "digraph slurmscope {",
            '  graph [rankdir=TB, fontname="Helvetica", nodesep=0.4, ranksep=0.5];',
            '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
            '  edge [fontname="Helvetica", fontsize=9];',
        ]
        for n in self.nodes:
            attrs = {
                "label": "\n".join(n.lines()),
                "fillcolor": STATE_COLOURS[n.state],
                "class": f"state-{n.state}" + (" root-cause" if n.root_cause else ""),
                "tooltip": n.directory or n.summary,
            }
            if n.root_cause:
                attrs |= {"color": ROOT_CAUSE_COLOUR, "penwidth": "3"}
            if n.directory is None:
                attrs["style"] = "rounded,dashed"
            out.append(f"  {n.id} [{_dot_attrs(attrs)}];")
        for e in self.edges:
            attrs = {
                "label": "\n".join(e.lines()),
                "color": e.colour,
                "fontcolor": e.colour,
                "style": _STYLE.get(e.provenance["via"], "solid"),
                "class": f"block-{e.block}"
                if e.block is not None
                else f"via-{e.provenance['via']}",
                "tooltip": Provenance.from_json(e.provenance).describe(),
            }
            if e.never_satisfied:
                attrs |= {"penwidth": "2.5", "arrowhead": "tee"}
            out.append(f"  {e.source} -> {e.target} [{_dot_attrs(attrs)}];")
        out.append("}")
        return "\n".join(out) + "\n"

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart (pastes into GitHub/GitLab markdown)."""
        out = ["flowchart TB"]
        for n in self.nodes:
            out.append(f'    {n.id}["{_mermaid_lines(n.lines())}"]:::{n.state}')
        for e in self.edges:
            arrow = "-.->" if _STYLE.get(e.provenance["via"]) != "solid" else "-->"
            out.append(f'    {e.source} {arrow}|"{_mermaid_lines(e.lines())}"| {e.target}')
        for state, colour in STATE_COLOURS.items():
            out.append(f"    classDef {state} fill:{colour},stroke:#374151,color:#111827")
        roots = [n.id for n in self.nodes if n.root_cause]
        if roots:
            out.append(f"    classDef rootcause stroke:{ROOT_CAUSE_COLOUR},stroke-width:3px")
            out.append(f"    class {','.join(roots)} rootcause")
        for i, e in enumerate(self.edges):
            out.append(f"    linkStyle {i} stroke:{e.colour},color:{e.colour}")
        return "\n".join(out) + "\n"

    def render(self, format: str = "svg") -> bytes:
        """The graph in ``format``: ``dot``, ``mermaid``, or ``svg``/``png`` rendered by
        Graphviz (:class:`~slurmscope.GraphvizNotFoundError` where it is not installed)."""
        if format == "dot":
            return self.to_dot().encode()
        if format == "mermaid":
            return self.to_mermaid().encode()
        if format not in FORMATS:
            raise InvalidInputError(f"no graph format {format!r}: use one of {', '.join(FORMATS)}")
        return render_dot(self.to_dot(), format)

    def svg(self) -> str:
        """The picture as SVG text (needs Graphviz)."""
        return self.render("svg").decode()

    def png(self) -> bytes:
        """The picture as PNG bytes (needs Graphviz)."""
        return self.render("png")

    def save(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write the graph to ``path``, in ``format`` (default: by its suffix)."""
        path = Path(path)
        path.write_bytes(self.render(format or format_for(path)))
        return path

    def __str__(self) -> str:
        return self.to_dot()

    def __repr__(self) -> str:
        return f"<Graph {len(self.nodes)} jobs, {len(self.edges)} dependencies>"

    def _repr_svg_(self) -> str | None:
        try:
            return self.svg()
        except GraphvizNotFoundError:
            return None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        bundle = {"text/plain": self.to_dot()}
        svg = self._repr_svg_()
        if svg is not None:
            bundle["image/svg+xml"] = svg
        else:
            bundle["text/markdown"] = f"```mermaid\n{self.to_mermaid()}```\n"
        return bundle


def _mark_root_causes(nodes: list[Node], edges: list[Edge]) -> list[Node]:
    """The nodes, with every failed job that a cancelled chain goes back to (through edges
    never satisfied) marked as a root cause."""
    by_id = {n.id: n for n in nodes}
    causes: set[str] = set()
    stack = [n.id for n in nodes if n.state == "upstream_failed"]
    visited: set[str] = set()
    while stack:
        current = stack.pop()
        if current in visited:
            continue
        visited.add(current)
        for e in edges:
            if e.target == current and e.never_satisfied:
                if by_id[e.source].state == "upstream_failed":
                    stack.append(e.source)
                elif by_id[e.source].state in ("failed", "cancelled", "done"):
                    causes.add(e.source)
    return [Node(**{**asdict(n), "root_cause": n.id in causes}) for n in nodes]


_SUFFIXES = {
    ".dot": "dot",
    ".gv": "dot",
    ".mmd": "mermaid",
    ".md": "mermaid",
    ".svg": "svg",
    ".png": "png",
}


def format_for(path: Path) -> str:
    """The format a file name asks for by its suffix."""
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInputError(
            f"cannot tell the graph format from the name {path.name!r}: name it .svg, .png, "
            f".dot/.gv or .mmd/.md, or give the format ({', '.join(FORMATS)})"
        )
    return fmt


def render_dot(dot: str, format: str) -> bytes:
    """Render DOT text with Graphviz's ``dot`` program."""
    program = shutil.which("dot")
    if program is None:
        raise GraphvizNotFoundError(format)
    proc = subprocess.run(
        [program, f"-T{format}"], input=dot.encode(), capture_output=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        raise SlurmscopeError(
            f"Graphviz's dot failed (exit {proc.returncode}) rendering {format}: "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return proc.stdout


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_attrs(attrs: dict[str, str]) -> str:
    return ", ".join(f"{name}={_dot_quote(value)}" for name, value in attrs.items())


def _mermaid_lines(lines: list[str]) -> str:
    escaped = (
        line.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
        for line in lines
    )
    return "<br/>".join(escaped)
