"""What only the pyslurm backend does, against the real Slurm test cluster.

pyslurm is a real one where it imports, else the pyslurm TEST DOUBLE (tests/pyslurm_double),
which carries out each call on the real cluster through sbatch/scontrol/scancel. Tests that
inject faults into pyslurm, or inspect its calls, need the double and skip on a real one.
What Slurm recorded is always read back with ``scontrol show job``, not through pyslurm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pyslurm_support
import pytest
import slurm_cluster
from conftest import ThreadsAtOnce, add, held, job_dirs, probe_spec, sleep

import slurmscope
from slurmscope.backends import pyslurm as backend_module
from slurmscope.backends.pyslurm import PyslurmBackend
from slurmscope.backends.pyslurm_description import description_fields
from slurmscope.backends.slurm_request import batch_script
from slurmscope.errors import BackendUnavailableError, SubmissionError
from slurmscope.spec import ArraySpec, Resources

pytestmark = pytest.mark.slurm


THREADS = 16


@pytest.fixture
def flavour() -> Iterator[str]:
    """``"real"`` or ``"double"``: which pyslurm ``import pyslurm`` gives in this test."""
    slurm_cluster.require()
    with pyslurm_support.pyslurm_importable() as which:
        yield which


@pytest.fixture
def pyslurm_module(flavour: str) -> ModuleType:
    """The pyslurm in use: the real bindings where they import (the test command builds
    them), else the double. pyslurm's quirks are checked on this one."""
    import pyslurm

    return pyslurm


@pytest.fixture
def double() -> Iterator[ModuleType]:
    """The pyslurm TEST DOUBLE, freshly imported, even where a real pyslurm imports: only for
    the tests that inject faults into pyslurm or count its calls, which a real pyslurm
    cannot do. Its calls are still carried out on the real cluster."""
    slurm_cluster.require()
    with pyslurm_support.double_on_path():
        import pyslurm

        assert "TEST DOUBLE" in (pyslurm.__doc__ or "")
        yield pyslurm


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[slurmscope.Cluster]:
    """A pyslurm cluster on the double where the test asks for it, else on the pyslurm in use."""
    if "double" not in request.fixturenames:
        request.getfixturevalue("flavour")
    c = slurmscope.Cluster("pyslurm", root=tmp_path, set_as_default=False)
    yield c
    c.close()


def scontrol_job(job_id: str) -> dict[str, str]:
    """The first record ``scontrol show job`` prints for a job, as a dict of its fields."""
    out = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fields: dict[str, str] = {}
    for token in out.splitlines()[0].split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def slurm_recorded(job_id: str) -> set[tuple[str, str]]:
    """(kind, target id) pairs of the dependency Slurm holds for ``job_id``."""
    text = scontrol_job(job_id).get("Dependency", "(null)")
    pairs = set()
    for clause in filter(None, "" if text == "(null)" else text.split(",")):
        kind, *ids = clause.split(":")
        for ident in ids:
            pairs.add((kind, ident.split("(")[0].removesuffix("_*")))
    return pairs


def scancel(*job_ids: str) -> None:
    subprocess.run(["scancel", *job_ids], capture_output=True, check=False)


spec = probe_spec


# -- the description ------------------------------------------------------------------------
def test_description_carries_every_resource(tmp_path: Path) -> None:
    s = spec(
        tmp_path,
        resources=Resources(
            time="60",
            mem="2G",
            cpus_per_task=2,
            gpus=1,
            partition="p",
            account="a",
            qos="q",
            constraint="c",
            extra=("--nice=5", "--exclusive"),
        ),
        array=ArraySpec(10, 3),
        dependencies=(("afterok", ("1", "2_3")), ("afterany", ("4",))),
        environment={"SLURMSCOPE_JOB_DIR": "/d"},
    )
    fields = description_fields(s)
    assert fields["script"] == batch_script(s)  # the very script sbatch gets
    assert fields["array"] == "0-9%3"
    assert fields["dependencies"] == "afterok:1:2_3,afterany:4"  # a str, never a dict
    assert fields["time_limit"] == 60  # plain minutes as an int, not "60"
    assert description_fields(s.with_(resources=Resources(time="1:30:00")))["time_limit"] == (
        "1:30:00"
    )
    for name, value in {
        "memory_per_node": "2G",
        "cpus_per_task": 2,
        "gpus": 1,
        "partitions": "p",
        "account": "a",
        "qos": "q",
        "constraints": "c",
        "nice": 5,
        "resource_sharing": "no",
        "kill_on_invalid_dependency": True,
        "standard_output": s.stdout,
        "standard_error": s.stderr,
        "working_directory": str(tmp_path),
        "name": "probe",
    }.items():
        assert fields[name] == value, name
    assert fields["environment"]["SLURMSCOPE_JOB_DIR"] == "/d"
    assert fields["environment"]["PATH"] == os.environ["PATH"]
    with pytest.raises(SubmissionError, match=r"--gres=gpu:2.*Cluster\('sbatch'\)"):
        description_fields(s.with_(resources=Resources(extra=("--gres=gpu:2",))))


