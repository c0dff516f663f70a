"""``slurmscope run``: a pipeline script submitted as a driver job, on the real Slurm cluster
(sbatch and pyslurm) and on the local backend (a detached process).

Each test runs the command in a subprocess, as a user would, with the job root of the
``cluster`` fixture; the test then looks at the scheduler through that cluster (and, on
Slurm, ``scontrol``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import slurmscope
from slurmscope.runs import read_run
from slurmscope.spec import Resources

#: A three-stage pipeline: squares of 0..N-1 (an array), their total, a label of the total.
PIPELINE = """
import json, os, sys, time
import slurmscope

tag = sys.argv[2]

@slurmscope.task(job_name=tag + "-one")
def square(x, pause):
    time.sleep(pause)
    return x * x

@slurmscope.task(job_name=tag + "-two")
def total(xs):
    return sum(xs)

@slurmscope.task(job_name=tag + "-three")
def label(t, tag):
    return f"{tag}={t}"

n, pause = int(sys.argv[1]), float(sys.argv[3])
print("pipeline starting", n, tag, flush=True)
first = square.map([(i, pause) for i in range(n)])
print("stage one submitted", first.job_id, flush=True)
gate = os.environ.get("PIPELINE_GATE")  # the driver waits here while this file exists
while gate and os.path.exists(gate):
    time.sleep(0.2)
second = total(first)
third = label(second, tag)
print("RESULT " + json.dumps({"label": third.get_result(timeout=300)}), flush=True)
"""

#: Stage one runs for minutes; stage two waits on it.
SLOW = """
import sys, time
import slurmscope

@slurmscope.task
def nap(seconds):
    time.sleep(seconds)
    return seconds

one = nap(600)
two = nap.after(one)(1)
print("submitted", one.job_id, two.job_id, flush=True)
two.get_result(timeout=900)
"""


def cli(root: Path, env: dict[str, str], *args: str, cwd: Path | None = None) -> Any:
    """``slurmscope --root ROOT ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "slurmscope.cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def ok(proc: Any) -> str:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout}\n{proc.stderr}"
    return str(proc.stdout)


