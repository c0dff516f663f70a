"""Result files first, the scheduler when they cannot tell; and the worker's light imports.

The poller looks at the result directories often and asks the scheduler only when no result
arrived for a while, so that a map's scheduler queries do not grow with its tasks. These
tests use ``slurmscope.testing.FakeBackend`` (no cluster) scripted to answer what the test
says; it counts the queries, and runs slurmscope's own worker when a test says so.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import tasks

import slurmscope
from slurmscope import poller
from slurmscope.errors import JobNotCompletedError
from slurmscope.job_directory import JobDirectory
from slurmscope.payload import ResultRef, write_outcome
from slurmscope.pickling import pickle_item, pickle_scalars
from slurmscope.states import TaskState
from slurmscope.testing import FakeBackend, FakeJob

REPO = Path(__file__).resolve().parent.parent
identity = slurmscope.task(tasks.identity)


def running(job: FakeJob, index: int) -> TaskState:
    return TaskState("RUNNING", "None")


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[tuple[slurmscope.Cluster, FakeBackend]]:
    """A scheduler that says whatever ``backend.script(job, index)`` returns (RUNNING unless
    a test says otherwise) and counts its queries; it runs nothing by itself: a test runs a
    task (slurmscope's worker, in this process) with ``backend.run_task(array[i])``."""
    backend = FakeBackend(
        run=False, script=running, poll_interval=(0.01, 0.05), query_interval=(0.3, 0.5)
    )
    cluster = slurmscope.Cluster(backend, root=tmp_path / "jobs", set_as_default=False)
    yield cluster, backend
    cluster.close()


def test_results_end_tasks_the_scheduler_still_calls_running(scripted: Any) -> None:
    cluster, backend = scripted
    array = identity.on(cluster).map([10, 11, 12])
    for i in range(3):
        backend.run_task(array[i])
    assert array.get_results(timeout=10) == [10, 11, 12]
    assert array.state == "COMPLETED"
    assert backend.queries <= 2  # the result files told; the scheduler was hardly asked


def test_a_failure_file_is_a_failed_task(scripted: Any) -> None:
    cluster, backend = scripted
    array = slurmscope.task(tasks.fail_on).on(cluster).map([(1, 2), (2, 2)])
    backend.run_task(array[0])
    backend.run_task(array[1])
    array.wait(timeout=10)
    assert array.states == ["COMPLETED", "FAILED"]


def test_what_files_cannot_show_comes_from_the_scheduler(scripted: Any) -> None:
    cluster, backend = scripted
    backend.script = lambda job, index: TaskState("CANCELLED" if index == 1 else "RUNNING", "None")
    array = identity.on(cluster).map([1, 2, 3])
    backend.run_task(array[0])
    backend.run_task(array[2])
    results = array.get_results(timeout=10, return_exceptions=True)
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], JobNotCompletedError)
    assert array.states == ["COMPLETED", "CANCELLED", "COMPLETED"]


def test_queries_wait_while_results_keep_arriving(scripted: Any) -> None:
    cluster, backend = scripted
    array = identity.on(cluster).map(list(range(40)))

    def steady() -> None:  # a result every 20 ms: quicker than the query interval (0.3 s)
        for i in range(40):
            backend.run_task(array[i])
            time.sleep(0.02)

    writer = threading.Thread(target=steady)
    writer.start()
    assert array.get_results(timeout=30) == list(range(40))
    writer.join()
    # The old poller asked at every look (every 10-50 ms here: dozens of queries); now the
    # files answer while they keep changing.
    assert backend.queries <= 3


