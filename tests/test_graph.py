"""``slurmscope graph`` and ``job.graph()``: the dependency graph as a picture.

The pictures are rendered by the real Graphviz ``dot`` (``scripts/test`` installs it) and
read back as SVG: nodes, edges, labels and colours. The pipelines run in a separate process,
as in examples/pipeline.py: nested scopes, a data dependency, an explicit ``after``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import slurm_cluster

import slurmscope
from slurmscope.graph import BLOCK_COLOURS, OTHER_EDGE_COLOUR, ROOT_CAUSE_COLOUR, STATE_COLOURS

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"

#: examples/pipeline.py's shape, with ``square`` failing on item ``BAD`` (none: -1).
PIPELINE = textwrap.dedent(
    """
    import time, slurmscope
    cluster = slurmscope.Cluster({backend!r}, root={root!r}{extra})

    @slurmscope.task(time="00:05:00")
    def prepare(n):
        time.sleep(1)  # everything below is submitted before anything fails
        return list(range(1, n + 1))

    @slurmscope.task(time="00:05:00")
    def square(x):
        if x == {bad}:
            raise ValueError("item is corrupt")
        return x * x

    @slurmscope.task(time="00:05:00")
    def summarise(squares, label):
        return f"{{label}}: {{sum(squares)}}"

    @slurmscope.task(time="00:05:00")
    def report(lines):
        return "\\n".join(lines)

    inputs = prepare({n})
    with cluster.dependencies(inputs):
        squares = square.map(range(1, {n} + 1))
        with cluster.dependencies(squares, kind="afterany"):
            small = summarise(squares, "all")
            later = summarise.after(small).map([(squares, "again")])
    final = report.map([[small, later[0]]])
    final.wait(timeout=300)
    print(final.job_id)
    """
)


def run_pipeline(
    root: Path, backend: str = "local", *, bad: int = -1, n: int = 8, extra: str = ""
) -> str:
    script = PIPELINE.format(backend=backend, root=str(root), bad=bad, n=n, extra=extra)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.split()[-1]


def cli(root: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "slurmscope.cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=check,
        env=env,
    )


def need_dot() -> None:
    if shutil.which("dot") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and Graphviz's dot is missing (scripts/test installs it)")
        pytest.skip("Graphviz's dot is not installed: apt-get install graphviz")


def parse_svg(text: str) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The nodes (by DOT id) and edges of an SVG made by dot: texts, classes, colours."""
    tree = ET.fromstring(text)
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []
    for g in tree.iter(f"{SVG}g"):
        kind = (g.get("class") or "").split()
        title = g.findtext(f"{SVG}title") or ""
        texts = [t.text or "" for t in g.iter(f"{SVG}text")]
        shape = next(iter(g.iter(f"{SVG}path")), None)
        if "node" in kind:
            assert shape is not None, title
            nodes[title] = {
                "classes": kind,
                "texts": texts,
                "fill": shape.get("fill"),
                "stroke": shape.get("stroke"),
                "stroke_width": shape.get("stroke-width"),
            }
        elif "edge" in kind:
            assert shape is not None, title
            source, _, target = title.partition("->")
            edges.append(
                {
                    "source": source,
                    "target": target,
                    "classes": kind,
                    "texts": texts,
                    "stroke": shape.get("stroke"),
                    "dash": shape.get("stroke-dasharray"),
                }
            )
    return nodes, edges


