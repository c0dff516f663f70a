"""End-to-end tests of the public API on the embedded local scheduler."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import tasks
from conftest import add, boom, env, fail_on, held, identity, job_dirs, sleep, stamp
from structlog.testing import capture_logs

import slurmscope
from slurmscope import depend
from slurmscope.errors import (
    ArrayAlreadySubmittedError,
    DependencyError,
    InvalidInputError,
    JobNotCompletedError,
    TaskFailedError,
)


def test_call_is_eager_and_returns_result(local: slurmscope.Cluster) -> None:
    job = add.on(local)(2, b=5)
    # The scheduler knows the job before the call returned.
    assert job.job_id in local.backend.states([job.job_id])
    assert job.get_result(timeout=60) == 7
    assert job.state == "COMPLETED"


def test_map_items_plain_tuple_dict_in_order(local: slurmscope.Cluster) -> None:
    array = add.on(local).map([1, (2, 3), {"a": 4, "b": 10}, 7])
    assert len(array) == 4
    assert array.job_id in local.backend.states([array.job_id])
    assert array.get_results(timeout=60) == [2, 5, 14, 8]
    assert [job.get_result() for job in array] == [2, 5, 14, 8]
    assert array[-1].get_result() == 8
    assert [j.index for j in array[1:3]] == [1, 2]
    assert array[2].job_id == f"{array.job_id}_2"
    files = sorted(p.name for p in array.get_results_dir().iterdir())
    assert files == ["0.pkl", "1.pkl", "2.pkl", "3.pkl"]
    with pytest.raises(IndexError):
        array[4]


def test_empty_map_submits_nothing(local: slurmscope.Cluster) -> None:
    probe_before = int(add.on(local)(0).job_id)
    dirs = job_dirs(local)
    array = add.on(local).map([])
    assert len(array) == 0
    assert array.wait(timeout=1).get_results() == []
    assert list(array) == []
    assert job_dirs(local) == dirs  # nothing for `slurmscope status` to list
    probe_after = int(add.on(local)(0).job_id)
    assert probe_after == probe_before + 1  # nothing in between reached the scheduler
    # an empty array is a satisfied dependency
    assert add.on(local).after(array)(1).get_result(timeout=60) == 2


def test_failure_carries_index_and_remote_traceback(local: slurmscope.Cluster) -> None:
    array = fail_on.on(local).map([0, 1, 2])
    with pytest.raises(TaskFailedError) as info:
        array.get_results(timeout=60)
    err = info.value
    assert err.index == 1
    assert "item 1 is bad" in str(err)
    assert "def fail_on" in err.remote_traceback or "fail_on" in err.remote_traceback
    assert isinstance(err.__cause__, RuntimeError)
    results = array.get_results(return_exceptions=True)
    assert results[0] == 0 and results[2] == 20
    assert isinstance(results[1], TaskFailedError)
    assert array[1].state == "FAILED"
    assert array.state == "FAILED"
    assert array.counts() == {"COMPLETED": 2, "FAILED": 1}


def test_dependents_of_failed_job_end_instead_of_pending(local: slurmscope.Cluster) -> None:
    failing = boom.on(local)(1)
    ok_dep = add.on(local).after(failing)(1)
    any_dep = add.on(local).after(failing, kind="afterany")(2)
    notok_dep = add.on(local).after(failing, kind="afternotok")(3)
    with pytest.raises(JobNotCompletedError) as info:
        ok_dep.get_result(timeout=60)
    assert info.value.state == "CANCELLED"
    assert info.value.reason == "DependencyNeverSatisfied"
    assert "explicit .after()" in str(info.value)  # the provenance of the failed link
    assert any_dep.get_result(timeout=60) == 3
    assert notok_dep.get_result(timeout=60) == 4


def test_transitive_dependents_of_failure_end(local: slurmscope.Cluster) -> None:
    failing = boom.on(local)(1)
    with local.dependencies(failing):
        middle = add.map([1, 2])
    last = add.on(local)(middle)  # data dependency on the array
    with pytest.raises(JobNotCompletedError):
        last.get_result(timeout=60)
    assert set(middle.states) == {"CANCELLED"}


def test_dependency_on_known_failed_job_raises_before_submission(
    local: slurmscope.Cluster,
) -> None:
    failing = boom.on(local)(1)
    failing.wait(timeout=60)
    count = len(job_dirs(local))
    with pytest.raises(DependencyError, match="can never be satisfied"):
        add.on(local).after(failing)(1)
    with pytest.raises(DependencyError, match="already succeeded"):
        ok = add.on(local)(1)
        ok.wait(timeout=60)
        add.on(local).after(ok, kind="afternotok")(1)
    assert len(job_dirs(local)) == count + 1  # only `ok`, nothing half-made


def test_satisfied_dependency_is_dropped_and_logged(local: slurmscope.Cluster) -> None:
    first = add.on(local)(1)
    first.wait(timeout=60)
    with capture_logs() as logs:
        second = add.on(local).after(first)(2)
    assert second.get_result(timeout=60) == 3
    assert second.dependencies[0].target_id == first.job_id  # kept on the handle
    assert local.backend.recorded_dependencies(second.job_id) == ""  # not given to Slurm
    assert any(e["event"] == "slurmscope.dependency.satisfied" for e in logs)


def test_aftercorr_is_element_wise(local: slurmscope.Cluster) -> None:
    upstream = fail_on.on(local).map([0, 1, 2])
    downstream = add.on(local).after(upstream, kind="aftercorr").map([10, 20, 30])
    results = downstream.get_results(timeout=60, return_exceptions=True)
    assert results[0] == 11 and results[2] == 31
    assert isinstance(results[1], JobNotCompletedError)
    assert results[1].reason == "DependencyNeverSatisfied"


def test_after_kind_waits_for_start_only(local: slurmscope.Cluster) -> None:
    first = stamp.on(local)("a", 1.5)
    second = stamp.on(local).after(first, kind="after")("b", 0.0)
    (_, a_start, a_end), (_, b_start, _) = first.get_result(60), second.get_result(60)
    # Both Python processes start at about the same moment once `first` is launched.
    assert b_start >= a_start - 1.0
    assert b_start < a_end  # did not wait for the end


def test_singleton_runs_one_at_a_time(local: slurmscope.Cluster) -> None:
    one = stamp.on(local).after(kind="singleton")("a", 0.6)
    two = stamp.on(local).after(kind="singleton")("b", 0.0)
    (_, _, one_end), (_, two_start, _) = one.get_result(60), two.get_result(60)
    assert two_start >= one_end


def test_throttle_limits_concurrency(local: slurmscope.Cluster) -> None:
    array = stamp.on(local).map([1, 2, 3], max_concurrent=1)
    spans = sorted((s, e) for _, s, e in array.get_results(timeout=60))
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end


def test_cancel_running_and_pending(local: slurmscope.Cluster) -> None:
    long = sleep.on(local)(60)
    waiting = add.on(local).after(long)(1)
    long.cancel()
    with pytest.raises(JobNotCompletedError) as info:
        long.get_result(timeout=30)
    assert info.value.state == "CANCELLED"
    with pytest.raises(JobNotCompletedError):
        waiting.get_result(timeout=30)


def test_cancel_array(local: slurmscope.Cluster) -> None:
    array = sleep.on(local).map([60, 60, 60])
    array.cancel()
    array.wait(timeout=30)
    assert set(array.states) == {"CANCELLED"}


def test_time_limit_ends_task_as_timeout(local: slurmscope.Cluster) -> None:
    job = sleep.options(time="0:01").on(local)(30)
    with pytest.raises(JobNotCompletedError) as info:
        job.get_result(timeout=30)
    assert info.value.state == "TIMEOUT"


def test_wait_timeout(local: slurmscope.Cluster) -> None:
    array = sleep.on(local).map([30])
    with pytest.raises(TimeoutError):
        array.wait(timeout=0.2)
    array.cancel()


def test_data_dependencies_receive_results(local: slurmscope.Cluster) -> None:
    one = add.on(local)(1)
    many = add.on(local).map([1, 2, 3])
    combined = identity.on(local).map([[one, {"all": many, "first": many[0]}], (one,)])
    assert combined.get_results(timeout=60) == [[2, {"all": [2, 3, 4], "first": 2}], 2]
    kinds = {(d.kind, d.target_id, d.provenance.via) for d in combined.dependencies}
    assert kinds == {
        ("afterok", one.job_id, "argument"),
        ("afterok", many.job_id, "argument"),
        ("afterok", many[0].job_id, "argument"),
    }


def test_array_after_raises_with_both_forms(local: slurmscope.Cluster) -> None:
    array = add.on(local).map([1])
    with pytest.raises(ArrayAlreadySubmittedError) as info:
        array.after(array)
    assert "task.after(prep).map(items)" in str(info.value)
    assert "task.map(items, after=[prep])" in str(info.value)


def test_after_accumulates_and_options_after(local: slurmscope.Cluster) -> None:
    a, b, c = add.on(local)(1), add.on(local)(2), add.on(local)(3)
    variant = add.on(local).after(a).after(b, kind="afterany").options(after=[c], time="5")
    job = variant.map([1], after=[depend(a, "afterany")])
    got = [(d.kind, d.target_id, d.provenance.via) for d in job.dependencies]
    assert got == [
        ("afterok", a.job_id, "after()"),
        ("afterany", b.job_id, "after()"),
        ("afterok", c.job_id, "after="),
        ("afterany", a.job_id, "after="),
    ]
    assert variant.resources.time == "5"
    assert job.get_results(timeout=60) == [2]


def test_routing_to_clusters(tmp_path: Path) -> None:
    first = slurmscope.Cluster("local", root=tmp_path / "a")
    second = slurmscope.Cluster("local", root=tmp_path / "b", set_as_default=False)
    try:
        assert slurmscope.default_cluster() is first  # newest with set_as_default
        assert add(1).cluster is first
        with second:
            assert add(1).cluster is second
            with first.dependencies():
                assert add(1).cluster is first
            assert add(1).cluster is second
        bound = second.task(tasks.add)
        assert bound(1).cluster is second
        with second.dependencies():
            assert add.on(first)(1).cluster is first  # a bound task wins
    finally:
        first.close()
        second.close()


def test_default_cluster_is_created_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURMSCOPE_ROOT", str(tmp_path))
    monkeypatch.setenv("SLURMSCOPE_BACKEND", "local")
    job = add(41)
    assert job.cluster.backend.kind == "local"
    assert job.get_result(timeout=60) == 42


def test_scope_is_popped_on_exception(local: slurmscope.Cluster) -> None:
    up = add.on(local)(1)
    with pytest.raises(KeyError), local.dependencies(up):
        raise KeyError("x")
    assert add.on(local)(1).dependencies == ()


def test_bad_input_leaves_nothing_behind(local: slurmscope.Cluster, tmp_path: Path) -> None:
    lock = threading.Lock()
    other = slurmscope.Cluster("local", root=tmp_path / "other", set_as_default=False)
    try:
        foreign = add.on(other)(1)
        short = add.on(local).map([1, 2])
        before = len(job_dirs(local))
        with pytest.raises(InvalidInputError, match="cannot be pickled"):
            slurmscope.task(lambda: lock).on(local)()
        with pytest.raises(InvalidInputError, match="item 1 cannot be pickled"):
            identity.on(local).map([1, lock])
        with pytest.raises(DependencyError, match="unknown dependency kind"):
            local.dependencies(short, kind="afterwards")
        with pytest.raises(DependencyError, match="equal length"):
            add.on(local).map([1, 2, 3], after=[depend(short, "aftercorr")])
        with pytest.raises(DependencyError, match="across clusters"):
            add.on(local).after(foreign)
        with pytest.raises(DependencyError, match="across clusters"):
            identity.on(local)(foreign)
        with pytest.raises(DependencyError, match="must be a Job or ArrayJob"):
            add.on(local).map([1], after=["12345"])
        with pytest.raises(InvalidInputError, match="invalid time"):
            slurmscope.task(time="ten minutes")(tasks.add)
        with pytest.raises(InvalidInputError, match="invalid memory"):
            add.options(mem="lots")
        with pytest.raises(InvalidInputError, match="unknown resource"):
            add.options(memory="1G")
        with pytest.raises(InvalidInputError, match="max_concurrent"):
            add.on(local).map([1], max_concurrent=0)
        assert len(job_dirs(local)) == before
    finally:
        other.close()


def test_split_over_max_array_size(tmp_path: Path) -> None:
    cluster = slurmscope.Cluster("local", root=tmp_path, max_array_size=3, set_as_default=False)
    try:
        first = add.on(cluster).map(range(7))
        assert len(first.job_ids) == 3
        second = fail_on.on(cluster).after(first, kind="aftercorr").map(range(7))
        results = second.get_results(timeout=120, return_exceptions=True)
        assert results[0] == 0 and results[6] == 60
        assert isinstance(results[1], TaskFailedError) and results[1].index == 1
        assert first.get_results() == [i + 1 for i in range(7)]
        # dependencies on the whole handle cover every part (none is dropped as satisfied:
        # the map is held)
        with held(cluster, tmp_path) as hold:
            third = add.on(cluster).after(hold).map(range(7))
            last = add.on(cluster).after(third)(1)
            clauses = cluster.backend.recorded_dependencies(last.job_id)
            assert clauses == f"afterok:{':'.join(third.job_ids)}"
            assert len(last.dependencies) == 1 and last.dependencies[0].target is third
        assert last.get_result(timeout=120) == 2
        assert second[4].job_id == f"{second.job_ids[1]}_1"
    finally:
        cluster.close()


def test_submit_event_and_manifest_carry_provenance(local: slurmscope.Cluster) -> None:
    up = sleep.on(local)(0.5)
    with capture_logs() as logs, local.dependencies(up):
        line = sys._getframe().f_lineno - 1
        job = add.on(local).after(up)(1)  # duplicate of the scope's dependency
    submit = [e for e in logs if e["event"] == "slurmscope.submit"]
    assert len(submit) == 1
    dep = submit[0]["dependencies"][0]
    assert dep["kind"] == "afterok" and dep["target"] == up.job_id
    assert dep["via"] == "scope" and dep["line"] == line and dep["depth"] == 1
    assert dep["thread"] == threading.current_thread().name
    merged = [e for e in logs if e["event"] == "slurmscope.dependency.merged"]
    assert len(merged) == 1 and "explicit .after()" in merged[0]["dropped"]
    manifest = json.loads((job.directory / "manifest.json").read_text())
    assert manifest["dependencies"][0]["provenance"]["line"] == line
    assert manifest["parts"][0]["job_id"] == job.job_id
    job.wait(60)


def test_attach_from_another_process(local: slurmscope.Cluster) -> None:
    up = add.on(local)(1)
    with local.dependencies(up):
        array = add.on(local).map([1, 2])
    array.wait(timeout=60)
    script = textwrap.dedent(
        f"""
        import slurmscope
        c = slurmscope.Cluster("local", root={str(local.root)!r})
        a = c.attach({array.job_id!r})
        print(a.get_results(timeout=30), a.dependencies[0].provenance.via, a[1].state)
        print(c.attach({array[1].job_id!r}).get_result())
        print(c.attach({str(up.directory)!r}).get_result())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:3] == ["[2, 3] scope COMPLETED", "3", "2"]