REAL_FIELDS = """
import json, sys
import pyslurm

fields = json.loads(sys.stdin.read())
pyslurm.JobSubmitDescription(**fields)  # refuses a name it does not have (AttributeError)
print(json.dumps(sorted(n for n in dir(pyslurm.JobSubmitDescription) if not n.startswith("_"))))
"""


def test_description_fields_are_pyslurm_fields(tmp_path: Path) -> None:
    """Every field name exists on the real pyslurm's JobSubmitDescription, which takes them
    with these values (checked in a process of its own, with the real bindings)."""
    why = pyslurm_support.real_pyslurm()
    if why is not None:
        if os.environ.get("SLURMSCOPE_TEST_PYSLURM") == "real":
            pytest.fail(f"SLURMSCOPE_TEST_PYSLURM=real, but no real pyslurm imports: {why}")
        pytest.skip(f"needs the real pyslurm: {why}")
    fields = description_fields(spec(tmp_path, resources=Resources(time="5", extra=("-n=1",))))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # never the double
    proc = subprocess.run(
        [sys.executable, "-c", REAL_FIELDS],
        input=json.dumps(fields),
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set(json.loads(proc.stdout))
    assert set(fields) <= names and fields, sorted(set(fields) - names)
    assert "partitions" in names and "partition" not in names  # as the backend spells it


# -- many threads at once ---------------------------------------------------------------------
def test_sixteen_threads_submit_at_once_with_their_own_dependencies(
    cluster: slurmscope.Cluster, flavour: str
) -> None:
    """16 driver threads, each in its own nested scopes, submit through one backend at the
    same moment. Every job carries exactly its own thread's dependencies as Slurm recorded
    them, and (with the double) every pyslurm call ran on the backend's one thread."""
    if flavour == "double":
        import pyslurm

        pyslurm._double.reset()
    nap = sleep.on(cluster)
    gate = nap(600)  # nothing below starts during the test
    with cluster.dependencies(gate):
        ups = [(nap(0), nap(0)) for _ in range(THREADS)]

    def driver(i: int, barrier: threading.Barrier) -> dict[str, list[Any]]:
        a, b = ups[i]
        with cluster.dependencies(a):
            with cluster.dependencies(b, kind="afterany"):
                barrier.wait()  # all 16 submit from here at once
                inner = [nap(0), nap.map([0, 0])]
            outer = nap.map([0])
        return {"inner": inner, "outer": [outer]}

    drivers = ThreadsAtOnce(THREADS, driver, name="driver-{}", timeout=120)
    submitted = [gate.job_id] + [j.job_id for pair in ups for j in pair]
    try:
        results = drivers.start().join(timeout=300)
        for mine in results.values():
            submitted += [j.job_id for k in ("inner", "outer") for j in mine[k]]
        assert len(set(submitted)) == len(submitted), "two submissions got the same job id"
        for i, mine in results.items():
            a, b = ups[i]
            for job in mine["inner"]:
                want = {("afterok", a.job_id), ("afterany", b.job_id)}
                assert slurm_recorded(job.job_id) == want, (i, job.job_id)
                assert {(d.kind, d.target_id) for d in job.dependencies} == want
                assert {d.provenance.site.thread for d in job.dependencies} == {f"driver-{i}"}
            for job in mine["outer"]:
                assert slurm_recorded(job.job_id) == {("afterok", a.job_id)}, (i, job.job_id)
        if flavour == "double":
            import pyslurm

            rpc_thread = cluster.backend.rpc_thread  # type: ignore[attr-defined]
            submits = [c for c in pyslurm._double.calls if c[0].endswith("submit")]
            assert len(submits) == len(submitted)
            assert pyslurm._double.threads() == {rpc_thread}, "a pyslurm call ran elsewhere"
            assert rpc_thread.name == "slurmscope-pyslurm"
    finally:
        scancel(*submitted)


# -- errors -----------------------------------------------------------------------------------
def test_invalid_partition_is_refused_and_leaves_nothing(cluster: slurmscope.Cluster) -> None:
    before = job_dirs(cluster)
    with pytest.raises(SubmissionError, match="Invalid partition name specified"):
        add.options(partition="nosuchpartition").on(cluster).map([1, 2])
    assert job_dirs(cluster) == before


def test_slurm_errors_become_submission_errors(cluster: slurmscope.Cluster, tmp_path: Path) -> None:
    backend = cluster.backend
    with pytest.raises(SubmissionError, match="Invalid job array specification.*MaxArraySize"):
        backend.submit(spec(tmp_path, array=ArraySpec(500)))
    with pytest.raises(SubmissionError, match="Job dependency problem"):
        backend.submit(spec(tmp_path, dependencies=(("afterok", ("nosuchjob",)),)))


def test_transient_errors_are_retried_with_the_same_dependencies(
    double: ModuleType, tmp_path: Path
) -> None:
    cluster = slurmscope.Cluster(
        PyslurmBackend(retries=3, retry_delay=0.01), root=tmp_path, set_as_default=False
    )
    try:
        with held(cluster, tmp_path) as hold:  # first stays pending: Slurm keeps the dependency
            first = add.on(cluster).after(hold)(1)
            double._double.fail_next("JobSubmitDescription.submit", 1800, times=2)  # unreachable
            before = cluster.backend.calls["submit"]
            second = add.on(cluster).after(first)(2)
            assert cluster.backend.calls["submit"] - before == 3
            assert slurm_recorded(second.job_id) == {("afterok", first.job_id)}
        assert second.get_result(timeout=120) == 3
        double._double.fail_next("JobSubmitDescription.submit", 5004, times=10)  # timeouts
        with pytest.raises(SubmissionError, match="Socket timed out"):
            add.on(cluster)(3)
    finally:
        cluster.close()


def test_polling_rides_out_a_controller_that_does_not_answer(
    double: ModuleType, cluster: slurmscope.Cluster
) -> None:
    # A job that runs a while: until its result file appears, only the scheduler can tell
    # how it is doing, so the poller must ask it (and ride out the failures).
    job = sleep.on(cluster)(5)
    double._double.fail_next("Jobs.load", 1800, times=3)  # the poller logs and asks again
    assert job.get_result(timeout=120) == 5
    assert sum(1 for name, _ in double._double.calls if name == "Jobs.load") >= 4


def test_node_hosts_for_the_shared_root_check(cluster: slurmscope.Cluster) -> None:
    """The same nodes as sinfo names, a node whose NodeAddr is this machine as this machine."""
    from slurmscope.backends._slurm import local_node_names

    sinfo = subprocess.run(
        ["sinfo", "--noheader", "--Node", "--format=%n %o"], capture_output=True, text=True
    ).stdout.split("\n")
    pairs = [tuple(line.split()) for line in sinfo if line.strip()]
    assert pairs, "sinfo listed no node"
    expected = local_node_names(pairs)  # type: ignore[arg-type]
    assert cluster.backend.node_hosts() == expected  # type: ignore[attr-defined]


# -- pyslurm's quirks, and the backend's handling of them ---------------------------------------
def test_task_zero_reads_back_as_none_and_states_still_have_it(
    pyslurm_module: ModuleType, cluster: slurmscope.Cluster
) -> None:
    array = add.on(cluster).map([1, 2])
    assert array.get_results(timeout=120) == [2, 3]
    records = [j for j in pyslurm_module.Jobs.load().values() if str(j.array_id) == array.job_id]
    assert sorted(j.array_task_id for j in records if j.array_task_id is not None) == [1]
    assert [j.array_task_id for j in records].count(None) == 1  # task 0
    assert cluster.backend.states([array.job_id])[array.job_id].keys() == {0, 1}


def test_job_load_of_an_array_returns_one_record_states_return_all(
    pyslurm_module: ModuleType, cluster: slurmscope.Cluster
) -> None:
    gate = sleep.on(cluster)(600)
    array = add.on(cluster).after(gate).map([1, 2, 3])
    try:
        one = pyslurm_module.Job.load(int(array.job_id))
        assert isinstance(one, pyslurm_module.Job)
        assert (one.array_task_id, one.array_tasks_waiting) == (None, "0-2")
        states = cluster.backend.states([array.job_id])[array.job_id]
        assert {i: s.state for i, s in states.items()} == dict.fromkeys(range(3), "PENDING")
    finally:
        scancel(gate.job_id, array.job_id)


def test_a_dependency_dict_is_modified_in_place_so_strings_are_given(
    pyslurm_module: ModuleType, cluster: slurmscope.Cluster, tmp_path: Path
) -> None:
    gate = sleep.on(cluster)(600)
    deps = {"afterok": [int(gate.job_id)], "satisfy": "all"}
    script = "#!/bin/sh\ntrue\n"
    desc = pyslurm_module.JobSubmitDescription(
        script=script,
        dependencies=deps,
        time_limit=1,
        working_directory=str(tmp_path),
        standard_output=str(tmp_path / "%j.out"),
    )
    job_id = desc.submit()
    try:
        assert deps == {"afterok": [int(gate.job_id)]}  # pyslurm popped "satisfy"
        assert slurm_recorded(str(job_id)) == {("afterok", gate.job_id)}
        later = add.on(cluster).after(gate)(1)  # the backend gives a string: nothing lost
        assert slurm_recorded(later.job_id) == {("afterok", gate.job_id)}
        scancel(later.job_id)
    finally:
        scancel(gate.job_id, str(job_id))


def test_time_limit_in_minutes_goes_as_an_int(
    pyslurm_module: ModuleType, cluster: slurmscope.Cluster
) -> None:
    with pytest.raises(TypeError):  # what pyslurm does with a digit string
        pyslurm_module.JobSubmitDescription(script="#!/bin/sh\ntrue\n", time_limit="10").submit()
    job = add.options(time="10").on(cluster)(1)
    assert scontrol_job(job.job_id)["TimeLimit"] == "00:10:00"
    job.cancel()


def test_cancel_one_array_task(cluster: slurmscope.Cluster, flavour: str) -> None:
    """pyslurm has no call for ``JOBID_INDEX``: a pending task has no job id of its own, so
    ``pyslurm.Job(id).cancel()`` cannot reach it. The backend cancels one task with ``scancel
    ID_INDEX``; Slurm then keeps no record of a pending task it cancelled."""
    running = sleep.on(cluster).map([120, 120], max_concurrent=1)
    gate = sleep.on(cluster)(600)
    pending = add.on(cluster).after(gate).map([1, 2, 3])
    try:
        pending[1].cancel()
        states = cluster.backend.states([pending.job_id])[pending.job_id]
        assert {i: s.state for i, s in states.items()} == {0: "PENDING", 2: "PENDING"}
        deadline = time.monotonic() + 120
        while running[0].state != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
        # The quirk itself, on the pyslurm in use:
        import pyslurm

        (own,) = [
            j.id
            for j in pyslurm.Jobs.load().values()
            if str(j.array_id) == running.job_id and j.state == "RUNNING"
        ]
        # Slurm 25.11 takes the own id of a started task and cancels that task alone (the
        # double, on 22.05's scancel, does the same); pending tasks still have no own id.
        pyslurm.Job(own).cancel()
        running[0].wait(timeout=120)
        assert running[0].state == "CANCELLED"
        assert running[1].state != "CANCELLED"
    finally:
        scancel(gate.job_id, pending.job_id, running.job_id)


# -- choosing the backend, and a pyslurm that does not match the cluster's Slurm -----------------
def test_auto_detection_prefers_pyslurm(
    flavour: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLURMSCOPE_BACKEND", raising=False)
    cluster = slurmscope.Cluster(root=tmp_path, set_as_default=False)
    try:
        assert cluster.backend.kind == "pyslurm"
    finally:
        cluster.close()


def test_without_the_double_detection_goes_on_to_sbatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slurm_cluster.require()
    if pyslurm_support.real_pyslurm() is None:
        pytest.skip("a real pyslurm is installed")
    with pyslurm_support.double_on_path():
        import pyslurm  # noqa: F401 - imported, then taken away again
    assert "pyslurm" not in sys.modules
    monkeypatch.delenv("SLURMSCOPE_BACKEND", raising=False)
    cluster = slurmscope.Cluster(root=tmp_path, set_as_default=False)
    try:
        assert cluster.backend.kind == "sbatch"
    finally:
        cluster.close()
    with pytest.raises(BackendUnavailableError, match=r"pip install 'slurmscope\[pyslurm\]'"):
        slurmscope.Cluster("pyslurm", root=tmp_path, set_as_default=False)


def test_pyslurm_built_for_another_slurm_fails_at_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How a pyslurm built against another libslurm fails: its extension modules do not load.

    A stand-in package raises the ImportError the dynamic loader gives in that case."""
    slurm_cluster.require()
    fake = tmp_path / "mismatched" / "pyslurm"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ImportError('/usr/lib/python3/dist-packages/pyslurm/core/job/"
        "job.cpython-311-x86_64-linux-gnu.so: undefined symbol: slurm_kill_job_msg')\n"
    )
    monkeypatch.syspath_prepend(str(fake.parent))
    monkeypatch.delitem(sys.modules, "pyslurm", raising=False)
    with pytest.raises(BackendUnavailableError) as info:
        slurmscope.Cluster("pyslurm", root=tmp_path, set_as_default=False)
    message = str(info.value)
    assert "does not match this cluster's Slurm" in message
    assert "undefined symbol" in message
    assert "Cluster('sbatch')" in message
    ok, why = backend_module.reachable()
    assert not ok and "Cluster('sbatch')" in why
    monkeypatch.delenv("SLURMSCOPE_BACKEND", raising=False)
    cluster = slurmscope.Cluster(root=tmp_path, set_as_default=False)
    try:
        assert cluster.backend.kind == "sbatch"  # auto-detection falls back
    finally:
        cluster.close()


def test_pyslurm_of_another_protocol_fails_at_the_first_call(
    double: ModuleType, tmp_path: Path
) -> None:
    """A libslurm of another release than the controller's: the first RPC fails with
    "Incompatible versions of client and server code" (SLURM_PROTOCOL_VERSION_ERROR)."""
    double._double.protocol_mismatch = True
    with pytest.raises(BackendUnavailableError) as info:
        slurmscope.Cluster("pyslurm", root=tmp_path, set_as_default=False)
    assert "Incompatible versions of client and server code" in str(info.value)
    assert "Cluster('sbatch')" in str(info.value)


def test_pyslurm_newer_than_the_controller_is_refused(
    double: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(double, "__version__", "99.11.0")
    with pytest.raises(BackendUnavailableError, match=r"newer than the controller.*sbatch"):
        slurmscope.Cluster("pyslurm", root=tmp_path, set_as_default=False)


def test_a_protocol_error_later_says_so_too(
    double: ModuleType, cluster: slurmscope.Cluster
) -> None:
    double._double.fail_next("JobSubmitDescription.submit", 1005)
    with pytest.raises(
        BackendUnavailableError, match=r"Incompatible versions.*Cluster\('sbatch'\)"
    ):
        add.on(cluster)(1)


def test_a_slurm_conf_libslurm_cannot_read_never_ends_the_program(
    flavour: str, tmp_path: Path
) -> None:
    """``import pyslurm`` runs libslurm's ``slurm_init()``, which ends the whole process
    (``fatal()``, exit 1) where slurm.conf cannot be read. Auto-detection and
    ``Cluster('pyslurm')`` try the import in a child process first: the program lives on,
    detection moves on, and the explicit request says why."""
    driver = textwrap.dedent(
        f"""
        import slurmscope
        from slurmscope.errors import BackendUnavailableError
        c = slurmscope.Cluster(root={str(tmp_path)!r}, set_as_default=False)
        print("auto:", c.backend.kind)
        try:
            slurmscope.Cluster("pyslurm", root={str(tmp_path)!r}, set_as_default=False)
        except BackendUnavailableError as exc:
            print("explicit:", exc)
        print("alive")
        """
    )
    empty = tmp_path / "slurm.conf"  # libslurm: "file is empty", then fatal() at once
    empty.write_text("")
    environ = dict(os.environ, SLURM_CONF=str(empty))
    environ.pop("SLURMSCOPE_BACKEND", None)
    if flavour == "double":
        environ["PYTHONPATH"] = pyslurm_support.DOUBLE_DIR
    bare = subprocess.run(
        [sys.executable, "-c", "import pyslurm; print('alive')"],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )
    proc = subprocess.run(
        [sys.executable, "-c", driver], capture_output=True, text=True, env=environ, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[-1] == "alive"
    assert lines[0] == "auto: local"  # no pyslurm, no sbatch that answers
    environ["SLURM_CONF"] = str(tmp_path / "missing.conf")  # libslurm would retry for 60 s
    started = time.monotonic()
    missing = subprocess.run(
        [sys.executable, "-c", driver], capture_output=True, text=True, env=environ, timeout=300
    )
    assert missing.returncode == 0, missing.stderr[-2000:]
    assert "missing.conf: cannot stat file" in missing.stdout
    assert time.monotonic() - started < 30
    if flavour == "real":  # the double does not imitate slurm_init()'s exit
        assert bare.returncode != 0 and "alive" not in bare.stdout  # what it protects from
        assert "slurm_init() failed" in lines[1] and "Unable to process configuration" in lines[1]


def test_cancel_after_failed_calls_on_the_rpc_thread(cluster: slurmscope.Cluster) -> None:
    """pyslurm's ``Job.cancel()`` decides from the thread's ``errno``, not the RPC's return
    code. On the backend's one RPC thread a refused submission (errno 2000) and a failed
    system call (ENOENT) come first; the cancel after them must neither raise nor be lost.
    (On Slurm 25.11.7 libslurm clears errno on a successful RPC; the backend still believes
    a cancel error only if the job has not ended.)"""
    job = sleep.on(cluster)(600)
    with pytest.raises(SubmissionError, match="(?i)partition"):
        add.options(partition="nosuchpartition").on(cluster)(1)
    backend = cluster.backend
    backend._rpc.run(lambda: os.path.exists("/nonexistent/x") or None)  # type: ignore[attr-defined]
    job.cancel()
    job.wait(timeout=60)
    assert job.state == "CANCELLED"
    assert scontrol_job(job.job_id)["JobState"] == "CANCELLED"


def test_real_pyslurm_against_an_older_controller_says_so(flavour: str, tmp_path: Path) -> None:
    """The real pyslurm 25.11 against the 22.05 compatibility cluster (started by the test
    command): slurmctld refuses the newer protocol and hangs up, which libslurm reports as a
    receive failure; the error names the version mismatch and the sbatch fallback."""
    if flavour != "real":
        pytest.skip("needs the real pyslurm bindings")
    env_out = subprocess.run(
        [str(slurm_cluster.SCRIPT), "env"],
        capture_output=True,
        text=True,
        env={**os.environ, "SLURMSCOPE_SLURM_LANE": "22.05", "SLURMSCOPE_CLUSTER_DIR": ""},
    ).stdout
    conf = next((ln.split("=", 1)[1] for ln in env_out.splitlines() if "SLURM_CONF=" in ln), "")
    if not conf or not os.path.exists(conf):
        pytest.skip("the Slurm 22.05 compatibility cluster is not configured here")
    driver = textwrap.dedent(
        f"""
        import slurmscope
        try:
            slurmscope.Cluster("pyslurm", root={str(tmp_path)!r}, set_as_default=False)
        except slurmscope.BackendUnavailableError as exc:
            print(exc)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", driver],
        capture_output=True,
        text=True,
        env={**os.environ, "SLURM_CONF": conf},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "does not match this cluster's Slurm" in proc.stdout
    assert "Cluster('sbatch')" in proc.stdout


def test_a_second_configuration_in_one_process_is_refused(flavour: str, tmp_path: Path) -> None:
    """libslurm reads SLURM_CONF once, at ``import pyslurm``: a pyslurm cluster asked for
    later with another configuration would silently talk to the first cluster. It is refused,
    naming both, whether the other configuration comes as ``slurm_conf=`` or ``SLURM_CONF``."""
    first = slurmscope.Cluster("pyslurm", root=tmp_path / "a", set_as_default=False)
    first.close()
    other = tmp_path / "other.conf"
    other.write_text(Path(os.environ["SLURM_CONF"]).read_text())
    with pytest.raises(BackendUnavailableError, match="loaded in this process already"):
        slurmscope.Cluster("pyslurm", root=tmp_path / "b", slurm_conf=str(other))
    old = os.environ["SLURM_CONF"]
    os.environ["SLURM_CONF"] = str(other)
    try:
        with pytest.raises(BackendUnavailableError, match=r"SLURM_CONF=.*other\.conf"):
            slurmscope.Cluster("pyslurm", root=tmp_path / "c", set_as_default=False)
    finally:
        os.environ["SLURM_CONF"] = old
    again = slurmscope.Cluster("pyslurm", root=tmp_path / "d", set_as_default=False)
    again.close()
