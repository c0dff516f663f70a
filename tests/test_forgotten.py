"""Jobs the scheduler has forgotten read as they ended, on a Slurm cluster whose MinJobAge is
short (a cluster of this test run's own; see ``slurm_cluster.OwnCluster``).

Slurm forgets an ended job MinJobAge seconds after it ended (slurmctld purges about once a
minute). A job that ended without a result (TIMEOUT, CANCELLED, CANCELLED because its
dependency failed) must then read as it ended in ``status``, ``explain``, ``attach`` and
``clean``, from the final state the driver recorded in its job directory when it saw it end;
LOST only for what nobody saw end.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyslurm_support
import pytest
import slurm_cluster
import tasks
from conftest import add, boom, gate, sleep

import slurmscope
from slurmscope import cli
from slurmscope.cli import handles as cli_handles
from slurmscope.errors import DependencyError, JobNotCompletedError
from slurmscope.job_directory import JobDirectory

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.backends("sbatch", "pyslurm")]

MIN_JOB_AGE = 5
FORGETFUL = slurm_cluster.OwnCluster("forgetful", 28000, SLURMSCOPE_MIN_JOB_AGE=str(MIN_JOB_AGE))

short = slurmscope.task(tasks.sleep, time="00:00:05")  # Slurm rounds it up to a minute


@pytest.fixture(scope="module")
def forgetful() -> Iterator[None]:
    FORGETFUL.start()
    yield
    FORGETFUL.remove()


@pytest.fixture
def kind(backend: str, forgetful: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The backend, pointed at the forgetful cluster. pyslurm runs on the TEST DOUBLE here:
    libslurm reads its configuration once per process, and the real bindings of this test
    process already talk to the main test cluster (a second cluster in one process is refused,
    see test_pyslurm.py); the double reads SLURM_CONF on every call."""
    monkeypatch.setenv("SLURM_CONF", FORGETFUL.conf)
    with contextlib.ExitStack() as stack:
        if backend == "pyslurm":
            stack.enter_context(pyslurm_support.double_on_path())
        yield backend


