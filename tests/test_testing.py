"""``slurmscope.testing.FakeBackend``, through the public API, as a user testing a pipeline
uses it: submissions recorded, tasks run in-process in dependency order, states scripted,
queries and cancels counted."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import tasks

import slurmscope
from slurmscope import JobCannotRunError, JobNotCompletedError, SubmissionError, TaskFailedError
from slurmscope.states import TaskState
from slurmscope.testing import FakeBackend, FakeJob

identity = slurmscope.task(tasks.identity)
fail_on = slurmscope.task(tasks.fail_on)


Connect = Callable[[FakeBackend], slurmscope.Cluster]


@pytest.fixture
def connect(tmp_path: Path) -> Iterator[Connect]:
    """A cluster on the given fake (closed after the test), as a user's fixture would be."""
    made: list[slurmscope.Cluster] = []

    def make(fake: FakeBackend) -> slurmscope.Cluster:
        made.append(slurmscope.Cluster(fake, root=tmp_path / "jobs", set_as_default=False))
        return made[-1]

    yield make
    for cluster in made:
        cluster.close()


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def cluster(fake: FakeBackend, connect: Connect) -> slurmscope.Cluster:
    return connect(fake)


def test_a_two_stage_pipeline_runs_to_results(
    fake: FakeBackend, cluster: slurmscope.Cluster
) -> None:
    with fake.hold():  # nothing starts: stage 1 cannot end before stage 2 is submitted
        first = identity.on(cluster).map([1, 2, 3])
        with cluster.dependencies(first):
            second = fail_on.on(cluster).options(mem="4G", time=5).map([4, 5, 6])
        time.sleep(0.1)  # the runner looks every 20 ms
        assert [state.state for state in fake.job(first).tasks] == ["PENDING"] * 3
    assert second.get_results(timeout=10) == [40, 50, 60]
    assert first.get_results(timeout=10) == [1, 2, 3]

    assert list(fake.jobs) == [first.job_id, second.job_id]
    stage2 = fake.job(second)
    assert stage2.dependency == f"afterok:{first.job_id}"
    assert stage2.spec.dependencies == (("afterok", (first.job_id,)),)
    assert (stage2.resources.mem, stage2.resources.time) == ("4G", "5")
    assert stage2.size == 3 and stage2.spec.array is not None
    assert stage2.name == "fail_on" and fake.job(first).dependency == ""
    assert fake.recorded_dependencies(second.job_id) == stage2.dependency
    assert [t.state for t in stage2.tasks] == ["COMPLETED"] * 3
    assert second.states == ["COMPLETED"] * 3


def test_a_task_that_raises_is_a_task_failed_error_and_its_output_is_in_its_log(
    cluster: slurmscope.Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    array = fail_on.on(cluster).map([0, 1, 2])
    results = array.get_results(timeout=10, return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], TaskFailedError)
    assert "item 1 is bad" in str(results[1])
    assert array.states == ["COMPLETED", "FAILED", "COMPLETED"]
    out, err = array[1].log_paths()
    assert "slurmscope worker: task 1" in out.read_text()
    assert "RuntimeError: item 1 is bad" in err.read_text()
    captured = capsys.readouterr()  # the task's output went to its log, not to the test's
    assert "slurmscope worker" not in captured.out + captured.err


def test_a_scripted_failure_ends_the_task_and_its_afterok_dependents(
    fake: FakeBackend, cluster: slurmscope.Cluster
) -> None:
    with fake.hold():
        first = identity.on(cluster).map([1, 2, 3])
        with cluster.dependencies(first):
            ok_after = identity.on(cluster)("never")
        with cluster.dependencies(first, kind="afternotok"):
            cleanup = identity.on(cluster)("cleanup")
        with cluster.dependencies(first, kind="aftercorr"):
            paired = identity.on(cluster).map([7, 8, 9])
        fake.set_state(first[1], TaskState("FAILED", "OutOfMemory", "0:125"))
    results = first.get_results(timeout=10, return_exceptions=True)
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], JobNotCompletedError)
    assert "FAILED" in str(results[1])
    assert first.states == ["COMPLETED", "FAILED", "COMPLETED"]
    with pytest.raises(JobNotCompletedError, match="can never be satisfied"):
        ok_after.get_result(timeout=10)
    assert ok_after.status == TaskState("CANCELLED", "DependencyNeverSatisfied")
    assert cleanup.get_result(timeout=10) == "cleanup"
    assert paired.get_results(timeout=10, return_exceptions=True)[::2] == [7, 9]
    assert paired.states == ["COMPLETED", "CANCELLED", "COMPLETED"]


def test_a_script_decides_states_before_anything_runs(connect: Connect) -> None:
    def script(job: FakeJob, index: int) -> str | None:
        return "OUT_OF_MEMORY" if job.name == "fail_on" else None

    cluster = connect(FakeBackend(script=script))
    job = fail_on.on(cluster)(3)
    other = identity.on(cluster)(3)
    with pytest.raises(JobNotCompletedError, match="OUT_OF_MEMORY"):
        job.get_result(timeout=10)
    assert other.get_result(timeout=10) == 3
    assert not job.log_paths()[0].exists()  # it never ran
    assert other.log_paths()[0].exists()


