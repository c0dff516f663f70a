"""Driver for test_job_count.py, run in a process of its own (real pyslurm reads SLURM_CONF
once per process): ``python job_count_driver.py KIND ROOT``. Prints ``RESULT {json}``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import tasks

import slurmscope
from slurmscope import limits

kind, root = sys.argv[1], Path(sys.argv[2])
cluster = slurmscope.Cluster(kind, root=root, set_as_default=False)
backend = cluster.backend
held = cluster.task(tasks.identity, extra=("--hold",))
out: dict[str, object] = {"per_array": backend.max_array_size}


def capacity() -> limits.JobCapacity:
    found = backend.job_capacity(count=True)
    assert found is not None and found.in_system is not None, found
    return found


def directories() -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name[0].isdigit())


# Wait for room: an earlier run's cancelled jobs count until slurmctld purges them.
deadline = time.monotonic() + 240
while (cap := capacity()).max_job_count - (cap.in_system or 0) < 40:
    assert time.monotonic() < deadline, f"no room on the cluster: {cap}"
    time.sleep(3)
limit = cap.max_job_count
out["max_job_count"] = limit
handles = []
try:
    # 1. More tasks than MaxJobCount at all.
    before = capacity().in_system
    try:
        held.map(range(limit + 1))
        out["over_limit"] = None
    except slurmscope.ClusterFullError as exc:
        out["over_limit"] = str(exc)
    out["over_limit_unchanged"] = capacity().in_system == before and not directories()
    # 2. Fill the cluster up to 25 free records (a split map), then 26 and 25 items.
    free = limit - (capacity().in_system or 0)
    handles.append(held.map(range(free - 25)))
    out["free_after_filler"] = limit - (capacity().in_system or 0)
    dirs = directories()
    calls = dict(getattr(backend, "calls", {}))
    try:
        held.map(range(26))
        out["one_too_many"] = None
    except slurmscope.ClusterFullError as exc:
        out["one_too_many"] = str(exc)
    out["one_too_many_unchanged"] = (
        limit - (capacity().in_system or 0) == 25 and directories() == dirs
    )
    out["submits_while_refusing"] = sum(
        getattr(backend, "calls", {}).get(k, 0) - calls.get(k, 0) for k in ("sbatch", "submit")
    )
    exact = held.map(range(25))
    handles.append(exact)
    out["exact_parts"] = len(exact.job_ids)
    out["free_after_exact"] = limit - (capacity().in_system or 0)
    # 3. A single job on a full cluster: small, so not counted first; Slurm refuses it
    # (pyslurm: at once, without six retries; sbatch waits two minutes itself: not here).
    if kind == "pyslurm":
        submits = backend.calls["submit"]
        started = time.monotonic()
        try:
            handles.append(held(1))
            out["single"] = None
        except slurmscope.ClusterFullError as exc:
            out["single"] = str(exc)
        out["single_attempts"] = backend.calls["submit"] - submits
        out["single_s"] = time.monotonic() - started
finally:
    for handle in handles:
        handle.cancel()
print("RESULT " + json.dumps(out), flush=True)
os._exit(0)
