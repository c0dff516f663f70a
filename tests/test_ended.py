"""How jobs ended, as every part of slurmscope tells it: the command (``status``, ``explain``,
``logs``, ``cancel``, ``clean``) run as another process, and the handles; on each backend.

Issue 12: ``clean`` removed what a pending job still needed; the listing counted result files
as "ended"; task ids the job does not have gave tracebacks; ``afternotok`` on a success was
explained as "a job that failed"; three definitions of terminal states disagreed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyslurm_support
import pytest
import tasks
from conftest import add, boom, gate, identity, sleep
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import slurmscope
from slurmscope import cli
from slurmscope.cli import handles as cli_handles
from slurmscope.errors import JobNotCompletedError, TaskFailedError
from slurmscope.job_directory import JobDirectory
from slurmscope.states import TERMINAL_STATES, UNSUCCESSFUL_ENDINGS, TaskState


def run_cli(c: slurmscope.Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """``slurmscope --root ROOT ARGS`` in another process, which reaches the same scheduler."""
    env = dict(os.environ)
    if pyslurm_support.DOUBLE_DIR in sys.path:  # the pyslurm test double is in use
        env["PYTHONPATH"] = pyslurm_support.DOUBLE_DIR
    return subprocess.run(
        [sys.executable, "-m", "slurmscope.cli", "--root", str(c.root), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def run_json(c: slurmscope.Cluster, *args: str) -> object:
    proc = run_cli(c, "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """The error of a command that failed as every error must: non-zero, one line on
    stderr, no traceback; returns that line."""
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slurmscope: "), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# -- item 2: clean keeps what unfinished jobs need ---------------------------------------------
def test_clean_never_removes_what_an_unfinished_job_depends_on(
    cluster: slurmscope.Cluster,
    tmp_path: Path,
) -> None:
    up_data = add.on(cluster)(1)  # its result is an argument of the pending job
    up_scope = add.on(cluster)(2)  # an afterany dependency of it, through a scope
    assert up_data.get_result(timeout=120) == 2 and up_scope.get_result(timeout=120) == 3
    opened = gate.on(cluster)(str(tmp_path / "go"))
    with cluster.dependencies(opened), cluster.dependencies(up_scope, kind="afterany"):
        pending = identity.on(cluster)(up_data)
    try:
        result = run_json(cluster, "clean", "--older-than", "0s")
        needed = {row["directory"]: row["needed_by"] for row in result["kept_needed"]}  # type: ignore[index]
        assert needed, result
        assert needed.get(str(up_data.directory)) == [str(pending.directory)]
        assert needed.get(str(up_scope.directory)) == [str(pending.directory)]
        assert str(pending.directory) in result["kept_unfinished"]  # type: ignore[index]
        assert up_data.directory.exists() and up_scope.directory.exists()
    finally:
        (tmp_path / "go").touch()
    assert pending.get_result(timeout=120) == 2  # it still had what it needed
    gone = run_json(cluster, "clean", "--older-than", "0s")
    assert len(gone["removed"]) == 4 and not gone["kept_needed"]  # type: ignore[index,arg-type]


def test_clean_keeps_what_is_needed_under_a_relative_root(tmp_path: Path) -> None:
    local = slurmscope.Cluster("local", root=tmp_path / "jobs", set_as_default=False)
    try:
        up = add.on(local)(1)
        assert up.get_result(timeout=60) == 2
        opened = gate.on(local)(str(tmp_path / "go"))
        with local.dependencies(opened):
            pending = identity.on(local)(up)
        proc = subprocess.run(
            [sys.executable, "-m", "slurmscope.cli", "--root", "jobs", "--json", "clean"]
            + ["--older-than", "0s"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=True,
        )
        needed = json.loads(proc.stdout)["kept_needed"]
        assert [row["needed_by"] for row in needed] == [["jobs/" + pending.directory.name]]
        assert up.directory.exists()
        (tmp_path / "go").touch()
        assert pending.get_result(timeout=60) == 2
    finally:
        local.close()


def test_a_removed_upstream_result_is_said_to_be_removed(
    cluster: slurmscope.Cluster,
    tmp_path: Path,
) -> None:
    up = add.on(cluster)(1)
    assert up.get_result(timeout=120) == 2
    opened = gate.on(cluster)(str(tmp_path / "go"))
    with cluster.dependencies(opened):
        pending = identity.on(cluster)(up)
    shutil.rmtree(up.directory)  # as `clean --force` or a user's rm -r would
    (tmp_path / "go").touch()
    with pytest.raises(TaskFailedError) as info:
        pending.get_result(timeout=120)
    text = str(info.value)
    assert "job directory was removed" in text and str(up.directory) in text
    assert "not finished" not in text


# -- item 4: the listing counts states as `status JOB` does -----------------------------------
def test_listing_counts_states_like_status_of_the_job(cluster: slurmscope.Cluster) -> None:
    array = sleep.on(cluster).map([600, 600, 600])
    array.cancel()
    assert array.wait(timeout=120).states == ["CANCELLED"] * 3
    done = add.on(cluster).map([1, 2])
    assert done.get_results(timeout=120) == [2, 3]
    listing = run_json(cluster, "status")
    rows = {row["job_ids"][0]: row for row in listing}  # type: ignore[attr-defined]
    assert rows, listing
    for handle in (array, done):
        status = run_json(cluster, "status", handle.job_id)
        assert status["counts"]  # type: ignore[index]
        assert rows[handle.job_id]["counts"] == status["counts"]  # type: ignore[index]
    assert rows[array.job_id]["counts"] == {"CANCELLED": 3}
    text = run_cli(cluster, "status").stdout.splitlines()
    assert "STATES" in text[0] and "ENDED" not in text[0]
    line = next(x for x in text if x.startswith(array.job_id + " "))
    assert line.endswith("CANCELLED 3")


# -- item 8: ids the job does not have, cancel and logs ----------------------------------------
def test_cli_errors_are_one_line_and_json(cluster: slurmscope.Cluster, tmp_path: Path) -> None:
    array = add.on(cluster).map([1, 2, 3])
    single = add.on(cluster)(1)
    assert array.get_results(timeout=120) == [2, 3, 4] and single.get_result(timeout=120) == 2
    a, s = array.job_id, single.job_id
    for args, words in [
        (("status", f"{a}_x"), ["not a job id", "JOBID_INDEX"]),
        (("status", f"{a}_99"), ["no task", f"{a}_99", f"{a}_2"]),
        (("explain", f"{a}_99"), ["no task", f"{a}_99"]),
        (("cancel", f"{a}_99"), ["no task", f"{a}_99"]),
        (("logs", f"{a}_99"), ["no task", f"{a}_99"]),
        (("logs", a, "7"), ["no task 7"]),
        (("status", f"{s}_0"), ["not an array"]),
        (("status", "987654321"), ["no job 987654321"]),
        (("cancel", a), ["already ended", "COMPLETED 3"]),
        (("cancel", f"{a}_1"), ["already ended"]),
        (("logs", a, "x"), ["invalid int value"]),
    ]:
        one_line_error(run_cli(cluster, *args), *words)
        proc = run_cli(cluster, "--json", *args)
        one_line_error(proc)
        error = json.loads(proc.stdout)
        assert error["error"] and error["exit_code"] == proc.returncode
    explained = run_cli(cluster, "explain", f"{a}_1").stdout
    assert explained.startswith(f"add (task {a}_1): COMPLETED 1")


def test_cancel_and_logs_say_what_happened(cluster: slurmscope.Cluster, tmp_path: Path) -> None:
    opened = gate.on(cluster)(str(tmp_path / "never"))
    with cluster.dependencies(opened):
        waiting = add.on(cluster).map([1, 2])
    # another process sees the local scheduler's jobs as UNKNOWN: this process runs them
    pending = "UNKNOWN" if cluster.backend.kind == "local" else "PENDING"
    logs = run_json(cluster, "logs", f"{waiting.job_id}_1")
    assert logs["state"] == pending and logs["stdout"]["text"] is None  # type: ignore[index]
    text = run_cli(cluster, "logs", f"{waiting.job_id}_1").stdout
    assert f"(no log: the task {'is' if pending == 'UNKNOWN' else 'has not started'}" in text
    assert "not written yet" not in text
    cancelled = run_json(cluster, "cancel", opened.job_id)
    assert cancelled == {"cancelled": [opened.job_id], "already_ended": []}
    assert waiting.wait(timeout=120).states == ["CANCELLED", "CANCELLED"]
    text = run_cli(cluster, "logs", f"{waiting.job_id}_1").stdout
    assert "ended CANCELLED" in text and "not written yet" not in text
    one_line_error(run_cli(cluster, "cancel", waiting.job_id), "already ended", "CANCELLED 2")


def test_task_id_parser_never_gives_a_traceback(tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    local = slurmscope.Cluster("local", root=root, set_as_default=False)
    try:
        array = add.on(local).map([1, 2, 3])
        single = add.on(local)(1)
        assert array.get_results(timeout=60) == [2, 3, 4] and single.get_result(timeout=60) == 2
        ids = [array.job_id, single.job_id]
    finally:
        local.close()
    cli_handles.clusters.clear()
    job_like = st.builds(
        lambda base, sep, index: base + sep + index,
        st.sampled_from([*ids, "0", "999", ""]),
        st.sampled_from(["", "_", "__", "-", ".", "_-", " "]),
        st.from_regex(r"[0-9a-z٣]{0,4}", fullmatch=True),
    )
    commands = st.sampled_from(["status", "explain", "cancel", "logs"])

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(command=commands, job=st.one_of(job_like, st.text(max_size=30)), as_json=st.booleans())
    def check(command: str, job: str, as_json: bool) -> None:
        argv = ["--root", str(root), *(["--json"] if as_json else []), command, "--", job]
        out, err = _run_main(argv)
        assert "internal error" not in err and "Traceback" not in err, (argv, err)
        if err:
            assert len(err.strip().splitlines()) == 1, (argv, err)
            if as_json:
                assert json.loads(out)["error"]

    check()


def _run_main(argv: list[str]) -> tuple[str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    assert code == 0 or err.getvalue(), argv
    return out.getvalue(), err.getvalue()


# -- item 11: unsatisfiable dependencies explained in the words of their kind -----------------
def test_every_dependency_kind_is_explained_as_it_is(
    cluster: slurmscope.Cluster,
    tmp_path: Path,
) -> None:
    go = tmp_path / "go"
    succeeded = gate.on(cluster)(str(go))
    with cluster.dependencies(succeeded):
        failed = boom.on(cluster)(1)
    after_success = add.on(cluster).after(succeeded, kind="afternotok")(1)
    after_failure = add.on(cluster).after(failed)(2)
    any_ending = add.on(cluster).after(failed, kind="afterany")(3)
    go.touch()
    with pytest.raises(JobNotCompletedError) as info:
        after_success.get_result(timeout=120)
    text = str(info.value)
    assert "afternotok needs it to fail, and it succeeded" in text
    assert f"afternotok:{succeeded.job_id} (wait_for_file: succeeded" in text
    assert "failed" not in text.replace("needs it to fail", "")
    with pytest.raises(JobNotCompletedError) as info:
        after_failure.get_result(timeout=120)
    assert "afterok needs it to succeed, and it did not" in str(info.value)
    assert any_ending.get_result(timeout=120) == 4  # afterany: any ending will do

    tree = run_json(cluster, "explain", after_success.job_id)
    edge = tree["dependencies"][0]  # type: ignore[index]
    assert edge["never_satisfied"] == "afternotok needs it to fail, and it succeeded"
    assert edge["upstream"]["failed"] is False
    text = run_cli(cluster, "explain", after_success.job_id).stdout
    assert "✗ never satisfied (afternotok needs it to fail" in text and "FAILED" not in text
    tree = run_json(cluster, "explain", any_ending.job_id)
    edges = [e for e in tree["dependencies"] if e["kind"] == "afterany"]  # type: ignore[index]
    assert edges and edges[0]["never_satisfied"] is None and edges[0]["upstream"]["failed"]


# -- one definition of terminal states ---------------------------------------------------------
def _fake_job(root: Path, states: list[str], job_id: str) -> JobDirectory:
    """A job directory whose tasks were recorded ending in ``states`` (no scheduler needed)."""
    directory = JobDirectory.create(root, f"fake-{job_id}")
    directory.write_manifest(
        {
            "name": f"fake-{job_id}",
            "size": len(states),
            "array": True,
            "parts": [{"job_id": job_id, "offset": 0, "count": len(states)}],
            "backend": "local",
            "cluster": "local",
            "created": "2026-01-01T00:00:00+0000",
            "submitted_from": {"file": "x.py", "line": 1, "function": "f", "thread": "t"},
        },
        dependencies=[],
    )
    directory.register_id(root, "local", job_id)
    directory.record_ended({i: (s, None, None) for i, s in enumerate(states)})
    return directory


def test_one_definition_of_terminal_states(tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    assert {"COMPLETED", *UNSUCCESSFUL_ENDINGS} == TERMINAL_STATES
    assert {"PREEMPTED", "BOOT_FAIL", "DEADLINE"} <= TERMINAL_STATES
    dirs = {
        s: _fake_job(root, ["COMPLETED", s], str(n))
        for n, s in enumerate(sorted(TERMINAL_STATES), 1)
    }
    local = slurmscope.Cluster("local", root=root, set_as_default=False)
    try:
        for state, directory in dirs.items():
            handle = local.attach(directory.path)
            assert isinstance(handle, slurmscope.ArrayJob)
            assert handle.done() and handle.states == ["COMPLETED", state]
            assert handle.state == state  # the worst ending, never COMPLETED beside one
    finally:
        local.close()
    cli_handles.clusters.clear()
    out, err = _run_main(["--root", str(root), "--json", "clean", "--older-than", "0s"])
    result = json.loads(out)
    assert not err and result["kept_unfinished"] == []
    assert sorted(result["removed"]) == sorted(str(d.path) for d in dirs.values())
    assert all(TaskState(s).terminal for s in TERMINAL_STATES)
    assert not TaskState("PENDING").terminal and not TaskState("REQUEUED").terminal


# -- item 3 on the local backend: a later process reads how jobs ended -------------------------
def test_a_later_process_reads_how_local_jobs_ended(tmp_path: Path) -> None:
    """The local scheduler writes its accounting, and the driver records what it saw: after
    the driver's process is gone, status, explain, attach and clean read TIMEOUT, CANCELLED
    and CANCELLED-by-a-failed-dependency as they were."""
    root = tmp_path / "jobs"
    driver = f"""
