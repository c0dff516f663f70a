"""A three-stage pipeline with nested dependency scopes.

Runs on whatever `slurmscope.Cluster()` finds: a Slurm cluster when one answers,
the embedded local scheduler otherwise (`SLURMSCOPE_BACKEND=local` forces it).

    python examples/pipeline.py
"""

from __future__ import annotations

import math
import os
import tempfile

import slurmscope

root = os.environ.get("SLURMSCOPE_ROOT") or os.path.join(
    tempfile.gettempdir(), "slurmscope-example"
)
cluster = slurmscope.Cluster(root=root)


@slurmscope.task(time="00:05:00", mem="200M")
def prepare(n: int) -> list[int]:
    """Stage 1: make the inputs."""
    return list(range(1, n + 1))


@slurmscope.task(time="00:05:00", mem="200M")
def square(x: int) -> int:
    """Stage 2: one array task per item."""
    return x * x


@slurmscope.task(time="00:05:00")
def summarise(squares: list[int], label: str) -> str:
    """Stage 3: reduce the array's results (passed as a job: a data dependency)."""
    return f"{label}: sum={sum(squares)} sqrt={math.sqrt(sum(squares)):.3f}"


@slurmscope.task(time="00:05:00")
def report(lines: list[str]) -> str:
    return "\n".join(lines)


def main() -> None:
    print(f"backend: {cluster.backend.kind} ({cluster.name}), job directories under {cluster.root}")
    inputs = prepare(8)  # submitted now
    with cluster.dependencies(inputs):  # everything below waits for `inputs`
        squares = square.map(range(1, 9), max_concurrent=4)
        with cluster.dependencies(squares, kind="afterany"):  # nested: merged with the outer
            small = summarise(squares, "all eight")  # `squares` is also an argument
            # explicit forms take the same path
            later = summarise.after(small).map([(squares, "again")])
    final = report.map([[small, later[0]]])  # data dependencies inside an item

    print(final.get_results()[0])
    print()
    for job in (squares, small, later, final):
        print(job.explain())
        print()


if __name__ == "__main__":
    main()
