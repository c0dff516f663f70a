from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

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


# -- the backends a behaviour is checked on ----------------------------------------------------
#: Every backend: pytest parameters, the Slurm ones marked.
BACKENDS = [
    "local",
    pytest.param("sbatch", marks=pytest.mark.slurm),
    pytest.param("pyslurm", marks=pytest.mark.slurm),
]
_BY_NAME = {p if isinstance(p, str) else p.values[0]: p for p in BACKENDS}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "backends(*kinds): the backends the `backend` and `cluster` fixtures run a test on "
        "(default: local, sbatch and pyslurm)",
    )
    config.addinivalue_line(
        "markers",
        "cluster(local={...}, **options): options of the `cluster` fixture's Cluster: "
        "`options` on every backend, `local` on the local backend only",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test using the ``backend`` fixture (the ``cluster`` fixture does) runs once per
    backend: those of its closest ``@pytest.mark.backends(...)``, else :data:`BACKENDS`.
    A test that parametrises ``backend`` itself keeps its own parameters."""
    if "backend" not in metafunc.fixturenames:
        return
    if "backend" in vars(metafunc.module):  # the test module's own ``backend`` fixture wins
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        if "backend" in (
            [n.strip() for n in names.split(",")] if isinstance(names, str) else names
        ):
            return
    marker = metafunc.definition.get_closest_marker("backends")
    kinds = BACKENDS if marker is None else [_BY_NAME[k] for k in marker.args]
    metafunc.parametrize("backend", kinds)


def backend_cluster(
    kind: str,
    root: Path,
    stack: contextlib.ExitStack,
    *,
    local: dict[str, Any] | None = None,
    **options: Any,
) -> slurmscope.Cluster:
    """A cluster of ``kind`` for one test, closed by ``stack``, with ``options`` (and, on the
    local backend, ``local`` too); ``sbatch`` and ``pyslurm`` on the real test cluster
    (skipped, or failed under CI, where it is not up), pyslurm on the real bindings where
    they import, else the test double (see :func:`pyslurm_support.pyslurm_importable`)."""
    if kind == "local":
        options = {**options, **(local or {})}
    else:
        slurm_cluster.require()
        if kind == "pyslurm":
            stack.enter_context(pyslurm_support.pyslurm_importable())
    c = slurmscope.Cluster(kind, root=root, set_as_default=False, **options)
    stack.callback(c.close)
    return c


@pytest.fixture
def backend() -> str:
    """The backend's name; parametrised by :func:`pytest_generate_tests`."""
    raise AssertionError("pytest_generate_tests parametrises `backend`")  # pragma: no cover


@pytest.fixture
def cluster(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[slurmscope.Cluster]:
    """A cluster of ``backend`` rooted at ``tmp_path / "jobs"``, not the default, closed
    afterwards; with the options of the test's closest ``@pytest.mark.cluster(...)``."""
    marker = request.node.get_closest_marker("cluster")
    options = dict(marker.kwargs) if marker else {}
    with contextlib.ExitStack() as stack:
        yield backend_cluster(backend, tmp_path / "jobs", stack, **options)


@pytest.fixture
def driver_env(backend: str) -> Iterator[dict[str, str]]:
    """The environment of a driver script, run in a subprocess, that uses ``backend``: this
    process's, without ``SLURMSCOPE_BACKEND``; for Slurm with the test cluster's
    ``SLURM_CONF`` (skipped, or failed under CI, where it is not up); for pyslurm with the
    double on ``PYTHONPATH`` where the double is the pyslurm in use (which this process
    then imports too, for the test's own checks)."""
    env = {k: v for k, v in os.environ.items() if k != "SLURMSCOPE_BACKEND"}
    with contextlib.ExitStack() as stack:
        if backend != "local":
            slurm_cluster.require()
            env["SLURM_CONF"] = os.environ["SLURM_CONF"]
        if backend == "pyslurm":
            which = stack.enter_context(pyslurm_support.pyslurm_importable())
            if which == "double":
                env["PYTHONPATH"] = os.pathsep.join(
                    filter(None, [pyslurm_support.DOUBLE_DIR, env.get("PYTHONPATH")])
                )
        yield env


def driver_result(
    args: list[str], *, env: dict[str, str], timeout: float, cwd: str | None = None
) -> dict[str, Any]:
    """Run a driver script in a Python of its own; the JSON it printed last after
    ``RESULT `` (the test fails with the ends of its output when it failed or printed none)."""
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    found: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return found


# -- tasks: the functions of tasks.py as slurmscope tasks (of the default cluster) -----------------
add = slurmscope.task(tasks.add)
identity = slurmscope.task(tasks.identity)
boom = slurmscope.task(tasks.boom)
fail_on = slurmscope.task(tasks.fail_on)
stamp = slurmscope.task(tasks.stamp)
sleep = slurmscope.task(tasks.sleep)
env = slurmscope.task(tasks.env)
gate = slurmscope.task(tasks.wait_for_file)
record_run = slurmscope.task(tasks.record_run)
kill_self = slurmscope.task(tasks.kill_self)
dies_while_writing = slurmscope.task(tasks.dies_while_writing)
surroundings = slurmscope.task(tasks.surroundings)


@contextlib.contextmanager
def held(cluster: slurmscope.Cluster, folder: Path) -> Iterator[slurmscope.Job]:
    """A gate job that ends once the block is left (it waits for ``folder/go``): what waits
    for it stays pending inside, so the scheduler still holds every dependency on it and
    on what waits for it (Slurm drops fulfilled ones)."""
    opened = folder / "go"
    try:
        yield gate.on(cluster)(str(opened))
    finally:
        opened.touch()


# -- dependencies: what the scheduler holds, and what it should -----------------------------------
def recorded_pairs(cluster: slurmscope.Cluster, job_id: str) -> list[tuple[str, str]]:
    """The dependencies the scheduler holds for ``job_id`` (the backend's
    ``recorded_dependencies``), as (kind, id) pairs in its order, repeats kept.

    Slurm shows ``afterok:12_*(unfulfilled),singleton(unfulfilled)`` (and drops a dependency
    once it is fulfilled); the local scheduler ``afterok:12:13,singleton`` (all it was
    given). A whole array is ``12`` either way, ``singleton`` is ``("singleton", "")``.
    """
    text = cluster.backend.recorded_dependencies(job_id)
    assert text is not None, f"the {cluster.backend.kind} backend cannot tell what it recorded"
    pairs = []
    for clause in filter(None, text.split(",")):
        kind, *ids = clause.split(":")
        kind = kind.split("(")[0]
        for ident in ids or [""]:
            pairs.append((kind, ident.split("(")[0].removesuffix("_*")))
    return pairs


def recorded(cluster: slurmscope.Cluster, job_id: str) -> set[tuple[str, str]]:
    """:func:`recorded_pairs` as a set."""
    return set(recorded_pairs(cluster, job_id))


def expected_pairs(
    job: slurmscope.Job | slurmscope.ArrayJob, part: int = 0
) -> set[tuple[str, str]]:
    """The (kind, id) pairs the scheduler should hold for ``job``'s dependencies (for the
    array ``job.job_ids[part]`` of a map split past MaxArraySize), as
    ``slurmscope.submit.clauses_for_part`` gives them: a job by its id; a whole array by
    the id of each of its Slurm arrays, except that ``after`` names it task by task
    (``12_0``, ``12_1``...: Slurm never releases ``after:<array>`` once it was cancelled
    pending) and ``aftercorr`` names the array paired with this part; ``singleton`` as
    ``("singleton", "")``. In the form :func:`recorded_pairs` reads back."""
    pairs: set[tuple[str, str]] = set()
    for dep in job.dependencies:
        target = dep.target
        if dep.kind == "singleton":
            pairs.add(("singleton", ""))
        elif isinstance(target, slurmscope.ArrayJob):
            if dep.kind == "after":
                pairs.update(("after", task.job_id) for task in target)
            elif dep.kind == "aftercorr":
                pairs.add(("aftercorr", target.job_ids[part]))
            else:
                pairs.update((dep.kind, i) for i in target.job_ids)
        else:
            assert dep.target_id is not None, dep
            pairs.add((dep.kind, dep.target_id))
    return pairs


def assert_recorded(cluster: slurmscope.Cluster, job: slurmscope.Job | slurmscope.ArrayJob) -> None:
    """The local scheduler got exactly ``job``'s dependencies (:func:`expected_pairs`), each
    once, one clause per kind, kinds in the order they were first given."""
    text = cluster.backend.recorded_dependencies(job.job_id) or ""
    pairs = recorded_pairs(cluster, job.job_id)
    assert len(pairs) == len(set(pairs)), text
    assert set(pairs) == expected_pairs(job), text
    kinds = [clause.split(":")[0] for clause in filter(None, text.split(","))]
    assert kinds == list(dict.fromkeys(d.kind for d in job.dependencies)), text


# -- threads ----------------------------------------------------------------------------------
T = TypeVar("T")


class ThreadsAtOnce(Generic[T]):
    """``count`` threads running ``body(i, barrier)`` that meet at one barrier (``body``
    calls ``barrier.wait()`` as often as it likes; ``parties`` more than ``count`` when other
    threads, the caller's say, meet there too). A thread that raises aborts the barrier, so
    that no other waits for it; :meth:`join` re-raises the first error in the caller and
    returns every thread's result by ``i``."""

    def __init__(
        self,
        count: int,
        body: Callable[[int, threading.Barrier], T],
        *,
        name: str = "thread-{}",
        timeout: float = 60.0,
        parties: int | None = None,
    ) -> None:
        self.count = count
        self.body = body
        self.barrier = threading.Barrier(parties or count, timeout=timeout)
        self.results: dict[int, T] = {}
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._run, args=(i,), name=name.format(i)) for i in range(count)
        ]

    def _run(self, i: int) -> None:
        try:
            self.results[i] = self.body(i, self.barrier)
        except BaseException as exc:  # re-raised by join(), in the caller's thread
            self.errors.append(exc)
            self.barrier.abort()

    def start(self) -> ThreadsAtOnce[T]:
        for thread in self.threads:
            thread.start()
        return self

    def join(self, timeout: float = 60.0) -> dict[int, T]:
        for thread in self.threads:
            thread.join(timeout=timeout)
        assert not any(t.is_alive() for t in self.threads), "a thread did not finish"
        if self.errors:
            raise self.errors[0]
        assert sorted(self.results) == list(range(self.count))
        return self.results


def run_at_once(
    count: int,
    body: Callable[[int, threading.Barrier], T],
    *,
    name: str = "thread-{}",
    timeout: float = 60.0,
) -> dict[int, T]:
    """:class:`ThreadsAtOnce`: started, then joined."""
    return ThreadsAtOnce(count, body, name=name, timeout=timeout).start().join(timeout)


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
