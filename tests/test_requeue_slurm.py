"""Checkpoint and requeue on a real Slurm cluster, with sbatch and with the real pyslurm.

A cluster of this test run's own (``slurm_cluster.OwnCluster``) whose requeued jobs may start
again after 2 seconds (``SchedulerParameters=requeue_delay=2``; Slurm's default is 120 s,
which would make every requeue cost two minutes). Each test runs its driver in a subprocess
pointed at that cluster, so that the real pyslurm reads its slurm.conf at import.

It has two nodes, and partitions ``low`` and ``high`` (``SLURMSCOPE_PREEMPT_GRACE``): jobs of ``high``
preempt those of ``low``, which Slurm requeues after a grace time of 5 seconds.

Each task needs 75 seconds of work under a 1-minute time limit, warned 10 seconds before it:
Slurm looks at time limits every 30 seconds and sends the warning up to that much early,
so a run does 20 to 50 seconds of work, and the task completes in two to four runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyslurm_support
import pytest
import slurm_cluster
import structlog.testing
import tasks
from conftest import driver_result

import slurmscope

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REQUEUE = slurm_cluster.OwnCluster(
    "requeue", 44000, SLURMSCOPE_REQUEUE_DELAY="2", SLURMSCOPE_PREEMPT_GRACE="5"
)
TESTS = Path(__file__).resolve().parent

DRIVER = """
import json, sys, time
import slurmscope, tasks

kind, root, with_limit = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
cluster = slurmscope.Cluster(kind, root=root)
limit = dict(time="1", checkpoint_warning=10, max_requeues=6)
counting = cluster.task(tasks.count_to, **limit)(75, 1.0)
training = cluster.task(tasks.Training(), **limit)(75, 1.0)
dependent = cluster.task(tasks.stamped)(counting)
if with_limit:
    never_done = cluster.task(tasks.count_to, time="1", checkpoint_warning=10, max_requeues=1)
    endless = never_done(600, 1.0)
    # an array: task 0 needs more than any run gives, task 1 less than any
    array = cluster.task(tasks.count_to, **limit).map([(60, 1.0), (10, 1.0)])
out = {
    "counting": counting.get_result(timeout=170),
    "training": training.get_result(timeout=60),
    "dependent": dependent.get_result(timeout=60),
    "counting_requeues": counting.requeues,
    "training_requeues": training.requeues,
    "counting_ended": (counting.directory / "results" / "0.pkl").stat().st_mtime,
    "counting_log": "".join(p.read_text() for p in (counting.directory / "logs").glob("*.out")),
}
if with_limit:
    try:
        endless.get_result(timeout=60)
        out["endless"] = "completed"
    except slurmscope.TaskFailedError as exc:
        out["endless"] = str(exc)
    out["endless_requeues"] = endless.requeues
    out["array"] = array.get_results(timeout=60)
    out["array_requeues"] = array.requeues
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[str]:
    REQUEUE.start("--nodes", "2")
    yield REQUEUE.conf
    REQUEUE.remove()


def _drive(
    kind: str, conf: str, root: Path, with_limit: bool, path: str = str(TESTS)
) -> dict[str, object]:
    env = dict(os.environ, SLURM_CONF=conf, PYTHONPATH=path)
    args = [sys.executable, "-c", DRIVER, kind, str(root), "1" if with_limit else "0"]
    return driver_result(args, env=env, timeout=175)


def _check_completed_through_requeues(out: dict[str, object], requeued_with: str) -> None:
    done, requeues, last_run = out["counting"]  # type: ignore[misc]
    assert done == 75
    assert requeues >= 1 and last_run < 75  # requeued, and resumed from its checkpoint
    assert out["counting_requeues"] == {"0": ["time limit"] * requeues}
    epochs, runs = out["training"]  # type: ignore[misc]
    assert epochs == 75 and runs >= 2
    assert out["training_requeues"] == {"0": ["time limit"] * (runs - 1)}
    value, ran_at = out["dependent"]  # type: ignore[misc]
    assert value == out["counting"]  # the final result, the only one
    assert ran_at >= out["counting_ended"]  # type: ignore[operator]
    log = str(out["counting_log"])
    assert log.count("time limit near") == requeues  # every run's output kept (appended)
    assert log.count(f"with {requeued_with}") == requeues


