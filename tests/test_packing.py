"""``map(items, pack=...)``: several items per Slurm array task, each item keeping its own
result, error, state, log section, cancel and dependencies; on the local backend and on the
real Slurm cluster (sbatch and pyslurm). See docs/packing.md."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import tasks
from conftest import add, fail_on, held, identity, job_dirs, recorded
from structlog.testing import capture_logs

import slurmscope
from slurmscope.cli import main
from slurmscope.errors import InvalidInputError, JobNotCompletedError, TaskFailedError
from slurmscope.states import TaskState
from slurmscope.testing import FakeBackend

shout = slurmscope.task(tasks.shout)


def _slurm_tasks(cluster: slurmscope.Cluster, job_id: str) -> dict[int, TaskState]:
    """The scheduler's own states of the tasks of array ``job_id``, once all have ended."""
    deadline = time.monotonic() + 60
    while True:
        found = dict(cluster.backend.states([job_id]).get(job_id, {}))
        if found and all(s.terminal for s in found.values()):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.5)


def test_packed_results_keep_item_order_and_a_failing_item_its_own_error(
    cluster: slurmscope.Cluster,
) -> None:
    array = fail_on.on(cluster).map(range(10), pack=4)  # item 1 raises
    assert array.pack == 4 and len(array) == 10 and len(array.job_ids) == 1
    results = array.get_results(timeout=120, return_exceptions=True)
    assert [r for i, r in enumerate(results) if i != 1] == [10 * i for i in range(10) if i != 1]
    assert isinstance(results[1], TaskFailedError) and results[1].index == 1
    assert "item 1 is bad" in str(results[1])
    with pytest.raises(TaskFailedError, match="item 1 is bad"):
        array.get_results()
    assert array.counts() == {"COMPLETED": 9, "FAILED": 1}
    assert array.progress() == {"done": 9, "running": 0, "pending": 0, "failed": 1}
    assert [array[i].job_id for i in (0, 3, 4, 9)] == [f"{array.job_id}_{t}" for t in (0, 0, 1, 2)]
    assert array[3].get_result() == 30 and array[-1].get_result() == 90
    # three Slurm tasks; the one holding the failed item ended FAILED (honest accounting)
    scheduler = _slurm_tasks(cluster, array.job_id)
    assert {t: s.state for t, s in scheduler.items()} == {
        0: "FAILED",
        1: "COMPLETED",
        2: "COMPLETED",
    }


