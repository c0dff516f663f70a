"""Every error slurmscope raises. Each message says what happened and what to do."""

from __future__ import annotations


class SlurmscopeError(Exception):
    """Base class of all slurmscope errors."""


class InvalidInputError(SlurmscopeError, ValueError):
    """Bad input caught before anything was submitted; nothing was left behind."""


class RunExistsError(InvalidInputError):
    """``Cluster(run=NAME)`` for a run that already has a ledger, without ``resume=True``."""


class DependencyError(InvalidInputError):
    """A dependency cannot be expressed or can never be satisfied."""


class ArrayAlreadySubmittedError(SlurmscopeError):
    """`.after()` was called on an array that has already been submitted."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"array {job_id} is already submitted, and Slurm fixes a job's dependencies at "
            "submit time, so dependencies cannot be added to it afterwards. Give them before "
            "the map runs, in one of the two forms that work:\n"
            "    task.after(prep).map(items)          # explicit, fluent\n"
            "    task.map(items, after=[prep])        # explicit, as an argument\n"
            "or wrap the map in `with cluster.dependencies(prep): task.map(items)`."
        )


class SubmissionError(SlurmscopeError):
    """The scheduler refused a submission. Nothing of it was left behind."""


class SchedulerError(SlurmscopeError):
    """The scheduler did not answer a query or a cancel as it should."""


class BackendUnavailableError(SlurmscopeError):
    """The requested backend cannot be used on this machine."""


class UnsafeJobDirectoryError(SlurmscopeError, PermissionError):
    """A file slurmscope would unpickle (or the directory it is in) could have been written
    by someone else: owned by another user, group- or world-writable, or a link out of the
    root. The message names the path, its owner and mode, and what to do."""


class JobError(SlurmscopeError):
    """A job did not produce a result."""


class TaskFailedError(JobError):
    """The task raised an exception; carries the index and the remote traceback."""

    def __init__(
        self, job_id: str, index: int | None, exc_type: str, message: str, remote_traceback: str
    ) -> None:
        where = f"job {job_id}" if index is None else f"task {index} of array {job_id}"
        super().__init__(
            f"{where} raised {exc_type}: {message}\n\nRemote traceback:\n{remote_traceback}"
        )
        self.job_id = job_id
        self.index = index
        self.exc_type = exc_type
        self.remote_traceback = remote_traceback


class JobNotCompletedError(JobError):
    """The job ended without a result (cancelled, timed out, killed, dependency failed).

    ``upstream`` lists the ids of the jobs whose failure made it impossible to run.
    """

    def __init__(
        self, job_id: str, index: int | None, state: str, reason: str | None, detail: str = ""
    ) -> None:
        where = f"job {job_id}" if index is None else f"task {index} of array {job_id}"
        because = f" ({reason})" if reason else ""
        text = f"{where} ended in state {state}{because} without a result."
        if detail:
            text += "\n" + detail
        super().__init__(text)
        self.job_id = job_id
        self.index = index
        self.state = state
        self.reason = reason
        self.upstream: list[str] = []


class JobNotFoundError(SlurmscopeError, LookupError):
    """No job directory is known for this job id."""


class UnsatisfiableRequestError(InvalidInputError, SubmissionError):
    """The request can never run in its partition (more CPUs per task than its largest node
    has, more memory, a time limit over MaxTime). Refused before anything was submitted."""

    def __init__(self, task: str, problem: str, backend: str) -> None:
        super().__init__(
            f"task {task} can never run here: it asks for {problem}. Slurm would accept it and "
            "keep it pending forever. Ask for less (task.options(...) or the @task "
            "arguments), or choose another partition (partition=...; `sinfo -o '%P %c %m %l'` "
            f"lists each partition's CPUs, memory and time limit). Backend: {backend}. "
            "Nothing was submitted."
        )
        self.task = task
        self.problem = problem


class ClusterFullError(SubmissionError):
    """The controller would refuse the submission for the number of jobs it holds (Slurm's
    ``MaxJobCount``). Refused before anything was submitted; the message names the limit."""

    def __init__(self, task: str, problem: str, backend: str) -> None:
        super().__init__(
            f"task {task} cannot be submitted: {problem}. Backend: {backend}. Nothing was "
            "submitted."
        )
        self.task = task
        self.problem = problem


class JobCannotRunError(JobError):
    """The scheduler keeps the job pending for a reason that never clears by waiting
    (``PartitionConfig``, ``PartitionTimeLimit``, ``BadConstraints``...). The job is still
    queued: cancel it, fix the request, and submit again."""

    def __init__(
        self,
        job_id: str,
        indices: list[int] | None,
        reason: str,
        meaning: str,
        request: str,
    ) -> None:
        where = f"job {job_id}" if indices is None else f"{_tasks_text(indices)} of array {job_id}"
        super().__init__(
            f"{where} can never start: the scheduler keeps it PENDING with reason {reason}: "
            f"{meaning}. It asked for {request}. Waiting cannot help. Cancel it "
            f"(job.cancel(), or `slurmscope cancel {job_id}`), change the request, and submit "
            "again; `sinfo -o '%P %c %m %l %D'` lists each partition's CPUs, memory, time "
            "limit and nodes."
        )
        self.job_id = job_id
        self.indices = indices
        self.reason = reason
        self.request = request


def _tasks_text(indices: list[int]) -> str:
    """``tasks 0-3,7`` for a sorted list of indices."""
    runs: list[tuple[int, int]] = []  # (first, last) of each run of consecutive indices
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    text = ",".join(f"{first}-{last}" if last != first else str(first) for first, last in runs)
    return ("task " if len(indices) == 1 else "tasks ") + text


class GraphvizNotFoundError(SlurmscopeError):
    """A picture of a graph was asked for, and Graphviz's ``dot`` program is not installed."""

    def __init__(self, format: str) -> None:
        super().__init__(
            f"rendering the graph as {format} needs Graphviz's `dot` program, which is not on "
            "PATH: install Graphviz (`apt-get install graphviz` on Debian/Ubuntu, `dnf install "
            "graphviz`, `brew install graphviz`, `conda install graphviz`). DOT and Mermaid "
            "output (--format dot|mermaid) need nothing."
        )
