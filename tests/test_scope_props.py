"""Property and stateful tests of the scope stack (``slurmscope/scope.py``), and of the
dependencies that submissions made inside ``with cluster.dependencies(...)`` blocks carry.

Submissions go to the embedded local scheduler. Every job depends (directly or through an
upstream) on one long ``time.sleep`` "gate" job, so nothing but the gate ever starts and no
dependency is resolved before submission; ``cluster.close()`` cancels everything at the end.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_recorded, run_at_once
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

import slurmscope
from slurmscope import scope
from slurmscope.dependency import KINDS, CallSite, merge, parse
from slurmscope.scope import Frame


def here() -> int:
    """The line number of the caller."""
    return sys._getframe(1).f_lineno


class _EqualToEverything:
    """A cluster stand-in equal to every object: frames_of must compare by identity."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"<cluster {self.name}>"


CLUSTERS = (_EqualToEverything("a"), _EqualToEverything("b"), object(), object())


def _same(a: tuple[Any, ...], b: tuple[Any, ...] | list[Any]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


# -- the stack as a state machine -------------------------------------------------------------
class ScopeStack(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.base = scope.current()
        self.model: list[Frame] = []
        self.tokens: list[Any] = []
        self.counter = 0

    def _frame(self, cluster_index: int, thread: str = "MainThread") -> Frame:
        self.counter += 1
        site = CallSite("model.py", self.counter, "rule", thread)
        return Frame(CLUSTERS[cluster_index], (), site, len(self.model) + 1)

    @rule(cluster=st.integers(0, len(CLUSTERS) - 1))
    def push(self, cluster: int) -> None:
        frame = self._frame(cluster)
        before = scope.current()
        self.tokens.append(scope.push(frame))
        self.model.append(frame)
        # the old value was replaced, never mutated
        assert _same(before, list(self.base) + self.model[:-1])

    @precondition(lambda self: self.tokens)
    @rule()
    def pop(self) -> None:
        scope.pop(self.tokens.pop())
        self.model.pop()

    @invariant()
    def current_is_the_model(self) -> None:
        stack = scope.current()
        assert isinstance(stack, tuple)
        assert _same(stack, list(self.base) + self.model)
        assert scope.depth() == len(self.base) + len(self.model)
        inner = scope.innermost_cluster()
        if self.model:
            assert inner is self.model[-1].cluster
        elif not self.base:
            assert inner is None

    @rule(cluster=st.integers(0, len(CLUSTERS) - 1))
    def frames_of_filters_by_identity(self, cluster: int) -> None:
        target = CLUSTERS[cluster]
        expected = [f for f in list(self.base) + self.model if f.cluster is target]
        assert _same(scope.frames_of(target), expected)
        # an explicit stack is filtered the same way, and the current one is ignored
        reversed_stack = tuple(reversed(self.model))
        assert _same(
            scope.frames_of(target, reversed_stack),
            [f for f in reversed_stack if f.cluster is target],
        )
        assert scope.frames_of(target, ()) == ()
        assert scope.frames_of(_EqualToEverything("stranger")) == ()

    @rule(
        pushes=st.lists(st.integers(0, len(CLUSTERS) - 1), max_size=3),
        pop_back=st.booleans(),
        late=st.booleans(),
    )
    def carry_scope_to_a_thread(self, pushes: list[int], pop_back: bool, late: bool) -> None:
        seen: dict[str, Any] = {}
        carried = list(self.base) + self.model
        thread_frames = [self._frame(c, "carried") for c in pushes]

        def body(x: int) -> int:
            seen["before"] = scope.current()
            tokens = [scope.push(f) for f in thread_frames]
            seen["inside"] = scope.current()
            if pop_back:
                for token in reversed(tokens):
                    scope.pop(token)
            seen["after"] = scope.current()
            return x + 1

        wrapped = scope.carry_scope(body)
        # a frame pushed after wrapping is not carried
        late_token = scope.push(self._frame(0)) if late else None

        def run() -> None:
            seen["empty"] = scope.current()
            seen["value"] = wrapped(41)
            seen["restored"] = scope.current()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=30)
        if late_token is not None:
            scope.pop(late_token)

        assert seen["empty"] == (), "a new thread must start with no scope"
        assert seen["value"] == 42
        assert _same(seen["before"], carried)
        assert _same(seen["inside"], carried + thread_frames)
        assert _same(seen["after"], carried if pop_back else carried + thread_frames)
        assert seen["restored"] == (), "carry_scope must restore the thread's own scope"
        # nothing leaked back: the invariant checks the main stack too
        assert _same(scope.current(), carried)

    @rule(
        pushes=st.lists(st.integers(0, len(CLUSTERS) - 1), min_size=1, max_size=3),
        fail=st.booleans(),
    )
    def carry_scope_in_the_same_thread(self, pushes: list[int], fail: bool) -> None:
        before = scope.current()
        frames = [self._frame(c) for c in pushes]

        def body() -> None:
            for f in frames:
                scope.push(f)  # never popped
            if fail:
                raise KeyError("boom")

        wrapped = scope.carry_scope(body)
        if fail:
            with pytest.raises(KeyError):
                wrapped()
        else:
            wrapped()
        assert _same(scope.current(), before)

    def teardown(self) -> None:
        while self.tokens:
            scope.pop(self.tokens.pop())
        assert _same(scope.current(), self.base)


ScopeStack.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
TestScopeStack = ScopeStack.TestCase


# -- blocks entered and exited in any order, by every mechanism --------------------------------
class _Open:
    """One open entry of the model: how to leave it, and the frame it pushed."""

    def __init__(self, how: str, frame: Frame, leave: Any, block: Any) -> None:
        self.how, self.frame, self.leave, self.block = how, frame, leave, block


def _holding(block: Any):  # a pipeline stage written as a generator
    with block:
        yield


class BlockOrders(RuleBasedStateMachine):
    """``dependencies()`` and ``with cluster:`` blocks entered directly, by generators that
    hold them across a ``yield`` and by ``ExitStack``s, then exited in ANY order, also from
    another thread; re-entered block objects too. The stack must always be exactly the
    entries still open, in the order they were entered, and a block that exited must never
    be seen again (in this context, in a thread that carries the scope, or after a reset)."""

    #: Where the clusters keep their jobs (set by TestBlockOrders).
    root: Path

    def __init__(self) -> None:
        super().__init__()
        self.clusters = [
            slurmscope.Cluster("local", root=self.root / str(i), set_as_default=False)
            for i in range(2)
        ]
        self.open: list[_Open] = []
        self.exited: list[Frame] = []
        self.blocks: list[Any] = []

    def _enter(self, how: str, block: Any) -> None:
        before = scope.current()
        if how == "direct":
            block.__enter__()
            leave = functools.partial(block.__exit__, None, None, None)
        elif how == "generator":
            gen = _holding(block)
            next(gen)
            leave = gen.close
        else:
            stack = contextlib.ExitStack()
            stack.enter_context(block)
            leave = stack.close
        after = scope.current()
        assert _same(after[:-1], before), "an enter must only add its own frame on top"
        self.open.append(_Open(how, after[-1], leave, block))

    @rule(
        cluster=st.integers(0, 1),
        how=st.sampled_from(["direct", "generator", "exitstack"]),
        routing=st.booleans(),
    )
    def enter_new_block(self, cluster: int, how: str, routing: bool) -> None:
        c = self.clusters[cluster]
        block = c if routing and how != "direct" else c.dependencies()
        if block is not c:
            self.blocks.append(block)
        self._enter(how, block)

    @precondition(lambda self: self.blocks)
    @rule(data=st.data())
    def enter_a_block_object_again(self, data: st.DataObject) -> None:
        self._enter("direct", data.draw(st.sampled_from(self.blocks)))

    def _which(self, index: int) -> _Open:
        entry = self.open[index % len(self.open)]
        if entry.how == "direct":
            # a block object entered several times leaves its newest entry first
            entry = [o for o in self.open if o.block is entry.block and o.how == "direct"][-1]
        return entry

    @precondition(lambda self: self.open)
    @rule(index=st.integers(0, 50))
    def exit_any(self, index: int) -> None:
        entry = self._which(index)
        entry.leave()
        self.open.remove(entry)
        self.exited.append(entry.frame)

    @precondition(
        lambda self: any(o.how == "direct" and o.frame.is_dependency_block for o in self.open)
    )
    @rule(index=st.integers(0, 50))
    def exit_from_another_thread(self, index: int) -> None:
        candidates = [o for o in self.open if o.how == "direct"]
        entry = self._which(self.open.index(candidates[index % len(candidates)]))
        errors: list[BaseException] = []

        def leave() -> None:
            try:
                entry.leave()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        thread = threading.Thread(target=leave)
        thread.start()
        thread.join(timeout=30)
        assert not errors, errors
        self.open.remove(entry)
        self.exited.append(entry.frame)

    @precondition(lambda self: self.open)
    @rule(index=st.integers(0, 50), where=st.sampled_from(["thread", "copied context"]))
    def leave_by_generator_or_stack_elsewhere(self, index: int, where: str) -> None:
        """A generator closed, or an ExitStack closed, by another thread or in a copy of
        this context: that exit cannot reach this stack, so the frame is revoked."""
        entry = self._which(index)
        if where == "thread":
            thread = threading.Thread(target=entry.leave)
            thread.start()
            thread.join(timeout=30)
        else:
            contextvars.copy_context().run(entry.leave)
        self.open.remove(entry)
        self.exited.append(entry.frame)

    @rule()
    def a_carried_thread_sees_the_open_blocks(self) -> None:
        seen: list[Any] = []
        wrapped = scope.carry_scope(lambda: seen.append(scope.current()))
        thread = threading.Thread(target=wrapped)
        thread.start()
        thread.join(timeout=30)
        assert len(seen) == 1
        assert _same(seen[0], [o.frame for o in self.open])

    @invariant()
    def stack_is_exactly_the_open_entries(self) -> None:
        stack = scope.current()
        assert _same(stack, [o.frame for o in self.open])
        for frame in self.exited:
            assert all(f is not frame for f in stack)
        for c in self.clusters:
            mine = [o.frame for o in self.open if o.frame.cluster is c]
            assert _same(scope.frames_of(c), mine)
            assert scope.next_depth(c) == 1 + sum(f.is_dependency_block for f in mine)
        assert scope.innermost_cluster() is (self.open[-1].frame.cluster if self.open else None)

    def teardown(self) -> None:
        while self.open:
            entry = self.open.pop()
            entry.leave()
        assert scope.current() == ()
        for c in self.clusters:
            c.close()


BlockOrders.TestCase.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)


