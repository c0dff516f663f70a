"""Resume (issue 14, part 3): a run's ledger, and a resumed run matched against it.

The pipeline tests run a three-stage driver script in a process of its own, on local and on
the real Slurm 25.11 cluster (sbatch and pyslurm), and count what was submitted from the
scheduler (``squeue`` by job name) and what ran from files the tasks write, never from
slurmscope's own ledger.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import driver_result

import slurmscope
from slurmscope import ledger, runs
from slurmscope.fingerprint import arguments_digest, function_digest, own_module, value_digest

PIPELINE = r"""
import json, os, sys, time
import structlog
import slurmscope

backend, root, tag, folder = sys.argv[1:5]
events = []


def keep(logger, method, event_dict):
    if event_dict["event"].startswith("slurmscope.resume."):
        events.append([event_dict["event"], event_dict["task"], event_dict["reason"]])
    raise structlog.DropEvent


structlog.configure(processors=[keep])
cluster = slurmscope.Cluster(backend, root=root)  # the run and resume come from the environment


def note(stage, value):
    with open(os.path.join(folder, "ran-" + stage), "a") as fh:
        fh.write(f"{value}\n")


def gate(name):
    deadline = time.time() + 180
    while os.path.exists(os.path.join(folder, name)) and time.time() < deadline:
        time.sleep(0.2)


@slurmscope.task(job_name=tag + "-one")
def one(x):
    gate("hold-one")
    note("one", x)
    if os.path.exists(os.path.join(folder, f"fail-one-{x}")):
        raise RuntimeError(f"one({x}) was told to fail")
    return x + 1


if os.environ.get("VARIANT") == "changed":

    @slurmscope.task(job_name=tag + "-two")
    def two(xs, k):
        note("two", k)
        return 1000 + sum(xs) * k

else:

    @slurmscope.task(job_name=tag + "-two")
    def two(xs, k):
        note("two", k)
        if os.path.exists(os.path.join(folder, "fail-two")):
            raise RuntimeError("two was told to fail")
        gate("hold-two")
        return sum(xs) * k


@slurmscope.task(job_name=tag + "-three")
def three(y):
    note("three", y)
    return y + 1


a = one.map([1, 2, 3], pack=int(os.environ["PACK"]) if os.environ.get("PACK") else None)
if os.environ.get("RELEASE_ONE"):
    os.unlink(os.path.join(folder, "hold-one"))
restarted = int(os.environ.get("SLURM_RESTART_COUNT") or 0)  # a requeued driver job
if os.environ.get("STOP_AFTER_ONE") and not restarted:
    if backend == "local":
        a.wait()  # the embedded scheduler dies with its driver: let stage one end first
    print("STAGE-ONE", a.job_id, flush=True)
    time.sleep(600)  # killed here
b = two(a, int(os.environ.get("K", "1")))
if os.environ.get("CANCEL_TWO"):
    while b.state == "PENDING":
        time.sleep(0.2)
    b.cancel()
c = three(b)
try:
    result = c.get_result(timeout=240)
except slurmscope.JobError as exc:
    result = "error: " + type(exc).__name__
