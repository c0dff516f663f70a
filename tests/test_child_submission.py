"""Submitting from inside a job: a task (or a driver run as a job) that submits more work
gets exactly what it asked for, whatever its own job's environment says, and the
provenance of each submission names the job and task it came from.

The Slurm tests run on a cluster of this module's own (``slurm_cluster.OwnCluster``) with
two nodes and the partitions ``low`` and ``high`` beside the default ``debug``
(``SLURMSCOPE_PREEMPT_GRACE``; nothing here is submitted to ``high``, so nothing is
preempted): the parent job runs in ``low`` with ``--mem-per-cpu`` and two CPUs per task, on
one node, while its child (one CPU, ``--mem``, the default partition) runs on the other. Each
test's driver runs in a subprocess pointed at that cluster, so that the real pyslurm reads
its slurm.conf at import. On the compatibility lane (``SLURMSCOPE_SLURM_LANE=22.05``) the
same cluster runs Debian's Slurm 22.05, for sbatch.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pyslurm_support
import pytest
import slurm_cluster
import structlog.testing
import tasks
from conftest import driver_result

import slurmscope
from slurmscope.backends import inherited
from slurmscope.backends.pyslurm_description import job_environment
from slurmscope.callsite import CallSite, EnclosingJob, enclosing_job
from slurmscope.spec import JobSpec
from slurmscope.testing import FakeBackend

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

#: A parent job's environment as Slurm 25.11 gives it to a batch job submitted with
#: ``sbatch --partition=low --cpus-per-task=2 --mem-per-cpu=300`` from a shell that had
#: ``SBATCH_TIMELIMIT`` and ``SLURM_TIME_FORMAT`` set (names and values as slurmd and
#: sbatch write them), with what slurmscope gives its tasks.
PARENT_JOB = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/me",
    "SLURM_CONF": "/etc/slurm/slurm.conf",
    "SLURM_TIME_FORMAT": "relative",
    "SLURM_JOB_ID": "41",
    "SLURM_JOBID": "41",
    "SLURM_ARRAY_JOB_ID": "40",
    "SLURM_ARRAY_TASK_ID": "1",
    "SLURM_JOB_PARTITION": "low",
    "SLURM_MEM_PER_CPU": "300",
    "SLURM_CPUS_PER_TASK": "2",
    "SLURM_JOB_ACCOUNT": "physics",
    "SLURM_EXPORT_ENV": "ALL",
    "SLURM_UMASK": "0022",
    "SLURM_SUBMIT_DIR": "/home/me",
    "SLURM_RLIMIT_NOFILE": "1024",
    "SLURMD_NODENAME": "n1",
    "SBATCH_TIMELIMIT": "10",
    "SLURMSCOPE_JOB_DIR": "/home/me/.slurmscope/jobs/parent-1",
    "SLURMSCOPE_CHECKPOINT": "3:sbatch",
    "SLURMSCOPE_PACK": "4:10",
    "SLURMSCOPE_BACKEND": "sbatch",
    "OMP_NUM_THREADS": "2",
}


# -- the one definition of what is left out --------------------------------------------------


def test_inside_a_job_what_describes_the_job_is_left_out() -> None:
    child = inherited.child_environment(PARENT_JOB)
    gone = set(PARENT_JOB) - set(child)
    assert gone == {
        name
        for name in PARENT_JOB
        if name.startswith(("SLURM_", "SLURMD_", "SBATCH_"))
        and name not in ("SLURM_CONF", "SLURM_TIME_FORMAT")
    } | {"SLURMSCOPE_JOB_DIR", "SLURMSCOPE_CHECKPOINT", "SLURMSCOPE_PACK"}
    assert "SLURM_MEM_PER_CPU" in gone and "SBATCH_TIMELIMIT" in gone
    # what does not describe the job stays
    assert child == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/me",
        "SLURM_CONF": "/etc/slurm/slurm.conf",
        "SLURM_TIME_FORMAT": "relative",
        "SLURMSCOPE_BACKEND": "sbatch",
        "OMP_NUM_THREADS": "2",
    }
    assert inherited.left_out(PARENT_JOB) == sorted(gone)


def test_outside_a_job_the_environment_is_passed_on_as_it_is() -> None:
    login = {k: v for k, v in PARENT_JOB.items() if k not in ("SLURM_JOB_ID", "SLURMSCOPE_JOB_DIR")}
    assert inherited.child_environment(login) == login
    assert inherited.left_out(login) == []


def _slurm_source() -> dict[str, str]:
    """src/sbatch/opt.c, src/srun/opt.c and src/common/env.c of the Slurm 25.11 source
    tarball ``scripts/slurm-cluster`` builds from (skipped where there is none)."""
    for candidate in (
        os.environ.get("SLURMSCOPE_SLURM_SOURCE", ""),
        str(REPO.parent / "shared" / "slurm" / "slurm-25.11.7.tar.xz"),
    ):
        if candidate and os.access(candidate, os.R_OK):
            break
    else:
        pytest.skip("no Slurm 25.11 source tarball (SLURMSCOPE_SLURM_SOURCE)")
    wanted = ("src/sbatch/opt.c", "src/srun/opt.c", "src/common/env.c")
    found: dict[str, str] = {}
    with tarfile.open(candidate) as tar:
        for member in tar:
            name = member.name.split("/", 1)[-1]
            if name in wanted:
                found[name] = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
                if len(found) == len(wanted):
                    break
    assert sorted(found) == sorted(wanted)
    return found


def test_every_variable_slurm_reads_or_sets_for_a_job_is_left_out() -> None:
    """From Slurm's own source: every variable sbatch reads as an option (its env tables),
    every one srun reads as an option (a leftover one would change the child's steps), and
    every one Slurm writes into a job's environment (env.c) is left out of a submission
    made inside a job, but those :data:`inherited.KEPT` names, which describe no job."""
    source = _slurm_source()
    table_entry = re.compile(r'\{\s*"([A-Z][A-Z0-9_]*)"\s*,')
    sbatch_reads = set(table_entry.findall(source["src/sbatch/opt.c"]))
    srun_reads = set(table_entry.findall(source["src/srun/opt.c"]))
    job_gets = set(
        re.findall(r'"((?:SLURM|SLURMD|SBATCH)_[A-Z0-9_]+)"', source["src/common/env.c"])
    )
    # the tables were found (an empty set would make the checks below vacuous)
    assert {"SBATCH_PARTITION", "SBATCH_MEM_PER_CPU", "SLURM_CLUSTERS"} <= sbatch_reads
    assert {"SLURM_MEM_PER_CPU", "SLURM_CPUS_PER_TASK", "SLURM_PARTITION"} <= srun_reads
    assert {"SLURM_JOB_ID", "SLURM_MEM_PER_NODE", "SLURM_JOB_PARTITION"} <= job_gets
    assert len(sbatch_reads) > 50 and len(srun_reads) > 80 and len(job_gets) > 80
    job = {"SLURM_JOB_ID": "41"}
    for name in sorted(sbatch_reads | srun_reads):
        assert inherited.describes_job(name), f"{name} (read by sbatch or srun) is passed on"
        assert name not in inherited.child_environment({**job, name: "x"})
    kept = {name for name in job_gets if not inherited.describes_job(name)}
    assert kept == {"SLURM_CONF"}  # the one setting env.c passes on that describes no job


# -- the job this process runs in ------------------------------------------------------------


def test_enclosing_job_from_the_variables_of_a_job() -> None:
    assert enclosing_job({}) is None
    assert enclosing_job({"SLURM_JOB_ID": "41"}) == EnclosingJob("41")
    assert enclosing_job(PARENT_JOB) == EnclosingJob("40_1")  # an array task, as Slurm shows it
    assert str(EnclosingJob("40_1", 3, "/d")) == "job 40_1 task 3"
    assert str(EnclosingJob(None, 3, "/d")) == "task 3 of /d"
    site = CallSite("f.py", 3, "g", "MainThread", EnclosingJob("40_1", 3, "/d"))
    assert str(site) == "f.py:3 in g() [thread MainThread] in job 40_1 task 3"
    assert CallSite.from_json(site.to_json()) == site
    plain = CallSite("f.py", 3, "g", "MainThread")
    assert "job" not in plain.to_json() and CallSite.from_json(plain.to_json()) == plain


def test_the_pyslurm_environment_is_the_stripped_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The pyslurm backend's job environment comes from the same definition: of the parent's
    variables, only those sbatch sets anew for every job are there, with the child's values
    (its submit directory, the process's umask, as sbatch computes them where none is set)."""
    for name, value in PARENT_JOB.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    spec = JobSpec(name="x", command=("true",), workdir="/tmp", stdout="o", stderr="e")
    mask = os.umask(0o027)  # not the parent's 0022
    try:
        env = job_environment(spec)
    finally:
        os.umask(mask)
    parents = {name for name in env if inherited.describes_job(name) and name in PARENT_JOB}
    assert parents == {"SLURM_SUBMIT_DIR", "SLURM_UMASK", "SLURM_RLIMIT_NOFILE"}
    assert env["SLURM_SUBMIT_DIR"] == str(tmp_path)
    assert env["SLURM_UMASK"] == "0027"
    assert "SLURM_MEM_PER_CPU" not in env and "SBATCH_TIMELIMIT" not in env
    assert env["SLURM_CONF"] == "/etc/slurm/slurm.conf"


# -- the local backend -----------------------------------------------------------------------


def test_local_task_submits_exactly_what_it_asks_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task of the local backend submits from inside its process, with a scope: the child
    has its own CPUs and none of the variables its parent's job had (here some Slurm ones
    the driver's environment passed to the parent, as a login shell's would), and its
    provenance names the parent job and task."""
    monkeypatch.setenv("SBATCH_PARTITION", "low")
    monkeypatch.setenv("SLURM_MEM_PER_CPU", "300")
    root = tmp_path / "jobs"
    with slurmscope.Cluster("local", root=root, set_as_default=False) as cluster:
        parent = cluster.task(tasks.submit_children, cpus_per_task=2)(
            "local", str(root), {"cpus_per_task": 1}
        )
        out = parent.get_result(timeout=120)
    parent_env = out["parent_env"]
    assert parent_env["SLURM_CPUS_PER_TASK"] == "2" and parent_env["SLURM_MEM_PER_CPU"] == "300"
    assert parent_env["SBATCH_PARTITION"] == "low"
    child_env = out["seen"]["env"]
    assert child_env["SLURM_JOB_ID"] == out["child"] != parent.job_id
    assert child_env["SLURM_CPUS_PER_TASK"] == "1"
    assert child_env["SLURMSCOPE_JOB_DIR"] == out["child_dir"]
    assert "SLURM_MEM_PER_CPU" not in child_env and "SBATCH_PARTITION" not in child_env
    assert out["after_result"] == 3
    assert out["recorded"] == f"afterok:{out['child']}"  # what the scheduler got from the scope
    _check_provenance(out, parent.job_id, str(parent.directory), root)


def test_a_task_in_process_says_so_without_a_job_id(tmp_path: Path) -> None:
    """Tasks that the in-process FakeBackend runs have no job variables: their submissions
    name the task and its job directory."""
    with slurmscope.Cluster(FakeBackend(), root=tmp_path) as cluster:  # the default
        outer = cluster.task(tasks.submitted_from_here)()
        site = outer.get_result(timeout=30)
    assert site["function"] == "submitted_from_here"
    assert site["job"] == {
        "job_id": None,
        "task": 0,
        "directory": str(outer.directory),
    }


def _check_provenance(
    out: dict[str, object], parent_id: str, parent_dir: str, root: Path, conf: str | None = None
) -> None:
    """The child's manifest, its `explain` and the scoped submission's dependency name the
    parent job and task (``explain`` asks the cluster of slurm.conf ``conf``)."""
    origin = {"job_id": parent_id, "task": 0, "directory": parent_dir}
    child = json.loads(Path(str(out["child_dir"]), "manifest.json").read_text())
    assert child["submitted_from"]["job"] == origin
    assert child["submitted_from"]["function"] == "submit_children"
    after = json.loads(Path(str(out["after_dir"]), "manifest.json").read_text())
    assert after["submitted_from"]["job"] == origin
    [dep] = after["dependencies"]
    assert (dep["kind"], dep["target"]) == ("afterok", out["child"])
    assert dep["provenance"]["via"] == "scope" and dep["provenance"]["job"] == origin
    explained = subprocess.run(
        [sys.executable, "-m", "slurmscope.cli", "--root", str(root), "explain", str(out["after"])],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=dict(os.environ, **({"SLURM_CONF": conf} if conf else {})),
    ).stdout
    assert f"in submit_children() [thread MainThread] in job {parent_id} task 0" in explained
    assert f"afterok:{out['child']}  <- with cluster.dependencies() block" in explained


def test_the_submit_event_names_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``slurmscope.submit`` carries ``from_job`` (and each dependency its job) when the
    submitting process runs inside a job (here: the variables of one, on the local backend)."""
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    with (
        slurmscope.Cluster("local", root=tmp_path, set_as_default=False) as cluster,
        structlog.testing.capture_logs() as events,
    ):
        first = cluster.task(tasks.add)(1, 2)
        with cluster.dependencies(first):
            cluster.task(tasks.add)(3, 4)
        first.get_result(timeout=60)
    submits = [e for e in events if e["event"] == "slurmscope.submit"]
    assert len(submits) == 2
    assert all(e["from_job"] == {"job_id": "77", "task": None, "directory": None} for e in submits)
    assert all(e["submitted_from"].endswith(" in job 77") for e in submits)
    assert submits[1]["dependencies"][0]["job"] == {"job_id": "77", "task": None, "directory": None}


