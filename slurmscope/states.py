"""Task states: the one definition of which states end a job, and what each task is in."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from . import reasons

#: The ways a job ends without success, worst first: the state an array shows when its
#: tasks ended in several of them. (LOST is slurmscope's: the scheduler forgot a job that
#: wrote no result and that nobody saw end.)
UNSUCCESSFUL_ENDINGS = (
    "FAILED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
    "CANCELLED",
    "LOST",
)
#: Slurm job states after which a job never runs again: the one definition that every part
#: of slurmscope (handles, poller, CLI, ``clean``, backends) uses.
TERMINAL_STATES = frozenset({"COMPLETED", *UNSUCCESSFUL_ENDINGS})


@dataclass(frozen=True)
class TaskState:
    """The scheduler's view of one task (an array task, or the one task of a job)."""

    state: str
    reason: str | None = None
    #: How the task's process ended, as Slurm shows it (``"1:0"``, ``"0:9"``); ``None``
    #: where the backend does not tell.
    exit_code: str | None = None

    @property
    def terminal(self) -> bool:
        """True once the task can never run again (COMPLETED, FAILED, CANCELLED, ...)."""
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        """True when the task COMPLETED (exit code 0, result written)."""
        return self.state == "COMPLETED"

    @property
    def never_runs(self) -> bool:
        """True while the task is PENDING for a reason that never clears by waiting
        (``PartitionConfig``, ``PartitionTimeLimit``, ``BadConstraints``...; see
        :mod:`slurmscope.reasons`). It is not terminal: the scheduler still holds it."""
        return self.state == "PENDING" and reasons.never_clears(self.reason)


_INTERNED: dict[tuple[str, str | None, str | None], TaskState] = {}


def task_state(state: str, reason: str | None = None, exit_code: str | None = None) -> TaskState:
    """The one :class:`TaskState` object of these values: the states a backend answers are
    the very objects the poller keeps, so that a million tasks whose state did not change
    are told unchanged by identity, in C (``list.count``), not one comparison each."""
    key = (state, reason, exit_code)
    found = _INTERNED.get(key)
    if found is None:
        if len(_INTERNED) > 10_000:  # reasons are few; never let odd ones pile up
            _INTERNED.clear()
        found = _INTERNED[key] = TaskState(state, reason, exit_code)
    return found


#: job id -> {task index: state}; a single job has the one index 0.
StateMap = Mapping[str, Mapping[int, TaskState]]


class TaskStates(Mapping[int, TaskState]):
    """The states of one array's tasks as the scheduler answers them: tasks one by one
    (started or ended ones) and spans of tasks in one state (the still-pending ones, one
    record for all of them in Slurm), without a dict entry per pending task: an array of
    a million pending tasks is one span."""

    def __init__(self) -> None:
        self.single: dict[int, TaskState] = {}
        self.spans: list[tuple[range, TaskState]] = []

    def add(self, indices: range, state: TaskState) -> None:
        if len(indices) == 1:
            self.single[indices[0]] = state
        elif indices:
            self.spans.append((indices, state))

    def get(self, index: int, default: TaskState | None = None) -> TaskState | None:  # type: ignore[override]
        found = self.single.get(index)
        if found is not None:
            return found
        for indices, state in self.spans:
            if index in indices:
                return state
        return default

    def __getitem__(self, index: int) -> TaskState:
        found = self.get(index)
        if found is None:
            raise KeyError(index)
        return found

    def __iter__(self) -> Iterator[int]:
        yield from self.single
        for indices, _ in self.spans:
            yield from (i for i in indices if i not in self.single)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def exit_code_in_words(exit_code: str | None) -> str | None:
    """Slurm's ``"status:signal"`` in words: ``"0:9"`` -> "killed by signal 9", ``"7:0"`` ->
    "exit code 7"; ``None`` for a clean exit or nothing known."""
    status, _, sig = (exit_code or "").partition(":")
    if sig.isdigit() and int(sig):
        return f"killed by signal {sig}"
    if status.isdigit() and int(status):
        return f"exit code {status}"
    return None
