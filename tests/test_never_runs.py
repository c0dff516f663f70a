"""A job that can never run (issue 12, item 7): refused at submit where the partition's
limits are known; where it slips through (``extra=[...]`` flags are not judged at submit),
the wait ends within seconds with :class:`JobCannotRunError`, naming the scheduler's
reason and the request, on every backend."""

from __future__ import annotations

import time

import pytest
import structlog
from conftest import add, job_dirs

import slurmscope
from slurmscope import limits, reasons
from slurmscope.backends.sbatch_output import partition_limits
from slurmscope.errors import (
    InvalidInputError,
    JobCannotRunError,
    SubmissionError,
    UnsatisfiableRequestError,
)
from slurmscope.spec import Resources

pytestmark = pytest.mark.cluster(local={"cpus": 2})


def submissions(cluster: slurmscope.Cluster) -> int:
    """How many submissions reached the scheduler through this backend."""
    backend = cluster.backend
    if backend.kind == "local":
        return len(backend._jobs)  # type: ignore[attr-defined]
    return backend.calls["sbatch" if backend.kind == "sbatch" else "submit"]  # type: ignore[attr-defined]


def largest(cluster: slurmscope.Cluster) -> limits.PartitionLimits:
    parts = cluster.backend.request_limits(Resources())
    assert parts, f"{cluster.backend.kind} does not know its default partition's limits"
    return parts[0]


def test_impossible_request_is_refused_at_submit(cluster: slurmscope.Cluster) -> None:
    part = largest(cluster)
    assert part.cpus_per_node and part.mem_per_node
    before, dirs = submissions(cluster), job_dirs(cluster)
    too_many = part.cpus_per_node + 1
    with pytest.raises(UnsatisfiableRequestError) as info:
        add.options(cpus_per_task=too_many).on(cluster).map([1, 2])
    text = str(info.value)
    assert f"cpus_per_task={too_many}" in text
    assert f"has {part.cpus_per_node} CPUs" in text and part.name in text
    assert "Nothing was submitted" in text
    # The same class as the input errors and as the scheduler's refusals.
    assert isinstance(info.value, InvalidInputError) and isinstance(info.value, SubmissionError)
    with pytest.raises(UnsatisfiableRequestError, match=r"mem=\d+M .*largest node"):
        add.options(mem=part.mem_per_node + 1).on(cluster)(1)
    assert submissions(cluster) == before, "an impossible request reached the scheduler"
    assert job_dirs(cluster) == dirs, "an impossible request left a job directory"
    # What fits still goes through, and runs.
    assert add.options(cpus_per_task=part.cpus_per_node).on(cluster)(1).get_result(120) == 2


