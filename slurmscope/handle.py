"""What a :class:`~slurmscope.Job` and an :class:`~slurmscope.ArrayJob` share.

A handle is a view of a :class:`~slurmscope.submission.Submission` (the record its poller
keeps up to date) within a :class:`~slurmscope.runtime.Runtime` (backend, poller and the
cluster it answers as ``.cluster``). Handles never reach into a cluster's internals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from .checkpoint import recorded_requeues
from .dependency import Dependency
from .errors import ArrayAlreadySubmittedError
from .graph import Graph
from .job_directory import JobDirectory
from .runtime import ClusterView, Runtime
from .submission import Submission
from .tree import key, trees

#: The reason shown for a task of which nothing is known yet.
NOT_KNOWN = "the scheduler did not tell; no result or recorded end in the job directory"

#: (index, scheduler id, state, reason) of one task.
TaskRow = tuple[int, str, str, str]


def requeue_lines(requeues: dict[int, list[str]]) -> list[str]:
    """One line per requeued task: how often and why."""
    return [
        f"  task {index} requeued {len(reasons)} time(s): {', '.join(reasons)}"
        for index, reasons in sorted(requeues.items())
    ]


class Handle:
    """A submitted job (one task, or every task of a map), as last polled."""

    #: True for an :class:`~slurmscope.ArrayJob` (every task of a map), False for a
    #: :class:`~slurmscope.Job` (one job, or one task of an array).
    whole_array: ClassVar[bool] = False

    def __init__(self, submission: Submission, runtime: Runtime) -> None:
        #: The record of the submission this handle views (shared by all its handles).
        self.submission = submission
        #: The backend, poller and cluster this handle's jobs belong to.
        self.runtime = runtime

    # -- what every handle says ----------------------------------------------------------------
    @property
    def cluster(self) -> ClusterView:
        """The cluster this job was submitted to."""
        return self.runtime.owner

    @property
    def directory(self) -> Path:
        """The job directory (manifest, payload, results, logs)."""
        return self.submission.directory.path

    @property
    def dependencies(self) -> tuple[Dependency, ...]:
        """Every dependency this job was submitted with, each with its provenance."""
        return self.submission.dependencies

    @property
    def target_id(self) -> str:
        """The id a dependency on this handle names: ``"12"``, ``"12_3"`` for one task of
        an array, ``"12+13"`` for a map split over several arrays."""
        raise NotImplementedError

    @property
    def indices(self) -> range:
        """The items of the submission this handle covers (every one for an array)."""
        raise NotImplementedError

    def known_outcome(self) -> bool | None:
        """True/False once every task of this handle has ended well/badly (an empty array
        has succeeded), ``None`` while undecided. Asks no scheduler."""
        return self.submission.outcome(None if self.whole_array else self.indices.start)

    # -- looking -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Look at the result files and ask the scheduler now, for every job this handle's
        cluster watches (``state`` and friends do it themselves when it may help)."""
        self.runtime.poller.poll()

    def task_rows(self) -> list[TaskRow]:
        """(index, scheduler id, state, reason) of every task of this handle, as last
        polled; ``UNKNOWN`` for a task the scheduler did not tell about and that left no
        result or recorded end."""
        rows: list[TaskRow] = []
        sub = self.submission
        for index in self.indices:
            job_id = sub.task_id(index)
            state = sub.states[index]
            if state is None:  # the scheduler did not answer, or no longer knows it
                rows.append((index, job_id, "UNKNOWN", NOT_KNOWN))
                continue
            reason = (state.reason or "") if state.reason != "None" else ""
            rows.append((index, job_id, state.state, reason))
        return rows

    @property
    def requeues(self) -> dict[int, list[str]]:
        """Why each task of this handle was requeued so far, in order (``{index:
        [reason, ...]}``, tasks never requeued left out): ``"time limit"``,
        ``"preemption"`` or ``"node failure"`` as the job directory records them (see
        :mod:`slurmscope.checkpoint`), else what the scheduler said when the poller saw it."""
        sub = self.submission
        told = recorded_requeues(str(sub.directory.path))
        found: dict[int, list[str]] = {}
        for index in self.indices:
            seen = sub.requeue_reasons.get(index, [])
            recorded = told.get(index, [])
            reasons = recorded + seen[len(recorded) :]
            if reasons:
                found[index] = reasons
        return found

    def explain(self) -> str:
        """Where each dependency of this job came from, one line each."""
        lines = [f"{self!r}"]
        if self.submission.pack > 1:
            lines.append(f"  packed: {self.submission.pack} items per Slurm array task")
        if not self.dependencies:
            lines.append("  (no dependencies)")
        for dep in self.dependencies:
            lines.append(f"  {dep.describe()}")
        lines.extend(requeue_lines(self.requeues))
        return "\n".join(lines)

    def graph(self, *, downstream: bool = False) -> Graph:
        """The dependency graph of this job: it and every job upstream of it (with
        ``downstream``, also every job under the cluster's root that waits on them), each
        with its state, each dependency with its kind and provenance. ``str(graph)`` is
        DOT text, ``graph.to_mermaid()`` Mermaid, ``graph.svg()``/``graph.png()``/
        ``graph.save(path)`` render it with Graphviz; Jupyter shows it as a picture."""
        cluster = self.cluster
        mine = key(self.directory)

        def rows_of(directory: JobDirectory, asked: str) -> list[TaskRow]:
            handle = self if key(directory.path) == mine else cluster.attach(directory.path)
            handle.refresh()
            rows: list[TaskRow] = handle.task_rows()
            return rows

        downstream_of = self.runtime.root if downstream else None
        return Graph.from_trees(trees([(self.submission.directory, "")], rows_of, downstream_of))

    def after(self, *jobs: Any, **kwargs: Any) -> Any:
        """Always raises :class:`ArrayAlreadySubmittedError`: Slurm fixes dependencies at submit
        time. Use ``task.after(job).map(items)`` or ``task.map(items, after=[job])``."""
        raise ArrayAlreadySubmittedError(self.target_id)