def test_job_ids_unique_across_processes(local: slurmscope.Cluster) -> None:
    script = textwrap.dedent(
        f"""
        import slurmscope
        c = slurmscope.Cluster("local", root={str(local.root)!r})
        t = slurmscope.task(lambda x: x)
        print(" ".join(t(i).job_id for i in range(5)))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    ids = [i for p in procs for i in p.communicate(timeout=120)[0].split()]
    ids += [add.on(local)(i).job_id for i in range(5)]
    assert len(ids) == 20 and len(set(ids)) == 20


def test_interpreter_exit_waits_for_local_work(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import time, slurmscope
        c = slurmscope.Cluster("local", root={str(tmp_path)!r})
        @slurmscope.task
        def slow():
            time.sleep(1)
            return "done"
        print(slow().directory)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = Path(out.stdout.strip()) / "results" / "0.pkl"
    assert result.exists()


def test_task_environment_is_slurm_like(local: slurmscope.Cluster) -> None:
    array = env.on(local).map(["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_JOB_ID", "SLURMSCOPE_BACKEND"])
    got = array.get_results(timeout=60)
    assert got[0] == "0" and got[1] == array.job_id and got[2] == "local"


def test_depth_counts_dependency_blocks_only(local: slurmscope.Cluster) -> None:
    up = add.on(local)(1)
    with local, local.dependencies(up):
        job = add(1)
    assert job.cluster is local
    assert [d.provenance.depth for d in job.dependencies] == [1]
    job.wait(60)


def test_progress_on_request_silent_otherwise(
    local: slurmscope.Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    array = sleep.on(local).map([0.2] * 4)
    array.wait(timeout=60)  # not a terminal: silent
    assert capsys.readouterr().err == ""
    again = sleep.on(local).map([0.2] * 4)
    assert again.get_results(timeout=60, progress=True) == [0.2] * 4
    err = capsys.readouterr().err
    assert err.endswith("4/4 done, 0 running, 0 pending, 0 failed\x1b[K\n")
    assert again.progress() == {"done": 4, "running": 0, "pending": 0, "failed": 0}
    sleep.on(local).map([0.1]).wait(timeout=60, progress=False)
    assert capsys.readouterr().err == ""


def test_stdlib_logging_sees_events(
    local: slurmscope.Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="slurmscope"):
        add.on(local)(1).wait(60)
    assert any("slurmscope.submit" in r.getMessage() for r in caplog.records)
