"""Ctrl-C during a wait (issue 12, item 6): a real driver script in a subprocess, sent
SIGINT while it waits in ``get_results()``, on every backend. The first Ctrl-C must say on
stderr -- without logging configured -- which jobs are still queued or running, how to
reattach and how to cancel them; with ``Cluster(cancel_on_interrupt=True)`` they end
CANCELLED in the scheduler. On the local backend a second Ctrl-C (while the interpreter
waits for the jobs at exit) cancels them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import sleep

import slurmscope
from slurmscope.interrupt import Unfinished, notice

DRIVER = """
import sys, time
import slurmscope

backend, root, cancel = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
cluster = slurmscope.Cluster(backend, root=root, cancel_on_interrupt=cancel)


@slurmscope.task
def nap(x):
    time.sleep(90)
    return x


array = nap.map(range(3))
single = nap(9)
print(array.job_id, single.job_id, flush=True)
array.get_results()
"""


def interrupt_driver(
    backend: str, env: dict[str, str], root: Path, *, cancel: bool, second: bool
) -> tuple[str, str, str, int]:
    """Run the driver, send SIGINT once it waits (and again ``second``); its ids, stderr
    and exit code."""
    script = root.parent / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.Popen(
        [sys.executable, str(script), backend, str(root), "1" if cancel else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(root.parent),
        # A shell's background job ignores SIGINT, and children inherit that: restore it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        ids = line.split()
        assert len(ids) == 2, f"the driver did not submit: {line!r} {proc.stderr.read()}"  # type: ignore[union-attr]
        time.sleep(2.0)  # inside get_results() by now
        proc.send_signal(signal.SIGINT)
        if second:
            time.sleep(3.0)  # the first one has ended the wait; the interpreter is exiting
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return ids[0], ids[1], err, proc.returncode


def final_states(backend: str, root: Path, ids: tuple[str, str]) -> list[str]:
    cluster = slurmscope.Cluster(backend, root=root, set_as_default=False)
    try:
        states = []
        for job_id in ids:
            handle = cluster.attach(job_id)
            handle.wait(timeout=60)
            states.extend(
                handle.states if isinstance(handle, slurmscope.ArrayJob) else [handle.state]
            )
        return states
    finally:
        cluster.close()


def test_ctrl_c_lists_what_is_left_and_how_to_reattach_and_cancel(
    backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    name, env = backend, driver_env
    root = tmp_path / "jobs"
    array_id, single_id, err, code = interrupt_driver(
        name, env, root, cancel=False, second=name == "local"
    )
    try:
        assert code == -signal.SIGINT, err  # the interrupt still ends the program
        assert f"interrupted while waiting for array {array_id} (nap)" in err, err
        assert f"array {array_id} (nap):" in err and f"job {single_id} (nap):" in err, err
        assert "cancel_on_interrupt=True" in err
        if name == "local":
            assert "press Ctrl-C again" in err, err
            assert "waiting for 2 local job(s) still queued or running" in err, err
            assert (
                f"cancelling local job(s) still queued or running: {array_id}, {single_id}" in err
            )
            assert final_states(name, root, (array_id, single_id)) == ["CANCELLED"] * 4
        else:
            assert f"cluster.attach('{array_id}')" in err, err
            assert f"slurmscope --root {root} cancel {array_id}" in err, err
            assert f"slurmscope --root {root} cancel {single_id}" in err, err
            # Nothing was cancelled: they are still queued or running.
            cluster = slurmscope.Cluster(name, root=root, set_as_default=False)
            try:
                left = cluster.backend.states([array_id, single_id])
                assert set(left) == {array_id, single_id} and all(left.values()), left
                assert not any(t.terminal for tasks in left.values() for t in tasks.values())
            finally:
                cluster.close()
    finally:
        if name != "local":
            cluster = slurmscope.Cluster(name, root=root, set_as_default=False)
            for job_id in (array_id, single_id):
                cluster.backend.cancel(job_id)
            cluster.close()


def test_cancel_on_interrupt_cancels_in_the_scheduler(
    backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    name, env = backend, driver_env
    root = tmp_path / "jobs"
    array_id, single_id, err, code = interrupt_driver(name, env, root, cancel=True, second=False)
    assert code == -signal.SIGINT, err
    assert f"interrupted while waiting for array {array_id} (nap)" in err, err
    assert "cancel_on_interrupt=True: cancelling them now." in err, err
    assert f"slurmscope: cancelled {array_id}, {single_id}." in err, err
    assert "job(s) still queued or running before" not in err  # local: nothing to wait for
    assert final_states(name, root, (array_id, single_id)) == ["CANCELLED"] * 4


def test_notice_lists_at_most_ten() -> None:
    jobs = [Unfinished("t", (str(i),), False, 1, 0) for i in range(12)]
    text = notice(
        waited="job 0 (t)", backend="sbatch", cluster="c", root="/r", jobs=jobs, cancelled=False
    )
    assert "... and 2 more" in text and "job 9 (t): 1 queued" in text
    assert "job 10 (t)" not in text
    assert text.count("slurmscope --root /r cancel") == 10


# -- in this process: every waiting path (one job, the progress line) ------------------------
@pytest.mark.parametrize("how", ["job", "array with progress line"])
@pytest.mark.parametrize("cancel", [False, True])
def test_every_wait_reports_an_interrupt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, cancel: bool
) -> None:
    """Ctrl-C (``_thread.interrupt_main``, as the signal would) in ``job.get_result()`` and
    in the progress loop of ``array.get_results(progress=True)``."""
    import _thread
    import threading

    cluster = slurmscope.Cluster(
        "local", root=tmp_path, cancel_on_interrupt=cancel, set_as_default=False
    )
    try:
        handle = sleep.on(cluster)(60) if how == "job" else sleep.on(cluster).map([60, 60])
        other = sleep.on(cluster)(60)
        timer = threading.Timer(1.0, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            if how == "job":
                handle.get_result(timeout=30)
            else:
                handle.get_results(timeout=30, progress=True)
        timer.join()
        err = capsys.readouterr().err
        what = "job" if how == "job" else "array"
        assert f"interrupted while waiting for {what} {handle.job_id} (sleep)" in err, err
        assert f"job {other.job_id} (sleep): 1" in err, err  # every unfinished one is listed
        if cancel:
            assert f"cancelled {handle.job_id}, {other.job_id}." in err, err
            handle.wait(timeout=30)
            other.wait(timeout=30)
            assert {handle.state, other.state} == {"CANCELLED"}
        else:
            assert "cancelled" not in err
            assert other.state in ("PENDING", "RUNNING")
    finally:
        cluster.close()
