"""slurmscope: run Python functions as Slurm jobs and array jobs, eagerly, with scoped,
debuggable dependencies.

    import slurmscope

    cluster = slurmscope.Cluster()            # pyslurm -> sbatch CLI -> embedded local

    @slurmscope.task(time="00:10:00", mem="1G")
    def prep(path): ...

    p = prep("data.csv")                      # submitted before it returns
    with cluster.dependencies(p):             # every submission inside depends on p
        results = work.map(items).get_results()

The public names are loaded on first use, so that the worker that runs inside every job
(``python -m slurmscope.worker``) imports only what it needs.
"""

from __future__ import annotations

# Not ``from typing import TYPE_CHECKING``: importing typing costs every task milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Cluster": "slurmscope.cluster",
    "DependencyRequest": "slurmscope.cluster",
    "Handle": "slurmscope.handle",
    "default_cluster": "slurmscope.cluster",
    "depend": "slurmscope.cluster",
    "Task": "slurmscope.cluster",
    "task": "slurmscope.cluster",
    "Job": "slurmscope.jobs",
    "ArrayJob": "slurmscope.jobs",
    "Dependency": "slurmscope.dependency",
    "Provenance": "slurmscope.dependency",
    "CallSite": "slurmscope.callsite",
    "EnclosingJob": "slurmscope.callsite",
    "enclosing_job": "slurmscope.callsite",
    "KINDS": "slurmscope.dependency",
    "carry_scope": "slurmscope.scope",
    "Resources": "slurmscope.spec",
    "TaskState": "slurmscope.states",
    "configure_logging": "slurmscope.log",
    "SlurmscopeError": "slurmscope.errors",
    "InvalidInputError": "slurmscope.errors",
    "DependencyError": "slurmscope.errors",
    "ArrayAlreadySubmittedError": "slurmscope.errors",
    "SubmissionError": "slurmscope.errors",
    "SchedulerError": "slurmscope.errors",
    "BackendUnavailableError": "slurmscope.errors",
    "JobError": "slurmscope.errors",
    "TaskFailedError": "slurmscope.errors",
    "JobNotCompletedError": "slurmscope.errors",
    "JobNotFoundError": "slurmscope.errors",
    "UnsatisfiableRequestError": "slurmscope.errors",
    "ClusterFullError": "slurmscope.errors",
    "JobCannotRunError": "slurmscope.errors",
    "GraphvizNotFoundError": "slurmscope.errors",
    "UnsafeJobDirectoryError": "slurmscope.errors",
    "RunExistsError": "slurmscope.errors",
    "Graph": "slurmscope.graph",
    "Checkpointable": "slurmscope.checkpoint",
    "Resume": "slurmscope.checkpoint",
    "RequeueLimitError": "slurmscope.checkpoint",
    "load_checkpoint": "slurmscope.checkpoint",
    "save_checkpoint": "slurmscope.checkpoint",
    "requeue_count": "slurmscope.checkpoint",
}

__all__ = [
    "ArrayAlreadySubmittedError",
    "ArrayJob",
    "BackendUnavailableError",
    "CallSite",
    "Checkpointable",
    "Cluster",
    "ClusterFullError",
    "Dependency",
    "DependencyError",
    "DependencyRequest",
    "EnclosingJob",
    "Graph",
    "Handle",
    "GraphvizNotFoundError",
    "InvalidInputError",
    "Job",
    "JobCannotRunError",
    "JobError",
    "JobNotCompletedError",
    "JobNotFoundError",
    "KINDS",
    "Provenance",
    "RequeueLimitError",
    "Resume",
    "Resources",
    "RunExistsError",
    "SlurmscopeError",
    "SchedulerError",
    "SubmissionError",
    "Task",
    "TaskFailedError",
    "TaskState",
    "UnsafeJobDirectoryError",
    "UnsatisfiableRequestError",
    "carry_scope",
    "configure_logging",
    "default_cluster",
    "depend",
    "enclosing_job",
    "load_checkpoint",
    "requeue_count",
    "save_checkpoint",
    "task",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'slurmscope' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from .callsite import CallSite, EnclosingJob, enclosing_job
    from .checkpoint import (
        Checkpointable,
        RequeueLimitError,
        Resume,
        load_checkpoint,
        requeue_count,
        save_checkpoint,
    )
    from .cluster import Cluster, DependencyRequest, Task, default_cluster, depend, task
    from .dependency import KINDS, Dependency, Provenance
    from .errors import (
        ArrayAlreadySubmittedError,
        BackendUnavailableError,
        ClusterFullError,
        DependencyError,
        GraphvizNotFoundError,
        InvalidInputError,
        JobCannotRunError,
        JobError,
        JobNotCompletedError,
        JobNotFoundError,
        RunExistsError,
        SchedulerError,
        SlurmscopeError,
        SubmissionError,
        TaskFailedError,
        UnsafeJobDirectoryError,
        UnsatisfiableRequestError,
    )
    from .graph import Graph
    from .handle import Handle
    from .jobs import ArrayJob, Job
    from .log import configure_logging
    from .scope import carry_scope
    from .spec import Resources
    from .states import TaskState
