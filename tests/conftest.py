from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pyslurm_support
import pytest
import slurm_cluster
import structlog
import tasks

import slurmscope
from slurmscope import default as default_registry
from slurmscope.spec import JobSpec

# The worker runs outside pytest's sys.path: ship the test tasks by value.
cloudpickle.register_pickle_by_value(tasks)

#: Backends that do not run on the compatibility lane (Debian's Slurm 22.05): pyslurm 25.11
#: cannot talk to it, and local behaves the same on both lanes.
_NOT_ON_COMPAT_LANE = {"local", "pyslurm"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the compatibility run of ``scripts/test`` (``SLURMSCOPE_COMPAT_RUN=1``: sbatch
    again on Debian's Slurm 22.05), deselect the tests of the local and pyslurm backends."""
    if os.environ.get("SLURMSCOPE_COMPAT_RUN") != "1":
        return
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        backends = {v for v in params.values() if isinstance(v, str)}
        (drop if backends & _NOT_ON_COMPAT_LANE else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def local(tmp_path: Path) -> Iterator[slurmscope.Cluster]:
    """A local cluster of its own, not the default, closed afterwards."""
    cluster = slurmscope.Cluster("local", root=tmp_path / "jobs", set_as_default=False)
    yield cluster
    cluster.close()


@pytest.fixture(autouse=True)
def _unconfigured_structlog() -> Iterator[None]:
    """structlog.testing.capture_logs leaves structlog 'configured'; undo that, so every
    test sees slurmscope as an application that never configured logging would."""
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _no_default_cluster_leak() -> Iterator[None]:
    """Each test starts without a default cluster, and leaves none behind."""
    previous = default_registry._default
    default_registry.set_default(None)
    yield
    current = default_registry._default
    if current is not None and current is not previous:
        current.close()
    default_registry.set_default(previous)


def job_dirs(cluster: slurmscope.Cluster) -> list[Path]:
    return sorted(p for p in cluster.root.iterdir() if p.is_dir() and not p.name.startswith("."))


def expected_pairs(job: slurmscope.Job | slurmscope.ArrayJob) -> set[tuple[str, str]]:
    """The (kind, scheduler id) pairs the scheduler should hold for ``job``'s dependencies:
    ``job.dependencies`` by target id, except ``after`` on a whole array, which is given
    task by task (Slurm never releases ``after:<array>`` once it was cancelled pending)."""
    pairs = set()
    for dep in job.dependencies:
        if dep.target_id is None:
            continue
        if dep.kind == "after" and isinstance(dep.target, slurmscope.ArrayJob):
            pairs.update(("after", f"{dep.target.job_id}_{i}") for i in range(len(dep.target)))
        else:
            pairs.add((dep.kind, dep.target_id))
    return pairs


#: The backends a behaviour is checked on: pytest parameters, the Slurm ones marked.
BACKENDS = [
    "local",
    pytest.param("sbatch", marks=pytest.mark.slurm),
    pytest.param("pyslurm", marks=pytest.mark.slurm),
]


def backend_cluster(
    kind: str, root: Path, stack: contextlib.ExitStack, **local_options: object
) -> slurmscope.Cluster:
    """A cluster of ``kind`` for one test, closed by ``stack``: ``local`` with
    ``local_options``; ``sbatch`` and ``pyslurm`` on the real test cluster (skipped, or failed
    under CI, where it is not up), pyslurm on the real bindings where they import, else the
    test double."""
    if kind == "local":
        c = slurmscope.Cluster("local", root=root, set_as_default=False, **local_options)
    else:
        slurm_cluster.require()
        if kind == "pyslurm":
            stack.enter_context(pyslurm_support.pyslurm_importable())
        c = slurmscope.Cluster(kind, root=root, set_as_default=False)
    stack.callback(c.close)
    return c


def probe_spec(tmp_path: Path, **changes: Any) -> JobSpec:
    """A backend-level spec of a job that runs ``true`` in ``tmp_path``, with ``changes``."""
    base = JobSpec(
        name="probe",
        command=("true",),
        workdir=str(tmp_path),
        stdout=str(tmp_path / "%j.out"),
        stderr=str(tmp_path / "%j.err"),
    )
    return base.with_(**changes)