# -- a real Slurm cluster: sbatch and pyslurm ------------------------------------------------

PARTITIONS = slurm_cluster.OwnCluster("childenv", 54000, SLURMSCOPE_PREEMPT_GRACE="30")

DRIVER = """
import json, sys
import slurmscope, tasks

kind, root = sys.argv[1], sys.argv[2]
cluster = slurmscope.Cluster(kind, root=root)
parent = cluster.task(
    tasks.submit_children, partition="low", cpus_per_task=2, extra=["--mem-per-cpu=300"]
)(kind, root, {"mem": "200M", "cpus_per_task": 1}, True)
out = parent.get_result(timeout=400)
out["parent"] = parent.job_id
out["parent_dir"] = str(parent.directory)
if kind == "pyslurm":
    import pyslurm
    records = {}
    for name in ("parent", "child"):
        job = pyslurm.Job.load(int(out[name]))
        records[name] = {
            "partition": job.partition,
            "cpus_per_task": job.cpus_per_task,
            "memory_per_cpu": job.memory_per_cpu,
            "memory_per_node": job.memory_per_node,
        }
    out["records"] = records
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[str]:
    PARTITIONS.start("--nodes", "2")
    yield PARTITIONS.conf
    PARTITIONS.remove()


def _record(conf: str, job_id: str) -> dict[str, str]:
    """``scontrol show job`` of ``job_id`` as key=value pairs."""
    text = subprocess.run(
        ["scontrol", "--oneliner", "show", "job", job_id],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=dict(os.environ, SLURM_CONF=conf),
    ).stdout
    return dict(part.split("=", 1) for part in text.split() if "=" in part)


@pytest.mark.slurm
@pytest.mark.backends("sbatch", "pyslurm")
def test_a_child_submitted_from_inside_a_job_gets_exactly_its_own_resources(
    backend: str, own_cluster: str, tmp_path: Path
) -> None:
    if backend == "pyslurm" and pyslurm_support.real_pyslurm() is not None:
        # the driver runs in a Python of its own, where the double is not on the path
        pytest.skip(f"needs the real pyslurm bindings: {pyslurm_support.real_pyslurm()}")
    root = tmp_path / "jobs"
    # A login shell's settings the parent job inherits (sbatch applies them to the parent;
    # its child must not get them).
    shell = {"SBATCH_TIMELIMIT": "10", "SBATCH_PARTITION": "low", "SBATCH_MEM_PER_CPU": "300"}
    env = dict(os.environ, SLURM_CONF=own_cluster, PYTHONPATH=str(TESTS), **shell)
    env.pop("SLURMSCOPE_BACKEND", None)
    out = driver_result([sys.executable, "-c", DRIVER, backend, str(root)], env=env, timeout=480)
    parent, child = _record(own_cluster, out["parent"]), _record(own_cluster, out["child"])
    # the parent really had resources of its own to pass on...
    assert parent["Partition"] == "low" and parent["MinMemoryCPU"] == "300M"
    assert parent["CPUs/Task"] == "2"
    parent_env = out["parent_env"]
    assert parent_env["SLURM_MEM_PER_CPU"] == "300" and parent_env["SLURM_CPUS_PER_TASK"] == "2"
    assert parent_env["SLURM_JOB_PARTITION"] == "low"
    # ...and the child has exactly its own: the default partition, one CPU, --mem, no time
    assert child["Partition"] == "debug"
    assert child["MinMemoryNode"] == "200M" and "MinMemoryCPU" not in child
    assert child["CPUs/Task"] == "1" and child["NumCPUs"] == "1"
    if backend == "sbatch":  # sbatch applied the shell's SBATCH_TIMELIMIT to the parent
        assert parent["TimeLimit"] == "00:10:00"
    assert child["TimeLimit"] != "00:10:00"  # the partition's, as the child asked none
    assert child["JobState"] == "COMPLETED"
    if backend == "pyslurm":
        assert out["records"]["parent"]["partition"] == "low"
        assert out["records"]["parent"]["memory_per_cpu"] == 300
        assert out["records"]["child"] == {
            "partition": "debug",
            "cpus_per_task": 1,
            "memory_per_cpu": None,
            "memory_per_node": 200,
        }
    # its own environment and an srun inside it show no leftover of the parent
    seen = out["seen"]
    child_env = seen["env"]
    assert child_env["SLURM_JOB_ID"] == out["child"]
    assert child_env["SLURM_JOB_PARTITION"] == "debug" and child_env["SLURM_MEM_PER_NODE"] == "200"
    assert child_env["SLURM_CPUS_PER_TASK"] == "1"
    assert "SLURM_MEM_PER_CPU" not in child_env
    assert not [name for name in child_env if name.startswith("SBATCH_")]
    assert child_env["SLURMSCOPE_JOB_DIR"] == out["child_dir"]
    step = seen["srun"]
    assert step["returncode"] == 0, step["stderr"]
    assert step["env"]["SLURM_JOB_ID"] == out["child"]
    assert step["env"]["SLURM_CPUS_PER_TASK"] == "1" and "SLURM_MEM_PER_CPU" not in step["env"]
    assert step["env"]["SLURM_JOB_PARTITION"] == "debug"
    assert out["after_result"] == 3
    _check_provenance(out, str(out["parent"]), str(out["parent_dir"]), root, own_cluster)


# -- a driver run as a job (`slurmscope run`) keeps its shell's SBATCH_* for its stages --------
def test_the_submitting_shell_s_sbatch_settings_reach_the_stages() -> None:
    shell = {"SBATCH_ACCOUNT": "physics", "SBATCH_TIMELIMIT": "00:07:00"}
    driver_job = {
        **PARENT_JOB,
        inherited.SUBMITTER_OPTIONS: json.dumps({**shell, "NOT_SBATCH": "x"}),
    }
    child = inherited.child_environment(driver_job)
    assert {k: child[k] for k in shell} == shell  # the shell's, not the parent job's "10"
    assert "NOT_SBATCH" not in child and "SBATCH_PARTITION" not in child
    broken = {**PARENT_JOB, inherited.SUBMITTER_OPTIONS: "{not json"}
    assert not [k for k in inherited.child_environment(broken) if k.startswith("SBATCH_")]


STAGE_LIMIT = """
import subprocess
import slurmscope