import time, slurmscope, tasks
c = slurmscope.Cluster("local", root={str(root)!r})
short = slurmscope.task(tasks.sleep, time="00:00:01").on(c)
t = short(60)
a = slurmscope.task(tasks.sleep).on(c).map([60, 60])
a.cancel()
g = slurmscope.task(tasks.wait_for_file).on(c)({str(root)!r} + "/go")
with c.dependencies(g):
    f = slurmscope.task(tasks.boom).on(c)(1)
n = slurmscope.task(tasks.add).on(c).after(f)(1)
open({str(root)!r} + "/go", "w").close()
for j in (t, a, n):
    j.wait(timeout=60)
print(t.job_id, a.job_id, f.job_id, n.job_id)
"""
    env = dict(os.environ, PYTHONPATH=str(Path(tasks.__file__).parent))
    out = subprocess.run(
        [sys.executable, "-c", driver], capture_output=True, text=True, env=env, check=True
    )
    t, a, f, n = out.stdout.split()
    later = slurmscope.Cluster("local", root=root, set_as_default=False)
    try:
        assert later.attach(t).state == "TIMEOUT"
        assert later.attach(a).states == ["CANCELLED", "CANCELLED"]  # type: ignore[union-attr]
        assert later.attach(n).status == TaskState("CANCELLED", "DependencyNeverSatisfied")
        for job_id, state in ((t, "TIMEOUT"), (n, "CANCELLED")):
            assert JobDirectory.find(root, "local", job_id).recorded_states()[0][0] == state  # type: ignore[union-attr]
        cli_handles.clusters.clear()
        out2, _ = _run_main(["--root", str(root), "--json", "status", a])
        assert json.loads(out2)["counts"] == {"CANCELLED": 2}
        out2, _ = _run_main(["--root", str(root), "--json", "explain", n])
        tree = json.loads(out2)
        assert tree["summary"] == "CANCELLED 1"
        assert (
            tree["dependencies"][0]["never_satisfied"]
            == "afterok needs it to succeed, and it did not"
        )
        out2, _ = _run_main(["--root", str(root), "--json", "clean", "--older-than", "0s"])
        assert json.loads(out2)["kept_unfinished"] == [] and len(json.loads(out2)["removed"]) == 5
    finally:
        later.close()