ids = {"one": a.job_id, "two": b.job_id, "three": c.job_id}
ones = a.get_results(return_exceptions=True)
ones = [x if isinstance(x, int) else type(x).__name__ for x in ones]
print("RESULT " + json.dumps({"result": result, "ids": ids, "events": events, "ones": ones}))
cluster.close()
"""


class Pipeline:
    """The pipeline script of one test, its run, and what the scheduler and tasks saw."""

    def __init__(self, backend: str, env: dict[str, str], tmp_path: Path) -> None:
        self.backend = backend
        self.tag = f"rs{uuid.uuid4().hex[:8]}"
        self.folder = tmp_path / "marks"
        self.folder.mkdir()
        self.script = tmp_path / "pipeline.py"
        self.script.write_text(PIPELINE)
        self.root = tmp_path / "jobs"
        self.env = {**env, ledger.ENV_RUN: self.tag}
        self.env.pop(ledger.ENV_RESUME, None)

    @property
    def args(self) -> list[str]:
        return [sys.executable, str(self.script), self.backend, str(self.root), self.tag]

    def run(self, resume: bool = False, **env: str) -> dict[str, Any]:
        full = {**self.env, **env}
        if resume:
            full[ledger.ENV_RESUME] = "1"
        return driver_result([*self.args, str(self.folder)], env=full, timeout=400)

    def ran(self, stage: str) -> list[str]:
        """What the tasks of ``stage`` ran with, one line per execution."""
        path = self.folder / f"ran-{stage}"
        return path.read_text().split() if path.exists() else []

    def assert_submitted(self, one: int, two: int, three: int) -> None:
        """How many scheduler jobs (arrays count once) each stage had, from the scheduler:
        ``squeue`` by job name on Slurm (it keeps ended jobs for MinJobAge, 300 s); on local
        the embedded scheduler's own record of every job it was given (``job-<id>.json``
        under ``ROOT/.local``, names not kept: the total)."""
        if self.backend == "local":
            jobs = list((self.root / ".local").glob("job-*.json"))
            assert len(jobs) == one + two + three, sorted(j.name for j in jobs)
            return
        assert [self.submitted(s) for s in ("one", "two", "three")] == [one, two, three]

    def submitted(self, stage: str) -> int:
        """How many Slurm jobs carry the name of ``stage`` (``squeue``)."""
        out = subprocess.run(
            ["squeue", "-h", "-t", "all", f"--name={self.tag}-{stage}", "-o", "%i"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return len({line.split("_")[0] for line in out.split()})


def decisions(out: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """task -> (reused/resubmitted, reason) from the resumed driver's events."""
    found = {task: (event.rsplit(".", 1)[1], reason) for event, task, reason in out["events"]}
    assert found, out
    return found


@pytest.fixture
def pipeline(backend: str, driver_env: dict[str, str], tmp_path: Path) -> Pipeline:
    return Pipeline(backend, driver_env, tmp_path)


