"""Why a task has no result: its error, a dependency that can never be satisfied (down to
the root cause), its exit status, or the end of its log."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from .dependency import Dependency, never_satisfied
from .errors import JobNotCompletedError, TaskFailedError
from .handle import Handle
from .states import TaskState, exit_code_in_words
from .submission import Submission


def outcome_or_error(handle: Handle, index: int, each_file: bool = True) -> Any:
    """The result of task ``index`` of ``handle``'s submission, or raise the error that
    explains why there is none (:class:`TaskFailedError` with the remote traceback,
    :class:`JobCannotRunError`, :class:`JobNotCompletedError` naming the cause)."""
    sub = handle.submission
    outcome = sub.directory.read_outcome(index, each_file)
    if outcome is not None and outcome["ok"]:
        return outcome["value"]
    job_id = sub.locate(index)[0].job_id
    position = index if sub.is_array else None
    if outcome is not None:
        error = TaskFailedError(
            job_id, position, outcome["type"], outcome["message"], outcome["traceback"]
        )
        cause = None
        if outcome.get("exception") is not None:
            try:
                cause = pickle.loads(outcome["exception"])
            except Exception:
                cause = None
        raise error from cause
    if index in sub.stuck:
        raise sub.cannot_run_error([index])
    state = sub.states[index] or TaskState("UNKNOWN")
    reason = state.reason if state.reason not in (None, "None") else None
    upstream: list[str] = []
    detail = ""
    if reason and "Dependency" in reason:
        lines = _failed_dependencies(handle, index, upstream, depth=0, seen=set())
        if lines:
            detail = "It has a dependency that can never be satisfied:\n" + "\n".join(lines)
        elif "NeverSatisfied" in reason:
            detail = (
                "Slurm says a dependency of it can never be satisfied; `slurmscope explain "
                f"{sub.task_id(index)}` shows each dependency and how its job ended."
            )
    if not detail:
        detail = _log_tail(log_paths(sub, index)[1], index=index if sub.pack > 1 else None)
        how = exit_code_in_words(state.exit_code)
        if how is None and state.terminal:
            how = handle.runtime.backend.exit_status(sub.task_id(index))
        if how:
            reason = f"{reason}, {how}" if reason else how
    error2 = JobNotCompletedError(job_id, position, state.state, reason, detail)
    error2.upstream = upstream
    raise error2


def log_paths(sub: Submission, index: int) -> tuple[Path, Path]:
    """The stdout and stderr files of the task that runs item ``index`` (of a packed map:
    shared by its pack; :func:`item_log` takes the item's part)."""
    part, task = sub.task_of(index)
    stem = f"{part.job_id}_{task}" if sub.is_array else part.job_id
    logs = sub.directory.path / "logs"
    return logs / f"{stem}.out", logs / f"{stem}.err"


def item_log(text: str, index: int) -> str:
    """The part of a packed task's log that item ``index`` wrote: from the worker's marker
    of that item to the next item's."""
    marker = "slurmscope worker: item "
    out: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        if line.startswith(marker):
            inside = line.startswith(f"{marker}{index} ")
        if inside:
            out.append(line)
    return "".join(out)


def _log_tail(path: Path, lines: int = 8, index: int | None = None) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    text = (item_log(text, index) if index is not None else text).strip()
    if not text:
        return ""
    tail = "\n".join("    " + line for line in text.splitlines()[-lines:])
    return f"Last lines of {path}:\n{tail}"


def _never_satisfied(dep: Dependency, index: int) -> tuple[bool, str]:
    """Whether ``dep`` can no longer be satisfied for task ``index``, and what happened, in
    the words of its kind (``afternotok`` on a job that succeeded is not a failure)."""
    target = dep.target
    if target is None:
        return False, ""
    if dep.kind == "aftercorr" and target.whole_array:
        element = target[index]
        outcome = element.known_outcome()
        why = None if outcome is None else never_satisfied(dep.kind, outcome)
        return why is not None, f"task {index} ({element.job_id}) {element.status.state}; {why}"
    outcome = target.known_outcome()
    why = None if outcome is None else never_satisfied(dep.kind, outcome)
    if why is None:
        return False, ""
    if outcome is False and target.whole_array:
        bad = [i for i, st in enumerate(target.submission.states) if st and not st.succeeded]
        shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
        return True, f"tasks {shown} did not complete; {why}"
    if outcome is False:
        return True, f"ended {target.status.state}; {why}"
    return True, f"succeeded; {why}"


def _failed_dependencies(
    handle: Handle, index: int, upstream: list[str], depth: int, seen: set[str]
) -> list[str]:
    """The chain of dependencies that can never be satisfied, down to the root cause."""
    lines = []
    pad = "  " * (depth + 1)
    for dep in handle.dependencies:
        never, what = _never_satisfied(dep, index)
        if not never or dep.target_id in seen:
            continue
        seen.add(dep.target_id or "")
        target = dep.target
        upstream.append(dep.target_id or "")
        lines.append(
            f"{pad}{dep.kind}:{dep.target_id} ({target.submission.name}: {what}), "
            f"given by {dep.provenance.describe()}"
        )
        if depth < 10:
            lines.extend(
                _failed_dependencies(target, _upstream_index(dep, index), upstream, depth + 1, seen)
            )
    return lines


def _upstream_index(dep: Dependency, index: int) -> int:
    """Which task of ``dep.target`` to explain next: the paired one for ``aftercorr``, the
    task itself for one task, else the first task of the array that did not succeed."""
    target = dep.target
    if not target.whole_array:
        return int(target.indices.start)
    if dep.kind == "aftercorr":
        return index
    states = target.submission.states
    return next((i for i, st in enumerate(states) if st is not None and not st.succeeded), 0)