def _cli(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> object:
    """The CLI in this process, as a later process would run it: no cluster kept."""
    cli_handles.clusters.clear()
    capsys.readouterr()
    assert cli.main(["--root", str(root), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _forgotten(cluster: slurmscope.Cluster, job_ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while cluster.backend.states(job_ids):
        assert time.monotonic() < deadline, f"Slurm still knows {job_ids} after {timeout} s"
        time.sleep(2)


def _submit_and_leave(kind: str, root: Path) -> str:
    """A job submitted by a process that exits at once: nobody sees it end (it sleeps, to
    be cancelled without a handle)."""
    code = (
        "import time, slurmscope\n"
        f"c = slurmscope.Cluster({kind!r}, root={str(root)!r})\n"
        "print(slurmscope.task(time.sleep)(600).job_id)\n"
    )
    env = dict(os.environ)
    if kind == "pyslurm":
        env["PYTHONPATH"] = os.pathsep.join(sys.path)  # the double, if it is the one in use
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return out.stdout.split()[-1]


def test_ended_jobs_read_as_they_ended_once_slurm_forgot_them(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "jobs"
    driver = slurmscope.Cluster(kind, root=root, set_as_default=False)
    go = tmp_path / "go"
    try:
        timed_out = short.on(driver)(600)
        cancelled = sleep.on(driver).map([600, 600])
        opened = gate.on(driver)(str(go))
        with driver.dependencies(opened):
            failed = boom.on(driver)(1)
        never = add.on(driver).after(failed)(1)  # cancelled by Slurm when `failed` fails
        go.touch()
        cancelled.cancel()
        assert timed_out.wait(timeout=300).state == "TIMEOUT"
        assert cancelled.wait(timeout=120).states == ["CANCELLED", "CANCELLED"]
        assert never.wait(timeout=120).state == "CANCELLED"
        assert failed.state == "FAILED"
        assert never.status.reason == "DependencyNeverSatisfied"
    finally:
        driver.close()
    ended = {job: job.submission.directory.recorded_states() for job in (timed_out, never)}
    assert ended[timed_out] and ended[timed_out][0][0] == "TIMEOUT"
    assert ended[never] and ended[never][0][:2] == ("CANCELLED", "DependencyNeverSatisfied")
    unseen = _submit_and_leave(kind, root)

    ids = [timed_out.job_id, cancelled.job_id, failed.job_id, never.job_id]
    later = slurmscope.Cluster(kind, root=root, set_as_default=False)
    try:
        later.backend.cancel(unseen)  # the backend alone: no handle, no poller sees it end
        _forgotten(later, [*ids, unseen], timeout=MIN_JOB_AGE + 180)

        # status, from the job directories alone
        status = _cli(root, capsys, "status", timed_out.job_id)
        assert status["counts"] == {"TIMEOUT": 1}  # type: ignore[index]
        assert status["tasks"][0]["reason"] == "TimeLimit"  # type: ignore[index]
        status = _cli(root, capsys, "status", cancelled.job_id)
        assert status["counts"] == {"CANCELLED": 2}  # type: ignore[index]
        status = _cli(root, capsys, "status", never.job_id)
        assert status["counts"] == {"CANCELLED": 1}  # type: ignore[index]
        assert status["tasks"][0]["reason"] == "DependencyNeverSatisfied"  # type: ignore[index]
        listing = _cli(root, capsys, "status")
        counts = {row["job_ids"][0]: row["counts"] for row in listing}  # type: ignore[attr-defined]
        assert counts[cancelled.job_id] == {"CANCELLED": 2}

        # explain: the forgotten dependent and its forgotten failed dependency
        tree = _cli(root, capsys, "explain", never.job_id)
        assert tree["summary"] == "CANCELLED 1"  # type: ignore[index]
        edge = tree["dependencies"][0]  # type: ignore[index]
        assert edge["upstream"]["summary"] == "FAILED 1"
        assert edge["never_satisfied"] == "afterok needs it to succeed, and it did not"

        # attach: at once, no 60 s of PENDING before LOST
        again = later.attach(timed_out.job_id)
        assert again.state == "TIMEOUT"
        assert again.status.reason == "TimeLimit"
        # a dependency on it is decided from the record, not handed to Slurm, which forgot it
        with pytest.raises(DependencyError, match="can never be satisfied"):
            add.on(later).after(again)(1)
        assert add.on(later).after(again, kind="afterany")(1).get_result(timeout=120) == 2
        assert later.attach(cancelled.job_id).states == ["CANCELLED", "CANCELLED"]  # type: ignore[union-attr]
        with pytest.raises(JobNotCompletedError) as info:
            later.attach(never.job_id).get_result(timeout=30)
        assert "CANCELLED" in str(info.value) and "DependencyNeverSatisfied" in str(info.value)

        # nobody saw this one end: LOST, once the scheduler has not known it for a while
        # (a minute, however many processes look: the first notes since when it is missing)
        unseen_dir = JobDirectory.find(root, later.name, unseen)
        assert unseen_dir is not None
        _cli(root, capsys, "status", unseen)
        marker = unseen_dir.path / "ended" / f"missing-{unseen}"
        assert marker.exists()
        marker.write_text(repr(time.time() - 61))  # as if that look were a minute ago
        assert _cli(root, capsys, "status", unseen)["counts"] == {"LOST": 1}  # type: ignore[index]
        assert not unseen_dir.recorded_states()  # LOST is not a state anyone saw

        # clean: every one of them has ended, none is kept as unfinished
        cleaned = _cli(root, capsys, "clean", "--older-than", "0s")
        assert cleaned["kept_unfinished"] == []  # type: ignore[index]
        assert len(cleaned["removed"]) == 7  # type: ignore[index,arg-type]
    finally:
        later.close()
