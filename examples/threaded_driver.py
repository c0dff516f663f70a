"""A multithreaded driver: each thread runs its own pipeline in its own nested scopes.

Dependency scopes live in a ``contextvars.ContextVar``, so they never leak from one thread
to another, and a new thread starts with none. This driver

* submits one shared ``reference`` job, then starts one thread per sample inside
  ``with cluster.dependencies(reference):`` -- the thread targets are wrapped in
  ``slurmscope.carry_scope`` so that every thread starts inside that block;
* in each thread, opens nested scopes of its own (its ``prepare`` job, then its ``align``
  array with ``kind="afterany"``) and fans out quality checks to a thread pool, again
  through ``slurmscope.carry_scope`` so that the pool's threads see the thread's scopes.

At the end it prints every job's dependencies and the thread each came from, and checks
that no thread's scope reached another thread's jobs.

    SLURMSCOPE_BACKEND=local python examples/threaded_driver.py
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import slurmscope

SAMPLES = ("alpha", "beta", "gamma")

root = os.environ.get("SLURMSCOPE_ROOT") or os.path.join(
    tempfile.gettempdir(), "slurmscope-example"
)
cluster = slurmscope.Cluster(root=root)


@slurmscope.task(time="00:05:00", mem="200M")
def build_reference(size: int) -> list[int]:
    return [i * i % 97 for i in range(size)]


@slurmscope.task(time="00:05:00", mem="200M")
def prepare(sample: str) -> str:
    return sample.upper()


@slurmscope.task(time="00:05:00", mem="200M")
def align(read: int) -> int:
    return read * 3 + 1


@slurmscope.task(time="00:05:00")
def quality(sample: str, lane: int) -> str:
    return f"{sample}/lane{lane}: ok"


@slurmscope.task(time="00:05:00")
def merge(prepared: str, aligned: list[int], checks: list[str]) -> str:
    return (
        f"{prepared}: {len(aligned)} reads aligned, sum {sum(aligned)}, {len(checks)} lanes checked"
    )


def run_sample(sample: str, jobs: dict[str, list[slurmscope.Job | slurmscope.ArrayJob]]) -> None:
    """One thread's pipeline. It starts inside the carried ``reference`` block (depth 1)."""
    mine: list[slurmscope.Job | slurmscope.ArrayJob] = []
    prepared = prepare(sample)
    mine.append(prepared)
    with cluster.dependencies(prepared):  # depth 2, only in this thread
        aligned = align.map(range(4))
        mine.append(aligned)
        with cluster.dependencies(aligned, kind="afterany"):  # depth 3, merged with the others
            with ThreadPoolExecutor(2, thread_name_prefix=f"{sample}-pool") as pool:
                # carry_scope: the pool's threads submit inside this thread's blocks
                submit_check = slurmscope.carry_scope(quality)
                checks = list(pool.map(submit_check, [sample] * 2, range(2)))
            mine.extend(checks)
    # outside the blocks: only the data dependencies (and the carried reference block)
    merged = merge(prepared, aligned, checks)
    mine.append(merged)
    jobs[sample] = mine


def main() -> None:
    print(f"backend: {cluster.backend.kind} ({cluster.name}), job directories under {cluster.root}")
    reference = build_reference(1000)
    jobs: dict[str, list[slurmscope.Job | slurmscope.ArrayJob]] = {}
    with cluster.dependencies(reference):  # depth 1, carried into every thread below
        threads = [
            threading.Thread(
                target=slurmscope.carry_scope(run_sample), args=(s, jobs), name=f"driver-{s}"
            )
            for s in SAMPLES
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    ok = True
    for sample in SAMPLES:
        final = jobs[sample][-1].get_result()  # waits; its upstream jobs have ended too
        own = {job.job_id for job in jobs[sample]}
        for job in jobs[sample]:
            own.update(getattr(job, "job_ids", ()))
        print(f"\n== thread driver-{sample}: {final}")
        for job in jobs[sample]:
            # the manifest in the job directory records where the submission came from
            manifest = json.loads((job.directory / "manifest.json").read_text())
            print(
                f"  {manifest['name']:<8} job {job.job_id:<4} "
                f"submitted from thread {manifest['submitted_from']['thread']}"
            )
            for dep in job.dependencies:
                prov = dep.provenance
                how = f"{prov.via} depth {prov.depth}" if prov.depth else prov.via
                print(
                    f"      {dep.kind + ':' + str(dep.target_id):<12} {how:<15} "
                    f"line {prov.site.line:<4} thread {prov.site.thread}"
                )
                # every dependency is the shared reference or one of this thread's own jobs
                if dep.target_id != reference.job_id and dep.target_id not in own:
                    ok = False
    print()
    print("each thread's jobs depend only on its own scopes (plus the carried one):", ok)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