def test_slipped_through_ends_the_wait_with_the_reason(
    cluster: slurmscope.Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """--ntasks past the node's CPUs, through extra=: Slurm accepts it and keeps it
    PENDING with PartitionConfig; the wait ends within seconds, not never."""
    flag = f"--ntasks={largest(cluster).cpus_per_node + 1}"
    with structlog.testing.capture_logs() as events:
        array = add.options(extra=[flag]).on(cluster).map([1, 2])
        single = add.options(extra=[flag]).on(cluster)(1)
        try:
            started = time.monotonic()
            with pytest.raises(JobCannotRunError) as info:
                array.get_results(timeout=120, progress=True)
            took = time.monotonic() - started
            text = str(info.value)
            assert "PartitionConfig" in text and flag in text, text
            assert f"tasks 0-1 of array {array.job_id}" in text
            assert f"slurmscope cancel {array.job_id}" in text
            assert info.value.reason == "PartitionConfig" and info.value.indices == [0, 1]
            assert took < 30, f"the wait took {took:.0f} s to see PartitionConfig"
            assert "pending (PartitionConfig: never starts)" in capsys.readouterr().err
            # Each task's error in place; a single job says "job", not "task".
            errors = array.get_results(timeout=5, return_exceptions=True)
            assert [type(e) for e in errors] == [JobCannotRunError] * 2
            with pytest.raises(JobCannotRunError, match=f"job {single.job_id} can never start"):
                single.get_result(timeout=120)
            assert array.state == "PENDING"  # it is still queued: nothing was cancelled
        finally:
            array.cancel()
            single.cancel()
    warned = [e for e in events if e["event"] == "slurmscope.task.pending_reason"]
    assert {e["job_id"] for e in warned} == {array.job_id, single.job_id}
    assert all(e["log_level"] == "warning" and e["never_clears"] for e in warned)
    assert all(e["reason"] == "PartitionConfig" and flag in e["request"] for e in warned)
    for job in (array, single):
        job.wait(timeout=60)
        assert job.state == "CANCELLED"


# -- the parts, without a cluster -----------------------------------------------------------
PARTITIONS = (
    "PartitionName=short Default=YES MaxTime=01:00:00 MaxNodes=UNLIMITED "
    "MaxCPUsPerNode=UNLIMITED Nodes=a,b State=UP TotalCPUs=12 TotalNodes=2 "
    "DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED\n"
    "PartitionName=big MaxTime=7-00:00:00 MaxCPUsPerNode=6 Nodes=b State=UP "
    "MaxMemPerNode=4000\n"
)
NODES = (
    "NodeName=a CPUTot=4 CPUEfctv=4 RealMemory=8000 Partitions=short\n"
    "NodeName=b CPUTot=8 CPUEfctv=8 RealMemory=16000 Partitions=short,big\n"
)


def test_partition_limits_from_scontrol() -> None:
    parts = partition_limits(PARTITIONS, NODES)
    assert parts["short"] == limits.PartitionLimits("short", True, 8, 16000, 3600, nodes=2)
    assert parts["big"] == limits.PartitionLimits("big", False, 6, 4000, 7 * 86400, nodes=1)
    capped = partition_limits(PARTITIONS.replace("MaxNodes=UNLIMITED", "MaxNodes=1"), NODES)
    assert capped["short"].nodes == 1  # MaxNodes caps what one job may get


@pytest.mark.parametrize(
    ("resources", "problem"),
    [
        (Resources(cpus_per_task=9), "cpus_per_task=9, but the largest node of partition short"),
        (Resources(mem="17G"), "mem=17G (17408 MiB), but the largest node of partition short"),
        (Resources(time="1:00:01"), "time=1:00:01, but partition short allows at most 01:00:00"),
        (Resources(cpus_per_task=7, partition="big"), "cpus_per_task=7, but the largest node"),
        (Resources(time="8-00:00:00", partition="big"), "at most 7-00:00:00 (MaxTime)"),
        (Resources(cpus_per_task=8, mem="16000M", time="60"), None),
        (Resources(cpus_per_task=6, time="2:00:00", partition="big"), None),
        # An unknown partition is Slurm's to judge ("Invalid partition name specified").
        (Resources(cpus_per_task=99, partition="nosuch"), None),
    ],
)
def test_refusal(resources: Resources, problem: str | None) -> None:
    parts = partition_limits(PARTITIONS, NODES)
    found = limits.refusal(resources, limits.for_request(resources, parts))
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_never_clearing_reasons() -> None:
    for reason in (
        "PartitionConfig",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "BadConstraints",
        "MaxMemPerLimit",
        "InvalidQOS",
        "QOSMaxCpuPerJobLimit",
        "QOSMaxWallDurationPerJobLimit",
        "AssocMaxMemPerNode",
        "QOSMinCpuNotSatisfied",
    ):
        assert reasons.never_clears(reason), reason
    for reason in (
        None,
        "None",
        "Priority",
        "Resources",
        "Dependency",
        "PartitionDown",  # an administrator brings it up
        "JobHeldUser",  # released with scontrol release
        "QOSGrpCpuLimit",  # clears as the group's jobs end
        "QOSMaxJobsPerUserLimit",
        "AssocMaxJobsLimit",
        "MaxCpuPerAccount",
        "ReqNodeNotAvail, UnavailableNodes:n1",
        # Killed by Slurm (--kill-on-invalid-dep=yes); the error then walks the chain.
        "DependencyNeverSatisfied",
    ):
        assert not reasons.never_clears(reason), reason
    assert reasons.is_routine("Priority") and not reasons.is_routine("PartitionDown")
    assert reasons.name("ReqNodeNotAvail, UnavailableNodes:n1") == "ReqNodeNotAvail"


def test_partition_limits_from_pyslurm_objects() -> None:
    """pyslurm 25.11's values: minutes, MiB, "UNLIMITED" for infinite, None for unset."""
    from types import SimpleNamespace as NS

    from slurmscope.backends.pyslurm import PyslurmBackend

    partitions = {
        "short": NS(
            name="short",
            is_default=True,
            max_time=60,
            max_cpus_per_node="UNLIMITED",
            max_memory_per_node="UNLIMITED",
            max_nodes="UNLIMITED",
        ),
        "big": NS(
            name="big",
            is_default=False,
            max_time="UNLIMITED",
            max_cpus_per_node=6,
            max_memory_per_node=4000,
            max_nodes=1,
        ),
        "percpu": NS(  # MaxMemPerCPU set: max_memory_per_node reads None
            name="percpu",
            is_default=False,
            max_time=None,
            max_cpus_per_node=None,
            max_memory_per_node=None,
            max_nodes=None,
        ),
    }
    nodes = {
        "a": NS(partitions=["short"], effective_cpus=4, total_cpus=4, real_memory=8000),
        "b": NS(
            partitions=["short", "big", "percpu"],
            effective_cpus="UNLIMITED",
            total_cpus=8,
            real_memory=16000,
        ),
    }
    fake = NS(_pyslurm=NS(Partitions=NS(load=lambda: partitions), Nodes=NS(load=lambda: nodes)))
    parts = PyslurmBackend._load_limits(fake)  # type: ignore[arg-type]
    assert parts["short"] == limits.PartitionLimits("short", True, 8, 16000, 3600, nodes=2)
    assert parts["big"] == limits.PartitionLimits("big", False, 6, 4000, None, nodes=1)
    assert parts["percpu"] == limits.PartitionLimits("percpu", False, 8, 16000, None, nodes=1)
