"""sbatch and pyslurm submit the same job the same way: a task cannot tell which one did.

pyslurm's ``JobSubmitDescription`` differs from ``sbatch`` where nothing is said: it sends only
the environment it is given (sbatch adds the submit directory and host, the umask, the nice
value and the resource limits), it pins a job without ``nodes`` to exactly one node (sbatch
lets Slurm choose), and it spells GPUs as ``gres:gpu:N``. These tests run both backends on the
real test cluster (Slurm 25.11 with the real pyslurm under ``scripts/test``) and compare.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyslurm_support
import pytest
import slurm_cluster
import tasks
from conftest import backend_cluster, env, probe_spec, surroundings

import slurmscope
from slurmscope.spec import JobSpec

pytestmark = pytest.mark.slurm


#: What pyslurm's ``JobSubmitDescription`` always sets and sbatch leaves unset, so that
#: slurmctld puts it into the job's environment: a task count (``ntasks`` defaults to 1:
#: ``SLURM_NTASKS``, ``SLURM_NPROCS``) and a profile (left unset, pyslurm would send
#: "all profiles"; the backend says "none"). pyslurm has no way to leave them unset; their
#: values mean what sbatch's defaults mean.
PYSLURM_ONLY = {"SLURM_NTASKS": "1", "SLURM_NPROCS": "1", "SLURM_PROFILE": "None"}

#: Variables that name the job itself, or that Slurm sets per job: they differ between any
#: two jobs, whoever submitted them.
PER_JOB = (
    "SLURM_JOB_ID",
    "SLURM_JOBID",
    "SLURM_TASK_PID",
    "SLURMSCOPE_",
    "SLURM_JOB_START_TIME",
    "SLURM_JOB_END_TIME",
    "SLURM_SCRIPT_CONTEXT",
)


@pytest.fixture
def both(tmp_path: Path) -> Iterator[dict[str, slurmscope.Cluster]]:
    with contextlib.ExitStack() as stack:
        yield {
            kind: backend_cluster(kind, tmp_path / kind, stack) for kind in ("sbatch", "pyslurm")
        }


def _comparable(seen: dict[str, Any]) -> dict[str, Any]:
    environ = {
        k: v for k, v in seen["environ"].items() if not any(k.startswith(p) for p in PER_JOB)
    }
    return {**seen, "environ": environ}


def test_a_task_sees_the_same_surroundings_from_both(
    both: dict[str, slurmscope.Cluster], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Something sbatch would carry and a bare pyslurm would not: a distinct umask, a
    # working directory that is not the job directory, and a lowered file-size limit.
    monkeypatch.chdir(tmp_path)
    old_mask = os.umask(0o027)
    try:
        seen = {k: surroundings.on(c)().get_result(timeout=120) for k, c in both.items()}
    finally:
        os.umask(old_mask)
    sb, ps = (_comparable(seen[k]) for k in ("sbatch", "pyslurm"))
    extra = {k: ps["environ"].pop(k, None) for k in PYSLURM_ONLY}
    if "TEST DOUBLE" in (__import__("pyslurm").__doc__ or ""):
        assert extra == dict.fromkeys(PYSLURM_ONLY), extra  # the double submits via sbatch
    else:
        assert extra == PYSLURM_ONLY, extra
    assert sb["environ"], "the task saw no environment at all"
    assert sb["umask"] == ps["umask"] == 0o027
    assert sb["environ"]["SLURM_SUBMIT_DIR"] == ps["environ"]["SLURM_SUBMIT_DIR"] == str(tmp_path)
    only_sb = sorted(set(sb["environ"]) - set(ps["environ"]))
    only_ps = sorted(set(ps["environ"]) - set(sb["environ"]))
    assert (only_sb, only_ps) == ([], []), f"only in sbatch's: {only_sb}, pyslurm's: {only_ps}"
    differ = {k: (v, ps["environ"][k]) for k, v in sb["environ"].items() if ps["environ"][k] != v}
    assert differ == {}
    assert sb["cwd"] == ps["cwd"]
    assert sb["limits"] == ps["limits"]
    assert sb["nice"] == ps["nice"]


def test_gpus_are_granted_and_seen_on_both(both: dict[str, slurmscope.Cluster]) -> None:
    """The 25.11 test node has two (device-less) GPUs: ``gpus=1`` gets one, on each backend,
    and the task sees it as a real job would (``CUDA_VISIBLE_DEVICES``)."""
    nodes = subprocess.run(
        ["scontrol", "--oneliner", "show", "node"], capture_output=True, text=True
    ).stdout
    if "gres=gpu:2" not in nodes.lower():
        if os.environ.get("SLURMSCOPE_SLURM_LANE") == "25.11" and os.path.exists("/dev/tty1"):
            pytest.fail(f"the Slurm 25.11 test cluster has no GPUs: {nodes[:300]}")
        pytest.skip("no GPUs on this test cluster (22.05, or no /dev/tty1-2 to stand for them)")
    for kind, cluster in both.items():
        visible = env.options(gpus=1).on(cluster)("CUDA_VISIBLE_DEVICES").get_result(timeout=120)
        assert visible == "0", kind
        two = env.options(gpus=2).on(cluster).map(["SLURM_JOB_GPUS"])
        assert two.get_results(timeout=120) == ["0,1"], kind


# -- several nodes: a cluster of this module's own, and pyslurm in a process of its own -------
MULTI = slurm_cluster.OwnCluster("multinode", 30000)


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[str]:
    MULTI.start("--nodes", "2")
    yield MULTI.conf
    MULTI.remove()


DRIVER = textwrap.dedent(
    """
    import json, sys
    import slurmscope
    sys.path.insert(0, sys.argv[2])
    import tasks
    import cloudpickle
    cloudpickle.register_pickle_by_value(tasks)
    env = slurmscope.task(tasks.env)
    cluster = slurmscope.Cluster(sys.argv[1], root=sys.argv[3], set_as_default=False)
    out = {}
    for label, extra in [("one", []), ("ntasks", ["--ntasks=3"]), ("nodes", ["--nodes=2"])]:
        job = env.options(extra=extra).on(cluster)("SLURM_JOB_NUM_NODES")
        out[label] = job.get_result(timeout=120)
    cluster.close()
    print(json.dumps(out))
    """
)


@pytest.mark.backends("sbatch", "pyslurm")
def test_node_counts_are_left_to_slurm_as_sbatch_does(
    backend: str, two_nodes: str, tmp_path: Path
) -> None:
    """libslurm's configuration is per process, so each backend runs in a process of its own
    pointed at the 2-node cluster. ``--ntasks=3`` (more CPUs than one node has) runs on both
    (pyslurm once refused it: "Requested node configuration is not available"); one task
    without a node count gets one node; ``--nodes=2`` gets two."""
    environ = dict(os.environ, SLURM_CONF=two_nodes)
    if backend == "pyslurm" and pyslurm_support.real_pyslurm() is not None:
        environ["PYTHONPATH"] = pyslurm_support.DOUBLE_DIR
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, backend, str(Path(tasks.__file__).parent), str(tmp_path)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts["one"] == "1"
    assert counts["nodes"] == "2"
    assert counts["ntasks"] in ("1", "2")  # Slurm's choice (OverSubscribe=FORCE may pack)


def test_kill_on_invalid_dependency_means_the_same_on_both(
    both: dict[str, slurmscope.Cluster], tmp_path: Path
) -> None:
    """``kill_on_invalid_dep=True`` (what slurmscope submits) ends a job whose dependency
    failed; ``False`` leaves the choice to the cluster (``DependencyParameters``; the test
    cluster does not kill), on both backends: sbatch passes no flag, pyslurm clears the bit
    (it cannot send sbatch's explicit "no", so the sbatch backend does not either)."""
    import time

    def spec(**changes: Any) -> JobSpec:
        return probe_spec(tmp_path, **changes)

    seen: dict[tuple[str, bool], tuple[str, str | None]] = {}
    for kind, cluster in both.items():
        backend = cluster.backend
        failed = backend.submit(spec(command=("false",)))
        dependents = {
            kill: backend.submit(
                spec(dependencies=(("afterok", (failed,)),), kill_on_invalid_dep=kill)
            )
            for kill in (True, False)
        }
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = backend.states(list(dependents.values()))
            now = {k: states.get(j, {}).get(0) for k, j in dependents.items()}
            if (
                now[True] is not None
                and now[True].terminal
                and now[False] is not None
                and (now[False].reason or "").startswith("DependencyNeverSatisfied")
            ):
                break
            time.sleep(0.5)
        for kill, job_id in dependents.items():
            task = backend.states([job_id]).get(job_id, {}).get(0)
            seen[kind, kill] = (task.state, task.reason) if task else ("FORGOTTEN", None)
            backend.cancel(job_id)
    assert seen["sbatch", True][0] == seen["pyslurm", True][0] == "CANCELLED", seen
    assert seen["sbatch", False] == seen["pyslurm", False], seen
    assert seen["sbatch", False][0] == "PENDING", seen
