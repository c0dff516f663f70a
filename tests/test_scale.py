"""Bookkeeping that must not cost per task at a million tasks: answers as spans, the poller's
bulk update (the same states as task by task), locating an item among a thousand parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurmscope.job_directory import JobDirectory
from slurmscope.states import TaskState, TaskStates, task_state
from slurmscope.submission import Part, Submission


def _submission(tmp_path: Path, parts: list[Part]) -> Submission:
    (tmp_path / "results").mkdir(parents=True, exist_ok=True)
    size = sum(p.count for p in parts)
    return Submission(JobDirectory(tmp_path), "t", size, True, parts, [])


def test_task_states_hold_spans_and_single_tasks() -> None:
    pending, running = task_state("PENDING", "Priority"), task_state("RUNNING", "None")
    assert pending is task_state("PENDING", "Priority")  # interned
    states = TaskStates()
    states.add(range(3, 10), pending)
    states.add(range(1, 2), running)
    assert states.get(1) is running and states[5] is pending and states.get(2) is None
    assert sorted(states) == [1, *range(3, 10)] and len(states) == 8
    assert dict(states) == {1: running, **dict.fromkeys(range(3, 10), pending)}
    with pytest.raises(KeyError):
        states[2]


def test_bulk_update_gives_the_states_of_a_task_by_task_update(tmp_path: Path) -> None:
    parts = [Part(str(10 + n), n * 50, 50) for n in range(4)]
    pending = task_state("PENDING", "Priority")
    held = task_state("PENDING", "PartitionConfig")  # never clears: stuck
    running = task_state("RUNNING", "None")

    def answers(spans: bool) -> list[dict[str, object]]:
        out = []
        for round_ in range(3):
            answer: dict[str, object] = {}
            for part in parts:
                state = held if part.job_id == "13" else pending
                started = range(0, round_ * 5)  # tasks start one by one, round after round
                if spans:
                    tasks = TaskStates()
                    for i in started:
                        tasks.add(range(i, i + 1), running)
                    tasks.add(range(len(started), 50), state)
                else:
                    tasks = {i: running for i in started}  # type: ignore[assignment]
                    tasks.update(dict.fromkeys(range(len(started), 50), state))
                answer[part.job_id] = tasks
            out.append(answer)
        return out

    bulk = _submission(tmp_path / "a", parts)
    each = _submission(tmp_path / "b", parts)
    for round_, (with_spans, without) in enumerate(zip(answers(True), answers(False), strict=True)):
        changed = bulk.update(with_spans, 60.0)  # type: ignore[arg-type]
        assert changed == each.update(without, 60.0)  # type: ignore[arg-type]
        assert bulk.states == each.states and None not in bulk.states
        assert bulk.stuck == each.stuck == set(range(150 + round_ * 5, 200))
    assert bulk.states[0] == TaskState("RUNNING", "None")
    assert bulk.states[199] == held and bulk.states[60] == pending


def test_locate_finds_the_part_of_any_item(tmp_path: Path) -> None:
    parts = [Part(str(100 + n), n * 1001, 1001) for n in range(999)] + [Part("2000", 999999, 1)]
    sub = _submission(tmp_path, parts)
    assert sub.locate(0) == (parts[0], 0)
    assert sub.locate(1001) == (parts[1], 0)
    assert sub.locate(999998) == (parts[998], 1000)
    assert sub.locate(999999) == (parts[999], 0)
    assert sub.task_id(2003) == "102_1"
    for bad in (-1, 1_000_000):
        try:
            sub.locate(bad)
        except IndexError:
            continue
        raise AssertionError(f"item {bad} located")