def test_sbatch_tasks_complete_through_requeues_and_the_limit_ends_one(
    own_cluster: str, tmp_path: Path
) -> None:
    out = _drive("sbatch", own_cluster, tmp_path, with_limit=True)
    _check_completed_through_requeues(out, "scontrol")
    assert "requeued 1 times, its limit (max_requeues=1)" in str(out["endless"])
    assert out["endless_requeues"] == {"0": ["time limit"]}
    (first, requeues, last_run), second = out["array"]  # type: ignore[misc]
    assert first == 60 and requeues >= 1 and last_run < 60
    assert second == [10, 0, 10]  # its neighbour's requeues left it alone
    assert out["array_requeues"] == {"0": ["time limit"] * requeues}


def test_pyslurm_tasks_complete_through_requeues(own_cluster: str, tmp_path: Path) -> None:
    """With the real pyslurm, the task requeues itself with ``pyslurm.Job.requeue``; with
    the TEST DOUBLE (no real pyslurm here), which has no requeue, with scontrol instead."""
    why_not = pyslurm_support.real_pyslurm()
    wanted = os.environ.get("SLURMSCOPE_TEST_PYSLURM", "auto")
    if why_not is not None and wanted == "real":
        pytest.fail(f"SLURMSCOPE_TEST_PYSLURM=real but pyslurm does not import: {why_not}")
    if why_not is None and wanted != "double":
        out = _drive("pyslurm", own_cluster, tmp_path, with_limit=False)
        _check_completed_through_requeues(out, "pyslurm")
    else:
        path = f"{pyslurm_support.DOUBLE_DIR}{os.pathsep}{TESTS}"
        out = _drive("pyslurm", own_cluster, tmp_path, with_limit=False, path=path)
        _check_completed_through_requeues(out, "scontrol")


def test_preempted_tasks_resume_from_their_checkpoints(own_cluster: str, tmp_path: Path) -> None:
    # The events, from the poller's thread: captured whatever an earlier test did to the
    # "slurmscope" logger (the standard-library fallback is silent below WARNING, and a
    # level or handler set elsewhere would hide them from caplog).
    with structlog.testing.capture_logs() as events:
        _preempt_and_resume(own_cluster, tmp_path)
    logged = [e for e in events if e["event"] == "slurmscope.task.requeued"]
    assert len(logged) == 2 and all(e["reason"] == "preemption" for e in logged), logged


def _preempt_and_resume(own_cluster: str, tmp_path: Path) -> None:
    cluster = slurmscope.Cluster(
        "sbatch", root=tmp_path, slurm_conf=own_cluster, set_as_default=False
    )
    low = {"partition": "low", "time": "5"}
    counting = cluster.task(tasks.count_to, **low, checkpoint_warning=60)(40, 1.0)
    training = cluster.task(tasks.Training(), **low)(40, 1.0)
    saved = counting.directory / "checkpoints" / "0.pkl"
    deadline = time.monotonic() + 60
    while not saved.exists() or training.state != "RUNNING":
        assert time.monotonic() < deadline, "the low-priority tasks did not start"
        time.sleep(0.5)
    time.sleep(5)  # some progress
    both_nodes = ["--exclusive", "--nodes=2"]  # wherever the low tasks run, they must go
    urgent = cluster.task(tasks.sleep, partition="high", extra=both_nodes)(5)
    done, requeues, last_run = counting.get_result(timeout=150)
    assert (done, requeues) == (40, 1) and last_run < 40  # resumed, not started again
    epochs, runs = training.get_result(timeout=30)
    assert (epochs, runs) == (40, 2)  # checkpoint() was called in the grace time
    assert counting.requeues == training.requeues == {0: ["preemption"]}
    assert urgent.get_result(timeout=30) == 5
    cluster.close()


