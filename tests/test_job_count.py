"""Slurm's MaxJobCount: a map the controller would refuse for the jobs it holds is refused
before anything is submitted, with a message naming the limit (on a cluster of this test
run's own, MaxJobCount=100, MaxArraySize=11, so that maps are split)."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyslurm_support
import pytest
import slurm_cluster
import tasks
from conftest import driver_result

import slurmscope
from slurmscope import limits
from slurmscope.backends._slurm import count_array_range, scheduler_parameters, tasks_per_array
from slurmscope.errors import SubmissionError
from slurmscope.spec import JobSpec
from slurmscope.testing import FakeBackend

HERE = Path(__file__).resolve().parent
MAXJOBS = slurm_cluster.OwnCluster(
    "maxjobs",
    36000,
    SLURMSCOPE_MAX_JOB_COUNT="100",
    SLURMSCOPE_MAX_ARRAY_SIZE="11",
    SLURMSCOPE_MIN_JOB_AGE="5",
)


# -- the rules, as slurmctld applies them (job_mgr.c: job_allocate, _add_job_record) ------------
def test_job_count_refusal_counts_every_task_and_the_jobs_held() -> None:
    assert limits.job_count_refusal(100, limits.JobCapacity(100, 0)) is None  # exactly: taken
    assert limits.job_count_refusal(25, limits.JobCapacity(100, 75)) is None
    over = limits.job_count_refusal(26, limits.JobCapacity(100, 75))
    assert over is not None and "MaxJobCount is 100" in over and "75 jobs" in over
    assert "exceed it by 1" in over and "at most 25 items" in over
    too_big = limits.job_count_refusal(101, limits.JobCapacity(100, None))
    assert too_big is not None and "more than the cluster's MaxJobCount of 100" in too_big


def test_which_maps_count_the_jobs_first() -> None:
    assert not limits.needs_count(10, 1, 10000)  # small, one array: Slurm judges
    assert limits.needs_count(500, 1, 10000)  # 5% of the limit
    assert limits.needs_count(20, 2, 10000)  # split: never half-submitted


def test_array_ranges_are_counted_without_listing_them() -> None:
    assert count_array_range("[0-999999%5]") == 1_000_000
    assert count_array_range("0-3,7,9-10") == 7
    assert count_array_range("0-20:5") == 5
    assert count_array_range("4") == 1


def test_max_array_tasks_caps_the_array_size() -> None:
    params = scheduler_parameters("bf_interval=1,max_array_tasks=500,sched_interval=2")
    assert params["max_array_tasks"] == "500"
    assert tasks_per_array(1001, params) == 500
    assert tasks_per_array(1001, {"max_array_tasks": 5000}) == 1001
    assert tasks_per_array(1001, {}) == 1001


# -- parts submitted several at once: ids in order, all or none -------------------------------
def test_parallel_parts_keep_their_order(tmp_path: Path) -> None:
    backend = FakeBackend(run=False, max_array_size=10)
    backend.parallel_submissions = 4
    cluster = slurmscope.Cluster(backend, root=tmp_path, set_as_default=False)
    array = cluster.task(tasks.identity).map(range(95))
    assert len(array.job_ids) == 10
    by_id = {job_id: backend.jobs[job_id] for job_id in array.job_ids}
    # part i of the map is the array that runs items i*10 ..: whatever order they reached
    # the scheduler in
    assert [_offset(by_id[j].spec.command) for j in array.job_ids] == [
        str(10 * i) for i in range(10)
    ]
    assert [by_id[j].size for j in array.job_ids] == [10] * 9 + [5]
    cluster.close()


def test_a_failing_part_cancels_every_part_submitted(tmp_path: Path) -> None:
    started = threading.Barrier(3, timeout=10)
    seen: list[str] = []

    def on_submit(spec: JobSpec) -> None:
        offset = _offset(spec.command)
        seen.append(offset)
        if offset in ("0", "10", "20"):
            started.wait()  # three parts in flight at once
        if offset == "20":
            time.sleep(0.2)  # the others are submitted meanwhile
            raise SubmissionError("Slurm refused the job: part three")

    backend = FakeBackend(run=False, max_array_size=10, on_submit=on_submit)
    backend.parallel_submissions = 3
    cluster = slurmscope.Cluster(backend, root=tmp_path, set_as_default=False)
    with pytest.raises(SubmissionError, match="part three"):
        cluster.task(tasks.identity).map(range(95))
    submitted = list(backend.jobs)
    assert len(submitted) >= 2  # parts 1 and 2 at least got in before part 3 failed
    assert sorted(job_id for job_id, index in backend.cancels if index is None) == sorted(submitted)
    assert not [p for p in tmp_path.iterdir() if p.name[0].isdigit()]  # no directory left
    cluster.close()


def _offset(command: tuple[str, ...]) -> str:
    """The offset a part's worker command gives (``slurmscope.worker DIR [OFFSET]``)."""
    after = command[command.index("slurmscope.worker") + 2 :]
    return after[0] if after else "0"


