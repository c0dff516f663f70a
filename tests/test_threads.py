"""Scopes under concurrency: threads, asyncio tasks and thread pools submit at the same time,
and every job carries exactly the dependencies of the scope it was submitted in.

Everything goes to the embedded local scheduler. All upstream jobs wait for one long
``time.sleep`` gate job, so none of them ends during the test (no dependency is dropped
as already satisfied) and nothing but the gate and the one job without dependencies
starts; ``cluster.close()`` cancels the rest.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import assert_recorded, run_at_once

import slurmscope
from slurmscope import scope

N = 8


def here() -> int:
    return sys._getframe(1).f_lineno


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    cluster = slurmscope.Cluster(
        "local", root=tmp_path_factory.mktemp("threads"), set_as_default=False, cpus=2
    )
    sleep = cluster.task(time.sleep)
    gate = sleep(600)
    with cluster.dependencies(gate):
        # two upstream jobs per thread / asyncio task, plus a shared one
        ups = [(sleep(0), sleep(0)) for _ in range(N)]
        common = sleep(0)
    try:
        yield {"cluster": cluster, "sleep": sleep, "gate": gate, "ups": ups, "common": common}
    finally:
        gate.cancel()
        cluster.close()


def _targets(job: Any) -> list[tuple[str, str]]:
    return [(d.kind, d.target_id) for d in job.dependencies]


# -- 8 threads, each with its own nested scopes -----------------------------------------------
def test_threads_submit_with_their_own_scopes(env: dict[str, Any]) -> None:
    cluster, sleep, ups = env["cluster"], env["sleep"], env["ups"]

    def worker(i: int, barrier: threading.Barrier) -> dict[str, Any]:
        a, b = ups[i]
        mine: dict[str, Any] = {"thread": threading.current_thread().name}
        barrier.wait()
        mine["line_a"] = here() + 1
        with cluster.dependencies(a):
            barrier.wait()  # every thread has its outer block open
            mine["line_b"] = here() + 1
            with cluster.dependencies(b, kind="afterany"):
                barrier.wait()  # ... and its inner one
                mine["inner"] = [sleep(0), sleep.map([0, 0]), sleep(0)]
                barrier.wait()
            mine["outer"] = [sleep.map([0]), sleep(0)]
            barrier.wait()
        mine["explicit"] = sleep.after(b).map([0, 0])  # no scope left
        mine["scope_after"] = scope.current()
        return mine

    results = run_at_once(N, worker, name="scoped-{}")
    assert sorted(results) == list(range(N))
    assert scope.current() == ()

    for i, mine in results.items():
        a, b = ups[i]
        assert mine["thread"] == f"scoped-{i}"
        assert mine["scope_after"] == ()
        for job in mine["inner"]:
            assert _targets(job) == [("afterok", a.job_id), ("afterany", b.job_id)]
            outer, inner = job.dependencies
            assert outer.target is a and inner.target is b
            assert (outer.provenance.depth, inner.provenance.depth) == (1, 2)
            assert (outer.provenance.site.line, inner.provenance.site.line) == (
                mine["line_a"],
                mine["line_b"],
            )
        for job in mine["outer"]:
            assert _targets(job) == [("afterok", a.job_id)]
            assert job.dependencies[0].provenance.site.line == mine["line_a"]
        for job in mine["inner"] + mine["outer"]:
            assert all(d.provenance.via == "scope" for d in job.dependencies)
            assert all(d.provenance.site.thread == f"scoped-{i}" for d in job.dependencies)
            assert all(d.provenance.site.file == __file__ for d in job.dependencies)
        explicit = mine["explicit"]
        assert _targets(explicit) == [("afterok", b.job_id)]
        assert explicit.dependencies[0].provenance.via == "after()"
        assert explicit.dependencies[0].provenance.site.thread == f"scoped-{i}"
        for job in mine["inner"] + mine["outer"] + [explicit]:
            assert_recorded(cluster, job)
            manifest = json.loads((job.directory / "manifest.json").read_text())
            assert manifest["submitted_from"]["thread"] == f"scoped-{i}"
            assert [(d["kind"], d["target"]) for d in manifest["dependencies"]] == _targets(job)

    ids = [j.job_id for m in results.values() for k in ("inner", "outer") for j in m[k]]
    assert len(set(ids)) == len(ids), "two submissions got the same job id"


# -- 8 asyncio tasks -------------------------------------------------------------------------
def test_asyncio_tasks_submit_with_their_own_scopes(env: dict[str, Any]) -> None:
    cluster, sleep, ups, common = env["cluster"], env["sleep"], env["ups"], env["common"]
    lines: dict[str, int] = {}

    async def one(i: int) -> dict[str, Any]:
        a, b = ups[i]
        out: dict[str, Any] = {}
        # every task sees the parent's block (tasks copy the context) and nothing else yet
        out["inherited"] = [f.dependencies[0].target for f in scope.current()]
        await asyncio.sleep(0)
        line_a = here() + 1
        with cluster.dependencies(a):
            await asyncio.sleep(0)  # let the other tasks open their blocks
            line_b = here() + 1
            with cluster.dependencies(b, kind="afternotok"):
                await asyncio.sleep(0)
                out["inner"] = [sleep(0)]
                await asyncio.sleep(0)
                out["inner"].append(sleep.map([0, 0]))
            await asyncio.sleep(0)
            out["outer"] = [sleep(0)]
            # asyncio.to_thread copies the context: the scope goes along without carry_scope
            out["outer"].append(await asyncio.to_thread(sleep.map, [0]))
        await asyncio.sleep(0)
        out["lines"] = (line_a, line_b)
        out["scope_after"] = len(scope.current())
        return out

    async def main() -> list[dict[str, Any]]:
        lines["parent"] = here() + 1
        with cluster.dependencies(common, kind="after"):
            outs = await asyncio.gather(*(one(i) for i in range(N)))
            lines["parent_depth"] = scope.depth()
        lines["after"] = scope.depth()
        return outs

    outs = asyncio.run(main())
    assert scope.current() == ()
    assert lines["parent_depth"] == 1 and lines["after"] == 0
    for i, out in enumerate(outs):
        a, b = ups[i]
        assert out["inherited"] == [common]
        assert out["scope_after"] == 1  # the parent's block only: nothing leaked between tasks
        parent = ("after", common.job_id)
        for job in out["inner"]:
            assert _targets(job) == [parent, ("afterok", a.job_id), ("afternotok", b.job_id)]
            assert [d.provenance.depth for d in job.dependencies] == [1, 2, 3]
            assert [d.provenance.site.line for d in job.dependencies] == [
                lines["parent"],
                *out["lines"],
            ]
        for job in out["outer"]:
            assert _targets(job) == [parent, ("afterok", a.job_id)]
        for job in out["inner"] + out["outer"]:
            assert all(d.provenance.site.thread == "MainThread" for d in job.dependencies)
            assert all(d.provenance.via == "scope" for d in job.dependencies)
            assert_recorded(cluster, job)


# -- carry_scope with a ThreadPoolExecutor -----------------------------------------------------
def test_carry_scope_into_a_thread_pool(env: dict[str, Any]) -> None:
    cluster, sleep, ups = env["cluster"], env["sleep"], env["ups"]
    a, b = ups[0]
    c, _ = ups[1]

    def stage(x: int) -> tuple[Any, str, int]:
        job = sleep.map([0] * x) if x > 1 else sleep(0)
        return job, threading.current_thread().name, len(scope.current())

    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="pool") as pool:
        line_a = here() + 1
        with cluster.dependencies(a):
            line_b = here() + 1
            with cluster.dependencies(b, kind="afterany"):
                carried = [pool.submit(slurmscope.carry_scope(stage), x) for x in (1, 2, 1, 3)]
                mapped = list(pool.map(slurmscope.carry_scope(stage), (2, 1, 1)))
                # the same pool, without carry_scope: the block does not reach the workers
                plain = pool.submit(stage, 1).result(timeout=60)
            # carry_scope captures the scope when it wraps, not when it runs
            wrapped_outer = slurmscope.carry_scope(stage)
            with cluster.dependencies(c):
                late = pool.submit(wrapped_outer, 1).result(timeout=60)
        # after the carried calls ran, the workers have no scope left over
        after = [pool.submit(stage, 1).result(timeout=60) for _ in range(3)]

    expected = [("afterok", a.job_id), ("afterany", b.job_id)]
    for job, thread, depth in [f.result(timeout=60) for f in carried] + mapped:
        assert thread.startswith("pool") and depth == 2
        assert _targets(job) == expected
        # the provenance is the with block, in the thread that opened it ...
        assert [d.provenance.site.line for d in job.dependencies] == [line_a, line_b]
        assert all(d.provenance.site.thread == "MainThread" for d in job.dependencies)
        # ... and the submission itself is recorded in the pool thread
        manifest = json.loads((job.directory / "manifest.json").read_text())
        assert manifest["submitted_from"]["thread"] == thread
        assert_recorded(cluster, job)

    job, thread, depth = late
    assert depth == 1 and _targets(job) == [("afterok", a.job_id)]
    assert_recorded(cluster, job)

    for job, thread, depth in [plain, *after]:
        assert thread.startswith("pool")
        assert depth == 0
        assert job.dependencies == ()
        assert cluster.backend.recorded_dependencies(job.job_id) == ""
        job.cancel()
