"""Faults a pipeline driver meets, on each backend (the real Slurm cluster included)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import slurm_cluster
from conftest import add, boom, dies_while_writing, fail_on, identity, kill_self, sleep

import slurmscope
from slurmscope.errors import JobNotCompletedError, TaskFailedError

pytestmark = pytest.mark.backends("local", "sbatch")


def wait_running(job: slurmscope.Job, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while job.state == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.state == "RUNNING"


def test_task_raises_others_still_collected(cluster: slurmscope.Cluster) -> None:
    array = fail_on.on(cluster).map([0, 1, 2, 1])
    results = array.get_results(timeout=120, return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    for i in (1, 3):
        assert isinstance(results[i], TaskFailedError)
        assert results[i].index == i
        assert "item 1 is bad" in results[i].remote_traceback
        assert isinstance(results[i].__cause__, RuntimeError)


def test_one_array_task_cancelled_from_outside(cluster: slurmscope.Cluster) -> None:
    array = sleep.on(cluster).map([0.5, 60, 0.5])
    wait_running(array[1])
    if cluster.backend.kind == "sbatch":
        subprocess.run(["scancel", array[1].job_id], check=True)
    else:
        cluster.backend.cancel(array.job_id, 1)
    results = array.get_results(timeout=120, return_exceptions=True)
    assert results[0] == 0.5 and results[2] == 0.5
    err = results[1]
    assert isinstance(err, JobNotCompletedError)
    assert err.state == "CANCELLED" and err.index == 1
    assert f"task 1 of array {array.job_id}" in str(err)


def test_task_killed_by_signal(cluster: slurmscope.Cluster) -> None:
    job = kill_self.on(cluster)(1)
    with pytest.raises(JobNotCompletedError) as info:
        job.get_result(timeout=120)
    assert info.value.state == "FAILED"
    # "Signal 9" locally; Slurm's reason plus the exit status on the cluster
    assert "signal 9" in (info.value.reason or "").lower()
    assert f"job {job.job_id} ended in state FAILED" in str(info.value)
    assert "slurmscope worker: task 0" not in str(info.value)  # stderr, not stdout
    assert not list(job.submission.directory.results_dir.iterdir())


def test_result_never_half_written(cluster: slurmscope.Cluster) -> None:
    """A worker killed while it pickles or writes its result leaves no result file: the
    client reports the kill, never a truncated pickle; stray temp files are ignored."""
    array = dies_while_writing.on(cluster).map([1, 2])
    results_dir = array.get_results_dir()
    # A temp file left by a writer killed mid-write, as atomic_write names them.
    (results_dir / ".1.pkl.999.deadbeef.tmp").write_bytes(b"\x80\x05truncated")
    results = array.get_results(timeout=120, return_exceptions=True)
    for err in results:
        assert isinstance(err, JobNotCompletedError) and err.state == "FAILED"
    assert sorted(p.name for p in results_dir.iterdir()) == [".1.pkl.999.deadbeef.tmp"]


def test_transitive_dependents_end_and_name_the_root_cause(cluster: slurmscope.Cluster) -> None:
    root = boom.on(cluster)("root")
    with cluster.dependencies(root):
        line = sys._getframe().f_lineno - 1
        via_scope = add.map([1, 2])
    via_after = add.on(cluster).after(via_scope)(3)
    via_data = identity.on(cluster)(via_after)
    with pytest.raises(JobNotCompletedError) as info:
        via_data.get_result(timeout=180)
    err = info.value
    assert err.state == "CANCELLED" and err.reason == "DependencyNeverSatisfied"
    assert err.upstream == [via_after.job_id, via_scope.job_id, root.job_id]
    text = str(err)
    assert "job passed as argument" in text and "explicit .after()" in text
    assert f"with cluster.dependencies() block (depth 1) at {__file__}:{line}" in text
    assert f"afterok:{root.job_id} (boom: ended FAILED; afterok needs it to succeed" in text
    for job in (via_after, via_data):
        assert job.state == "CANCELLED"
    assert set(via_scope.states) == {"CANCELLED"}


@pytest.mark.slurm
@pytest.mark.slow
def test_time_limit_on_slurm(tmp_path: Path) -> None:
    slurm_cluster.require()
    cluster = slurmscope.Cluster("sbatch", root=tmp_path, set_as_default=False)
    try:
        job = sleep.options(time="1").on(cluster)(600)  # Slurm's smallest limit: 1 minute
        with pytest.raises(JobNotCompletedError) as info:
            job.get_result(timeout=300)
        assert info.value.state == "TIMEOUT"
        assert "TIMEOUT" in str(info.value)
    finally:
        cluster.close()


@pytest.mark.slurm
def test_driver_killed_then_reattached(tmp_path: Path) -> None:
    """The driver dies right after submitting; a new process reattaches by id and by
    directory and collects every result, with the provenance of the dependencies."""
    slurm_cluster.require()
    script = textwrap.dedent(
        f"""
        import os, signal, time, slurmscope
        c = slurmscope.Cluster("sbatch", root={str(tmp_path)!r})
        prep = slurmscope.task(time.sleep)(2)
        with c.dependencies(prep):
            a = slurmscope.task(lambda x: x * x).map(range(5))
        print(a.job_id, a.directory, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == -signal.SIGKILL
    job_id, directory = out.stdout.split()
    cluster = slurmscope.Cluster("sbatch", root=tmp_path, set_as_default=False)
    try:
        by_id = cluster.attach(job_id)
        by_dir = cluster.attach(directory)
        assert by_id.get_results(timeout=180) == [0, 1, 4, 9, 16]
        assert by_dir.get_results(timeout=60) == [0, 1, 4, 9, 16]
        dep = by_id.dependencies[0]
        assert dep.kind == "afterok" and dep.provenance.via == "scope"
        assert dep.provenance.site.line == 5 and dep.provenance.depth == 1
        assert cluster.attach(f"{job_id}_3").get_result() == 9
    finally:
        cluster.close()


def test_local_driver_process_killed_reports_lost(tmp_path: Path) -> None:
    """The local scheduler lives in the driver: when the driver is killed, its unfinished
    jobs cannot finish, and a later process says so instead of waiting for ever."""
    root, pid_file = tmp_path / "jobs", tmp_path / "gate.pid"
    script = textwrap.dedent(
        f"""
        import os, signal, time, slurmscope

        def gate_job(path):
            with open(path + ".tmp", "w") as fh:
                fh.write(str(os.getpid()))
            os.rename(path + ".tmp", path)
            time.sleep(60)

        c = slurmscope.Cluster("local", root={str(root)!r})
        gate = slurmscope.task(gate_job)({str(pid_file)!r})
        later = slurmscope.task(time.sleep).after(gate)(0)
        deadline = time.monotonic() + 60
        while not os.path.exists({str(pid_file)!r}) and time.monotonic() < deadline:
            time.sleep(0.05)  # the gate runs: its worker outlives this driver
        print(later.job_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    job_id = out.stdout.split()[0]
    cluster = slurmscope.Cluster("local", root=root, set_as_default=False)
    try:
        job = cluster.attach(job_id)
        with pytest.raises(JobNotCompletedError) as info:
            job.get_result(timeout=30)
        assert info.value.state == "LOST"
    finally:
        cluster.close()
        # the gate's worker, orphaned by the killed driver: only it, by its pid
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_pending_array_task_cancelled_through_its_handle(cluster: slurmscope.Cluster) -> None:
    """Slurm forgets a pending array task it cancels; the handle still says CANCELLED."""
    gate = sleep.on(cluster)(60)
    array = add.on(cluster).after(gate).map([1, 2, 3])
    array[1].cancel()
    gate.cancel()
    array.wait(timeout=60)
    assert array[1].state == "CANCELLED"
    assert set(array.states) == {"CANCELLED"}