def by_name(nodes: dict[str, dict[str, Any]], name: str) -> list[str]:
    return [i for i, n in nodes.items() if n["texts"] and n["texts"][0] == name]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("good")
    return root, run_pipeline(root)


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The same pipeline with ``square`` failing on item 7, mapped over 12 items with
    MaxArraySize 5: split in three arrays."""
    root = tmp_path_factory.mktemp("broken")
    return root, run_pipeline(root, bad=7, n=12, extra=", max_array_size=5")


def test_the_pipeline_graph_in_svg(good: tuple[Path, str]) -> None:
    need_dot()
    root, final = good
    nodes, edges = parse_svg(cli(root, "graph", final, "--format", "svg").stdout)
    assert sorted(n["texts"][0] for n in nodes.values()) == sorted(
        ["prepare", "square", "summarise", "summarise", "report"]
    )
    assert {n["fill"] for n in nodes.values()} == {STATE_COLOURS["done"]}
    assert all("state-done" in n["classes"] and n["texts"][-1] == "done" for n in nodes.values())
    assert "array" in nodes[by_name(nodes, "square")[0]]["texts"][1]
    assert "COMPLETED 8" in nodes[by_name(nodes, "square")[0]]["texts"]
    # One edge per dependency of every manifest.
    manifests = [json.loads(p.read_text()) for p in root.glob("*/manifest.json")]
    assert len(edges) == sum(len(m["dependencies"]) for m in manifests) == 10
    labels = [" | ".join(e["texts"]) for e in edges]
    prepare, square = by_name(nodes, "prepare")[0], by_name(nodes, "square")[0]
    # The outer block: afterok on prepare, depth 1, one colour for its three edges.
    outer = [e for e in edges if e["source"] == prepare]
    assert len(outer) == 3 and all("scope depth 1" in e["texts"] for e in outer)
    assert {e["stroke"] for e in outer} == {BLOCK_COLOURS[0]}
    # The inner block: afterany on square, depth 2, another colour.
    inner = [e for e in edges if "afterany" in e["texts"]]
    assert len(inner) == 2 and all("scope depth 2" in e["texts"] for e in inner)
    assert {e["source"] for e in inner} == {square}
    assert {e["stroke"] for e in inner} == {BLOCK_COLOURS[1]}
    assert len({e["texts"][2] for e in inner}) == 1  # the same file:line
    # The explicit after(): dashed, grey; data dependencies: dotted, grey.
    explicit = [e for e in edges if "explicit .after()" in e["texts"]]
    assert len(explicit) == 1 and explicit[0]["dash"] and explicit[0]["stroke"] == OTHER_EDGE_COLOUR
    data = [e for e in edges if any(t.startswith("argument") for t in e["texts"])]
    assert len(data) == 4, labels
    assert all(e["dash"] and e["stroke"] == OTHER_EDGE_COLOUR for e in data)
    assert "argument item 0 args[0][1]" in " ".join(t for e in data for t in e["texts"])
    assert not any("never satisfied" in label for label in labels)


def test_failed_chain_and_split_array(broken: tuple[Path, str]) -> None:
    need_dot()
    root, final = broken
    nodes, edges = parse_svg(cli(root, "graph", final, "-f", "svg").stdout)
    assert len(nodes) == 5
    squares = by_name(nodes, "square")
    assert len(squares) == 1  # split in three arrays, one node
    square = nodes[squares[0]]
    assert re.fullmatch(r"arrays \d+\+\d+\+\d+: 12 tasks \(3 parts\)", square["texts"][1])
    assert "COMPLETED 11 · FAILED 1" in square["texts"]
    assert square["fill"] == STATE_COLOURS["failed"]
    assert "root-cause" in square["classes"] and "✗ root cause" in square["texts"]
    assert square["stroke"] == ROOT_CAUSE_COLOUR and square["stroke_width"] == "3"
    assert nodes[by_name(nodes, "prepare")[0]]["fill"] == STATE_COLOURS["done"]
    cancelled = by_name(nodes, "summarise") + by_name(nodes, "report")
    assert len(cancelled) == 3
    for node_id in cancelled:
        node = nodes[node_id]
        assert node["fill"] == STATE_COLOURS["upstream_failed"], node
        assert node["texts"][-1] == "cancelled: upstream failed"
        assert "root-cause" not in node["classes"]
    never = [e for e in edges if "✗ never satisfied" in e["texts"]]
    # afterok on square (argument) twice, summarise -> later (after()), both into report.
    assert len(never) == 5
    assert {e["source"] for e in never} == {squares[0], *by_name(nodes, "summarise")}
    assert all("afterany" not in e["texts"] for e in never)  # afterany is satisfied by failure


def test_json_nodes_and_edges(broken: tuple[Path, str]) -> None:
    root, final = broken
    data = json.loads(cli(root, "graph", final, "--json").stdout)
    nodes = {n["id"]: n for n in data["nodes"]}
    assert len(nodes) == 5 and len(data["edges"]) == 10
    square = next(n for n in nodes.values() if n["name"] == "square")
    assert square["state"] == "failed" and square["root_cause"] is True
    assert len(square["job_ids"]) == 3 and square["size"] == 12 and square["array"] is True
    assert square["counts"] == {"COMPLETED": 11, "FAILED": 1}
    assert [n["name"] for n in nodes.values() if n["root_cause"]] == ["square"]
    assert sorted(n["state"] for n in nodes.values()) == sorted(
        ["done", "failed"] + ["upstream_failed"] * 3
    )
    for edge in data["edges"]:
        assert edge["source"] in nodes and edge["target"] in nodes
        assert edge["provenance"]["via"] in ("scope", "after()", "argument")
        if edge["provenance"]["via"] == "scope":
            assert edge["block"] == edge["provenance"]["depth"] - 1
        else:
            assert edge["block"] is None
        if nodes[edge["source"]]["name"] == "square" and edge["kind"] == "afterok":
            assert edge["never_satisfied"], edge
    # --downstream from the first job reaches the same five; -o writes the file too.
    first = next(n for n in nodes.values() if n["name"] == "prepare")["job_ids"][0]
    out = root.parent / "down.dot"
    down = json.loads(cli(root, "graph", first, "--downstream", "--json", "-o", str(out)).stdout)
    assert sorted(n["name"] for n in down["nodes"]) == sorted(n["name"] for n in nodes.values())
    assert out.read_text().startswith("digraph")
    alone = json.loads(cli(root, "graph", first, "--json").stdout)
    assert [n["name"] for n in alone["nodes"]] == ["prepare"] and alone["edges"] == []


_MERMAID_NODE = re.compile(r'^    (n\d+)\["([^"]*)"\]:::(\w+)$')
_MERMAID_EDGE = re.compile(r'^    (n\d+) (-->|-\.->)\|"([^"]*)"\| (n\d+)$')


def test_mermaid_structure(broken: tuple[Path, str]) -> None:
    root, final = broken
    text = cli(root, "graph", final, "--format", "mermaid").stdout
    lines = text.splitlines()
    assert lines[0] == "flowchart TB"
    nodes = {m.group(1): m for m in map(_MERMAID_NODE.match, lines) if m}
    edges = [m for m in map(_MERMAID_EDGE.match, lines) if m]
    assert len(nodes) == 5 and len(edges) == 10
    for edge in edges:
        assert edge.group(1) in nodes and edge.group(4) in nodes
        assert "<br/>" in edge.group(3)
    defined = {line.split()[1] for line in lines if line.startswith("    classDef ")}
    assert {m.group(3) for m in nodes.values()} <= defined
    square = next(i for i, m in nodes.items() if m.group(2).startswith("square<br/>"))
    assert nodes[square].group(3) == "failed"
    assert f"    class {square} rootcause" in lines
    styles = [line for line in lines if line.startswith("    linkStyle ")]
    assert [int(s.split()[1]) for s in styles] == list(range(len(edges)))
    dashed = [e for e in edges if e.group(2) == "-.->"]
    assert len(dashed) == 5  # one after(), four data dependencies


def test_without_graphviz(broken: tuple[Path, str], tmp_path: Path) -> None:
    root, final = broken
    env = dict(os.environ, PATH=str(tmp_path))  # no dot on it
    proc = cli(root, "graph", final, "--format", "svg", env=env, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "apt-get install graphviz" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert cli(root, "graph", final, "-f", "dot", env=env).stdout.startswith("digraph")
    assert cli(root, "graph", final, "-f", "mermaid", env=env).stdout.startswith("flowchart")


def test_job_graph_in_python(local: slurmscope.Cluster) -> None:
    @slurmscope.task
    def double(x: int) -> int:
        return 2 * x

    @slurmscope.task
    def total(xs: list[int]) -> int:
        return sum(xs)

    first = double.on(local)(1)
    with local.dependencies(first):
        doubled = double.on(local).map(range(4))
    result = total.on(local)(doubled)
    assert result.get_result() == 12
    graph = result.graph()
    assert [n.name for n in graph.nodes] == ["total", "double", "double"]
    assert {n.state for n in graph.nodes} == {"done"}
    assert len(graph.edges) == 2
    assert str(graph).startswith("digraph") and "argument args[0]" in str(graph)
    assert graph.to_mermaid().startswith("flowchart TB")
    down = first.graph(downstream=True)
    assert sorted(n.name for n in down.nodes) == ["double", "double", "total"]
    assert [n.name for n in first.graph().nodes] == ["double"]
    bundle = graph._repr_mimebundle_()
    assert bundle["text/plain"] == str(graph)
    if shutil.which("dot"):
        nodes, edges = parse_svg(bundle["image/svg+xml"])
        assert len(nodes) == 3 and len(edges) == 2
        assert graph.save(local.root / "g.png").read_bytes().startswith(b"\x89PNG")
    else:
        assert "```mermaid" in bundle["text/markdown"]
        with pytest.raises(slurmscope.GraphvizNotFoundError, match="apt-get install graphviz"):
            graph.svg()


def test_docs_picture_of_the_failed_example() -> None:
    text = (ROOT / "docs" / "graph-example-failed.svg").read_text()
    nodes, edges = parse_svg(text)
    assert len(nodes) == 5 and len(edges) == 10
    roots = [n for n in nodes.values() if "root-cause" in n["classes"]]
    assert len(roots) == 1 and roots[0]["texts"][0] == "square"
    assert sum(n["fill"] == STATE_COLOURS["upstream_failed"] for n in nodes.values()) == 3


@pytest.mark.slurm
def test_graph_on_the_sbatch_backend(tmp_path: Path) -> None:
    slurm_cluster.require()
    need_dot()
    final = run_pipeline(tmp_path, "sbatch", bad=3, n=4)
    nodes, edges = parse_svg(cli(tmp_path, "graph", final, "-f", "svg").stdout)
    assert len(nodes) == 5 and len(edges) == 10
    square = nodes[by_name(nodes, "square")[0]]
    assert square["fill"] == STATE_COLOURS["failed"] and "root-cause" in square["classes"]
    assert re.fullmatch(r"array \d+: 4 tasks", square["texts"][1])
    assert nodes[by_name(nodes, "prepare")[0]]["fill"] == STATE_COLOURS["done"]
    cancelled = by_name(nodes, "summarise") + by_name(nodes, "report")
    assert len(cancelled) == 3
    for node_id in cancelled:
        assert nodes[node_id]["fill"] == STATE_COLOURS["upstream_failed"]


def test_running_and_pending_colours(local: slurmscope.Cluster) -> None:
    import tasks

    sleep = slurmscope.task(tasks.sleep).on(local)
    first = sleep(60)
    with local.dependencies(first):
        second = sleep.map([60, 60])
    try:
        for _ in range(300):
            if first.state == "RUNNING":
                break
            time.sleep(0.1)
        graph = second.graph()
        assert [(n.name, n.state) for n in graph.nodes] == [
            ("sleep", "pending"),
            ("sleep", "running"),
        ]
        assert graph.nodes[0].counts == {"PENDING": 2}
        if shutil.which("dot"):
            nodes, _ = parse_svg(graph.svg())
            assert [nodes[n.id]["fill"] for n in graph.nodes] == [
                STATE_COLOURS["pending"],
                STATE_COLOURS["running"],
            ]
    finally:
        first.cancel()  # its dependents are cancelled: their afterok can never be satisfied
    second.wait(timeout=60)
    ended = {n.name + str(n.size): n for n in second.graph().nodes}
    assert ended["sleep1"].state == "cancelled" and ended["sleep1"].root_cause
    assert ended["sleep2"].state == "upstream_failed" and not ended["sleep2"].root_cause


def test_a_removed_upstream_is_a_placeholder(local: slurmscope.Cluster) -> None:
    import tasks

    add = slurmscope.task(tasks.add).on(local)
    first = add(1)
    second = add.after(first)(2)
    assert second.get_result() == 3
    shutil.rmtree(first.directory)
    graph = second.graph()
    assert len(graph.nodes) == 2 and len(graph.edges) == 1
    gone = graph.nodes[1]
    assert gone.directory is None and gone.job_ids == (first.job_id,)
    assert gone.lines() == ["?", f"job {first.job_id}", "(job directory removed)"]
    assert graph.edges[0].source == gone.id and graph.edges[0].target == graph.nodes[0].id
    assert 'style="rounded,dashed"' in str(graph)
