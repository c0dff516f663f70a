"""Handles for jobs submitted earlier, maybe by another process: from a job id or a job
directory, through the job directory's manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .dependency import Dependency
from .errors import InvalidInputError, JobNotFoundError
from .job_directory import JobDirectory, split_job_id
from .jobs import ArrayJob, Job
from .runtime import Runtime
from .submission import Part, Submission


def attach(runtime: Runtime, job: str | int | os.PathLike[str]) -> Job[Any] | ArrayJob[Any]:
    """A handle for ``job`` (``12``, ``"12"``, ``"12_3"`` or a job directory) of the
    cluster of ``runtime``, watched by its poller from now on."""
    if isinstance(job, int) and not isinstance(job, bool) and job > 0:
        job = str(job)
    if not isinstance(job, (str, os.PathLike)):
        raise InvalidInputError(
            f"attach() takes a job id (12, '12' or '12_3' for one task of an array) or a "
            f"job directory, not {type(job).__name__} {job!r}."
        )
    text = os.fspath(job).strip()
    index: int | None = None
    job_id = ""
    if text and (os.sep in text or Path(text).is_dir()):
        directory = JobDirectory(Path(text))
        if directory.path.is_dir():
            directory.check()  # before anything in it is read (payload_guard)
    else:
        try:
            job_id, index = split_job_id(text)
        except ValueError as exc:
            raise InvalidInputError(f"cannot attach: {exc}.") from None
        found = JobDirectory.find(runtime.root, runtime.name, job_id)
        if found is None:
            raise JobNotFoundError(
                f"no job directory for job {text} of cluster {runtime.name} under "
                f"{runtime.root}; pass the job directory instead, or the root it was "
                "submitted with."
            )
        directory = found
    try:
        manifest = directory.read_manifest()
    except FileNotFoundError as exc:
        raise JobNotFoundError(f"{directory.path} holds no manifest.json") from exc
    parts = [
        Part(p["job_id"], p["offset"], p["count"], p.get("pack", 1)) for p in manifest["parts"]
    ]
    deps = [Dependency.from_json(d) for d in manifest["dependencies"]]
    submission = Submission(
        directory, manifest["name"], manifest["size"], manifest["array"], parts, deps
    )
    task_index = None if index is None else _task_index(submission, job_id, index)
    submission.load_recorded()
    runtime.poller.watch(submission)
    if task_index is not None:
        return Job(submission, runtime, task_index)
    if submission.is_array:
        return ArrayJob(submission, runtime)
    return Job(submission, runtime)


def _task_index(submission: Submission, job_id: str, index: int) -> int:
    """The item index of task ``job_id_index``; ``JobNotFoundError`` if there is none."""
    if not submission.is_array:
        raise JobNotFoundError(
            f"job {job_id} ({submission.name}) is a single job, not an array: it has no task "
            f"{job_id}_{index}. Give {job_id}."
        )
    part = next((p for p in submission.parts if p.job_id == job_id), None)
    if part is None or not 0 <= index < part.tasks:
        last = f"{job_id}_{part.tasks - 1}" if part is not None and part.count else "none"
        raise JobNotFoundError(
            f"array {job_id} ({submission.name}) has no task {job_id}_{index}: its tasks are "
            f"{job_id}_0 to {last}."
        )
    return part.offset + index * part.pack  # of a packed map: the pack's first item