# -- on a real cluster -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def maxjobs() -> Iterator[slurm_cluster.OwnCluster]:
    MAXJOBS.start()
    yield MAXJOBS
    MAXJOBS.remove()


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sbatch", "pyslurm"])
def test_a_map_over_max_job_count_is_refused_before_anything_is_submitted(
    kind: str, maxjobs: slurm_cluster.OwnCluster, tmp_path: Path
) -> None:
    if kind == "pyslurm":
        why = pyslurm_support.real_pyslurm()
        if why is not None:
            pytest.skip(f"no real pyslurm here: {why}")
    env = dict(os.environ, SLURM_CONF=maxjobs.conf, PYTHONPATH=os.pathsep.join(sys.path))
    got = driver_result(
        [sys.executable, str(HERE / "job_count_driver.py"), kind, str(tmp_path / "jobs")],
        env=env,
        timeout=400,
    )
    assert got["max_job_count"] == 100 and got["per_array"] == 11
    assert got["over_limit"] and "MaxJobCount of 100" in got["over_limit"]
    assert "Nothing was submitted" in got["over_limit"] and got["over_limit_unchanged"]
    assert got["free_after_filler"] == 25
    assert got["one_too_many"] and "MaxJobCount is 100" in got["one_too_many"]
    assert "75 jobs" in got["one_too_many"] and "at most 25 items" in got["one_too_many"]
    assert got["one_too_many_unchanged"] and got["submits_while_refusing"] == 0
    assert got["exact_parts"] == 3 and got["free_after_exact"] == 0  # not overly strict
    if kind == "pyslurm":
        assert got["single"] and "MaxJobCount is 100" in got["single"]
        assert got["single_attempts"] == 1  # refused, not retried six times


# -- packed maps: the controller counts packs; pack="auto" packs to fit ---------------------------
class _AlmostFull(FakeBackend):
    """A scheduler whose MaxJobCount of 100 has 97 records taken: room for 3 more tasks."""

    def job_capacity(self, count: bool) -> limits.JobCapacity | None:
        return limits.JobCapacity(100, 97 if count else None)


def test_a_packed_map_counts_its_packs_and_auto_packs_to_fit(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    backend = _AlmostFull(max_array_size=2)  # split maps: counted first
    cluster = slurmscope.Cluster(backend, root=tmp_path, set_as_default=False)
    work = cluster.task(tasks.identity)
    with pytest.raises(slurmscope.ClusterFullError, match='pack="auto"') as refused:
        work.map(range(4))  # four tasks: one too many
    assert "MaxJobCount is 100" in str(refused.value)
    with pytest.raises(slurmscope.ClusterFullError, match="MaxJobCount is 100"):
        work.map(range(40), pack=10)  # four packs: one too many
    assert not backend.jobs and not [p for p in tmp_path.iterdir() if p.name[0].isdigit()]
    with capture_logs() as events:
        fitted = work.map(range(1000), pack="auto")  # auto's first guess: 4 packs of 250
    assert fitted.pack == 334 and fitted.get_results() == list(range(1000))
    told = [e for e in events if e["event"] == "slurmscope.pack.fitted"]
    assert len(told) == 1 and told[0]["was"] == 250 and told[0]["room"] == 3, told
    three = work.map(range(30), pack=10)  # three packs: they fit
    assert three.pack == 10 and three.get_results() == list(range(30))
    cluster.close()