def _squeue(conf: str, *args: str) -> str:
    env = dict(os.environ, SLURM_CONF=conf)
    return subprocess.run(
        ["squeue", "--noheader", *args], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()


def _kill_node(conf: str, node: str, job_id: str) -> None:
    """SIGKILL a node's slurmd and the job step of ``job_id`` with its processes: the node
    dies without a word to the job (as in test_faults.py)."""
    victims = [
        int(pid)
        for pid in subprocess.run(
            ["pgrep", "-f", f"slurmd -f {conf} -N {node}$"], capture_output=True, text=True
        ).stdout.split()
    ]
    assert victims, f"no slurmd of {node} runs"
    steps = subprocess.run(["pgrep", "-a", "slurmstepd"], capture_output=True, text=True).stdout
    for line in steps.splitlines():
        pid, title = line.split(" ", 1)
        if title.split("[", 1)[-1].split(".", 1)[0] == job_id:
            victims.append(int(pid))
            ps = subprocess.run(["pgrep", "-P", pid], capture_output=True, text=True).stdout
            victims.extend(int(child) for child in ps.split())
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def test_node_failure_resumes_from_the_last_saved_state(own_cluster: str, tmp_path: Path) -> None:
    cluster = slurmscope.Cluster(
        "sbatch", root=tmp_path, slurm_conf=own_cluster, set_as_default=False
    )
    counting = cluster.task(tasks.count_to, time="5", checkpoint_warning=60)(40, 1.0)
    saved = counting.directory / "checkpoints" / "0.pkl"
    deadline = time.monotonic() + 60
    while not saved.exists():
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.5)
    time.sleep(5)  # some progress
    node = _squeue(own_cluster, f"--jobs={counting.job_id}", "--format=%N")
    assert node in ("n1", "n2"), node
    try:
        _kill_node(own_cluster, node, counting.job_id)
        done, requeues, last_run = counting.get_result(timeout=150)
    finally:
        REQUEUE.start("--nodes", "2")  # brings the node back
    assert (done, requeues) == (40, 1) and 0 < last_run < 40  # resumed, not from zero
    assert counting.requeues == {0: ["node failure"]}
    cluster.close()


PACKED = """
import json, sys
import slurmscope, tasks

kind, root = sys.argv[1], sys.argv[2]
cluster = slurmscope.Cluster(kind, root=root)
limit = dict(time="1", checkpoint_warning=10, max_requeues=6)
# one pack of three items: 5 s, then 60 s, then 5 s of work, under a 1-minute limit
array = cluster.task(tasks.count_to, **limit).map([(5, 1.0), (60, 1.0), (5, 1.0)], pack=3)
out = {
    "results": array.get_results(timeout=280),
    "requeues": array.requeues,
    "requeued": array.requeued,
    "job_ids": [array[i].job_id for i in range(3)],
    "log": "".join(p.read_text() for p in (array.directory / "logs").glob("*.out")),
}
print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("kind", ["sbatch", "pyslurm"])
def test_a_requeued_pack_resumes_at_its_first_item_without_an_outcome(
    own_cluster: str, tmp_path: Path, kind: str
) -> None:
    if kind == "pyslurm" and pyslurm_support.real_pyslurm() is not None:
        pytest.skip("the real pyslurm does not import here")
    env = dict(os.environ, SLURM_CONF=own_cluster, PYTHONPATH=str(TESTS))
    args = [sys.executable, "-c", PACKED, kind, str(tmp_path)]
    out = driver_result(args, env=env, timeout=300)
    (first, second, third) = out["results"]
    assert len(set(out["job_ids"])) == 1  # one Slurm task holds the three items
    assert first == [5, 0, 5]  # ran once, in the first run: not run again after a requeue
    done, requeues, last_run = second
    assert done == 60 and requeues >= 1 and last_run < 60  # resumed from its checkpoint
    assert third[0] == 5
    # each item counts its own requeues, all of them the time limit
    counted = {str(i): ["time limit"] * r[1] for i, r in enumerate(out["results"]) if r[1]}
    assert out["requeues"] == counted and "1" in counted
    assert str(out["log"]).count("time limit near") == sum(r[1] for r in out["results"])
    assert str(out["log"]).count("slurmscope worker: item 0 of") == 1 + requeues + third[1]