@slurmscope.task
def stage():
    return 1

job = stage()
job.get_result(timeout=120)
shown = subprocess.run(["scontrol", "show", "job", job.job_id], capture_output=True, text=True)
print("STAGE", [w for w in shown.stdout.split() if w.startswith("TimeLimit=")], flush=True)
"""


@pytest.mark.backends("sbatch")
def test_slurmscope_run_gives_its_stages_the_shell_s_sbatch_settings(
    tmp_path: Path, driver_env: dict[str, str]
) -> None:
    """``SBATCH_TIMELIMIT=00:07:00 slurmscope run script.py``: the stage the driver job
    submits (sbatch) has the 7-minute limit, as when the script runs from that shell."""
    from test_run_driver import cli, driver_ended, ok, start, wait_for

    root = tmp_path / "jobs"
    script = tmp_path / "stage_limit.py"
    script.write_text(STAGE_LIMIT)
    env = {**driver_env, "SBATCH_TIMELIMIT": "00:07:00"}
    driver = start(root, env, "sbatch", script)["driver_job"]
    done = wait_for("the driver job", lambda: driver_ended(root, env, driver), 240)
    assert [t["state"] for t in done["tasks"]] == ["COMPLETED"], done
    assert "STAGE ['TimeLimit=00:07:00']" in ok(cli(root, env, "logs", driver))
