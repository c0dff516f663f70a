"""An asyncio driver: concurrent pipelines, each in its own dependency scopes.

Every ``asyncio`` task runs in a copy of the context it was created in, so a
``with cluster.dependencies(...)`` block inside one coroutine is invisible to the others,
even while they interleave at every ``await``. Nothing needs to be carried by hand (that
is only for threads: see ``threaded_driver.py``).

Submitting is quick and happens right in the coroutine; *waiting* blocks, so it goes to a
worker thread: ``await asyncio.to_thread(job.get_result)``.

    SLURMSCOPE_BACKEND=local python examples/asyncio_driver.py
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import Any

import slurmscope

DATASETS = {"north": 3, "south": 5, "east": 4}

root = os.environ.get("SLURMSCOPE_ROOT") or os.path.join(
    tempfile.gettempdir(), "slurmscope-example"
)
cluster = slurmscope.Cluster(root=root)


@slurmscope.task(time="00:05:00", mem="200M")
def fetch(name: str, n: int) -> list[float]:
    return [float(len(name) * (i + 1)) for i in range(n)]


@slurmscope.task(time="00:05:00", mem="200M")
def normalise(value: float, scale: float) -> float:
    return value / scale


@slurmscope.task(time="00:05:00")
def summarise(name: str, values: list[float]) -> str:
    return f"{name}: {len(values)} values, mean {sum(values) / len(values):.3f}"


async def result(job: slurmscope.Job | slurmscope.ArrayJob) -> Any:
    """Wait for a job without blocking the event loop."""
    if isinstance(job, slurmscope.ArrayJob):
        return await asyncio.to_thread(job.get_results)
    return await asyncio.to_thread(job.get_result)


async def pipeline(name: str, n: int) -> dict[str, Any]:
    raw = fetch(name, n)
    # Stage 2 needs the *values* of stage 1 to build its items: wait for them.
    values = await result(raw)
    with cluster.dependencies(raw):  # this task's scope only
        normalised = normalise.map([(v, 10.0) for v in values])
        await asyncio.sleep(0.05)  # the other pipelines run here, in their own scopes
        with cluster.dependencies(normalised, kind="afterany"):
            summary = summarise(name, normalised)
    return {
        "name": name,
        "own": {raw.job_id, normalised.job_id},
        "jobs": [("normalise", normalised), ("summarise", summary)],
        "summary": await result(summary),
    }


async def main() -> None:
    print(f"backend: {cluster.backend.kind} ({cluster.name}), job directories under {cluster.root}")
    runs = await asyncio.gather(*(pipeline(name, n) for name, n in DATASETS.items()))
    ok = True
    for run in runs:
        print(f"\n== task {run['name']}: {run['summary']}")
        for label, job in run["jobs"]:
            print(f"  {label:<9} job {job.job_id}")
            for dep in job.dependencies:
                prov = dep.provenance
                how = f"{prov.via} depth {prov.depth}" if prov.depth else prov.via
                print(
                    f"      {dep.kind + ':' + str(dep.target_id):<12} {how:<15} line {prov.site.line}"
                )
                ok &= dep.target_id in run["own"]  # nothing from another task's scopes
    print()
    print("each asyncio task's jobs depend only on its own scopes:", ok)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
