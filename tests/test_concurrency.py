"""Scopes under concurrency, checked against what the scheduler itself recorded.

1. On the real Slurm cluster (sbatch backend): 32 driver threads and 32 asyncio tasks
   submit at once, each inside nested ``with cluster.dependencies(...)`` blocks of its own
   (every kind: afterok, afterany, afternotok, after, aftercorr, singleton), entering and
   leaving blocks between submissions. Every job's dependencies, as ``scontrol show job``
   reports them and as ``job.dependencies`` holds them, must be exactly those of the blocks
   it was submitted in, computed from a model of each thread's blocks (plus the explicit
   ``.after()``/``after=`` ones it was given).
2. A hypothesis state machine on the local backend: random interleavings of entering and
   leaving blocks, submissions, and hand-offs to other threads (with ``carry_scope``, and
   bare threads that must see no scope at all).

Every upstream job is, or waits for, a long ``time.sleep`` gate job, so that no dependency
is fulfilled while it is checked (Slurm stops showing fulfilled ones). Everything submitted
is cancelled at the end, dependents first and the gate last, so that nothing waiting with
``afterany``/``afternotok`` starts when its upstream is cancelled.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import slurm_cluster
from conftest import ThreadsAtOnce, expected_pairs, recorded_pairs
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import slurmscope
from slurmscope import scope
from slurmscope.errors import DependencyError

THREADS = 32
ASYNC_TASKS = 32
#: Each driver runs its plan (two blocks, nested blocks and submissions inside) this often.
ROUNDS = 2


# -- the upstream pool and the model ----------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Up:
    """An upstream job of the pool, with the ids the model expects for it."""

    handle: Any
    #: What ``job.dependencies`` names it: "12", "12" (a whole array) or "12_1" (one task).
    target_id: str
    #: Tasks of a whole array (aftercorr needs equal lengths), None otherwise.
    length: int | None = None
    is_gate: bool = False


def make_pool(cluster: slurmscope.Cluster, sleep: Any) -> tuple[Any, list[Up]]:
    """A gate job sleeping for long, and upstream jobs that all wait for it."""
    gate = sleep(900)
    pool = [Up(gate, gate.job_id, is_gate=True)]
    with cluster.dependencies(gate):
        for _ in range(4):
            job = sleep(0)
            pool.append(Up(job, job.job_id))
        arrays = [sleep.map([0] * n) for n in (2, 2, 3, 3)]
    for array in arrays:
        pool.append(Up(array, array.job_id, length=len(array)))
    for array, index in ((arrays[0], 1), (arrays[3], 0)):
        element = f"{array.job_id}_{index}"
        pool.append(Up(array[index], element))
    return gate, pool


@dataclass
class Frame:
    """The model of one ``dependencies()`` block."""

    kind: str
    ups: tuple[Up, ...]
    thread: str = ""


def expected_dependencies(
    frames: Sequence[Frame], explicit: Sequence[tuple[str, Up, str]] = ()
) -> list[tuple[str, Up | None, str, int | None, str | None]]:
    """(kind, upstream, via, depth, thread) in merge order: outer blocks first, then the
    explicit ones; a (kind, target) seen before is dropped (the first provenance wins)."""
    out: list[tuple[str, Up | None, str, int | None, str | None]] = []
    seen: set[tuple[str, str | None]] = set()

    def add(kind: str, up: Up | None, via: str, depth: int | None, thread: str | None) -> None:
        key = (kind, None if up is None else up.target_id)
        if key not in seen:
            seen.add(key)
            out.append((kind, up, via, depth, thread))

    for depth, frame in enumerate(frames, start=1):
        if frame.kind == "singleton":
            add("singleton", None, "scope", depth, frame.thread)
        for up in frame.ups:
            add(frame.kind, up, "scope", depth, frame.thread)
    for kind, up, via in explicit:
        add(kind, up, via, None, None)
    return out


def problems_of(
    cluster: slurmscope.Cluster,
    job: Any,
    want: list[tuple[str, Up | None, str, int | None, str | None]],
    recorded: list[tuple[str, str]] | None = None,
) -> list[str]:
    """Every way ``job`` differs from the model (empty when it agrees)."""
    problems = []
    got = [(d.kind, d.target_id) for d in job.dependencies]
    model = [(kind, None if up is None else up.target_id) for kind, up, *_ in want]
    if got != model:
        problems.append(f"job.dependencies {got} != model {model}")
    else:
        for dep, (_, _, via, depth, thread) in zip(job.dependencies, want, strict=True):
            p = dep.provenance
            if (p.via, p.depth) != (via, depth) or (thread and p.site.thread != thread):
                problems.append(
                    f"provenance of {dep.kind}:{dep.target_id}: via {p.via} depth {p.depth} "
                    f"thread {p.site.thread}, the model says via {via} depth {depth} "
                    f"thread {thread}"
                )
    if recorded is None:
        recorded = recorded_pairs(cluster, job.job_id)
    expected = expected_pairs(job)  # as job.dependencies say, which the model checked above
    if set(recorded) != expected or len(recorded) != len(set(recorded)):
        problems.append(
            f"the scheduler recorded {sorted(recorded)}, the model says {sorted(expected)}"
        )
    return [f"{job!r}: {p}" for p in problems]


# -- 1. 32 threads and 32 asyncio tasks on the real cluster -----------------------------------
@dataclass
class Submit:
    size: int | None  # None: one job, else a map of that many items
    explicit: tuple[tuple[str, Up, str], ...] = ()  # (kind, upstream, "after()" | "after=")


@dataclass
class Block:
    kind: str
    ups: tuple[Up, ...]
    body: list[Any] = field(default_factory=list)


def make_plan(rng: random.Random, pool: list[Up]) -> list[Any]:
    """Two blocks one after the other, with submissions and nested blocks inside."""
    singles = [u for u in pool if u.length is None and not u.is_gate]
    kinds = ("afterok", "afterok", "afterany", "afternotok", "after", "aftercorr", "singleton")

    def submit(corr: int | None) -> Submit:
        size = corr or rng.choice((None, None, 1, 2, 3))
        explicit: tuple[tuple[str, Up, str], ...] = ()
        if rng.random() < 0.3:
            kind = rng.choice(("afterok", "afterany", "afternotok", "after"))
            explicit = ((kind, rng.choice(singles), rng.choice(("after()", "after="))),)
        return Submit(size, explicit)

    def block(depth: int, corr: int | None) -> Block:
        kind = rng.choice(kinds)
        if kind == "singleton":
            ups: tuple[Up, ...] = ()
        elif kind == "aftercorr":
            corr = corr or rng.choice((2, 3))
            same = [u for u in pool if u.length == corr]
            ups = tuple(rng.sample(same, rng.randint(1, len(same))))
        else:
            # `after` is fulfilled once the upstream starts: never on the (running) gate
            candidates = [u for u in pool if not (u.is_gate and kind == "after")]
            ups = tuple(rng.sample(candidates, rng.randint(1, 3)))
        body: list[Any] = []
        for _ in range(rng.randint(1, 2)):
            body.append(submit(corr))
            if depth < 2 and rng.random() < 0.5:
                body.append(block(depth + 1, corr))
        return Block(kind, ups, body)

    return [block(0, None), block(0, None)]


class Driver:
    """Runs one plan: in a thread (``run``) or as an asyncio task (``run_async``)."""

    def __init__(self, env: dict[str, Any], plan: list[Any], rng: random.Random) -> None:
        self.cluster: slurmscope.Cluster = env["cluster"]
        self.sleep = env["sleep"]
        self.env = env
        self.plan = plan
        self.rng = rng
        self.records: list[tuple[Any, list[Frame], Submit]] = []

    def submit(self, item: Submit) -> Any:
        if self.env["stop"].is_set():
            raise RuntimeError("the test is over: no more submissions")
        task = self.sleep
        after = []
        for kind, up, via in item.explicit:
            if via == "after()":
                task = task.after(up.handle, kind=kind)
            else:
                after.append(slurmscope.depend(up.handle, kind))
        if item.size is None:
            job = (task.options(after=after) if after else task)(0)
        else:
            job = task.map([0] * item.size, after=after or None)
        self.env["submitted"].append(job)
        return job

    def run(self, items: list[Any] | None = None, frames: list[Frame] | None = None) -> None:
        frames = [] if frames is None else frames
        for item in self.plan if items is None else items:
            if isinstance(item, Block):
                with self.cluster.dependencies(*(u.handle for u in item.ups), kind=item.kind):
                    frames.append(Frame(item.kind, item.ups, threading.current_thread().name))
                    try:
                        self.run(item.body, frames)
                    finally:
                        frames.pop()
            else:
                self.records.append((self.submit(item), list(frames), item))

    async def run_async(self, items: list[Any], frames: list[Frame]) -> None:
        for item in items:
            await asyncio.sleep(0)
            if isinstance(item, Block):
                with self.cluster.dependencies(*(u.handle for u in item.ups), kind=item.kind):
                    frames.append(Frame(item.kind, item.ups, threading.current_thread().name))
                    try:
                        await self.run_async(item.body, frames)
                    finally:
                        frames.pop()
            elif self.rng.random() < 0.5:
                self.records.append((self.submit(item), list(frames), item))
            else:  # to_thread copies the context: the blocks go along
                job = await asyncio.to_thread(self.submit, item)
                self.records.append((job, list(frames), item))


def _scancel(ids: Sequence[str]) -> None:
    for start in range(0, len(ids), 200):
        subprocess.run(["scancel", *ids[start : start + 200]], capture_output=True, check=False)


def _cancel_all(env: dict[str, Any]) -> None:
    """Dependents first, then the upstream pool, the gate last; one scancel per step. Then
    whatever is left under this test's job name (a submission cut short, say)."""
    env["stop"].set()
    for thread in env.get("threads", ()):
        thread.join(timeout=120)
    pool = [u.handle for u in env.get("pool", ()) if not u.is_gate]
    steps = [
        [j.job_id for j in env["submitted"]],
        sorted({j.job_id.split("_")[0] for j in pool}),
        [env["gate"].job_id] if env.get("gate") is not None else [],
    ]
    for ids in steps:
        if ids:
            _scancel(ids)
    left = subprocess.run(
        ["squeue", "--noheader", f"--name={env['name']}", "--format=%A"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if left:
        _scancel(left)


@pytest.mark.slurm
def test_threads_and_asyncio_tasks_submit_at_once_on_slurm(tmp_path: Path) -> None:
    slurm_cluster.require()
    name = f"sscc{os.getpid()}"
    cluster = slurmscope.Cluster("sbatch", root=tmp_path / "jobs", set_as_default=False)
    # one job name for all: a singleton block waits for the (running) gate of that name
    sleep = cluster.task(time.sleep, job_name=name, time="20")
    env: dict[str, Any] = {
        "cluster": cluster,
        "sleep": sleep,
        "stop": threading.Event(),
        "submitted": [],
        "gate": None,
        "name": name,
    }
    started = time.monotonic()
    try:
        env["gate"], pool = make_pool(cluster, sleep)
        env["pool"] = pool
        common = pool[1]
        drivers = [
            Driver(env, make_plan(random.Random(i), pool), random.Random(i)) for i in range(THREADS)
        ]
        # the asyncio tasks inherit an afterany block of the code that creates them
        inherited = Frame("afterany", (common,), "MainThread")
        async_drivers = [
            Driver(env, make_plan(random.Random(1000 + i), pool), random.Random(1000 + i))
            for i in range(ASYNC_TASKS)
        ]

        def thread_main(i: int, barrier: threading.Barrier) -> None:
            assert scope.current() == (), "a new thread must start with no scope"
            barrier.wait()
            for _ in range(ROUNDS):
                drivers[i].run()
                assert scope.current() == ()

        async def task_main(driver: Driver, go: asyncio.Event) -> None:
            await go.wait()
            assert [f.dependencies[0].target for f in scope.current()] == [common.handle]
            for _ in range(ROUNDS):
                await driver.run_async(driver.plan, [inherited])
                assert [f.dependencies[0].target for f in scope.current()] == [common.handle]

        # the threads and this one (running the asyncio tasks) start together
        threads = ThreadsAtOnce(
            THREADS, thread_main, name="driver-{}", timeout=120, parties=THREADS + 1
        )
        errors: list[BaseException] = []

        async def async_main() -> None:
            with cluster.dependencies(common.handle, kind="afterany"):
                go = asyncio.Event()
                running = [asyncio.create_task(task_main(d, go)) for d in async_drivers]
                await asyncio.to_thread(threads.barrier.wait)
                go.set()
                outcomes = await asyncio.gather(*running, return_exceptions=True)
            errors.extend(o for o in outcomes if isinstance(o, BaseException))

        env["threads"] = threads.threads
        threads.start()
        with contextlib.suppress(threading.BrokenBarrierError):  # a thread failed first
            asyncio.run(async_main())
        threads.join(timeout=600)  # raises the first error of a driver thread
        if errors:
            raise errors[0]
        assert scope.current() == ()
        submitted_in = time.monotonic() - started

        records = [r for d in drivers + async_drivers for r in d.records]
        ids = [job.job_id for job, _, _ in records]
        assert len(set(ids)) == len(ids), "two submissions got the same job id"
        with ThreadPoolExecutor(max_workers=8) as executor:
            recorded = list(executor.map(lambda i: recorded_pairs(cluster, i), ids))
        problems: list[str] = []
        arrays = tasks_total = deps_total = 0
        for (job, frames, item), pairs in zip(records, recorded, strict=True):
            want = expected_dependencies(frames, item.explicit)
            problems += problems_of(cluster, job, want, pairs)
            arrays += isinstance(job, slurmscope.ArrayJob)
            tasks_total += len(job) if isinstance(job, slurmscope.ArrayJob) else 1
            deps_total += len(want)
        line = (
            f"concurrency: {len(records)} jobs checked ({arrays} arrays, {tasks_total} tasks, "
            f"{deps_total} dependencies) from {THREADS} threads and {ASYNC_TASKS} asyncio "
            f"tasks, submitted in {submitted_in:.0f} s; {len(problems)} problems"
        )
        print(line)
        (tmp_path / "concurrency.txt").write_text(line + "\n")  # besides the printed line
        assert not problems, "\n".join(problems[:20])
        assert len(records) >= THREADS + ASYNC_TASKS
    finally:
        _cancel_all(env)
        cluster.close()


# -- 2. a state machine on the local backend --------------------------------------------------
@pytest.fixture(scope="module")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("machine")
    cluster = slurmscope.Cluster("local", root=root, set_as_default=False, cpus=2)
    sleep = cluster.task(time.sleep)
    gate, pool = make_pool(cluster, sleep)
    try:
        yield {"cluster": cluster, "sleep": sleep, "gate": gate, "pool": pool, "root": root}
    finally:
        gate.cancel()
        cluster.close()


#: What the state machine did, over all its examples.
STATS: collections.Counter[str] = collections.Counter()


def _job_dirs(root: Path) -> int:
    """How many job directories there are under ``root``."""
    return sum(1 for p in root.iterdir() if p.is_dir() and p.name[0] != "." and p.name != "by-id")


class ScopeMachine(RuleBasedStateMachine):
    """Blocks are entered and left explicitly (``__enter__``/``__exit__``) across rules,
    against a model stack. Every submission also waits for the gate explicitly, so that no
    job ever starts, whatever the blocks say."""

    def __init__(self, env: dict[str, Any]) -> None:
        super().__init__()
        self.env = env
        self.cluster: slurmscope.Cluster = env["cluster"]
        self.pool: list[Up] = env["pool"]
        self.gate_up = self.pool[0]
        self.blocks: list[tuple[Any, Frame]] = []
        self.jobs: list[Any] = []
        self.threads = 0
        assert scope.current() == ()

    @property
    def frames(self) -> list[Frame]:
        return [frame for _, frame in self.blocks]

    def corr_length(self) -> int | None:
        lengths = {u.length for f in self.frames if f.kind == "aftercorr" for u in f.ups}
        assert len(lengths) <= 1
        return lengths.pop() if lengths else None

    # -- rules ---------------------------------------------------------------------------------
    @rule(
        kind=st.sampled_from(slurmscope.KINDS),
        picks=st.lists(st.integers(0, 99), min_size=1, max_size=3),
    )
    def push(self, kind: str, picks: list[int]) -> None:
        if kind == "singleton":
            candidates: list[Up] = []
        elif kind == "aftercorr":
            length = self.corr_length() or (2, 3)[picks[0] % 2]
            candidates = [u for u in self.pool if u.length == length]
        else:
            candidates = self.pool
        ups = tuple(dict.fromkeys(candidates[p % len(candidates)] for p in picks if candidates))
        block = self.cluster.dependencies(*(u.handle for u in ups), kind=kind)
        block.__enter__()
        self.blocks.append((block, Frame(kind, ups, "MainThread")))
        STATS["blocks entered"] += 1
        STATS["deepest stack"] = max(STATS["deepest stack"], len(self.blocks))

    @precondition(lambda self: self.blocks)
    @rule()
    def pop(self) -> None:
        block, _ = self.blocks.pop()
        block.__exit__(None, None, None)
        STATS["blocks left"] += 1

    def _submit(self, size: int | None, via: str) -> Any:
        sleep, gate = self.env["sleep"], self.gate_up.handle
        if via == "after()":
            sleep = sleep.after(gate)
        after = [gate] if via == "after=" else None
        if size is None:
            job = (sleep.options(after=after) if after else sleep)(0)
        else:
            job = sleep.map([0] * size, after=after)
        self.jobs.append(job)
        return job

    def _check(self, job: Any, frames: list[Frame], via: str) -> None:
        want = expected_dependencies(frames, [("afterok", self.gate_up, via)])
        problems = problems_of(self.cluster, job, want)
        assert not problems, "\n".join(problems)

    @rule(
        size=st.sampled_from([None, 1, 2, 3]),
        via=st.sampled_from(["after()", "after="]),
        fit=st.booleans(),
    )
    def submit(self, size: int | None, via: str, fit: bool) -> None:
        corr = self.corr_length()
        if corr is not None and fit:
            size = corr  # a map as long as the arrays of the open aftercorr blocks
        if corr is not None and size != corr:
            # aftercorr pairs equally long arrays: anything else is refused, nothing submitted
            before = _job_dirs(self.env["root"])
            with pytest.raises(DependencyError, match="aftercorr"):
                self._submit(size, via)
            assert _job_dirs(self.env["root"]) == before
            STATS["refused (aftercorr)"] += 1
            return
        self._check(self._submit(size, via), self.frames, via)
        STATS["submissions checked"] += 1
        STATS["of them in aftercorr blocks"] += corr is not None

    @rule(size=st.sampled_from([None, 1, 2, 3]), via=st.sampled_from(["after()", "after="]))
    def submit_in_threads(self, size: int | None, via: str) -> None:
        """One submission in a thread given the scope with carry_scope, one in a bare thread."""
        self.threads += 1
        corr = self.corr_length()
        seen: dict[str, Any] = {}

        def carried() -> None:
            seen["carried_stack"] = scope.current()
            seen["carried"] = self._submit(corr or size, via)

        def bare() -> None:
            seen["bare_stack"] = scope.current()
            seen["bare"] = self._submit(size, via)

        for name, target in (
            (f"carried-{self.threads}", slurmscope.carry_scope(carried)),
            (f"bare-{self.threads}", bare),
        ):
            thread = threading.Thread(target=target, name=name)
            thread.start()
            thread.join(timeout=60)
            assert not thread.is_alive()
        stack = scope.current()
        assert len(seen["carried_stack"]) == len(stack)
        assert all(a is b for a, b in zip(seen["carried_stack"], stack, strict=True))
        assert seen["bare_stack"] == ()
        # the blocks' provenance is the thread that opened them, the main thread
        self._check(seen["carried"], self.frames, via)
        self._check(seen["bare"], [], via)
        assert not any(d.provenance.via == "scope" for d in seen["bare"].dependencies)
        STATS["thread hand-offs checked"] += 1

    @invariant()
    def stack_is_the_model(self) -> None:
        stack = scope.current()
        assert len(stack) == len(self.blocks)
        for frame, model in zip(stack, self.frames, strict=True):
            assert frame.cluster is self.cluster
            got = [(d.kind, d.target_id) for d in frame.dependencies]
            want = [(model.kind, None)] if model.kind == "singleton" else []
            want += [(model.kind, u.target_id) for u in model.ups]
            assert got == want

    def teardown(self) -> None:
        while self.blocks:
            self.blocks.pop()[0].__exit__(None, None, None)
        assert scope.current() == ()
        for job in self.jobs:
            job.cancel()


def test_scope_state_machine_on_local(local_env: dict[str, Any]) -> None:
    run_state_machine_as_test(
        lambda: ScopeMachine(local_env),
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    # nothing of the examples leaked into this thread's context
    assert scope.current() == ()
    line = f"state machine (local): {dict(sorted(STATS.items()))}"
    print(line)
    (local_env["root"] / "state_machine.txt").write_text(line + "\n")  # besides the printed line
    assert STATS["submissions checked"] >= 50 and STATS["thread hand-offs checked"] >= 20, line