class TestBlockOrders(BlockOrders.TestCase):  # type: ignore[name-defined,misc]
    @pytest.fixture(autouse=True)
    def _root(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        BlockOrders.root = tmp_path_factory.mktemp("orders")


def test_the_two_reproductions_of_issue_12() -> None:
    """Blocks exited out of order, by hand and by generators closed in creation order."""
    cluster = object()
    site = CallSite("f", 1, "g", "MainThread")
    a = scope.push(Frame(cluster, (), site, 1))
    b = scope.push(Frame(cluster, (), site, 2))
    scope.pop(a)
    assert _same(scope.current(), [b.frame])
    scope.pop(b)
    assert scope.current() == ()
    with pytest.raises(RuntimeError, match="already popped"):
        scope.pop(a)

    def stage(frame: Frame) -> Any:
        entry = scope.push(frame)
        try:
            yield
        finally:
            scope.pop(entry)

    first, second = stage(Frame(cluster, (), site, 1)), stage(Frame(cluster, (), site, 2))
    next(first)
    next(second)
    assert len(scope.current()) == 2
    first.close()
    assert len(scope.current()) == 1 and scope.current()[0].depth == 2
    second.close()
    assert scope.current() == ()


def test_a_block_exited_in_another_asyncio_task_is_gone_everywhere() -> None:
    """The entering task cannot be reached from the task that exits: the frame is revoked,
    so it is gone from the entering task's stack (and from any copy) too."""
    import asyncio

    cluster = object()
    seen: dict[str, Any] = {}

    async def main() -> None:
        entry = scope.push(Frame(cluster, (), CallSite("f", 1, "g", "MainThread"), 1))
        seen["inside"] = scope.current()

        async def other() -> None:
            seen["in_place"] = scope.pop(entry)

        await asyncio.create_task(other())
        seen["after"] = scope.current()

    asyncio.run(main())
    assert len(seen["inside"]) == 1
    assert seen["in_place"] is False
    assert seen["after"] == ()
    assert seen["inside"][0].revoked


def test_carry_scope_wrapper_runs_in_many_threads_at_once() -> None:
    frame = Frame(CLUSTERS[2], (), CallSite("f", 1, "g", "MainThread"), 1)
    token = scope.push(frame)
    try:

        def body(i: int, barrier: threading.Barrier) -> tuple[Frame, ...]:
            own = Frame(CLUSTERS[3], (), CallSite("f", i, "g", "worker"), 2)
            scope.push(own)
            barrier.wait()
            return scope.current()

        seen = list(run_at_once(6, scope.carry_scope(body), timeout=30).values())
        assert len(seen) == 6
        for stack in seen:
            assert len(stack) == 2 and stack[0] is frame and stack[1].site.thread == "worker"
        assert len({stack[1].site.line for stack in seen}) == 6
        assert _same(scope.current(), [frame])
    finally:
        scope.pop(token)


# -- through the public API -------------------------------------------------------------------
@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    """A local cluster, a long gate job and upstream jobs that wait for it (so they stay
    PENDING: no dependency is ever already satisfied at submit time)."""
    cluster = slurmscope.Cluster(
        "local", root=tmp_path_factory.mktemp("scope"), set_as_default=False, cpus=2
    )
    other = slurmscope.Cluster(
        "local", root=tmp_path_factory.mktemp("other"), set_as_default=False, cpus=1
    )
    sleep = cluster.task(time.sleep)
    gate = sleep(600)
    with cluster.dependencies(gate):
        ups = [sleep(0) for _ in range(3)]
        arr = sleep.map([0, 0])
    other_gate = other.task(time.sleep)(600)
    try:
        yield {
            "cluster": cluster,
            "other": other,
            "sleep": sleep,
            "gate": gate,
            "ups": ups,
            "arr": arr,
            "other_gate": other_gate,
        }
    finally:
        for job in (gate, other_gate):
            job.cancel()
        cluster.close()
        other.close()


def _view(job: Any) -> list[tuple[Any, ...]]:
    return [
        (
            d.kind,
            d.target_id,
            d.provenance.via,
            d.provenance.depth,
            d.provenance.site.file,
            d.provenance.site.line,
            d.provenance.site.thread,
        )
        for d in job.dependencies
    ]


def test_nested_blocks_merge_with_provenance(env: dict[str, Any]) -> None:
    cluster, sleep = env["cluster"], env["sleep"]
    a, b, c = env["ups"]
    f = __file__
    assert scope.current() == ()
    line1 = here() + 1
    with cluster.dependencies(a):
        line2 = here() + 1
        with cluster.dependencies(b, kind="afterany"):
            line3 = here() + 1
            with cluster.dependencies(a, c, kind="after"):
                line4 = here() + 1
                with cluster.dependencies(a, b):  # afterok:a repeats the outermost block
                    single = sleep(0)
                    array = sleep.map([0, 0, 0])
                    explicit = sleep.after(c, b).map([0])
                    argument = sleep.map([0], after=[a, c])
    assert scope.current() == ()

    scoped = [
        ("afterok", a.job_id, "scope", 1, f, line1, "MainThread"),
        ("afterany", b.job_id, "scope", 2, f, line2, "MainThread"),
        ("after", a.job_id, "scope", 3, f, line3, "MainThread"),
        ("after", c.job_id, "scope", 3, f, line3, "MainThread"),
        # afterok:a from line4 is a duplicate: the first provenance (line1) wins
        ("afterok", b.job_id, "scope", 4, f, line4, "MainThread"),
    ]
    assert _view(single) == scoped
    assert _view(array) == scoped
    explicit_line = line4 + 3
    assert _view(explicit) == scoped + [
        ("afterok", c.job_id, "after()", None, f, explicit_line, "MainThread"),
        # afterok:b is already given by the block at line4
    ]
    assert _view(argument) == scoped + [
        ("afterok", c.job_id, "after=", None, f, explicit_line + 1, "MainThread"),
    ]
    for job in (single, array, explicit, argument):
        for dep in job.dependencies:
            assert dep.provenance.site.function == "test_nested_blocks_merge_with_provenance"
        assert job.dependencies[0].target is a
        assert_recorded(cluster, job)
    # the explanation names the with block, its line and depth
    text = single.explain()
    assert f"{f}:{line1}" in text and "depth 1" in text and "depth 4" in text


def test_blocks_of_other_clusters_are_not_merged(env: dict[str, Any]) -> None:
    cluster, other, sleep = env["cluster"], env["other"], env["sleep"]
    a, b, _ = env["ups"]
    unbound = slurmscope.Task(abs, slurmscope.Resources())
    assert unbound.cluster is None
    line1 = here() + 1
    with cluster.dependencies(a), other.dependencies(env["other_gate"]):
        line3 = here() + 1
        with cluster.dependencies(b, kind="afterany"):
            mine = sleep(0)  # bound to `cluster`
            theirs = other.task(abs)(-1)  # bound to `other`
            routed = unbound(-1)  # not bound: goes to the innermost block's cluster
        inner_other = unbound(-2)  # now the innermost block is other's
    assert _view(mine) == [
        ("afterok", a.job_id, "scope", 1, __file__, line1, "MainThread"),
        # the other cluster's block in between does not count towards the depth
        ("afterany", b.job_id, "scope", 2, __file__, line3, "MainThread"),
    ]
    assert [d.target_id for d in theirs.dependencies] == [env["other_gate"].job_id]
    assert routed.cluster is cluster and _view(routed) == _view(mine)
    assert inner_other.cluster is other
    assert [d.target_id for d in inner_other.dependencies] == [env["other_gate"].job_id]
    for job, c in ((mine, cluster), (routed, cluster), (theirs, other), (inner_other, other)):
        assert_recorded(c, job)


def test_singleton_and_aftercorr_blocks(env: dict[str, Any]) -> None:
    cluster, sleep, arr = env["cluster"], env["sleep"], env["arr"]
    a = env["ups"][0]
    line1 = here() + 1
    with cluster.dependencies(kind="singleton"):
        line2 = here() + 1
        with cluster.dependencies(arr, kind="aftercorr"), cluster.dependencies(a):
            job = sleep.map([0, 0])
    view = _view(job)
    assert view[0] == ("singleton", None, "scope", 1, __file__, line1, "MainThread")
    assert view[1] == ("aftercorr", arr.job_id, "scope", 2, __file__, line2, "MainThread")
    assert view[2][:4] == ("afterok", a.job_id, "scope", 3)
    assert parse(cluster.backend.recorded_dependencies(job.job_id)) == (
        ("singleton", ()),
        ("aftercorr", (arr.job_id,)),
        ("afterok", (a.job_id,)),
    )


def test_exception_inside_block_pops_the_frame(env: dict[str, Any]) -> None:
    cluster, sleep = env["cluster"], env["sleep"]
    a, b, _ = env["ups"]
    before = scope.current()
    with (
        pytest.raises(ZeroDivisionError),
        cluster.dependencies(a),
        cluster.dependencies(b, kind="afterany"),
    ):
        assert scope.depth() == len(before) + 2
        1 / 0  # noqa: B018
    assert scope.current() == before

    with cluster.dependencies(a):
        outer = scope.current()
        with pytest.raises(KeyError), cluster.dependencies(b, kind="afterany"):
            raise KeyError("inner")
        assert _same(scope.current(), outer)
        job = sleep(0)
    assert [d.target_id for d in job.dependencies] == [a.job_id]
    assert scope.current() == before

    # a `with cluster:` routing block is removed too
    with pytest.raises(RuntimeError), cluster, cluster.dependencies(a):
        raise RuntimeError
    assert scope.current() == before
    # a block object may be entered again while it is entered (recursion, reuse); each
    # exit removes one entry, and the object stays usable afterwards
    block = cluster.dependencies(a)
    with block:
        with block:
            assert scope.depth() == len(before) + 2
        assert scope.depth() == len(before) + 1
    assert scope.current() == before
    with pytest.raises(RuntimeError, match="not entered"):
        block.__exit__(None, None, None)
    with block:
        again = sleep(0)
    assert [d.target_id for d in again.dependencies] == [a.job_id]
    assert scope.current() == before


def test_public_task_decorator_after_cluster_task(tmp_path: Any) -> None:
    """``@slurmscope.task`` must stay the decorator whatever was imported or used before.
    Runs in a fresh interpreter, since it depends on import order."""
    import subprocess
    import textwrap

    script = textwrap.dedent(
        f"""
        import slurmscope
        cluster = slurmscope.Cluster("local", root={str(tmp_path)!r}, set_as_default=False)

        @cluster.task
        def bound(x):
            return x

        @slurmscope.task(time="00:01:00")
        def unbound(x):
            return x

        assert isinstance(unbound, slurmscope.Task), unbound
        cluster.close()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_provenance_of_code_installed_in_site_packages(env: dict[str, Any]) -> None:
    """A user's pipeline installed in the interpreter's own site-packages (a conda env, a
    pyenv interpreter without venv) is still user code: its ``with`` line is the site."""
    import os

    stdlib = os.path.dirname(os.path.abspath(contextlib.__file__))
    fake = os.path.join(stdlib, "site-packages", "mypipeline", "stages.py")
    source = "def stage(cluster, job, sleep):\n    with cluster.dependencies(job):\n        return sleep(0)\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, fake, "exec"), namespace)
    job = namespace["stage"](env["cluster"], env["ups"][0], env["sleep"])
    site = job.dependencies[0].provenance.site
    assert (site.file, site.line, site.function) == (fake, 2, "stage")


# -- a hypothesis model of nested blocks through the public API --------------------------------
block_specs = st.lists(
    st.tuples(st.sampled_from(KINDS), st.lists(st.integers(0, 4), max_size=3)),
    min_size=1,
    max_size=4,
)


@settings(max_examples=25, deadline=None)
@given(blocks=block_specs, explicit=st.lists(st.integers(0, 4), max_size=2))
def test_submissions_carry_the_merged_scope(
    env: dict[str, Any], blocks: list[tuple[str, list[int]]], explicit: list[int]
) -> None:
    cluster, sleep, arr = env["cluster"], env["sleep"], env["arr"]
    # candidate targets: three single jobs, a 2-task array and one task of it
    pool = [*env["ups"], arr, arr[1]]
    expected: list[tuple[Any, ...]] = []
    with contextlib.ExitStack() as stack:
        for depth, (kind, picks) in enumerate(blocks, start=1):
            if kind == "singleton":
                jobs: list[Any] = []
            elif kind == "aftercorr":
                jobs = [arr]
            else:
                jobs = [pool[i] for i in picks]
            line = here() + 1
            stack.enter_context(cluster.dependencies(*jobs, kind=kind))
            for j in jobs or [None]:
                if j is None and kind != "singleton":
                    continue
                target_id = None if j is None else j.target_id
                expected.append((kind, target_id, "scope", depth, line))
        after = [pool[i] for i in explicit]
        line = here() + 1
        job = sleep.map([0, 0], after=after)
        expected += [("afterok", j.target_id, "after=", None, line) for j in after]
    assert scope.current() == ()
    kept: dict[tuple[str, Any], tuple[Any, ...]] = {}
    for entry in expected:
        kept.setdefault(entry[:2], entry)
    assert [v[:5] for v in _view(job)] == [
        (k, t, via, d, __file__) for (k, t, via, d, _line) in kept.values()
    ]
    assert [d.provenance.site.line for d in job.dependencies] == [v[4] for v in kept.values()]
    assert [d.key for d in job.dependencies] == [d.key for d in merge(job.dependencies)[0]]
    assert_recorded(cluster, job)
    job.cancel()