@pytest.mark.slow
def test_a_killed_driver_resumed_submits_stage_one_once(pipeline: Pipeline) -> None:
    p = pipeline
    if p.backend != "local":
        (p.folder / "hold-one").touch()  # stage one is still running when the run resumes
    proc = subprocess.Popen(
        [*p.args, str(p.folder)],
        env={**p.env, "STOP_AFTER_ONE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("STAGE-ONE "), (line, proc.stderr and proc.stderr.read())
        first_id = line.split()[1]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    out = p.run(resume=True, RELEASE_ONE="1" if p.backend != "local" else "")
    assert out["result"] == (2 + 3 + 4) + 1
    assert out["ids"]["one"] == first_id
    found = decisions(out)
    assert found["one"][0] == "reused"
    if p.backend != "local":  # reattached to a job that was still running or pending
        assert found["one"][1] == "unchanged, earlier job not ended", found
    p.assert_submitted(1, 1, 1)
    assert found["two"] == ("resubmitted", ledger.NOT_IN_EARLIER)
    assert found["three"] == ("resubmitted", ledger.NOT_IN_EARLIER)
    assert sorted(p.ran("one")) == ["1", "2", "3"]  # each item ran once
    assert p.ran("two") == ["1"] and p.ran("three") == ["9"]


@pytest.mark.slow
def test_a_changed_function_resubmits_its_stage_and_what_depends_on_it(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    first = p.run()
    assert first["result"] == 10 and first["events"] == []
    changed = p.run(resume=True, VARIANT="changed")
    assert changed["result"] == 1000 + 9 + 1
    assert decisions(changed) == {
        "one": ("reused", "unchanged, earlier job succeeded"),
        "two": ("resubmitted", ledger.FUNCTION_CHANGED),
        "three": ("resubmitted", ledger.DEPENDENCY_CHANGED),
    }
    assert changed["ids"]["one"] == first["ids"]["one"]
    assert changed["ids"]["two"] != first["ids"]["two"]
    # resumed once more with the same change: the latest submissions are reused
    again = p.run(resume=True, VARIANT="changed")
    assert again["ids"] == changed["ids"] and again["result"] == changed["result"]
    assert {d for d, _ in decisions(again).values()} == {"reused"}
    p.assert_submitted(1, 2, 2)
    assert sorted(p.ran("one")) == ["1", "2", "3"]
    assert len(p.ran("two")) == 2 and len(p.ran("three")) == 2


@pytest.mark.slow
def test_changed_arguments_resubmit_their_stage_and_what_depends_on_it(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    assert p.run()["result"] == 10
    out = p.run(resume=True, K="2")
    assert out["result"] == 19
    assert decisions(out) == {
        "one": ("reused", "unchanged, earlier job succeeded"),
        "two": ("resubmitted", ledger.ARGUMENTS_CHANGED),
        "three": ("resubmitted", ledger.DEPENDENCY_CHANGED),
    }
    p.assert_submitted(1, 2, 2)
    assert p.ran("two") == ["1", "2"] and len(p.ran("one")) == 3


@pytest.mark.slow
def test_a_failed_task_is_resubmitted(pipeline: Pipeline) -> None:
    p = pipeline
    (p.folder / "fail-two").touch()
    first = p.run()
    assert first["result"].startswith("error: "), first
    assert p.ran("three") == []  # cancelled by the scheduler: its dependency failed
    (p.folder / "fail-two").unlink()
    out = p.run(resume=True)
    assert out["result"] == 10
    assert decisions(out) == {
        "one": ("reused", "unchanged, earlier job succeeded"),
        "two": ("resubmitted", ledger.EARLIER_FAILED),
        "three": ("resubmitted", ledger.DEPENDENCY_CHANGED),
    }
    p.assert_submitted(1, 2, 2)
    assert len(p.ran("one")) == 3 and len(p.ran("two")) == 2 and p.ran("three") == ["9"]


@pytest.mark.slow
@pytest.mark.parametrize("pack", [None, 2], ids=["unpacked", "packed"])
def test_an_array_with_a_failed_task_runs_only_that_task_again(
    pipeline: Pipeline, pack: int | None
) -> None:
    """Only the failed item runs again; packed two items per task, only the task holding
    it (task 0: items 0 and 1), and of its items only the failed one (the other's result is
    reused)."""
    p = pipeline
    if pack:
        p.env["PACK"] = str(pack)
    (p.folder / "fail-one-2").touch()
    first = p.run()
    assert first["result"].startswith("error: ") and first["ones"] == [2, "TaskFailedError", 4]
    (p.folder / "fail-one-2").unlink()
    out = p.run(resume=True)
    assert out["result"] == 10 and out["ones"] == [2, 3, 4]
    assert decisions(out) == {
        "one": ("resubmitted", ledger.EARLIER_FAILED),
        "two": ("resubmitted", ledger.DEPENDENCY_CHANGED),
        "three": ("resubmitted", ledger.DEPENDENCY_CHANGED),
    }
    assert sorted(p.ran("one")) == ["1", "2", "2", "3"]  # only the failed item ran again
    p.assert_submitted(2, 2, 2)
    if p.backend != "local":  # the second array has one task, the failed item's
        tasks = subprocess.run(
            ["squeue", "-h", "-r", "-t", "all", "-j", out["ids"]["one"], "-o", "%i"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert tasks == [f"{out['ids']['one']}_{0 if pack else 1}"], tasks
    again = p.run(resume=True)  # the array made of reused and rerun tasks is reused whole
    assert again["ids"] == out["ids"] and again["ones"] == [2, 3, 4]
    assert {d for d, _ in decisions(again).values()} == {"reused"}


@pytest.mark.slow
def test_a_cancelled_task_is_resubmitted(pipeline: Pipeline) -> None:
    p = pipeline
    (p.folder / "hold-two").touch()  # two runs until the driver cancels it
    first = p.run(CANCEL_TWO="1")
    assert first["result"].startswith("error: "), first
    (p.folder / "hold-two").unlink()
    out = p.run(resume=True)
    assert out["result"] == 10
    assert decisions(out) == {
        "one": ("reused", "unchanged, earlier job succeeded"),
        "two": ("resubmitted", ledger.EARLIER_CANCELLED),
        "three": ("resubmitted", ledger.DEPENDENCY_CHANGED),
    }
    p.assert_submitted(1, 2, 2)
    assert p.ran("three") == ["9"]


@pytest.mark.slow
@pytest.mark.backends("sbatch")
def test_a_driver_job_that_slurm_requeues_resumes_its_run(pipeline: Pipeline) -> None:
    """The driver as a Slurm job (``--requeue``), requeued after stage one was submitted:
    it runs again with ``SLURM_RESTART_COUNT=1`` and resumes its run by itself. Slurm's
    default requeue delay (120 s on the shared test cluster) makes this test slow."""
    p = pipeline
    out_file = p.folder / "driver.out"
    command = " ".join([*p.args, str(p.folder)])
    env = {**p.env, "STOP_AFTER_ONE": "1"}
    driver = (
        subprocess.run(
            [
                "sbatch",
                "--parsable",
                "--requeue",
                "--open-mode=append",
                f"--job-name={p.tag}-driver",
                f"--output={out_file}",
                "--export=ALL",
                f"--wrap={command}",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .split(";")[0]
    )
    try:
        deadline = time.monotonic() + 120
        while "STAGE-ONE" not in (out_file.read_text() if out_file.exists() else ""):
            assert time.monotonic() < deadline, "the driver job did not submit stage one"
            time.sleep(0.5)
        subprocess.run(["scontrol", "requeue", driver], check=True)
        deadline = time.monotonic() + 400
        while "RESULT " not in out_file.read_text():
            assert time.monotonic() < deadline, out_file.read_text()[-3000:]
            time.sleep(2)
    finally:
        subprocess.run(["scancel", driver], check=False)
    text = out_file.read_text()
    out = json.loads(next(x for x in text.splitlines() if x.startswith("RESULT "))[7:])
    assert out["result"] == 10
    first_id = next(x for x in text.splitlines() if x.startswith("STAGE-ONE ")).split()[1]
    assert out["ids"]["one"] == first_id
    assert decisions(out)["one"][0] == "reused"
    p.assert_submitted(1, 1, 1)
    assert sorted(p.ran("one")) == ["1", "2", "3"]


# -- in one process, on local ------------------------------------------------------------------
def _double(x: int) -> int:
    return 2 * x


def test_resume_in_python_with_threads_and_handles(tmp_path: Path) -> None:
    """Cluster(run=, resume=True): the nth of identical submissions matches the nth of the
    earlier run; submissions from threads match whatever order the threads ran in; a
    reused handle is a handle like any other (dependencies, results, explain); the
    ledger says what each attempt did."""
    root = tmp_path / "jobs"
    double = slurmscope.task(_double)
    add = slurmscope.task(_add)

    def pipeline(cluster: slurmscope.Cluster) -> tuple[list[Any], dict[int, Any], Any]:
        arrays = [double.on(cluster).map([1, 2, 3]) for _ in range(3)]  # one key, thrice
        with ThreadPoolExecutor(4) as pool:
            futures = {i: pool.submit(double.on(cluster).map, [i]) for i in range(4)}
            threaded = {i: f.result() for i, f in futures.items()}
        total = add.on(cluster)(arrays[0], arrays[2])
        return arrays, threaded, total

    first_cluster = slurmscope.Cluster("local", root=root, run="py", set_as_default=False)
    assert first_cluster.run == "py"
    arrays, threaded, total = pipeline(first_cluster)
    assert total.get_result(timeout=60) == [2, 4, 6, 2, 4, 6]
    for array in [*arrays, *threaded.values()]:  # closing cancels what still runs
        array.wait(timeout=60)
    first_cluster.close()
    refused = subprocess.run(  # another process may not record in it again
        [
            sys.executable,
            "-c",
            f"import slurmscope; slurmscope.Cluster('local', root={str(root)!r}, run='py')",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0 and "RunExistsError" in refused.stderr
    assert "resume=True" in refused.stderr
    again = slurmscope.Cluster("local", root=root, run="py", resume=True, set_as_default=False)
    # another cluster of the same driver records in the same run (no RunExistsError)
    beside = slurmscope.Cluster("local", root=root, run="py", set_as_default=False)
    assert beside.run == "py"
    beside.close()
    arrays2, threaded2, total2 = pipeline(again)
    assert len({a.job_id for a in arrays}) == 3
    assert [a.job_id for a in arrays2] == [a.job_id for a in arrays]
    assert {i: a.job_id for i, a in threaded2.items()} == {i: a.job_id for i, a in threaded.items()}
    assert total2.job_id == total.job_id
    assert total2.get_result() == [2, 4, 6, 2, 4, 6]
    assert threaded2[3].get_results() == [6]
    assert "job passed as argument" in total2.explain()
    # a reused handle takes dependents like a fresh one
    follow = add.on(again)(arrays2[1], 1)
    assert follow.get_result(timeout=60) == [2, 4, 6, 1]
    manifest = json.loads((Path(follow.directory) / "manifest.json").read_text())
    assert manifest["run"] == "py"
    again.close()
    text = (root / "runs" / "py" / "ledger.jsonl").read_text()
    lines = [json.loads(x) for x in text.split("\n") if x]
    assert [(e["attempt"], e["decision"]) for e in lines] == [(1, "new")] * 8 + [
        (2, "reused")
    ] * 8 + [(2, "resubmitted")]
    assert [e["occurrence"] for e in lines[:3]] == [0, 1, 2]
    assert lines[-1]["reason"] == ledger.NOT_IN_EARLIER


def _add(a: Any, b: Any) -> Any:
    return (a + b) if not isinstance(a, list) else a + ([b] if isinstance(b, int) else b)


def test_run_ids_are_checked_before_anything(tmp_path: Path) -> None:
    # one rule, that of `slurmscope run` (runs.check_run_id): 1 to 100 characters, not only dots
    assert ledger.check_run_id is runs.check_run_id
    for bad in ("a/b", "..", "...", "", "x y", "é", "a" * 101):
        with pytest.raises(slurmscope.InvalidInputError, match="run id"):
            slurmscope.Cluster("local", root=tmp_path / "j", run=bad, set_as_default=False)
        with pytest.raises(slurmscope.InvalidInputError, match="run id"):
            ledger.requested(bad, True)
    assert not (tmp_path / "j" / "runs").exists()
    assert ledger.requested("a" * 100, None) == ("a" * 100, False)
    with pytest.raises(slurmscope.InvalidInputError, match="needs a run"):
        slurmscope.Cluster("local", root=tmp_path / "j", resume=True, set_as_default=False)


def test_a_ledger_cut_short_is_read_up_to_its_last_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    whole = {"key": "k", "directory": "/d", "occurrence": 0}
    path.write_text(json.dumps(whole) + "\n" + '{"key": "k2", "direc')
    os.chmod(path, 0o600)
    os.chmod(tmp_path, 0o700)
    assert ledger.read_ledger(path) == [whole]


def test_what_a_function_digest_sees() -> None:
    # code that moved (other line numbers) is the same code
    source = "def f(x):\n    return helper(x)\n\ndef helper(x):\n    return x * 2\n"
    a: dict[str, Any] = {"__name__": "m"}
    b: dict[str, Any] = {"__name__": "m"}
    c: dict[str, Any] = {"__name__": "m"}
    exec(compile(source, "a.py", "exec"), a)
    exec(compile("\n\n\n" + source, "b.py", "exec"), b)
    exec(compile(source.replace("x * 2", "x * 3"), "c.py", "exec"), c)
    assert function_digest(a["f"]) == function_digest(b["f"])
    assert function_digest(a["f"]) != function_digest(c["f"])  # a helper it calls changed
    d: dict[str, Any] = {"__name__": "m"}
    exec(compile(source.replace("return helper(x)", "return helper(x + 0)"), "d.py", "exec"), d)
    assert function_digest(a["f"]) != function_digest(d["f"])  # its own code changed
    e: dict[str, Any] = {"__name__": "m", "SCALE": 2}
    k: dict[str, Any] = {"__name__": "m", "SCALE": 3}
    for namespace in (e, k):
        exec(compile("def f(x):\n    return x * SCALE\n", "e.py", "exec"), namespace)
    assert function_digest(e["f"]) != function_digest(k["f"])  # a global it reads changed


def test_which_modules_are_the_users_own() -> None:
    """Followed into: the script, the user's modules (a file outside the standard library
    and installed packages). Not: the standard library, installed packages, slurmscope."""
    assert own_module("__main__")
    assert own_module("conftest")  # tests/conftest.py, beside this file
    assert not own_module("json") and not own_module("json.decoder")
    assert not own_module("sys")  # built in: no file
    assert not own_module("pytest") and not own_module("cloudpickle")  # installed
    assert not own_module("slurmscope.ledger")


def test_a_task_used_by_a_function_is_followed_and_cycles_end() -> None:
    source = (
        "import slurmscope\n"
        "@slurmscope.task\n"
        "def inner(x):\n    return x + 1\n"
        "def outer(x):\n    return inner.fn(x) + ping(x)\n"
        "def ping(x):\n    return pong(x - 1) if x else 0\n"
        "def pong(x):\n    return ping(x)\n"
        "class Node:\n    def me(self):\n        return Node\n"
        "Node.ME = Node\n"
        "Node.SELF = Node()\n"
        "def node(x):\n    return Node().me()\n"
    )
    a: dict[str, Any] = {"__name__": "m"}
    b: dict[str, Any] = {"__name__": "m"}
    exec(compile(source, "a.py", "exec"), a)
    exec(compile(source.replace("x + 1", "x + 2"), "b.py", "exec"), b)
    assert function_digest(a["outer"]) != function_digest(b["outer"])  # the inner task changed
    assert function_digest(a["node"]) == function_digest(b["node"])  # cycles end, same result
    assert function_digest(a["ping"]) == function_digest(b["ping"])


def test_argument_digests_do_not_depend_on_the_process() -> None:
    code = (
        "import dataclasses, enum\n"
        "from slurmscope.fingerprint import value_digest, arguments_digest\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class Tagged:\n"
        "    tags: frozenset = frozenset({'x', 'y', 'zz', 'w'})\n"
        "    extra: set = dataclasses.field(default_factory=lambda: {'p', 'q', 'rr'})\n"
        "class Mode(enum.Enum):\n"
        "    FAST = 1\n"
        "print(value_digest({'a', 'b', 'c', frozenset({'x', 'y'})}),"
        " arguments_digest([((1, 'a', {'k': 2.5}), {})], False),"
        " value_digest(Tagged()), value_digest([Mode.FAST, Tagged, {'in': [Tagged()]}]))\n"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outs) == 1 and len(outs.pop().split()) == 4
    assert value_digest([1, 2]) != value_digest([2, 1])
    looped: list[Any] = []
    looped += [looped, {"again": looped}]  # walked once, not 2**40 times
    assert value_digest(looped) == value_digest(looped) != value_digest([[], {"again": []}])
    assert arguments_digest([1, 2], True) != arguments_digest([1, 2], False)


def test_the_environment_says_which_run_and_whether_to_resume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (ledger.ENV_RUN, ledger.ENV_RESUME, "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(name, raising=False)
    assert ledger.requested(None, None) == (None, False)
    assert ledger.requested("a", None) == ("a", False)
    monkeypatch.setenv(ledger.ENV_RUN, "nightly")
    assert ledger.requested(None, None) == ("nightly", False)
    assert ledger.requested("other", None) == ("other", False)  # the argument wins
    monkeypatch.setenv(ledger.ENV_RESUME, "1")
    assert ledger.requested(None, None) == ("nightly", True)
    assert ledger.requested(None, False) == ("nightly", False)  # so does resume=False
    monkeypatch.setenv(ledger.ENV_RESUME, "0")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # a driver job Slurm requeued
    assert ledger.requested(None, None) == ("nightly", True)
    monkeypatch.delenv(ledger.ENV_RUN)
    assert ledger.requested(None, None) == (None, False)  # no run: nothing to resume
    monkeypatch.setenv(ledger.ENV_RESUME, "maybe")
    with pytest.raises(slurmscope.InvalidInputError, match="SLURMSCOPE_RESUME must be 1 or 0"):
        ledger.requested("x", None)


# -- what makes two submissions the same, across processes --------------------------------------
SAME = r"""
import dataclasses, enum, json, os, sys
import structlog
import slurmscope
import helpers

events = []


def keep(logger, method, event_dict):
    if event_dict["event"].startswith("slurmscope.resume."):
        events.append([event_dict["task"], event_dict["event"], event_dict["reason"]])
    raise structlog.DropEvent


structlog.configure(processors=[keep])
cluster = slurmscope.Cluster("local", root=sys.argv[1], run=sys.argv[2])


@dataclasses.dataclass
class Config:
    n: int = int(os.environ.get("FIELD", "3"))


@dataclasses.dataclass(frozen=True)
class Frozen:
    n: int = 3


class Mode(enum.Enum):
    FAST = 1


CONFIG = Config()


@slurmscope.task
def uses_global(x):
    return CONFIG.n + x


@slurmscope.task
def takes_values(mode, config):
    return [mode.name, config.n]


@slurmscope.task
def with_default(x, c=Config(), f=Frozen()):
    return x + c.n + f.n


@slurmscope.task
def uses_helper(x):
    return helpers.scale(x)


if os.environ.get("INNER") == "changed":

    @slurmscope.task
    def inner(x):
        return x + 100

else:

    @slurmscope.task
    def inner(x):
        return x + 1


@slurmscope.task
def outer(x):
    return inner.fn(x)


jobs = {
    "uses_global": uses_global(1),
    "takes_values": takes_values(Mode.FAST, Config(5)),
    "with_default": with_default(1),
    "uses_helper": uses_helper(2),
    "outer": outer(1),
}
results = {name: job.get_result(timeout=120) for name, job in jobs.items()}
print("RESULT " + json.dumps({"results": results, "events": events}))
cluster.close()
"""


def test_the_users_classes_modules_and_tasks_match_by_what_they_are(tmp_path: Path) -> None:
    """Dataclasses (also frozen) and enums defined in the script, as a global, a default and
    arguments, match in a new process when nothing changed (cloudpickle gives them a new id
    in every process), and stop matching when a field changes; a helper of the user's own
    module beside the script, and a task another task calls, are followed into: changing
    them resubmits, with the new result."""
    script = tmp_path / "same.py"
    script.write_text(SAME)
    helpers = tmp_path / "helpers.py"
    helpers.write_text("FACTOR = 3\n\n\ndef scale(x):\n    return x * FACTOR\n")
    root = tmp_path / "jobs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURMSCOPE_")}

    def run(resume: bool, seed: str, **more: str) -> dict[str, Any]:
        extra = {ledger.ENV_RESUME: "1"} if resume else {}
        return driver_result(
            [sys.executable, str(script), str(root), "same"],
            env={**env, "PYTHONHASHSEED": seed, **extra, **more},
            timeout=240,
            cwd=str(tmp_path),
        )

    def decisions(found: dict[str, Any]) -> dict[str, str]:
        return {
            task: f"{event.rsplit('.', 1)[-1]}: {reason}" for task, event, reason in found["events"]
        }

    first = run(False, "1")
    assert first["results"] == {
        "uses_global": 4,
        "takes_values": ["FAST", 5],
        "with_default": 7,
        "uses_helper": 6,
        "outer": 2,
    }
    assert first["events"] == []
    again = run(True, "2")  # nothing changed
    reused = "reused: unchanged, earlier job succeeded"
    assert decisions(again) == dict.fromkeys(first["results"], reused)
    assert again["results"] == first["results"]
    changed = run(True, "3", FIELD="4")  # a field's default, so the global's value too
    assert decisions(changed) == {
        "uses_global": f"resubmitted: {ledger.FUNCTION_CHANGED}",
        "takes_values": f"resubmitted: {ledger.ARGUMENTS_CHANGED}",
        "with_default": f"resubmitted: {ledger.FUNCTION_CHANGED}",
        "uses_helper": reused,
        "outer": reused,
    }
    assert changed["results"]["uses_global"] == 5
    assert changed["results"]["with_default"] == 8
    helpers.write_text("FACTOR = 5\n\n\ndef scale(x):\n    return x * FACTOR\n")
    later = run(True, "4", FIELD="4", INNER="changed")
    assert decisions(later) == {
        "uses_global": reused,
        "takes_values": reused,
        "with_default": reused,
        "uses_helper": f"resubmitted: {ledger.FUNCTION_CHANGED}",
        "outer": f"resubmitted: {ledger.FUNCTION_CHANGED}",
    }
    assert later["results"]["uses_helper"] == 10
    assert later["results"]["outer"] == 101


CLOSE_AND_OPEN = r"""
import json, sys
import slurmscope


@slurmscope.task
def work(x):
    return x


a = slurmscope.Cluster("local", root=sys.argv[1])
j1 = work(1)
j1.get_result(timeout=60)
a.close()
b = slurmscope.Cluster("local", root=sys.argv[1])
j2 = work(1)
j2.get_result(timeout=60)
j3 = work(1)
j3.get_result(timeout=60)
b.close()
print("RESULT " + json.dumps([j1.job_id, j2.job_id, j3.job_id]))
"""


def test_a_process_keeps_its_run_whatever_clusters_come_and_go(tmp_path: Path) -> None:
    """A driver that closes its cluster and makes another goes on in the same run and
    attempt: no RunExistsError when recording, and on resume each submission matches its
    own counterpart in program order (not the first submission of the same key again)."""
    script = tmp_path / "close_and_open.py"
    script.write_text(CLOSE_AND_OPEN)
    root = tmp_path / "jobs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURMSCOPE_")}
    env[ledger.ENV_RUN] = "kept"
    args = [sys.executable, str(script), str(root)]
    first = driver_result(args, env=env, timeout=120)
    assert len(set(first)) == 3
    again = driver_result(args, env={**env, ledger.ENV_RESUME: "1"}, timeout=120)
    assert again == first  # each reattached to its own earlier job
    lines = [
        json.loads(x)
        for x in (root / "runs" / "kept" / "ledger.jsonl").read_text().split("\n")
        if x
    ]
    assert [(e["attempt"], e["occurrence"], e["decision"]) for e in lines] == [
        (1, 0, "new"),
        (1, 1, "new"),
        (1, 2, "new"),
        (2, 0, "reused"),
        (2, 1, "reused"),
        (2, 2, "reused"),
    ]
    assert [e["seq"] for e in lines] == [1, 2, 3, 1, 2, 3]
