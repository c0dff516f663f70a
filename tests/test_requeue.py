"""Checkpoint and requeue on the local backend (its emulation of Slurm's warning signal,
requeue and preemption), and what a checkpointing task asks Slurm for.

The real clusters' side is tests/test_requeue_slurm.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import tasks

import slurmscope
from slurmscope.backends.pyslurm_description import description_fields
from slurmscope.backends.sbatch import sbatch_arguments
from slurmscope.errors import InvalidInputError, TaskFailedError
from slurmscope.spec import JobSpec, Resources

#: 4 seconds, the warning 2 seconds before: a run does about 2 seconds of work.
LIMIT = {"time": "0:04", "checkpoint_warning": 2}


@pytest.fixture
def cluster(tmp_path: Path) -> slurmscope.Cluster:
    with slurmscope.Cluster("local", root=tmp_path, set_as_default=False) as c:
        yield c


def test_function_form_resumes_through_requeues(cluster: slurmscope.Cluster) -> None:
    count_to = cluster.task(tasks.count_to, **LIMIT, max_requeues=10)
    job = count_to(16, 0.25)  # 4 seconds of work under a 4-second limit warned at 2
    done, requeues, last_run = job.get_result(timeout=90)
    assert done == 16
    assert requeues >= 1 and last_run < 16  # it resumed: the last run did not start at 0
    assert job.requeues == {0: ["time limit"] * requeues}
    assert job.get_result() == (done, requeues, last_run)  # one result, read again the same
    said = f"task 0 requeued {requeues} time(s): " + ", ".join(["time limit"] * requeues)
    for verb in ("status", "explain"):  # another process, from the job directory
        shown = subprocess.run(
            [sys.executable, "-m", "slurmscope.cli", "--root", str(cluster.root), verb, job.job_id],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        assert said in shown, shown


def test_array_tasks_requeue_one_by_one(cluster: slurmscope.Cluster) -> None:
    count_to = cluster.task(tasks.count_to, **LIMIT, max_requeues=10)
    array = count_to.map([(16, 0.25), (4, 0.25), (12, 0.25)])  # the second: 1 s, no requeue
    results = array.get_results(timeout=90)
    assert [r[0] for r in results] == [16, 4, 12]
    assert results[1][1] == 0 and results[0][1] >= 1 and results[2][1] >= 1
    assert array.requeued == [0, 2]
    assert array.requeues == {i: ["time limit"] * results[i][1] for i in (0, 2)}
    aligned = cluster.task(tasks.stamped).map(array)  # data dependencies, task by task
    assert [value for value, _ in aligned.get_results(timeout=30)] == results


def test_object_form_resumes_through_requeues(cluster: slurmscope.Cluster) -> None:
    train = cluster.task(tasks.Training(), **LIMIT, max_requeues=10)
    assert train.name == "Training"
    job = train(16, 0.25)
    epochs, runs = job.get_result(timeout=90)
    assert epochs == 16
    assert runs >= 2  # the object of the last run was the one checkpoint() returned
    assert job.requeues == {0: ["time limit"] * (runs - 1)}


def test_checkpointable_base_class_turns_checkpointing_on(cluster: slurmscope.Cluster) -> None:
    class Counter(slurmscope.Checkpointable):
        def __init__(self) -> None:
            self.done = 0

        def __call__(self, n: int) -> int:
            while self.done < n:
                time.sleep(0.25)
                self.done += 1
            return self.done

    job = cluster.task(Counter(), time="0:04", checkpoint_warning=2, max_requeues=10)(16)
    assert job.get_result(timeout=90) == 16
    assert job.requeues[0][0] == "time limit"


def test_requeue_limit_fails_the_task_naming_it(cluster: slurmscope.Cluster) -> None:
    count_to = cluster.task(tasks.count_to, **LIMIT, max_requeues=1)
    job = count_to(400, 0.25)  # 100 seconds of work: never done in two runs
    with pytest.raises(TaskFailedError, match=r"requeued 1 times.*max_requeues=1"):
        job.get_result(timeout=60)
    assert job.requeues == {0: ["time limit"]}


def test_dependents_wait_for_the_final_completion(cluster: slurmscope.Cluster) -> None:
    count_to = cluster.task(tasks.count_to, **LIMIT, max_requeues=10)
    stamped = cluster.task(tasks.stamped)
    upstream = count_to(16, 0.25)
    by_data = stamped(upstream)  # a data dependency
    by_afterok = stamped.after(upstream)("after")
    value, ran_at = by_data.get_result(timeout=90)
    assert value == upstream.get_result()
    assert value[1] >= 1  # the upstream was requeued before its final run
    outcome = upstream.directory / "results" / "0.pkl"
    ended_at = outcome.stat().st_mtime
    assert ran_at >= ended_at
    assert by_afterok.get_result(timeout=30)[1] >= ended_at


def test_preempted_task_resumes_from_its_checkpoint(cluster: slurmscope.Cluster) -> None:
    count_to = cluster.task(tasks.count_to, time="5", checkpoint_warning=60)
    train = cluster.task(tasks.Training(), time="5")
    counting, training = count_to(30, 0.1), train(30, 0.1)
    saved = counting.directory / "checkpoints" / "0.pkl"
    deadline = time.monotonic() + 30
    while not saved.exists() or training.state != "RUNNING":
        assert time.monotonic() < deadline, "the tasks did not start"
        time.sleep(0.1)
    time.sleep(0.5)
    backend = cluster.backend
    assert isinstance(backend, slurmscope.backends.local.LocalBackend)
    backend.preempt(counting.job_id)
    backend.preempt(training.job_id)
    done, requeues, last_run = counting.get_result(timeout=60)
    assert (done, requeues) == (30, 1) and last_run < 30
    assert training.get_result(timeout=60) == (30, 2)
    assert counting.requeues == training.requeues == {0: ["preemption"]}


def test_bad_checkpoint_settings_are_refused_before_submitting(
    cluster: slurmscope.Cluster,
) -> None:
    with pytest.raises(InvalidInputError, match="not shorter than the time limit"):
        cluster.task(tasks.count_to, time="1", checkpoint_warning=60)
    with pytest.raises(InvalidInputError, match="max_requeues"):
        cluster.task(tasks.count_to, max_requeues=-1)
    with pytest.raises(InvalidInputError, match="checkpoint_warning"):
        cluster.task(tasks.count_to, checkpoint_warning=0)
    assert not list(cluster.root.glob("*count_to*"))
    with pytest.raises(RuntimeError, match="inside a slurmscope task"):
        slurmscope.save_checkpoint(1)


def _spec(resources: Resources) -> JobSpec:
    return JobSpec("t", ("true",), "/tmp", "/tmp/o", "/tmp/e", resources=resources)


def test_slurm_requests_of_a_checkpointing_task() -> None:
    asked = _spec(Resources(time="10", checkpoint_warning=120))
    args = sbatch_arguments(asked)
    assert {"--signal=B:USR1@120", "--requeue", "--open-mode=append", "--time=10"} <= set(args)
    fields = description_fields(asked)
    assert fields["signal"] == "B:SIGUSR1@120" and fields["is_requeueable"] is True
    assert fields["log_files_open_mode"] == "append"
    plain = _spec(Resources(time="10"))
    assert not any("signal" in a or "requeue" in a for a in sbatch_arguments(plain))
    assert "signal" not in description_fields(plain)


def test_checkpointing_environment_only_where_asked(cluster: slurmscope.Cluster) -> None:
    plain = cluster.task(tasks.identity)(1)
    plain.get_result(timeout=30)
    assert not (plain.directory / "checkpoints").exists()  # no signal handlers were set


def test_a_thread_the_task_starts_can_save_a_checkpoint(cluster: slurmscope.Cluster) -> None:
    job = cluster.task(tasks.checkpoint_in_a_thread)(7)
    assert job.get_result(timeout=60) == 7
    folder = job.directory / "checkpoints"
    assert folder.is_dir() and (folder.stat().st_mode & 0o777) == 0o700
    assert ((folder / "0.pkl").stat().st_mode & 0o777) == 0o600


def test_a_failing_checkpoint_hook_never_leaves_a_task_running_unwarned(
    cluster: slurmscope.Cluster,
) -> None:
    """The hook's error is not raised into the task's code (whose broad except would swallow
    it and run on with the signals ignored): the task is requeued as asked, from the state
    saved last (none here), until its limit ends it with that error."""
    job = cluster.task(tasks.FailingCheckpoint(), **LIMIT, max_requeues=1)(30)
    with pytest.raises(TaskFailedError) as error:
        job.get_result(timeout=90)
    assert "max_requeues=1" in str(error.value)
    out = job.log_paths()[0].read_text()
    assert "checkpoint() failed" in out and "checkpoint() broke" in out


def test_a_short_limit_gets_a_warning_that_fits(tmp_path: Path) -> None:
    from slurmscope.testing import FakeBackend

    backend = FakeBackend(run=False)
    c = slurmscope.Cluster(backend, root=tmp_path, set_as_default=False)
    job = c.task(tasks.FailingCheckpoint(), time="0:30")(1)  # default warning: 60 s
    assert backend.job(job).resources.checkpoint_warning == 15
    c.close()