def test_explain_and_the_manifest_say_the_pack_size(
    cluster: slurmscope.Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    with capture_logs() as events:
        array = add.on(cluster).map(range(5), pack=2)
    submitted = [e for e in events if e["event"] == "slurmscope.submit"]
    assert len(submitted) == 1 and submitted[0]["pack"] == 2
    assert array.get_results(timeout=120) == [1, 2, 3, 4, 5]
    manifest = json.loads((array.directory / "manifest.json").read_text())
    assert manifest["pack"] == 2 and manifest["pack_asked"] == 2
    assert [p["pack"] for p in manifest["parts"]] == [2]
    assert main(["--root", str(cluster.root), "explain", array.job_id]) == 0
    shown = capsys.readouterr().out
    assert "packed: 2 items per Slurm array task (5 items)" in shown, shown
    assert "packed: 2 items per Slurm array task" in array[3].explain()
    assert "packed" not in add.on(cluster).map(range(2)).explain()
    again = cluster.attach(array.job_id)  # another process's view, from the job directory
    assert isinstance(again, slurmscope.ArrayJob) and again.pack == 2
    assert again.get_results(timeout=60) == [1, 2, 3, 4, 5]


def test_logs_of_one_packed_item(
    cluster: slurmscope.Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    array = shout.on(cluster).map(range(6), pack=3)
    assert array.get_results(timeout=120) == list(range(6))
    out, err = array[4].logs()
    assert "item says 4" in out and "item warns 4" in err
    assert "says 3" not in out and "says 5" not in out and "warns 5" not in err
    whole = array[4].log_paths()[0].read_text()  # the pack's file holds its three items
    assert all(f"item says {i}" in whole for i in (3, 4, 5)), whole
    assert main(["--root", str(cluster.root), "logs", array.job_id, "4"]) == 0
    shown = capsys.readouterr().out
    assert "item says 4" in shown and "item says 3" not in shown, shown


def test_one_item_whose_pack_mate_failed_still_gives_its_value(
    cluster: slurmscope.Cluster, tmp_path: Path
) -> None:
    with held(cluster, tmp_path) as hold:
        upstream = fail_on.on(cluster).after(hold).map(range(6), pack=3)  # item 1 fails
        by_data = identity.on(cluster)(upstream[2])
        by_after = add.on(cluster).options(after=[upstream[2]])(5)
        never = identity.on(cluster)(upstream[1])
        # Slurm knows tasks only: it waits for the pack to end, the item decides
        for job in (by_data, by_after, never):
            assert recorded(cluster, job.job_id) == {("afterany", f"{upstream.job_id}_0")}
        assert by_data.dependencies[0].kind == "afterok"  # the user's meaning, kept
    assert by_data.get_result(timeout=120) == 20
    assert by_after.get_result(timeout=120) == 6
    with pytest.raises(TaskFailedError, match="afterok on item 1 .* can never be satisfied"):
        never.get_result(timeout=120)


def test_aftercorr_between_packed_maps_skips_only_the_failed_items_partner(
    cluster: slurmscope.Cluster, tmp_path: Path
) -> None:
    with held(cluster, tmp_path) as hold:
        first = fail_on.on(cluster).after(hold).map(range(8), pack=3)  # item 1 fails
        second = shout.on(cluster).after(first, kind="aftercorr").map(range(8), pack=3)
        assert recorded(cluster, second.job_id) == {("afterany", first.job_id)}
    results = second.get_results(timeout=120, return_exceptions=True)
    assert [results[i] for i in range(8) if i != 1] == [i for i in range(8) if i != 1]
    assert isinstance(results[1], TaskFailedError)
    assert "aftercorr on item 1" in str(results[1]) and "was not run" in str(results[1])
    assert "item says 1" not in second[1].logs()[0]  # its function never ran
    assert "item says 0" in second[0].logs()[0]
    assert second.counts() == {"COMPLETED": 7, "FAILED": 1}


def test_cancel_a_packed_map_and_single_items(cluster: slurmscope.Cluster, tmp_path: Path) -> None:
    with held(cluster, tmp_path) as hold:
        whole = add.on(cluster).after(hold).map(range(6), pack=2)
        some = add.on(cluster).after(hold).map(range(6), pack=2)
        whole.cancel()
        some[1].cancel()  # its pack-mate, item 0, still runs
        some[4].cancel()
        some[5].cancel()  # a whole pack cancelled: its Slurm task is cancelled too
    whole.wait(timeout=120)
    assert whole.counts() == {"CANCELLED": 6}
    results = some.get_results(timeout=120, return_exceptions=True)
    assert [results[i] for i in (0, 2, 3)] == [1, 3, 4]
    for i in (1, 4, 5):
        assert isinstance(results[i], JobNotCompletedError) and "CANCELLED" in str(results[i])
    assert some.counts() == {"COMPLETED": 3, "CANCELLED": 3}
    scheduler = _slurm_tasks(cluster, some.job_id)
    assert scheduler[0].state == scheduler[1].state == "COMPLETED"
    # the task of items 4 and 5 never ran (Slurm drops a pending array task it cancels)
    assert scheduler.get(2, TaskState("CANCELLED")).state == "CANCELLED"
    assert not (some.directory / "results" / "1.pkl").exists()


def test_auto_packs_by_cpus_then_by_measured_durations(cluster: slurmscope.Cluster) -> None:
    first = add.on(cluster).map(range(60), pack="auto")
    assert first.get_results(timeout=120) == [i + 1 for i in range(60)]
    manifest = json.loads((first.directory / "manifest.json").read_text())
    assert manifest["pack_asked"] == "auto" and manifest["pack"] == first.pack > 1
    # measured: items of microseconds want huge packs, but never fewer tasks than CPUs
    second = add.on(cluster).map(range(60), pack="auto")
    assert second.pack >= first.pack
    assert len(_slurm_tasks(cluster, second.job_id)) == math.ceil(60 / second.pack)
    assert second.get_results(timeout=120) == [i + 1 for i in range(60)]


@pytest.mark.backends("local")
def test_bad_pack_is_refused_before_submitting(cluster: slurmscope.Cluster) -> None:
    add.on(cluster).map([1, 2], pack=2).wait(60)
    before = job_dirs(cluster)
    assert any("add" in p.name for p in before)
    for bad in (0, -3, "fast", 1.5, True, "AUTO"):
        with pytest.raises(InvalidInputError, match="pack must be a whole number"):
            add.on(cluster).map([1, 2], pack=bad)
        with pytest.raises(InvalidInputError, match="pack must be a whole number"):
            add.on(cluster).options(pack=bad)
    with pytest.raises(InvalidInputError, match="applies to task.map"):
        add.on(cluster).options(pack=4)(1)
    assert job_dirs(cluster) == before


LIMIT = {"time": "0:04", "checkpoint_warning": 2, "max_requeues": 10}


@pytest.mark.backends("local")
def test_a_requeued_pack_resumes_at_its_first_item_without_an_outcome(
    cluster: slurmscope.Cluster,
) -> None:
    count_to = cluster.task(tasks.count_to, **LIMIT)
    # one pack: 1 s, then 4 s of work, then 1 s, under a 4-second limit warned at 2
    array = count_to.map([(4, 0.25), (16, 0.25), (4, 0.25)], pack=3)
    results = array.get_results(timeout=120)
    assert [r[0] for r in results] == [4, 16, 4]
    assert results[0] == (4, 0, 4)  # ran once, before any requeue
    assert results[1][1] >= 1 and results[1][2] < 16  # requeued, resumed its checkpoint
    # each item counts its own requeues only (item 2 may have seen the limit too): none
    # is counted again for the items after it, nor taken for a node failure
    assert array.requeues == {i: ["time limit"] * r[1] for i, r in enumerate(results) if r[1]}
    assert 1 in array.requeued and 0 not in array.requeued


def test_a_packed_map_split_over_max_array_size_keeps_whole_packs(tmp_path: Path) -> None:
    cluster = slurmscope.Cluster("local", root=tmp_path, max_array_size=3, set_as_default=False)
    try:
        array = fail_on.on(cluster).map(range(20), pack=2)  # 10 packs: 3 + 3 + 3 + 1 tasks
        assert len(array.job_ids) == 4
        parts = array.submission.parts
        assert [(p.offset, p.count, p.tasks) for p in parts] == [
            (0, 6, 3),
            (6, 6, 3),
            (12, 6, 3),
            (18, 2, 1),
        ]
        assert array[7].job_id == f"{array.job_ids[1]}_0" and array[19].job_id.endswith("_0")
        partner = identity.on(cluster).after(array, kind="aftercorr").map(range(20), pack=5)
        results = partner.get_results(timeout=120, return_exceptions=True)
        assert [results[i] for i in range(20) if i != 1] == [i for i in range(20) if i != 1]
        assert isinstance(results[1], TaskFailedError)
        assert array.get_results(timeout=60, return_exceptions=True)[19] == 190
    finally:
        cluster.close()


@pytest.mark.backends("local")
def test_a_pack_that_times_out_keeps_the_results_of_the_items_it_finished(
    cluster: slurmscope.Cluster,
) -> None:
    slow = slurmscope.task(tasks.sleep).on(cluster).options(time="0:03")
    array = slow.map([0.1, 10, 0.1], pack=3)  # item 1 outlives the pack's 3-second limit
    results = array.get_results(timeout=60, return_exceptions=True)
    assert results[0] == 0.1
    for i in (1, 2):  # the one running when the limit came, and the one never started
        assert isinstance(results[i], JobNotCompletedError) and "TIMEOUT" in str(results[i])
    assert array.counts() == {"COMPLETED": 1, "TIMEOUT": 2}


def _until(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def test_in_a_running_pack_only_the_item_it_runs_is_running(
    cluster: slurmscope.Cluster, tmp_path: Path
) -> None:
    first, rest = str(tmp_path / "first"), str(tmp_path / "rest")
    gate = slurmscope.task(tasks.wait_for_file).on(cluster)
    array = gate.map([first, rest, rest], pack=3)
    _until(lambda: array.states[0] == "RUNNING", f"the pack did not start: {array.states}")
    assert array.states == ["RUNNING", "PENDING", "PENDING"]
    assert array[1].status.reason == "Packed"
    assert array.progress() == {"done": 0, "running": 1, "pending": 2, "failed": 0}
    Path(first).touch()
    _until(lambda: array.states[:2] == ["COMPLETED", "RUNNING"], f"{array.states}")
    assert array.counts() == {"COMPLETED": 1, "RUNNING": 1, "PENDING": 1}
    Path(rest).touch()
    assert array.get_results(timeout=90) == [first, rest, rest]


def test_packed_maps_on_the_in_process_fake_backend(tmp_path: Path) -> None:
    with slurmscope.Cluster(FakeBackend(workers=2), root=tmp_path, set_as_default=False) as c:
        array = fail_on.on(c).map(range(7), pack=3)
        results = array.get_results(timeout=60, return_exceptions=True)
        assert [results[i] for i in range(7) if i != 1] == [10 * i for i in range(7) if i != 1]
        assert isinstance(results[1], TaskFailedError)
        assert array.counts() == {"COMPLETED": 6, "FAILED": 1}
        partner = identity.on(c).after(array, kind="aftercorr").map(range(7), pack=2)
        paired = partner.get_results(timeout=60, return_exceptions=True)
        assert [paired[i] for i in range(7) if i != 1] == [i for i in range(7) if i != 1]
        assert "aftercorr on item 1" in str(paired[1])