def test_the_scheduler_is_still_asked_now_and_then_however_fast_results_come(
    scripted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, backend = scripted
    monkeypatch.setattr(poller, "LONGEST_WITHOUT_QUERY", 0.2)
    array = identity.on(cluster).map(list(range(40)))
    for i in range(40):
        backend.run_task(array[i])
        time.sleep(0.02)
    array.wait(timeout=30)
    assert backend.queries >= 2


def test_state_asks_the_scheduler(scripted: Any) -> None:
    cluster, backend = scripted
    job = identity.on(cluster)(1)
    before = backend.queries
    assert job.state == "RUNNING"  # job.state wants the scheduler's word, now
    assert backend.queries == before + 1


def test_outcome_ok_reads_the_head_and_falls_back(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    jobdir = JobDirectory(tmp_path)
    write_outcome(str(tmp_path), 0, {"ok": True, "value": b"x" * 1_000_000})
    write_outcome(str(tmp_path), 1, {"ok": False, "type": "ValueError"})
    (results / "2.pkl").write_bytes(cloudpickle.dumps({"ok": True, "value": lambda: 1}))
    (results / "3.pkl").write_bytes(pickle.dumps({"value": 5, "ok": False}, protocol=2))
    (results / ".4.pkl.123.abcd.tmp").write_bytes(b"half")
    assert [jobdir.outcome_ok(i) for i in range(5)] == [True, False, True, False, None]
    assert sorted(jobdir.finished()) == [0, 1, 2, 3]


def test_scalar_items_pickle_as_before() -> None:
    items = [0, -1, 2**70, 1.5, "path/é", b"raw", True, None, 3 + 4j]
    packed = pickle_scalars(items)
    assert packed is not None and len(packed) == len(items)
    assert [packed[i] for i in range(len(items))] == [
        pickle_item((x,), {}, i) for i, x in enumerate(items)
    ]
    assert packed.largest == max(packed.size(i) for i in range(len(items)))
    sizes = [packed.size(i) for i in range(len(items))]
    assert packed.first_over(min(sizes)) == next(i for i, n in enumerate(sizes) if n > min(sizes))
    assert packed.first_over(packed.largest) == -1
    assert pickle_scalars([1, (1, 2)]) is None
    assert pickle_scalars([1, ResultRef("/x")]) is None


def test_result_ref_is_an_immutable_value() -> None:
    ref = ResultRef("/jobs/a", 3, size=None)
    assert pickle.loads(cloudpickle.dumps(ref)) == ref == ResultRef("/jobs/a", 3)
    assert hash(ref) == hash(ResultRef("/jobs/a", 3)) and ref != ResultRef("/jobs/a", 4)
    with pytest.raises(AttributeError):
        ref.index = 4  # type: ignore[misc]
    assert repr(ref) == "ResultRef(directory='/jobs/a', index=3, size=None)"


def test_the_worker_imports_little() -> None:
    """Every task of every map pays for each module the worker imports."""
    code = (  # the job's start (bootstrap), its worker, and what loads script-defined functions
        "import sys, slurmscope.bootstrap, slurmscope.worker, slurmscope.rebuild; "
        "print(' '.join(sorted(sys.modules)))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    heavy = {"typing", "dataclasses", "inspect", "secrets", "json", "traceback", "importlib.util"}
    heavy |= {"pathlib", "re", "pickle", "contextlib"}
    heavy |= {"cloudpickle", "structlog", "logging", "subprocess", "threading", "dis", "site"}
    assert {"slurmscope.bootstrap", "slurmscope.rebuild"} <= set(out)
    assert not heavy & set(out), heavy & set(out)


def test_squeue_states_are_shared_objects() -> None:
    """A map of 100,000 pending tasks is 100,000 squeue lines: one TaskState per distinct
    (state, reason), not per line, so the poller's memory does not grow with them."""
    from slurmscope.backends.sbatch import SbatchBackend

    backend = object.__new__(SbatchBackend)  # no controller needed to parse an answer
    backend.slurm_conf = None
    lines = [f"7_{i}|PENDING|JobHeldUser|0" for i in range(1000)] + ["7_1000|RUNNING|None|0"]
    backend._call = lambda *a, **k: subprocess.CompletedProcess(a, 0, "\n".join(lines), "")
    answer = backend.states(["7"])["7"]
    assert len(answer) == 1001 and answer[0] == TaskState("PENDING", "JobHeldUser")
    assert len({id(state) for state in answer.values()}) == 2


def test_squeue_exit_codes_read_as_slurm_shows_them() -> None:
    """squeue's exit_code is the raw wait status: 768 is exit code 3, 9 is signal 9."""
    from slurmscope.backends.sbatch import SbatchBackend

    backend = object.__new__(SbatchBackend)
    backend.slurm_conf = None
    lines = ["8|FAILED|NonZeroExitCode|768", "9|TIMEOUT|TimeLimit|15", "10|RUNNING|None|0"]
    backend._call = lambda *a, **k: subprocess.CompletedProcess(a, 0, "\n".join(lines), "")
    answer = backend.states(["8", "9", "10"])
    assert answer["8"][0] == TaskState("FAILED", "NonZeroExitCode", "3:0")
    assert answer["9"][0] == TaskState("TIMEOUT", "TimeLimit", "0:15")
    assert answer["10"][0] == TaskState("RUNNING", "None", None)  # not ended: no exit code
