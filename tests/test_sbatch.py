"""What only the sbatch backend does, against the real Slurm test cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import slurm_cluster
from conftest import add, job_dirs

import slurmscope
from slurmscope.backends._slurm import expand_array_range
from slurmscope.backends.sbatch import SbatchBackend, sbatch_arguments
from slurmscope.errors import SubmissionError
from slurmscope.spec import ArraySpec, JobSpec, Resources

pytestmark = pytest.mark.slurm


@pytest.fixture
def slurm(tmp_path: Path) -> Iterator[slurmscope.Cluster]:
    slurm_cluster.require()
    cluster = slurmscope.Cluster("sbatch", root=tmp_path, set_as_default=False)
    yield cluster
    cluster.close()


def test_arguments_carry_every_resource() -> None:
    spec = JobSpec(
        name="t",
        command=("python", "-m", "slurmscope.worker", "/d"),
        workdir="/w",
        stdout="/d/logs/%A_%a.out",
        stderr="/d/logs/%A_%a.err",
        resources=Resources(
            time="1:00:00",
            mem="2G",
            cpus_per_task=2,
            gpus=1,
            partition="p",
            account="a",
            qos="q",
            constraint="c",
            extra=("--nice=5",),
        ),
        array=ArraySpec(10, 3),
        dependencies=(("afterok", ("1", "2_3")), ("afterany", ("4",))),
    )
    args = sbatch_arguments(spec)
    for expected in (
        "--parsable",
        "--kill-on-invalid-dep=yes",
        "--array=0-9%3",
        "--dependency=afterok:1:2_3,afterany:4",
        "--time=1:00:00",
        "--mem=2G",
        "--cpus-per-task=2",
        "--gpus=1",
        "--partition=p",
        "--account=a",
        "--qos=q",
        "--constraint=c",
        "--nice=5",
        "--output=/d/logs/%A_%a.out",
        "--chdir=/w",
    ):
        assert expected in args


def test_expand_range() -> None:
    assert expand_array_range("0-3,7,9-10%2") == [0, 1, 2, 3, 7, 9, 10]
    # A stride, as Slurm prints a range with a step (xlate_array_task_str), and brackets.
    assert expand_array_range("0-20:5") == [0, 5, 10, 15, 20]
    assert expand_array_range("[1-3,8-12:2]%4") == [1, 2, 3, 8, 10, 12]
    # Cut at SLURM_BITSTR_LEN with "...": the incomplete last piece is dropped, not misread.
    assert expand_array_range("0-9,11,13-1...") == [*range(10), 11]


def test_auto_detection_picks_sbatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where pyslurm cannot be imported, auto-detection takes the Slurm command line (the
    test command installs a real pyslurm: a stand-in that fails to import hides it)."""
    slurm_cluster.require()
    hidden = tmp_path / "hidden" / "pyslurm"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('pyslurm is hidden by this test')\n")
    monkeypatch.syspath_prepend(str(hidden.parent))
    monkeypatch.delitem(sys.modules, "pyslurm", raising=False)
    monkeypatch.delenv("SLURMSCOPE_BACKEND", raising=False)
    cluster = slurmscope.Cluster(root=tmp_path, set_as_default=False)
    assert cluster.backend.kind == "sbatch"
    cluster.close()


def test_invalid_partition_is_refused_and_leaves_nothing(slurm: slurmscope.Cluster) -> None:
    before = job_dirs(slurm)
    with pytest.raises(SubmissionError, match="(?i)partition"):
        add.options(partition="nosuchpartition").on(slurm).map([1, 2])
    assert job_dirs(slurm) == before


def test_one_sbatch_call_per_array_part(slurm: slurmscope.Cluster) -> None:
    backend = slurm.backend
    assert isinstance(backend, SbatchBackend)
    before = backend.calls["sbatch"]
    array = add.on(slurm).map(range(250))
    assert backend.calls["sbatch"] - before == 3  # MaxArraySize 101: 101 + 101 + 48
    array.cancel()


def test_reattach_from_a_new_process_and_depend(slurm: slurmscope.Cluster) -> None:
    job = add.on(slurm)(1)
    assert job.get_result(timeout=120) == 2
    script = textwrap.dedent(
        f"""
        import slurmscope
        c = slurmscope.Cluster("sbatch", root={str(slurm.root)!r})
        j = c.attach({job.job_id!r})
        print(j.get_result(timeout=60))
        t = slurmscope.task(lambda x: x * 2)
        print(t.after(j)(21).get_result(timeout=120))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "42"]


def test_job_forgotten_by_slurmctld_resolves_from_job_directory(
    slurm: slurmscope.Cluster,
) -> None:
    """slurmctld forgets ended jobs after MinJobAge; then the job directory decides."""
    done = add.on(slurm)(1)
    assert done.get_result(timeout=120) == 2
    # The same directory under a job id slurmctld does not know, as after MinJobAge.
    copy = slurm.root / "forgotten"
    shutil.copytree(done.directory, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["parts"][0]["job_id"] = "987654321"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert "987654321" not in slurm.backend.states(["987654321"])
    forgotten = slurm.attach(copy)
    # A dependency on it is satisfied from the directory and never given to Slurm,
    # which would refuse it ("Job dependency problem").
    later = add.on(slurm).after(forgotten)(5)
    assert slurm.backend.recorded_dependencies(later.job_id) == ""
    assert later.get_result(timeout=120) == 6
    assert forgotten.get_result(timeout=60) == 2
    assert forgotten.state == "COMPLETED"


def test_example_runs_unchanged_on_slurm(tmp_path: Path) -> None:
    slurm_cluster.require()
    example = Path(__file__).resolve().parent.parent / "examples" / "pipeline.py"
    env = dict(os.environ, SLURMSCOPE_ROOT=str(tmp_path), SLURMSCOPE_BACKEND="sbatch")
    out = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr
    assert "backend: sbatch" in out.stdout
    assert "all eight: sum=204" in out.stdout
    assert "with cluster.dependencies() block (depth 2)" in out.stdout


def test_nodes_at_this_machines_addresses_count_as_this_machine() -> None:
    """The shared-root check names nodes by hostname, except those whose NodeAddr is this
    machine (loopback or one of its own addresses), which are this machine whatever they
    are called (several slurmd on one host, or a node named apart from its host)."""
    import socket

    from slurmscope.backends._slurm import local_node_names

    here = socket.gethostname()
    own = socket.gethostbyname_ex(here)[2]
    assert local_node_names([("n1", "127.0.0.1"), ("n2", "::1")]) == [here]
    assert local_node_names([("node7", own[0])]) == [here]
    assert local_node_names([("gpu01", "10.255.1.7"), ("n1", "127.0.0.1")]) == sorted(
        ["gpu01", here]
    )
    assert local_node_names([("gpu01", None)]) == ["gpu01"]
