"""Behaviour every backend must show, run on each backend (the real Slurm cluster included).

The pyslurm backend runs on a real pyslurm where one imports, else through the pyslurm TEST
DOUBLE (tests/pyslurm_double), which carries out each call on the real test cluster.
The local backend runs with the same MaxArraySize as the test cluster (101), so that the
splitting of large maps is exercised on both.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import add, boom, expected_pairs, fail_on, held, recorded, sleep, stamp

import slurmscope
from slurmscope.errors import JobNotCompletedError, TaskFailedError

pytestmark = pytest.mark.cluster(local={"max_array_size": 101})  # as on the test cluster


def test_submission_is_eager(cluster: slurmscope.Cluster) -> None:
    array = add.on(cluster).map([1, 2, 3])
    assert array.job_id in cluster.backend.states([array.job_id])
    job = add.on(cluster)(1)
    assert job.job_id in cluster.backend.states([job.job_id])
    assert array.get_results(timeout=120) == [2, 3, 4]
    assert job.get_result(timeout=120) == 2


def test_nested_scopes_are_merged_and_recorded(cluster: slurmscope.Cluster) -> None:
    gate = sleep.on(cluster)(3)
    other = sleep.on(cluster).map([3, 3])
    with cluster.dependencies(gate):
        with cluster.dependencies(other, kind="afterany"):
            inner = add.map([1, 2])
            element = add.after(other[1], kind="afterok")(5)
        outer = add(7)
    assert expected_pairs(inner) == {("afterok", gate.job_id), ("afterany", other.job_id)}
    assert recorded(cluster, inner.job_id) == expected_pairs(inner)
    assert (
        recorded(cluster, element.job_id)
        == expected_pairs(element)
        == {
            ("afterok", gate.job_id),
            ("afterany", other.job_id),
            ("afterok", other[1].job_id),
        }
    )
    assert recorded(cluster, outer.job_id) == {("afterok", gate.job_id)}
    assert [d.provenance.depth for d in inner.dependencies] == [1, 2]
    assert inner.get_results(timeout=120) == [2, 3]
    assert element.get_result(timeout=120) == 6
    assert outer.get_result(timeout=120) == 8


@pytest.mark.parametrize("kind", ["afterok", "afterany", "afternotok", "after"])
def test_dependency_kinds(cluster: slurmscope.Cluster, kind: str, tmp_path: Path) -> None:
    with held(cluster, tmp_path) as hold:
        good = stamp.on(cluster).after(hold)("good", 1.0)
        bad = boom.on(cluster).after(hold)("bad")
        on_good = stamp.on(cluster).after(good, kind=kind)("x", 0.0)
        on_bad = stamp.on(cluster).after(bad, kind=kind)("y", 0.0)
        for job, upstream in ((on_good, good), (on_bad, bad)):
            want = {(kind, upstream.job_id)}
            assert recorded(cluster, job.job_id) == expected_pairs(job) == want
    _, good_start, good_end = good.get_result(timeout=120)
    runs = {
        "afterok": (True, False),
        "afterany": (True, True),
        "afternotok": (False, True),
        "after": (True, True),
    }
    for job, should_run in zip((on_good, on_bad), runs[kind], strict=True):
        if should_run:
            _, start, _ = job.get_result(timeout=120)
            if job is on_good:
                # "after" waits for the start (both interpreters then start at once)
                assert start >= (good_start - 1.0 if kind == "after" else good_end - 0.01)
        else:
            with pytest.raises(JobNotCompletedError) as info:
                job.get_result(timeout=120)
            assert info.value.state == "CANCELLED"


def test_aftercorr_pairs_tasks(cluster: slurmscope.Cluster, tmp_path: Path) -> None:
    with held(cluster, tmp_path) as hold:
        upstream = fail_on.on(cluster).after(hold).map([0, 1, 2, 3])
        downstream = add.on(cluster).after(upstream, kind="aftercorr").map([10, 20, 30, 40])
        want = {("aftercorr", upstream.job_id)}
        assert recorded(cluster, downstream.job_id) == expected_pairs(downstream) == want
    results = downstream.get_results(timeout=120, return_exceptions=True)
    assert [results[i] for i in (0, 2, 3)] == [11, 31, 41]
    assert isinstance(results[1], JobNotCompletedError)
    assert results[1].state == "CANCELLED"


def test_throttle(cluster: slurmscope.Cluster) -> None:
    array = stamp.on(cluster).map([1, 2, 3], max_concurrent=1)
    spans = sorted((s, e) for _, s, e in array.get_results(timeout=120))
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end - 0.01


def test_map_larger_than_max_array_size(cluster: slurmscope.Cluster, tmp_path: Path) -> None:
    limit = cluster.backend.max_array_size
    assert limit == 101
    items = list(range(limit * 2 + 3))
    with held(cluster, tmp_path) as hold:
        first = add.on(cluster).after(hold).map(items)
        assert len(first.job_ids) == 3
        second = add.on(cluster).after(first, kind="aftercorr").map(items)
        third = add.on(cluster).after(first)(0)
        assert recorded(cluster, third.job_id) == expected_pairs(third)
        assert expected_pairs(third) == {("afterok", i) for i in first.job_ids}
        # aftercorr pairs each part of the split map with the same part of the upstream
        assert len(second.job_ids) == 3
        for part, job_id in enumerate(second.job_ids):
            assert recorded(cluster, job_id) == expected_pairs(second, part)
            assert expected_pairs(second, part) == {("aftercorr", first.job_ids[part])}
    assert second.get_results(timeout=600) == [i + 1 for i in items]
    assert first.get_results() == [i + 1 for i in items]
    assert third.get_result(timeout=120) == 1


def test_failure_traceback_and_dependents_end(cluster: slurmscope.Cluster) -> None:
    failing = fail_on.on(cluster).map([0, 1])
    with cluster.dependencies(failing):
        later = add.map([1, 2])
    last = add.on(cluster)(later)
    with pytest.raises(TaskFailedError) as info:
        failing.get_results(timeout=120)
    assert info.value.index == 1 and "item 1 is bad" in info.value.remote_traceback
    for job in (later, last):
        job.wait(timeout=120)
    assert set(later.states) == {"CANCELLED"}
    assert last.state == "CANCELLED"
    with pytest.raises(JobNotCompletedError, match="DependencyNeverSatisfied"):
        last.get_result()


def test_cancel(cluster: slurmscope.Cluster) -> None:
    long = sleep.on(cluster).map([120, 120])
    single = sleep.on(cluster)(120)
    deadline = time.monotonic() + 60
    while long[0].state == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.2)
    long.cancel()
    single.cancel()
    long.wait(timeout=120)
    single.wait(timeout=120)
    assert set(long.states) == {"CANCELLED"}
    assert single.state == "CANCELLED"


def test_results_in_item_order(cluster: slurmscope.Cluster) -> None:
    array = stamp.on(cluster).map([(i, 0.3 - 0.05 * i) for i in range(6)])
    assert [r[0] for r in array.get_results(timeout=120)] == list(range(6))