def start(
    root: Path,
    env: dict[str, str],
    backend: str,
    script: Path,
    *args: str,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    out = ok(
        cli(
            root,
            env,
            "run",
            "--json",
            "--backend",
            backend,
            *extra,
            script.name,
            *args,
            cwd=script.parent,
        )
    )
    found: dict[str, Any] = json.loads(out)
    assert found["driver_job"] and found["run"], out
    return found


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def status(root: Path, env: dict[str, str], job: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(ok(cli(root, env, "--json", "status", job)))
    return found


def driver_ended(root: Path, env: dict[str, str], job: str) -> dict[str, Any] | None:
    now = status(root, env, job)
    states = [t["state"] for t in now["tasks"]]
    ended = states and all(s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for s in states)
    return now if ended else None


def scheduler_state(cluster: slurmscope.Cluster, backend: str, job_id: str) -> str:
    """The state of ``job_id`` as the scheduler says it: ``scontrol`` on Slurm, the local
    scheduler's record (through a handle) on local."""
    if backend == "local":
        job = cluster.attach(job_id)
        job.refresh()
        return str(job.task_rows()[0][2])
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"JobState=(\S+)", out)
    assert match, out
    return match.group(1)


def test_run_pipeline_as_driver_job(
    cluster: slurmscope.Cluster, backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    root = cluster.root
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    started = start(root, driver_env, backend, script, "4", "hello", "0", extra=("--requeue",))
    driver, run_id = started["driver_job"], started["run"]
    if backend != "local":  # --requeue: Slurm may requeue the driver job (node failure)
        shown = subprocess.run(
            ["scontrol", "show", "job", "-o", driver], capture_output=True, text=True, check=True
        ).stdout
        assert "Requeue=1" in shown, shown
    done = wait_for("the driver job to end", lambda: driver_ended(root, driver_env, driver))
    assert [t["state"] for t in done["tasks"]] == ["COMPLETED"], done

    # The run's record, and the submissions it made: three, each naming the driver job.
    record = read_run(root, run_id)
    assert record is not None
    assert record["script"] == "pipeline.py" and record["args"] == ["4", "hello", "0"]
    assert record["cwd"] == str(tmp_path) and record["backend"] == backend
    assert [d["job_id"] for d in record["drivers"]] == [driver]
    stages = done["driver_of"]["submissions"]
    assert [s["name"] for s in stages] == ["square", "total", "label"], stages
    for stage in stages:
        manifest = json.loads((Path(stage["directory"]) / "manifest.json").read_text())
        assert manifest["driver_job"] == driver and manifest["run"] == run_id
        assert manifest["backend"] == backend
    # Their results, read through the scheduler the test holds.
    square, total, label = (cluster.attach(Path(s["directory"])) for s in stages)
    assert isinstance(square, slurmscope.ArrayJob)
    assert square.get_results(timeout=60) == [0, 1, 4, 9]
    assert total.get_result(timeout=60) == 14
    assert label.get_result(timeout=60) == "hello=14"

    # status: the tree driver -> stages -> tasks.
    text = ok(cli(root, driver_env, "status", driver))
    ids = [s["job_ids"][0] for s in stages]
    tree = [
        f"driver job {driver}  COMPLETED 1  (run {run_id})",
        f"├── square  job {ids[0]}  COMPLETED 4",
        f"│   ├── 0  {ids[0]}_0  COMPLETED",
        f"│   └── 3  {ids[0]}_3  COMPLETED",
        f"├── total  job {ids[1]}  COMPLETED 1",
        f"│   └── 0  {ids[1]}  COMPLETED",
        f"└── label  job {ids[2]}  COMPLETED 1",
        f"    └── 0  {ids[2]}  COMPLETED",
    ]
    for shown in (text, ok(cli(root, driver_env, "runs", run_id))):  # runs RUN: the same tree
        lines = shown.splitlines()
        positions = [lines.index(line) for line in tree]  # ValueError: a line is missing
        assert positions == sorted(positions), shown
    # explain names the driver job as the origin of each submission.
    for job_id in ids:
        said = ok(cli(root, driver_env, "explain", job_id))
        assert f"submitted by driver job {driver} of run {run_id}" in said, said
    # logs: what the script printed.
    logs = ok(cli(root, driver_env, "logs", driver))
    assert "pipeline starting 4 hello" in logs and 'RESULT {"label": "hello=14"}' in logs, logs
    # runs lists the run with its driver job.
    runs = json.loads(ok(cli(root, driver_env, "--json", "runs")))
    assert [(r["id"], [d["job_id"] for d in r["drivers"]]) for r in runs] == [(run_id, [driver])]
    assert runs[0]["drivers"][0]["state"] == "COMPLETED 1"


def test_cancel_all_stops_the_driver_and_what_it_submitted(
    cluster: slurmscope.Cluster, backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    root = cluster.root
    script = tmp_path / "slow.py"
    script.write_text(SLOW)
    driver = start(root, driver_env, backend, script)["driver_job"]
    stages = wait_for(
        "two submissions",
        lambda: len(s := status(root, driver_env, driver)["driver_of"]["submissions"]) == 2 and s,
    )
    one, two = (s["job_ids"][0] for s in stages)
    if backend == "local":  # the driver's own scheduler runs them: their processes say
        wait_for("stage one to run", lambda: _local_pid(root, one))
        assert _local_pid(root, two) is None
        assert scheduler_state(cluster, backend, two) == "UNKNOWN"  # not ended
    else:
        wait_for("stage one to run", lambda: scheduler_state(cluster, backend, one) == "RUNNING")
        assert scheduler_state(cluster, backend, two) == "PENDING"
    said = ok(cli(root, driver_env, "cancel", "--all", driver))
    assert f"cancelled 3 job(s) of driver job {driver}" in said, said
    for job_id in (driver, one, two):
        wait_for(
            f"job {job_id} cancelled",
            lambda j=job_id: scheduler_state(cluster, backend, j) == "CANCELLED",
            timeout=60,
        )
    if backend == "local":
        assert not [j for j in (driver, one, two) if _local_pid(root, j)]
    again = ok(cli(root, driver_env, "cancel", "--all", driver))
    assert "had already ended" in again, again


@pytest.mark.backends("local", "sbatch")
def test_bad_input_is_refused_before_anything_is_submitted(
    cluster: slurmscope.Cluster, backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    root = cluster.root
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    cases = {
        ("run", "--backend", backend, "missing.py"): "no script missing.py in",
        ("run", "--backend", backend, str(tmp_path)): "(it is a directory)",
        ("run", "--backend", backend, "--cpus-per-task", "999", "pipeline.py"): "cpus_per_task=999",
        ("run", "--backend", backend, "--mem", "lots", "pipeline.py"): "invalid memory 'lots'",
        ("run", "--backend", backend, "--run-id", "a/b", "pipeline.py"): "invalid run id 'a/b'",
        ("run", "--resume", ".."): "invalid run id '..'",
        ("run", "--resume", "never-ran"): "no run never-ran under",
        ("run", "--backend", backend): "give the script to run",
        ("run", "--backend", backend, "bad.py"): "bad.py is not valid Python (line 2:",
    }
    (tmp_path / "bad.py").write_text("print('fine')\ndef broken(:\n")
    for argv, message in cases.items():
        proc = cli(root, driver_env, *argv, cwd=tmp_path)
        assert proc.returncode != 0 and message in proc.stderr, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr
    left = [p.name for p in root.iterdir() if p.name not in (".local",)] if root.exists() else []
    assert not [p for p in left if p not in ("by-id", "runs")], left
    assert not list(root.glob("runs/*")), list(root.glob("runs/*"))
    # A run id taken already: refused too, the run left as it was.
    first = start(root, driver_env, backend, script, "1", "x", "0", extra=("--run-id", "taken"))
    done = wait_for("the driver", lambda: driver_ended(root, driver_env, first["driver_job"]))
    stage = done["driver_of"]["submissions"][0]["job_ids"][0]
    proc = cli(root, driver_env, "cancel", "--all", stage)
    assert proc.returncode == 1 and "is not a driver job" in proc.stderr, proc.stderr
    before = (root / "runs" / "taken" / "run.json").read_text()
    proc = cli(
        root,
        driver_env,
        "run",
        "--backend",
        backend,
        "--run-id",
        "taken",
        "pipeline.py",
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and "run taken already exists" in proc.stderr, proc.stderr
    assert (root / "runs" / "taken" / "run.json").read_text() == before
    # --resume with --run-id: a usage error (status 2), which says nothing was submitted.
    proc = cli(root, driver_env, "run", "--resume", "taken", "--run-id", "y", cwd=tmp_path)
    assert proc.returncode == 2 and "Nothing was submitted" in proc.stderr, proc.stderr
    # --resume from another directory: the script given is the run's directory's.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "other.py").write_text("print('other')\n")
    proc = cli(root, driver_env, "run", "--resume", "taken", "other.py", cwd=elsewhere)
    assert proc.returncode == 1, proc.stderr
    assert f"resolved against the run's directory {tmp_path}" in proc.stderr, proc.stderr
    assert (root / "runs" / "taken" / "run.json").read_text() == before
    # explain of the driver job: the command that submitted it, not the command's code.
    said = ok(cli(root, driver_env, "explain", first["driver_job"]))
    assert f"submitted at `slurmscope run pipeline.py 1 x 0` in {tmp_path}" in said, said
    assert "bin/slurmscope" not in said and "cli/" not in said, said


#: A driver whose one stage submits a job of its own from inside its task.
NESTED = """
import slurmscope

@slurmscope.task
def child(x):
    return x + 1

@slurmscope.task
def parent(x):
    slurmscope.Cluster()  # in the task: the default cluster of its submissions
    return child(x).get_result(timeout=60)

print("RESULT", parent(41).get_result(timeout=120), flush=True)
"""


@pytest.mark.backends("local")
def test_only_the_driver_s_own_submissions_name_it(
    cluster: slurmscope.Cluster, backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    """A job submitted from inside a stage of the run is that stage's, not the driver's.
    (Local only: child submissions on Slurm are another change's, issue 14 part 2.)"""
    root = cluster.root
    script = tmp_path / "nested.py"
    script.write_text(NESTED)
    driver = start(root, driver_env, backend, script)["driver_job"]
    done = wait_for("the driver job", lambda: driver_ended(root, driver_env, driver))
    assert [t["state"] for t in done["tasks"]] == ["COMPLETED"], done
    assert "RESULT 42" in ok(cli(root, driver_env, "logs", driver))
    by_name = {
        m["name"]: m for m in (json.loads(p.read_text()) for p in root.glob("*/manifest.json"))
    }
    assert sorted(by_name) == ["child", "driver:nested.py", "parent"], sorted(by_name)
    assert by_name["parent"]["driver_job"] == driver
    assert by_name["child"]["driver_job"] is None and by_name["child"]["run"] is None
    assert by_name["driver:nested.py"]["driver_job"] is None
    stages = done["driver_of"]["submissions"]
    assert [s["name"] for s in stages] == ["parent"], stages


def test_resume_after_the_driver_was_killed(
    cluster: slurmscope.Cluster, backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    """The issue's test: a run whose driver job is killed after stage one was submitted
    finishes when resumed (`slurmscope run --resume RUN`), with stage one submitted once."""
    root = cluster.root
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    tag = f"rs{os.getpid()}x{time.time_ns() % 10**6}"
    gate = tmp_path / "gate"
    if backend == "local":
        # The embedded scheduler lives in the driver's process: what it has not finished
        # when that process dies is lost with it (docs/pipelines.md), so stage one ends
        # first, while the driver waits at the gate before stage two.
        gate.touch()
        driver_env = {**driver_env, "PIPELINE_GATE": str(gate)}
    started = start(root, driver_env, backend, script, "3", tag, "8")
    driver, run_id = started["driver_job"], started["run"]
    wait_for(
        "stage one",
        lambda: status(root, driver_env, driver)["driver_of"]["submissions"],
    )
    if backend == "local":
        one = status(root, driver_env, driver)["driver_of"]["submissions"][0]["job_ids"][0]
        wait_for(
            "stage one to end",
            lambda: all(t["state"] == "COMPLETED" for t in status(root, driver_env, one)["tasks"]),
        )
        pid = wait_for("the driver's process", lambda: _local_pid(root, driver))
        os.kill(pid, signal.SIGKILL)
    else:
        subprocess.run(["scancel", driver], check=True)
    wait_for("the driver job to end", lambda: driver_ended(root, driver_env, driver))
    gate.unlink(missing_ok=True)
    resumed = json.loads(
        ok(cli(root, driver_env, "run", "--json", "--resume", run_id, cwd=tmp_path))
    )
    assert resumed["run"] == run_id and resumed["driver_job"] != driver
    done = wait_for(
        "the resumed driver", lambda: driver_ended(root, driver_env, resumed["driver_job"]), 300
    )
    assert [t["state"] for t in done["tasks"]] == ["COMPLETED"], done
    logs = ok(cli(root, driver_env, "logs", resumed["driver_job"]))
    assert f'RESULT {{"label": "{tag}=5"}}' in logs, logs
    assert _submitted(backend, root, f"{tag}-one") == 1
    # The resumed driver's tree: everything its attempt uses, the reused stage marked so.
    stages = done["driver_of"]["submissions"]
    assert [s["name"] for s in stages] == ["square", "total", "label"], stages
    assert [s["reused_from"] for s in stages][0] == driver, stages
    one = stages[0]["job_ids"][0]
    text = ok(cli(root, driver_env, "status", resumed["driver_job"]))
    assert f"├── square  job {one}  COMPLETED 3  (reused from driver {driver})" in text, text
    assert "nothing submitted yet" not in text, text
    # runs RUN: each attempt's decisions and their reasons, from the ledger.
    said = ok(cli(root, driver_env, "runs", run_id))
    attempts = said[said.index("attempt 1") :]
    assert f"attempt 1 (driver job {driver}):" in attempts, said
    assert f"attempt 2 (driver job {resumed['driver_job']}):" in attempts, said
    second = attempts[attempts.index("attempt 2") :]
    # (on Slurm it may have been still running when the resumed driver reattached)
    why = r"reused: unchanged, earlier job (succeeded|not ended)"
    assert re.search(rf"square  job {one}  {why}\n", second), said
    # ...and the driver job's log says so, as the events of the resume.
    assert "slurmscope.resume.reused" in logs and "task='square'" in logs, logs


def _local_pid(root: Path, job_id: str) -> int | None:
    """The process of the local job ``job_id`` of ``root`` (its worker), if it runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        here = f"SLURMSCOPE_JOB_DIR={root}{os.sep}".encode()
        if (
            b"slurmscope.worker" in cmdline
            and f"SLURM_JOB_ID={job_id}".encode() in environ
            and any(e.startswith(here) for e in environ)
        ):
            return int(entry.name)
    return None


def _submitted(backend: str, root: Path, name: str) -> int:
    """How many jobs named ``name`` the scheduler got (Slurm: every job it still knows,
    ended ones included; local: its records, through the job directories)."""
    if backend == "local":
        count = 0
        for manifest in root.glob("*/manifest.json"):
            data = json.loads(manifest.read_text())
            count += data["resources"].get("job_name") == name and bool(data["parts"])
        return count
    out = subprocess.run(
        ["squeue", "--states=all", "-h", "-n", name, "-o", "%F"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len(set(out.split()))


@pytest.mark.backends("sbatch", "pyslurm")
def test_cancel_all_of_a_resumed_driver_cancels_what_it_reattached(
    cluster: slurmscope.Cluster, backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    """A resumed driver reattaches to the stages of the earlier one that still run: its tree
    shows them (reused from the earlier driver), and `cancel --all` of it cancels them.
    (Slurm only: on local the stages end with the driver that ran them.)"""
    root = cluster.root
    script = tmp_path / "slow.py"
    script.write_text(SLOW)
    started = start(root, driver_env, backend, script)
    driver, run_id = started["driver_job"], started["run"]
    stages = wait_for(
        "two submissions",
        lambda: len(s := status(root, driver_env, driver)["driver_of"]["submissions"]) == 2 and s,
    )
    one, two = (s["job_ids"][0] for s in stages)
    ok(cli(root, driver_env, "cancel", driver))  # the driver only: its stages go on
    wait_for("the driver job to end", lambda: driver_ended(root, driver_env, driver))
    assert scheduler_state(cluster, backend, one) in ("PENDING", "RUNNING")
    resumed = json.loads(
        ok(cli(root, driver_env, "run", "--json", "--resume", run_id, cwd=tmp_path))
    )["driver_job"]
    wait_for(  # it has reattached both (its ledger lines name it)
        "the resumed driver to reattach",
        lambda: len(status(root, driver_env, resumed)["driver_of"]["submissions"]) == 2,
    )
    tree = status(root, driver_env, resumed)["driver_of"]["submissions"]
    assert [(s["job_ids"][0], s["reused_from"]) for s in tree] == [(one, driver), (two, driver)]
    text = ok(cli(root, driver_env, "status", resumed))
    assert f"├── nap  job {one}" in text and f"(reused from driver {driver})" in text, text
    said = ok(cli(root, driver_env, "cancel", "--all", resumed))
    assert f"cancelled 3 job(s) of driver job {resumed}" in said, said
    for job_id in (resumed, one, two):
        wait_for(
            f"job {job_id} cancelled",
            lambda j=job_id: scheduler_state(cluster, backend, j) == "CANCELLED",
            timeout=60,
        )


#: A driver that waits: long enough for a second `slurmscope run` to find it running.
WAITS = """
import time
time.sleep(120)
"""


def test_concurrent_runs_of_one_run_id_submit_one_driver(
    cluster: slurmscope.Cluster, backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    """Three `run --run-id X` at once: one driver job, the others refused; then three
    `run --resume X` at once (its driver cancelled): one more driver job, run.json has both."""
    root = cluster.root
    script = tmp_path / "waits.py"
    script.write_text(WAITS)
    base = [sys.executable, "-m", "slurmscope.cli", "--root", str(root), "run", "--json"]

    def at_once(*argv: str) -> list[Any]:
        procs = [
            subprocess.Popen(
                [*base, "--backend", backend, *argv],
                cwd=tmp_path,
                env=driver_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        return [(p, *p.communicate(timeout=120)) for p in procs]

    done = at_once("--run-id", "once", "waits.py")
    started = [json.loads(out) for p, out, _ in done if p.returncode == 0]
    refused = [err for p, _, err in done if p.returncode != 0]
    assert len(started) == 1, done
    assert len(refused) == 2 and all("run once already exists" in e for e in refused), refused
    first = started[0]["driver_job"]
    record = read_run(root, "once")
    assert record is not None and [d["job_id"] for d in record["drivers"]] == [first]
    drivers = [m for m in root.glob("*/manifest.json") if "driver_waits" in m.parent.name]
    assert len(drivers) == 1, drivers

    ok(cli(root, driver_env, "cancel", first))
    wait_for("the driver job to end", lambda: driver_ended(root, driver_env, first))
    done = at_once("--resume", "once")
    started = [json.loads(out) for p, out, _ in done if p.returncode == 0]
    refused = [err for p, _, err in done if p.returncode != 0]
    assert len(started) == 1, done
    assert len(refused) == 2 and all("still has a driver job" in e for e in refused), refused
    second = started[0]["driver_job"]
    record = read_run(root, "once")
    assert record is not None and [d["job_id"] for d in record["drivers"]] == [first, second]
    drivers = [m for m in root.glob("*/manifest.json") if "driver_waits" in m.parent.name]
    assert len(drivers) == 2, drivers
    ok(cli(root, driver_env, "cancel", second))
    wait_for("the second driver job to end", lambda: driver_ended(root, driver_env, second))


def _plus_one(x: int) -> int:
    return x + 1


@pytest.mark.backends("local")
def test_a_run_made_in_python(
    cluster: slurmscope.Cluster, backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    """A run made in Python (a ledger, no run.json): `run --run-id` and `--resume` of it are
    refused before anything is submitted; `runs` lists it, marked so, with its decisions."""
    root = cluster.root
    made = slurmscope.Cluster(backend, root=root, run="pyrun", set_as_default=False)
    try:
        job = slurmscope.Task(_plus_one, Resources(), cluster=made)(1)
        assert isinstance(job, slurmscope.Job) and job.get_result(timeout=60) == 2
    finally:
        made.close()
    assert (root / "runs" / "pyrun" / "ledger.jsonl").is_file()
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    before = sorted(p.name for p in root.iterdir())
    proc = cli(root, driver_env, "run", "--run-id", "pyrun", "pipeline.py", cwd=tmp_path)
    assert proc.returncode == 1 and "made in Python" in proc.stderr, proc.stderr
    assert "Nothing was submitted" in proc.stderr
    proc = cli(root, driver_env, "run", "--resume", "pyrun", cwd=tmp_path)
    assert proc.returncode == 1 and "made in Python" in proc.stderr, proc.stderr
    assert sorted(p.name for p in root.iterdir()) == before
    assert not (root / "runs" / "pyrun" / "run.json").exists()
    listed = ok(cli(root, driver_env, "runs"))
    assert "pyrun" in listed and "(made in Python, ledger only: 1 submission(s)" in listed, listed
    runs = json.loads(ok(cli(root, driver_env, "--json", "runs")))
    assert [(r["id"], r.get("python")) for r in runs] == [("pyrun", True)], runs
    said = ok(cli(root, driver_env, "runs", "pyrun"))
    assert "made in Python" in said and "attempt 1: 1 new" in said, said
    assert f"_plus_one  job {job.job_id}  new" in said, said


@pytest.mark.backends("local", "sbatch")
def test_the_command_s_own_cluster_records_in_no_run(
    cluster: slurmscope.Cluster, backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    """`SLURMSCOPE_RUN` / `SLURMSCOPE_RESUME` in the shell do not make the driver job's
    submission a submission of that run."""
    root = cluster.root
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    env = driver_env | {"SLURMSCOPE_RUN": "shellrun", "SLURMSCOPE_RESUME": "1"}
    started = start(root, env, backend, script, "1", "s", "0")
    assert started["run"] != "shellrun"
    done = wait_for("the driver", lambda: driver_ended(root, driver_env, started["driver_job"]))
    assert [t["state"] for t in done["tasks"]] == ["COMPLETED"], done
    assert not (root / "runs" / "shellrun").exists(), list((root / "runs").iterdir())
    driver = next(
        json.loads(m.read_text())
        for m in root.glob("*/manifest.json")
        if json.loads(m.read_text())["name"] == "driver:pipeline.py"
    )
    assert driver["run"] is None, driver


#: A script that asks for a run of its own while `slurmscope run` runs it in another.
OWN_RUN = """
import slurmscope

@slurmscope.task
def one():
    return 1

slurmscope.Cluster(run="mine")
print("RESULT", one().get_result(timeout=60), flush=True)
"""


@pytest.mark.backends("local")
def test_a_script_s_own_run_is_refused_in_a_driver_job(
    cluster: slurmscope.Cluster, backend: str, driver_env: dict[str, str], tmp_path: Path
) -> None:
    root = cluster.root
    script = tmp_path / "own.py"
    script.write_text(OWN_RUN)
    started = start(root, driver_env, backend, script)
    done = wait_for("the driver", lambda: driver_ended(root, driver_env, started["driver_job"]))
    assert [t["state"] for t in done["tasks"]] == ["FAILED"], done
    logs = cli(root, driver_env, "logs", started["driver_job"]).stdout
    assert "Cluster(run='mine') in a driver job of `slurmscope run`" in logs, logs
    assert f"which runs run {started['run']!r}" in logs, logs
    assert not (root / "runs" / "mine").exists()
    assert done["driver_of"]["submissions"] == [], done


#: What a driver job's script logs, after `show_resume_events()` as the driver job calls it.
LOGGING = """
import logging, sys
from slurmscope.driver_script import show_resume_events
from slurmscope.log import log
show_resume_events()
if sys.argv[1] == "configured":
    logging.basicConfig(level=logging.WARNING, format="ROOT %(message)s")
log.info("slurmscope.resume.reused", task="square")
log.info("slurmscope.submit", task="square")
log.warning("slurmscope.poll.failed", error="x")
"""


@pytest.mark.backends("local")
@pytest.mark.parametrize("how", ["unconfigured", "configured"])
def test_a_driver_job_shows_resume_events_unless_the_script_configures_logging(
    backend: str, how: str
) -> None:
    """Unconfigured: the resume events and warnings, once each. Configured by the script
    (a root handler at WARNING): what that configuration shows, once, and no INFO."""
    proc = subprocess.run(
        [sys.executable, "-c", LOGGING, how], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    reused = [line for line in lines if "slurmscope.resume.reused" in line]
    warned = [line for line in lines if "slurmscope.poll.failed" in line]
    assert not [line for line in lines if "slurmscope.submit" in line], lines
    assert len(warned) == 1, lines
    if how == "unconfigured":
        assert len(reused) == 1 and "task='square'" in reused[0], lines
    else:
        assert reused == [] and warned[0].startswith("ROOT "), lines