def test_a_task_pending_for_good_is_a_job_cannot_run_error(
    fake: FakeBackend, cluster: slurmscope.Cluster
) -> None:
    with fake.hold():
        job = identity.on(cluster)(1)
        fake.set_state(job, TaskState("PENDING", "PartitionConfig"))
    with pytest.raises(JobCannotRunError, match="PartitionConfig"):
        job.wait(timeout=10)
    job.cancel()
    assert fake.cancels == [(job.job_id, None)]
    assert job.wait(timeout=10).status == TaskState("CANCELLED", "None")
    assert fake.job(job).tasks == [TaskState("CANCELLED", "None")]


def test_record_only_cancel_and_query_counting(connect: Connect) -> None:
    fake = FakeBackend(run=False, query_interval=(5, 5))  # the poller does not ask now
    cluster = connect(fake)
    array = identity.on(cluster).map([1, 2])
    job = identity.on(cluster)(3)
    assert len(fake.jobs) == 2 and fake.cancels == []
    before = fake.queries
    assert job.state == "PENDING"  # job.state asks the scheduler, now
    assert fake.queries == before + 1
    time.sleep(0.01)  # job.state asks again only after poll_interval[0] (5 ms here)
    array.cancel()
    assert fake.cancels == [(array.job_id, None)]
    array.wait(timeout=10)
    assert array.states == ["CANCELLED", "CANCELLED"]
    with pytest.raises(JobNotCompletedError, match="CANCELLED"):
        array.get_results(timeout=10)
    # Step by step: the test runs a task when it wants to.
    assert fake.run_task(job) == TaskState("COMPLETED", "None", "0:0")
    assert job.get_result(timeout=10) == 3
    assert fake.job(job).tasks == [TaskState("COMPLETED", "None", "0:0")]


def test_a_split_map_and_a_throttle(connect: Connect) -> None:
    fake = FakeBackend(workers=3, max_array_size=2)
    array = slurmscope.task(tasks.stamp).on(connect(fake)).map(range(5), max_concurrent=1)
    results = array.get_results(timeout=30)
    assert [x for x, _, _ in results] == [0, 1, 2, 3, 4]
    assert len(array.job_ids) == 3 and list(fake.jobs) == list(array.job_ids)
    parts = [fake.job(job_id) for job_id in array.job_ids]
    assert [part.size for part in parts] == [2, 2, 1]
    assert [part.spec.array and part.spec.array.render() for part in parts] == [
        "0-1%1",
        "0-1%1",
        "0-0%1",
    ]
    for first, second in (results[0:2], results[2:4]):  # one task of each array at a time
        assert first[2] <= second[1]


def test_a_refused_submission_raises_and_records_nothing(connect: Connect) -> None:
    def refuse(spec: object) -> None:
        raise SubmissionError("sbatch: error: Batch job submission failed: Invalid account")

    fake = FakeBackend(on_submit=refuse)
    cluster = connect(fake)
    with pytest.raises(SubmissionError, match="Invalid account"):
        identity.on(cluster)(1)
    assert fake.jobs == {}


def test_singleton_waits_for_the_earlier_job_of_its_name(connect: Connect) -> None:
    fake = FakeBackend(workers=2)  # else the second would wait for a worker anyway
    cluster = connect(fake)
    with fake.hold():
        first = slurmscope.task(tasks.sleep).on(cluster)(0.3)
        with cluster.dependencies(kind="singleton"):
            second = slurmscope.task(tasks.sleep).on(cluster)(0.0)
    assert fake.job(second).dependency == "singleton"
    start = time.monotonic()
    assert second.get_result(timeout=10) == 0.0
    assert first.done() and time.monotonic() - start >= 0.25


def test_states_said_of_a_job_and_of_its_tasks(connect: Connect) -> None:
    fake = FakeBackend(run=False)
    array = identity.on(connect(fake)).map([1, 2, 3])

    def said() -> list[str]:
        answer = fake.states([array.job_id])[array.job_id]
        return [answer[i].state for i in sorted(answer)]

    assert said() == ["PENDING"] * 3
    fake.set_state(array, "RUNNING")
    fake.set_state(array[2], TaskState("FAILED", "NonZeroExitCode", "2:0"))
    assert said() == ["RUNNING", "RUNNING", "FAILED"]
    fake.set_state(array, "COMPLETING")  # the whole job's state replaces its tasks'
    assert said() == ["COMPLETING"] * 3
    fake.set_state(array, None)  # the fake says again
    assert said() == ["PENDING"] * 3
    with pytest.raises(KeyError, match="no job 99"):
        fake.job("99")


def test_after_waits_for_its_target_to_start(
    fake: FakeBackend, cluster: slurmscope.Cluster
) -> None:
    with fake.hold():
        first = identity.on(cluster)(1)
        with cluster.dependencies(first, kind="after"):
            second = identity.on(cluster)(2)
        fake.set_state(first, TaskState("PENDING", "Priority"))
    time.sleep(0.1)
    assert fake.job(second).tasks == [TaskState("PENDING", "Dependency")]
    assert fake.job(second).dependency == f"after:{first.job_id}"
    fake.set_state(first, "RUNNING")
    assert second.get_result(timeout=10) == 2
