"""Bad input: a clear error before anything reaches the scheduler, nothing left behind.

Each case runs on the local backend and on the real Slurm cluster. "Nothing reached the
scheduler" is checked by job ids: a probe job submitted before and after the bad calls
gets consecutive ids.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import slurm_cluster
from conftest import add, boom, identity, job_dirs

import slurmscope
from slurmscope import depend
from slurmscope.errors import DependencyError, InvalidInputError, SubmissionError
from slurmscope.roots import root_problem

pytestmark = [pytest.mark.backends("local", "sbatch"), pytest.mark.cluster(max_item_size="1M")]


def bad_calls(
    cluster: slurmscope.Cluster, tmp_path: Path
) -> list[tuple[str, Callable[[], object], type, str]]:
    lock = threading.Lock()
    other = slurmscope.Cluster("local", root=tmp_path / "other", set_as_default=False)
    foreign = add.on(other)(1)
    failed = boom.on(cluster)(1)
    failed.wait(timeout=120)
    short = add.on(cluster).map([1, 2])
    return [
        (
            "unpicklable function",
            lambda: slurmscope.task(lambda: lock).on(cluster)(),
            InvalidInputError,
            "cannot be pickled",
        ),
        (
            "unpicklable item",
            lambda: identity.on(cluster).map([1, lock]),
            InvalidInputError,
            "item 1 cannot be pickled",
        ),
        (
            "huge item",
            lambda: identity.on(cluster).map([b"x" * 2_000_000]),
            InvalidInputError,
            "over the limit of 1.00 MiB",
        ),
        (
            "huge argument",
            lambda: identity.on(cluster)(b"x" * 2_000_000),
            InvalidInputError,
            "SLURMSCOPE_MAX_ITEM_SIZE",
        ),
        (
            "invalid time",
            lambda: add.options(time="forever").on(cluster)(1),
            InvalidInputError,
            "invalid time limit",
        ),
        (
            "zero time",
            lambda: add.options(time="0").on(cluster)(1),
            InvalidInputError,
            "greater than zero",
        ),
        (
            "invalid memory",
            lambda: add.options(mem="lots").on(cluster)(1),
            InvalidInputError,
            "invalid memory",
        ),
        (
            "invalid partition name",
            lambda: add.options(partition="a b").on(cluster)(1),
            InvalidInputError,
            "invalid partition",
        ),
        (
            "invalid account name",
            lambda: add.options(account="").on(cluster)(1),
            InvalidInputError,
            "invalid account",
        ),
        (
            "unknown resource",
            lambda: add.options(memory="1G"),
            InvalidInputError,
            "unknown resource",
        ),
        (
            "bad throttle",
            lambda: add.on(cluster).map([1], max_concurrent=-1),
            InvalidInputError,
            "max_concurrent",
        ),
        (
            "unknown kind",
            lambda: cluster.dependencies(short, kind="before"),
            DependencyError,
            "unknown dependency kind",
        ),
        (
            "non-job dependency",
            lambda: add.on(cluster).map([1], after=["123"]),
            DependencyError,
            "must be a Job or ArrayJob",
        ),
        (
            "job id as dependency",
            lambda: add.on(cluster).after(12345)(1),
            DependencyError,
            "must be a Job or ArrayJob",
        ),
        (
            "foreign job (scope)",
            lambda: cluster.dependencies(foreign),
            DependencyError,
            "across clusters",
        ),
        (
            "foreign job (argument)",
            lambda: identity.on(cluster)(foreign),
            DependencyError,
            "across clusters",
        ),
        (
            "already-failed job",
            lambda: add.on(cluster).after(failed)(1),
            DependencyError,
            "can never be satisfied",
        ),
        (
            "aftercorr length mismatch",
            lambda: add.on(cluster).map([1, 2, 3], after=[depend(short, "aftercorr")]),
            DependencyError,
            "equal length",
        ),
        (
            "aftercorr on a single job",
            lambda: add.on(cluster).after(failed, kind="aftercorr")(1),
            DependencyError,
            "aftercorr pairs",
        ),
        (
            "singleton with jobs",
            lambda: cluster.dependencies(short, kind="singleton"),
            DependencyError,
            "singleton takes no jobs",
        ),
        (
            "map over a string",
            lambda: add.on(cluster).map("abc"),
            InvalidInputError,
            "iterable of items",
        ),
    ]


def test_bad_input_is_refused_before_submission(
    cluster: slurmscope.Cluster, tmp_path: Path
) -> None:
    cases = bad_calls(cluster, tmp_path)
    before_dirs = job_dirs(cluster)
    probe_before = int(add.on(cluster)(0).job_id)
    with_probe = job_dirs(cluster)
    for name, call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
        assert job_dirs(cluster) == with_probe, f"{name} left a job directory behind"
    probe_after = int(add.on(cluster)(0).job_id)
    assert probe_after == probe_before + 1  # nothing in between reached the scheduler
    assert len(job_dirs(cluster)) == len(before_dirs) + 2  # only the two probes
    print(f"{len(cases)} bad inputs refused on {cluster.backend.kind}")


@pytest.mark.slurm
def test_refused_by_slurm_leaves_nothing(tmp_path: Path) -> None:
    """What only Slurm can judge (a partition that does not exist) comes back with Slurm's
    own message, and the job directory is removed."""
    slurm_cluster.require()
    cluster = slurmscope.Cluster("sbatch", root=tmp_path, set_as_default=False)
    try:
        with pytest.raises(SubmissionError, match="Invalid partition name specified"):
            add.options(partition="nosuchpartition").on(cluster).map(range(250))
        # Memory no node has: refused before sbatch runs, naming the limit (issue 12).
        with pytest.raises(SubmissionError, match=r"mem=100000G .*largest node of partition"):
            add.options(mem="100000G").on(cluster)(1)
        assert job_dirs(cluster) == []
    finally:
        cluster.close()


def test_root_not_writable(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file
            target = tmp_path / "a-file"
            target.write_text("")
            root = target / "jobs"
        else:
            root = locked / "jobs"
        with pytest.raises(InvalidInputError, match="SLURMSCOPE_ROOT"):
            slurmscope.Cluster("local", root=root, set_as_default=False)
    finally:
        locked.chmod(0o700)


MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
nas:/export/home /home nfs4 rw,relatime 0 0
/dev/sdb1 /scratch/local xfs rw 0 0
fs@o2ib:/lustre /lustre lustre rw 0 0
"""


def test_root_the_nodes_cannot_see() -> None:
    remote = ["node01", "node02"]
    for root in ("/tmp/jobs", "/var/tmp/jobs", "/scratch/local/me"):
        problem = root_problem(Path(root), remote, "login1", MOUNTS)
        assert problem and "would not see it" in problem and "SLURMSCOPE_ROOT" in problem
    for root in ("/home/me/jobs", "/lustre/project/jobs"):
        assert root_problem(Path(root), remote, "login1", MOUNTS) is None
    # a single-machine cluster sees every local directory
    assert (
        root_problem(Path("/tmp/jobs"), ["login1", "localhost"], "login1.example.org", MOUNTS)
        is None
    )
