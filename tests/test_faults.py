"""Faults of the controller, on a Slurm cluster of the test's own (it is restarted)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import slurm_cluster
from conftest import add, record_run, sleep

import slurmscope

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


# A cluster of this test run's own (two runs at once must not stop each other's daemons).
CHAOS = slurm_cluster.OwnCluster("chaos", 20000)
CHAOS_DIR = CHAOS.dir
CONF = CHAOS.conf
_script = CHAOS.script


def _ctld_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"slurmctld -f {CONF}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def stop_controller() -> None:
    for pid in _ctld_pids():
        os.kill(pid, 15)
    deadline = time.monotonic() + 30
    while _ctld_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _ctld_pids()


def _sbin() -> str:
    """Where the daemons of the cluster's Slurm are (the lane's own build, or Debian's)."""
    for line in _script("env").stdout.splitlines():
        if line.startswith("export SLURMSCOPE_SLURM_SBIN="):
            return line.split("=", 1)[1]
    raise AssertionError("scripts/slurm-cluster env names no SLURMSCOPE_SLURM_SBIN")


def start_controller() -> None:
    """Restart slurmctld keeping its saved state (no -c): its jobs come back."""
    env = dict(os.environ, SLURM_CONF=CONF)
    subprocess.run([f"{_sbin()}/slurmctld", "-f", CONF], env=env, check=True)


@pytest.fixture(scope="module")
def chaos() -> Iterator[None]:
    CHAOS.start("--nodes", "2")
    yield
    CHAOS.remove()


@pytest.fixture
def cluster(chaos: None, tmp_path: Path) -> Iterator[slurmscope.Cluster]:
    healthy = _script("start", "--nodes", "2")  # idempotent: repairs what a test broke
    assert healthy.returncode == 0, healthy.stderr[-2000:]
    c = slurmscope.Cluster("sbatch", root=tmp_path, slurm_conf=CONF, set_as_default=False)
    yield c
    c.close()


def test_submission_retries_while_controller_is_down(chaos: None, tmp_path: Path) -> None:
    """While slurmctld is down, sbatch fails (22.05 after a few seconds; 25.11's sbatch keeps
    trying longer, so the command is cut at 4 s here) and slurmscope submits again."""
    healthy = _script("start", "--nodes", "2")
    assert healthy.returncode == 0, healthy.stderr[-2000:]
    cluster = slurmscope.Cluster(
        "sbatch", root=tmp_path, slurm_conf=CONF, set_as_default=False, command_timeout=4
    )
    # A first submission reads the partitions' limits (once): the outage then meets sbatch.
    assert add.on(cluster)(0).get_result(timeout=120) == 1
    before = cluster.backend.calls["sbatch"]
    stop_controller()
    restart = threading.Timer(12.0, start_controller)  # past sbatch's own retries
    restart.start()
    try:
        t0 = time.monotonic()
        job = add.on(cluster)(1)  # the first sbatch fails; the retry lands
        assert time.monotonic() - t0 >= 11
    finally:
        restart.join()
    assert cluster.backend.calls["sbatch"] - before >= 2
    assert job.get_result(timeout=120) == 2
    cluster.close()


def test_wait_survives_controller_restart(cluster: slurmscope.Cluster) -> None:
    array = sleep.on(cluster).map([2, 2, 2])
    first = add.on(cluster).after(array)(1)
    stop_controller()
    time.sleep(3)
    start_controller()
    assert array.get_results(timeout=180) == [2, 2, 2]
    assert first.get_result(timeout=180) == 2


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True)
    children: dict[int, list[int]] = {}
    for line in out.stdout.splitlines():
        p, pp = (int(x) for x in line.split())
        children.setdefault(pp, []).append(p)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_node(node: str) -> list[str]:
    """SIGKILL a node's slurmd and every job step running on it, with their processes.
    Returns the raw job ids that were running there."""
    env = dict(os.environ, SLURM_CONF=CONF)
    raw = subprocess.run(
        ["squeue", "--noheader", f"--nodelist={node}", "--states=RUNNING", "--format=%A"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    victims = []
    for pid in subprocess.run(
        ["pgrep", "-f", f"slurmd -f {CONF} -N {node}$"], capture_output=True, text=True
    ).stdout.split():
        victims.append(int(pid))
    steps = subprocess.run(["pgrep", "-a", "slurmstepd"], capture_output=True, text=True).stdout
    for line in steps.splitlines():
        pid, title = line.split(" ", 1)
        job = title.split("[", 1)[-1].split(".", 1)[0]
        if job in raw and os.readlink(f"/proc/{pid}/cwd").startswith(CHAOS_DIR):
            victims.append(int(pid))
            victims.extend(_descendants(int(pid)))
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    return raw


def test_node_dies_tasks_are_requeued_and_every_result_arrives_once(
    cluster: slurmscope.Cluster, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    array = record_run.on(cluster).map([(i, str(runs)) for i in range(4)])
    deadline = time.monotonic() + 60
    # every task's function has started (written its first line): a kill now interrupts it
    while len(list(runs.iterdir())) < 4 and time.monotonic() < deadline:
        time.sleep(0.3)
    env = dict(os.environ, SLURM_CONF=CONF)
    placed = subprocess.run(
        ["squeue", "--noheader", "--array", f"--jobs={array.job_id}", "--format=%i %N"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split("\n")
    on_n1 = sorted(int(line.split()[0].split("_")[1]) for line in placed if line.endswith(" n1"))
    assert on_n1, f"no task ran on n1: {placed}"
    try:
        kill_node("n1")
        results = array.get_results(timeout=400)
    finally:
        _script("start", "--nodes", "2")  # brings n1 back
    assert results == [0, 1, 2, 3]  # every result, each once, in order
    assert array.requeued == on_n1  # slurmscope saw and reported which tasks were requeued
    for i in range(4):
        lines = (runs / f"{i}.runs").read_text().splitlines()
        assert len(lines) == (2 if i in on_n1 else 1), (i, lines)
    assert sorted(p.name for p in array.get_results_dir().iterdir()) == [
        f"{i}.pkl" for i in range(4)
    ]


def test_slurmd_restart_while_tasks_run(cluster: slurmscope.Cluster) -> None:
    """Restarting slurmd (not the job steps) loses nothing: the steps run on."""
    array = sleep.on(cluster).map([6, 6])
    deadline = time.monotonic() + 60
    while array.counts().get("RUNNING", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    for pid in subprocess.run(
        ["pgrep", "-f", f"slurmd -f {CONF}"], capture_output=True, text=True
    ).stdout.split():
        os.kill(int(pid), 9)
    time.sleep(1)
    started = _script("start", "--nodes", "2")
    assert started.returncode == 0, started.stderr
    assert array.get_results(timeout=180) == [6, 6]
    assert array.requeued == []
